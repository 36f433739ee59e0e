"""The reconcile tombstone against a launch wrapper that starts late, both orders, for real.

A dispatcher (`optialloc serve`, a subprocess) is SIGKILLed right after it
started a job's wrapper (`OPTIALLOC_CRASH_AT=launch:1`), before it journaled
the pid: the journal row says `launching`. The wrapper is held at its very
start by the test hook `OPTIALLOC_WRAP_HOLD` (optialloc.runners.wrap): it
has not claimed its attempt yet, exactly the window a slow fork/exec leaves
on a loaded machine. A restarted dispatcher (`Dispatcher(...).reconcile()`,
the real process runner) and the wrapper then race for the attempt's pid
file:

- reconcile first: reconcile writes the `abandoned` tombstone and returns the
  job to the queue; the wrapper, released afterwards, must exit without
  running anything;
- the wrapper first, inside reconcile's window (after reconcile looked for
  the pid file and before its tombstone write): the tombstone write fails,
  reconcile adopts the wrapper, the job stays claimed with its nodes locked;
- the wrapper first, before reconcile: plain adoption.

In every order a fresh `serve` then finishes the work and the job has run
exactly once (the job appends one record line per run), nothing stays locked
or claimed. Without the tombstone step in reconcile the first two orders
run the job twice (see docs/testing.md for how that was checked).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from serve_support import (
    env_without_crash,
    job_body,
    process_gone,
    put_bodies,
    read_records,
    record_command,
    run_serve,
    serve_cmd,
    wait_for,
)

from optialloc.clock import RealClock
from optialloc.config import Config, load_config
from optialloc.dispatch.dispatcher import Dispatcher
from optialloc.dispatch.journal import Journal
from optialloc.dispatch.serve import settings_from
from optialloc.inventory.embedded import EmbeddedInventory
from optialloc.policy import default_policy
from optialloc.queue.embedded import EmbeddedQueue
from optialloc.runners import CommandRunner
from optialloc.runners.process import read_attempt, read_pid
from optialloc.runners.wrap import HOLD_ENV, TOMBSTONE, pid_file

pytestmark = pytest.mark.slow

LOCKED_BY = "optialloc@race"


class Race:
    """One queued job, a dispatcher killed right after launching it, its wrapper held."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.state = tmp_path / "state"
        self.state.mkdir()
        self.records = tmp_path / "records.txt"
        self.go = tmp_path / "go"  # the held wrapper goes on once this file exists
        self.config_path = tmp_path / "config.yaml"
        self.config_path.write_text(
            yaml.safe_dump(
                {
                    "state_dir": str(self.state),
                    "tick_seconds": 0.3,
                    "locked_by": LOCKED_BY,
                    "runner_command": record_command(self.records),
                }
            )
        )
        [self.job_id] = put_bodies(self.state, [job_body(1, run="run-race", duration="0.3")])
        self.archive = ""

    @property
    def config(self) -> Config:
        return load_config(str(self.config_path))

    def crash_after_launch(self) -> None:
        """`serve` launches the job (wrapper held) and is SIGKILLed before journaling its pid."""
        env = env_without_crash()
        env["OPTIALLOC_CRASH_AT"] = "launch:1"
        env[HOLD_ENV] = str(self.go)
        crashed = subprocess.run(
            serve_cmd(self.config_path),
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
            env=env,
        )
        assert crashed.returncode == -signal.SIGKILL, (crashed.returncode, crashed.stderr[-2000:])
        journal = Journal(str(self.state / "journal.sqlite"))
        [row] = journal.open_rows()
        journal.close()
        assert (row.job_id, row.state) == (self.job_id, "launching")
        self.archive = row.archive_path
        attempt = read_attempt(self.archive)
        assert attempt is not None, "the launch recorded no attempt"
        self.attempt = attempt
        # The wrapper runs, held before it claims the attempt: no pid file yet.
        assert self.wrappers(), "the held wrapper is not running"
        assert not os.path.exists(self.pid_path)

    @property
    def pid_path(self) -> str:
        return os.path.join(self.archive, pid_file(self.attempt))

    def wrappers(self) -> list[int]:
        """Live wrapper processes of this job's attempt (found by their command line)."""
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    args = handle.read().split(b"\0")
            except OSError:
                continue
            if (
                b"optialloc-wrap" in args
                and self.archive.encode() in args
                and self.attempt.encode() in args
                and not process_gone(int(entry))
            ):
                found.append(int(entry))
        return found

    def release_wrapper(self) -> None:
        self.go.touch()

    def open_queue(self) -> EmbeddedQueue:
        return EmbeddedQueue(str(self.state / "queue.sqlite"))

    def open_inventory(self) -> EmbeddedInventory:
        return EmbeddedInventory(str(self.state / "inventory.sqlite"), LOCKED_BY)

    def dispatcher(self, runner: CommandRunner | None = None) -> Dispatcher:
        """A restarted dispatcher on the crashed one's state (as `serve` builds it)."""
        config = self.config
        self.parts = (self.open_queue(), self.open_inventory())
        self.journal = Journal(str(self.state / "journal.sqlite"))
        return Dispatcher(
            queue=self.parts[0],
            inventory=self.parts[1],
            runner=runner or CommandRunner(config.runner_command),
            clock=RealClock(),
            policy=default_policy(),
            journal=self.journal,
            settings=settings_from(config),
        )

    def close_dispatcher(self) -> None:
        self.journal.close()
        self.parts[0].close()
        self.parts[1].close()

    def queue_state(self) -> tuple[list[str], list[str]]:
        """(pending ids, claimed ids) as a fresh reader sees them."""
        queue = self.open_queue()
        try:
            return [j.job_id for j in queue.pending()], [j.job_id for j in queue.claimed()]
        finally:
            queue.close()

    def held_nodes(self) -> list[tuple[str, str | None]]:
        inventory = self.open_inventory()
        try:
            return [(n.name, n.description) for n in inventory.nodes() if n.locked]
        finally:
            inventory.close()

    def runs(self) -> list[str]:
        """One entry per time the job's command ran (its own records)."""
        return [job_id for job_id, *_ in read_records(self.records)]

    def finish_and_check(self) -> None:
        """A fresh `serve` finishes the work: the job ran exactly once, nothing is left over."""
        done = run_serve(self.config_path)
        assert done.returncode == 0, done.stderr[-3000:]
        assert self.runs() == [self.job_id], (self.runs(), done.stderr[-3000:])
        assert self.held_nodes() == [], "a node lock leaked"
        assert self.queue_state() == ([], [])
        journal = Journal(str(self.state / "journal.sqlite"))
        assert journal.open_rows() == []
        journal.close()

    def cleanup(self) -> None:
        """Never leave a held wrapper behind (also when an assertion failed)."""
        if not self.archive:
            return
        self.release_wrapper()
        for pid in self.wrappers():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)  # the wrapper leads its own group


@pytest.fixture
def race(tmp_path: Path) -> Iterator[Race]:
    case = Race(tmp_path)
    try:
        yield case
    finally:
        case.cleanup()


def test_reconcile_first_the_late_wrapper_runs_nothing(race: Race) -> None:
    race.crash_after_launch()
    d = race.dispatcher()
    repairs = d.reconcile()
    race.close_dispatcher()
    # Now the late wrapper starts: it must find the tombstone and exit at once.
    [wrapper] = race.wrappers()
    race.release_wrapper()
    wait_for(lambda: process_gone(wrapper), timeout=60, what="the late wrapper to exit")
    assert race.runs() == [], "the abandoned attempt ran the job, which is back in the queue"
    assert not os.path.exists(os.path.join(race.archive, "output.log"))
    # The job is back in the queue, its node unlocked, the attempt tombstoned.
    assert any("never started" in line for line in repairs), repairs
    assert race.queue_state() == ([race.job_id], [])
    assert race.held_nodes() == []
    with open(race.pid_path, encoding="ascii") as handle:
        assert handle.read() == TOMBSTONE + "\n"
    race.finish_and_check()


class WrapperWinsInTheWindow(CommandRunner):
    """The real runner; the held wrapper is let go between reconcile's look for its pid
    file and reconcile's tombstone write, and claims the attempt first."""

    def __init__(self, template: str, race: Race) -> None:
        super().__init__(template)
        self.race = race
        self.abandon_calls = 0

    def abandon(self, archive_path: str) -> bool:
        self.abandon_calls += 1
        assert read_pid(archive_path) is None  # reconcile found no pid file: the window
        self.race.release_wrapper()
        wait_for(lambda: read_pid(archive_path) is not None, what="the wrapper's pid file")
        return super().abandon(archive_path)


def test_wrapper_first_inside_reconciles_window_is_adopted_not_rerun(race: Race) -> None:
    race.crash_after_launch()
    runner = WrapperWinsInTheWindow(race.config.runner_command, race)
    d = race.dispatcher(runner)
    repairs = d.reconcile()
    handles = d.handles()
    [row] = race.journal.rows_for(race.job_id)
    race.close_dispatcher()
    race.release_wrapper()  # (already released inside reconcile's window)
    wait_for(lambda: read_pid(race.archive) is not None, what="the wrapper's pid file")
    # The wrapper owns the attempt and runs the job: the job must keep its claim
    # and its node, or the next tick would start it a second time.
    assert race.queue_state() == ([], [race.job_id]), "job returned to the queue while it runs"
    assert race.held_nodes() == [(row.nodes[0], race.archive)], "node unlocked while in use"
    assert any("adopted pid" in line for line in repairs), repairs
    assert [h.pid for h in handles] == [read_pid(race.archive)]
    assert row.state == "running" and row.pid == read_pid(race.archive)
    assert runner.abandon_calls == 1  # the race really went through reconcile's window
    race.finish_and_check()


def test_wrapper_first_before_reconcile_is_adopted(race: Race) -> None:
    race.crash_after_launch()
    race.release_wrapper()
    wait_for(lambda: read_pid(race.archive) is not None, what="the wrapper's pid file")
    d = race.dispatcher()
    repairs = d.reconcile()
    assert any("adopted pid" in line for line in repairs), repairs
    assert [h.pid for h in d.handles()] == [read_pid(race.archive)]
    race.close_dispatcher()
    assert race.queue_state() == ([], [race.job_id])
    race.finish_and_check()

"""Locks teuthology accepts: a job's nodes are locked as its owner, with its archive path.

Against the paddles look-alike with paddles' own rules (tests/paddles_server.py,
a real HTTP server on loopback) and, when teuthology 1.3.0 is installed in an
interpreter of its own (`OPTIALLOC_TEUTHOLOGY_PYTHON`, or the virtualenv
`scripts/test.sh` makes), teuthology's own `internal.check_lock` and the
supervisor's `unlock_targets` (tests/teuthology_lock_check.py). Without it,
the same checks run from tests/lock_check_runner.py (check_lock's asserts and
the supervisor's unlock call, over HTTP).

- end to end: real beanstalkd, bodies as teuthology-schedule writes them,
  `optialloc serve` whose jobs check their own locks and unlock them as the
  supervisor does: every job runs once, its locks carry its owner, its own
  unlock succeeds, a person's lock is never touched, no lock is left;
- the checks fail for a lock taken under the dispatcher's own name (the bug);
- a lock server outage: releases wait (`release pending`), cost one failed
  request per tick, and are confirmed once the server is back;
- kill -9 of serve in the middle of the commit path, then a restart: nothing
  runs twice, no lock leaks (exact and lock_many modes).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import beanstalkc
import pytest
import yaml
from inventory_support import backend
from paddles_server import FakePaddles
from serve_support import env_without_crash, run_serve, teuthology_schedule_body, wait_for

from optialloc.dispatch.dispatcher import Dispatcher, DispatcherSettings
from optialloc.dispatch.journal import Journal
from optialloc.errors import Conflict, LockBusy, NotFound
from optialloc.inventory.paddles import PaddlesInventory
from optialloc.inventory.paddles_client import PaddlesClient
from optialloc.policy import default_policy
from optialloc.queue.embedded import EmbeddedQueue
from optialloc.runners import CommandRunner
from optialloc.teuthology import dump_body

TESTS = Path(__file__).resolve().parent
SERVE = [sys.executable, "-m", "optialloc"]
OWNERS = ("scheduled_alice@teuth", "scheduled_bob@teuth", "scheduled_carol@teuth")
PERSON = ("bob@desk", "/home/bob/debugging")  # a person's lock: never touched
#: Where scripts/test.sh installs teuthology 1.3.0 (its own virtualenv: it pins old
#: versions of many packages).
DEFAULT_TEUTHOLOGY_VENV = Path.home() / ".cache" / "optialloc" / "teuthology-venv"


def teuthology_python() -> str | None:
    """An interpreter that has teuthology (with check_lock), or None."""
    path = os.environ.get("OPTIALLOC_TEUTHOLOGY_PYTHON") or str(
        DEFAULT_TEUTHOLOGY_VENV / "bin" / "python"
    )
    if not os.path.exists(path):
        return None
    probe = subprocess.run(
        [path, "-c", "import teuthology.task.internal.check_lock, teuthology.dispatcher"],
        capture_output=True,
        timeout=120,
    )
    return path if probe.returncode == 0 else None


TEUTHOLOGY = teuthology_python()
needs_teuthology = pytest.mark.skipif(
    TEUTHOLOGY is None,
    reason="teuthology 1.3.0 not installed (bash scripts/test.sh installs it in "
    f"{DEFAULT_TEUTHOLOGY_VENV}; or set OPTIALLOC_TEUTHOLOGY_PYTHON)",
)


def lab(paddles: FakePaddles, count: int = 6) -> None:
    for i in range(1, count + 1):
        paddles.add_node(
            f"smithi{i:03d}",
            "smithi",
            os_type="ubuntu",
            os_version="22.04",
            arch="x86_64",
            ssh_pub_key=f"ssh-ed25519 KEY{i}",
        )
    name = f"smithi{count:03d}"
    paddles.nodes[name].update(locked=True, locked_by=PERSON[0], description=PERSON[1])


def checker_command(kind: str, url: str, records: Path) -> str:
    """The runner_command of a job that checks and then unlocks its own targets."""
    if kind == "stdlib":
        return f"{sys.executable} {TESTS / 'lock_check_runner.py'} {url} {{config_path}} {records}"
    assert TEUTHOLOGY is not None
    check = f"{TEUTHOLOGY} {TESTS / 'teuthology_lock_check.py'} {url} {url} {{config_path}}"
    return f"sh -c '{check} && echo {{job_id}} >> {records}'"


def write_config(tmp_path: Path, **settings: object) -> Path:
    config = {
        "state_dir": str(tmp_path / "state"),
        "tick_seconds": 0.3,
        "locked_by": "optialloc@lab",
        **settings,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def records_of(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def put_teuthology_jobs(port: int, count: int) -> dict[str, str]:
    """Bodies exactly as teuthology-schedule writes them, into beanstalkd; job id -> owner."""
    conn = beanstalkc.Connection("127.0.0.1", port, parse_yaml=yaml.safe_load)
    conn.use("smithi")
    owners = {}
    for i in range(count):
        # every other job leaves its nodes locked (as a failed teuthology job without
        # unlock_on_failure does): optialloc unlocks those, as their owner
        body = teuthology_schedule_body(
            i,
            nodes=1 + i % 3,
            owner=OWNERS[i % 3],
            run=f"run-{i % 2}",
            duration="0.3",
            skip_unlock=i % 2 == 1,
        )
        owners[str(conn.put(yaml.safe_dump(body), priority=body["priority"], ttr=86400))] = body[
            "owner"
        ]
    conn.close()
    return owners


# -- the end-to-end scenario ------------------------------------------------------------


@pytest.mark.beanstalkd
@pytest.mark.parametrize("kind", ["stdlib", pytest.param("teuthology", marks=needs_teuthology)])
def test_serve_locks_as_each_jobs_owner_and_the_jobs_own_checks_and_unlock_pass(
    tmp_path: Path, beanstalkd: Any, kind: str
) -> None:
    records = tmp_path / "records.txt"
    with FakePaddles() as paddles:
        lab(paddles)
        count = 9 if kind == "stdlib" else 4
        owners = put_teuthology_jobs(beanstalkd.port, count)
        config = write_config(
            tmp_path,
            queue_backend="beanstalk",
            queue_port=beanstalkd.port,
            lock_server=paddles.url,
            results_server=paddles.url,
            runner_command=checker_command(kind, paddles.url, records),
        )
        done = run_serve(config)
        assert done.returncode == 0, done.stderr[-3000:]
        # no lock left but the person's, which nobody touched
        assert paddles.locked_nodes() == {"smithi006": PERSON}
        person_calls = [p for m, p in paddles.requests if m != "GET" and "smithi006" in p]
        assert person_calls == []
        # each job's nodes were released by the job's own unlock (or optialloc's, after it)
        assert "not ours to unlock" not in done.stderr
        assert "release pending" not in done.stderr
        assert "released" in done.stderr
    if kind == "stdlib":
        runs = records_of(records)
        assert sorted(r["job_id"] for r in runs) == sorted(owners)  # every job ran, once
        for run in runs:
            assert run["exit"] == 0, run
            owner = owners[run["job_id"]]
            assert run["owner"] == owner
            assert {who for who, _desc in run["seen"].values()} == {owner}  # locks carry it
            assert {status for status, _ in run["unlocks"].values()} <= {200}, run
        assert any(run["unlocks"] for run in runs)  # the jobs' own unlocks were accepted
    else:
        # teuthology's check_lock and unlock_targets passed for every job (exit 0)
        ran = records.read_text().split()
        assert sorted(ran) == sorted(owners)


# -- the checks are real: they fail for the lock this issue was about -------------------


def _orig_config(tmp_path: Path, owner: str, archive: str, names: list[str]) -> Path:
    path = tmp_path / "orig.config.yaml"
    config = {
        "owner": owner,
        "archive_path": archive,
        "name": "run-a",
        "job_id": "7",
        "targets": {f"ubuntu@{name}": None for name in names},
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("kind", ["stdlib", pytest.param("teuthology", marks=needs_teuthology)])
def test_the_checks_refuse_a_lock_taken_under_the_dispatchers_name(
    tmp_path: Path, kind: str
) -> None:
    with FakePaddles() as paddles:
        lab(paddles)
        inventory = PaddlesInventory(PaddlesClient(paddles.url), "optialloc@host")
        archive = str(tmp_path / "archive" / "run-a" / "7")
        owner = OWNERS[0]
        config = _orig_config(tmp_path, owner, archive, ["smithi001", "smithi002"])
        records = tmp_path / "records.txt"
        if kind == "stdlib":
            command = [sys.executable, str(TESTS / "lock_check_runner.py")]
            args = [paddles.url, str(config), str(records)]
        else:
            assert TEUTHOLOGY is not None
            command = [TEUTHOLOGY, str(TESTS / "teuthology_lock_check.py")]
            args = [paddles.url, paddles.url, str(config)]
        inventory.lock(["smithi001", "smithi002"], archive)  # the old way: our own name
        wrong = subprocess.run([*command, *args], capture_output=True, text=True, timeout=300)
        assert wrong.returncode == 1
        assert f"is locked by optialloc@host, not {owner}" in wrong.stderr
        if kind == "stdlib":  # and the supervisor's unlock is refused, as paddles does
            assert "Cannot unlock - locked_by values must match" in wrong.stderr
        assert set(paddles.locked_nodes()) == {"smithi001", "smithi002", "smithi006"}
        inventory.unlock(["smithi001", "smithi002"], archive)
        inventory.lock(["smithi001", "smithi002"], archive, owner)  # as the dispatcher does
        right = subprocess.run([*command, *args], capture_output=True, text=True, timeout=300)
        assert right.returncode == 0, right.stderr[-2000:]
        assert paddles.locked_nodes() == {"smithi006": PERSON}  # the job unlocked its own
        inventory.close()


# -- both inventories follow the same rule ------------------------------------------------


@pytest.mark.parametrize("kind", ["embedded", "paddles"])
def test_a_jobs_lock_belongs_to_its_owner_in_both_inventories(tmp_path: Path, kind: str) -> None:
    with backend(kind, tmp_path) as (open_inventory, _server):
        dispatcher = open_inventory("optialloc@lab")
        supervisor = open_inventory(OWNERS[0])  # the job's own unlock, as its owner
        got = dispatcher.lock(["smithi001", "smithi002"], "/a/run/1", OWNERS[0])
        assert {n.locked_by for n in got} == {OWNERS[0]}
        locks = {n.name: n.locked_by for n in dispatcher.nodes() if n.locked}
        assert locks == {"smithi001": OWNERS[0], "smithi002": OWNERS[0]}
        assert dispatcher.held() == []  # held() is the admin identity's, not jobs'
        # idempotent for the same owner and description; refused for anyone else
        dispatcher.lock(["smithi001", "smithi002"], "/a/run/1", OWNERS[0])
        with pytest.raises(LockBusy):
            dispatcher.lock(["smithi002"], "/a/run/2", OWNERS[1])
        # under the dispatcher's own name, or for another description: not unlocked
        with pytest.raises(Conflict):
            dispatcher.unlock(["smithi001"], "/a/run/1")
        with pytest.raises(Conflict):
            dispatcher.unlock(["smithi001"], "/a/run/9", OWNERS[0])
        # the job's supervisor unlocks one node; optialloc's release then finds it free
        supervisor.unlock(["smithi001"], "/a/run/1")
        dispatcher.unlock(["smithi001", "smithi002"], "/a/run/1", OWNERS[0])
        assert [n.name for n in dispatcher.nodes() if n.locked] == []


# -- a lock server outage ------------------------------------------------------------------


def _dispatcher(tmp_path: Path, url: str) -> tuple[Dispatcher, EmbeddedQueue, PaddlesInventory]:
    queue = EmbeddedQueue(str(tmp_path / "queue.sqlite"))
    client = PaddlesClient(url, timeout=2.0, attempts=3, backoff_s=0.05)
    inventory = PaddlesInventory(client, "optialloc@lab")
    dispatcher = Dispatcher(
        queue=queue,
        inventory=inventory,
        runner=CommandRunner("true"),
        clock=_RealClock(),
        policy=default_policy(),
        journal=Journal(str(tmp_path / "journal.sqlite")),
        settings=DispatcherSettings(archive_base=str(tmp_path / "archive")),
    )
    return dispatcher, queue, inventory


class _RealClock:
    def now(self) -> Any:
        from datetime import UTC, datetime

        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        import time

        time.sleep(seconds)


def _put(queue: EmbeddedQueue, i: int, owner: str) -> str:
    body = teuthology_schedule_body(
        i, nodes=1, owner=owner, run="run-outage", duration="0.1", skip_unlock=i % 2 == 0
    )
    return queue.put("smithi", dump_body(body), body["priority"])


def test_an_outage_leaves_releases_pending_without_stalling_then_they_are_confirmed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with FakePaddles() as paddles:
        lab(paddles)
        d, queue, inventory = _dispatcher(tmp_path, paddles.url)
        first = [_put(queue, i, OWNERS[i % 3]) for i in range(5)]
        report = d.tick()
        assert sorted(report.started) == sorted(first)
        locked = paddles.locked_nodes()
        assert {who for who, _ in locked.values()} == {*OWNERS, PERSON[0]}  # jobs' owners
        wait_for(lambda: all(d.runner.poll(h) is not None for h in d.handles()), what="jobs end")
        paddles.stop()  # the lock server goes away with five releases due
        sent: list[str] = []
        real_once = inventory.client._once

        def counting_once(method: str, url: str, path: str, body: Any) -> Any:
            sent.append(f"{method} {path}")  # a spy: every request that reaches the network
            return real_once(method, url, path, body)

        inventory.client._once = counting_once  # type: ignore[method-assign]
        caplog.clear()
        for _ in range(3):  # ticks during the outage
            inventory.new_round()
            report = d.tick()
            assert report.started == []
        # one failed request (with its retries) in the first tick, a single probe in the
        # others: never one per job, never a back-off per job
        assert len(sent) <= 3 + 2, sent
        pending = [r.message for r in caplog.records if "release pending" in r.message]
        assert len(pending) == 3 * 5  # each job, each tick: still pending
        assert "lock server unreachable" in pending[0]
        assert not [r.message for r in caplog.records if "released" in r.message]
        assert set(paddles.locked_nodes()) == {n for n in locked}  # still locked, truly
        # back: the next tick confirms every release and schedules again
        paddles.restart()
        second = [_put(queue, 10 + i, OWNERS[0]) for i in range(2)]
        caplog.clear()
        inventory.new_round()
        report = d.tick()
        released = [r.message for r in caplog.records if r.message.endswith("released")]
        assert len(released) == 5
        assert sorted(report.started) == sorted(second)
        wait_for(lambda: all(d.runner.poll(h) is not None for h in d.handles()), what="jobs end")
        d.tick()
        assert paddles.locked_nodes() == {"smithi006": PERSON}
        assert d.journal.unsettled_ended() == [] and d.journal.open_rows() == []
        d.journal.close()
        queue.close()
        inventory.close()


@pytest.mark.slow
def test_serve_through_a_lock_server_outage_keeps_ticking_and_releases_everything(
    tmp_path: Path,
) -> None:
    records = tmp_path / "records.txt"
    log = tmp_path / "serve.log"
    with FakePaddles() as paddles:
        lab(paddles)
        state = tmp_path / "state"
        state.mkdir()
        queue = EmbeddedQueue(str(state / "queue.sqlite"))
        for i in range(8):  # every job leaves its nodes to optialloc to release
            body = teuthology_schedule_body(
                i, nodes=1, owner=OWNERS[i % 3], run="run-o", duration="1.5", skip_unlock=True
            )
            queue.put("smithi", dump_body(body), body["priority"])
        queue.close()
        config = write_config(
            tmp_path,
            lock_server=paddles.url,
            runner_command=checker_command("stdlib", paddles.url, records),
        )
        with open(log, "w") as stderr:
            proc = subprocess.Popen(
                [*SERVE, "--config", str(config), "serve", "--exit-on-empty-queue"],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                cwd=str(TESTS.parent),
                env=env_without_crash(),
            )
        try:
            checked = Path(f"{records}.checked")
            wait_for(
                lambda: checked.exists() and len(checked.read_text().split()) >= 5,
                90,
                "five jobs running, their locks checked",
            )
            paddles.stop()  # paddles goes away while five jobs run
            wait_for(lambda: "release pending" in log.read_text(), 90, "a release pending")
            ticks = log.read_text().count(" started, ")
            # the loop goes on ticking during the outage (no stall on the releases)
            wait_for(lambda: log.read_text().count(" started, ") >= ticks + 3, 90, "more ticks")
            assert proc.poll() is None
            paddles.restart()
            assert proc.wait(timeout=120) == 0, log.read_text()[-3000:]
        finally:
            if proc.poll() is None:
                proc.kill()
        assert paddles.locked_nodes() == {"smithi006": PERSON}
    text = log.read_text()
    pending = {
        line.split("job ", 1)[1].split(":", 1)[0]
        for line in text.splitlines()
        if "release pending (lock server unreachable)" in line
    }
    assert pending, "no release was pending during the outage"
    for job_id in pending:  # each pending release was confirmed afterwards
        last_pending = text.rindex(f"job {job_id}: release pending")
        assert f"job {job_id}: nodes " in text[last_pending:], job_id
    assert "; nodes released" not in text  # nobody claims a release that did not happen
    runs = records_of(records)
    assert len(runs) == 8 and len({r["job_id"] for r in runs}) == 8
    assert all(r["exit"] == 0 for r in runs)


# -- kill -9 in the middle of the commit path, against paddles -------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("crash_at", "lock_many"),
    [
        ("lock:2", False),  # locked as the owner, not yet journaled `locked`
        ("launching:1", False),  # journaled, the wrapper not started
        ("unlock:1", False),  # a finished job's nodes released, its queue entry not deleted
        ("lock:1", True),  # lock_many chose the nodes; the journal has the Plan's names
    ],
)
def test_kill_mid_commit_with_owner_locks_then_restart_leaks_nothing(
    tmp_path: Path, crash_at: str, lock_many: bool
) -> None:
    records = tmp_path / "records.txt"
    with FakePaddles() as paddles:
        lab(paddles)
        state = tmp_path / "state"
        state.mkdir()
        queue = EmbeddedQueue(str(state / "queue.sqlite"))
        owners = {_put(queue, i, OWNERS[i % 3]): OWNERS[i % 3] for i in range(6)}
        queue.close()
        config = write_config(
            tmp_path,
            lock_server=paddles.url,
            lock_many=lock_many,
            runner_command=checker_command("stdlib", paddles.url, records),
        )
        crashed = run_serve(config, crash_at=crash_at)
        assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
        left = paddles.locked_nodes()
        assert {who for who, _ in left.values()} <= {*OWNERS, PERSON[0]}
        done = run_serve(config)
        assert done.returncode == 0, done.stderr[-3000:]
        assert paddles.locked_nodes() == {"smithi006": PERSON}, done.stderr[-3000:]
    runs = records_of(records)
    assert sorted(r["job_id"] for r in runs) == sorted(owners)  # each once
    for run in runs:
        assert run["exit"] == 0 and run["owner"] == owners[run["job_id"]], run


def test_a_node_gone_from_the_lab_is_a_clear_error_not_a_stall(tmp_path: Path) -> None:
    """The lock-owner change keeps paddles' 404 handling: a clear NotFound per job."""
    with FakePaddles() as paddles:
        lab(paddles)
        inventory = PaddlesInventory(PaddlesClient(paddles.url), "optialloc@lab")
        with pytest.raises(NotFound, match="nosuch"):
            inventory.lock(["smithi001", "nosuch"], "/a/r/1", OWNERS[0])
        assert paddles.locked_nodes() == {"smithi006": PERSON}
        inventory.close()

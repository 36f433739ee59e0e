"""Helpers for the dispatcher/serve tests: a small real lab, a clock that can jump, waiting."""

from __future__ import annotations

import itertools
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from conftest import REPO

from optialloc.dispatch.dispatcher import Dispatcher, DispatcherSettings, TickReport
from optialloc.dispatch.journal import Journal
from optialloc.domain import Job, Node
from optialloc.inventory.embedded import EmbeddedInventory
from optialloc.policy import default_policy
from optialloc.queue.embedded import EmbeddedQueue
from optialloc.runners import CommandRunner
from optialloc.teuthology import dump_body, parse_job


class OffsetClock:
    """Real time plus an offset the test moves forward (to reach a deadline without waiting)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    """Poll until `predicate()` holds; fail after `timeout` s (a hang guard, not a speed check)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"{what} not reached within {timeout} s")


def process_gone(pid: int) -> bool:
    """True once `pid` no longer runs (absent or a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            state = handle.read().rsplit(b")", 1)[-1].split()[0]
    except FileNotFoundError:
        return True
    return state in (b"Z", b"X")


def lab_nodes(count: int = 4, machine_type: str = "smithi") -> list[Node]:
    return [
        Node(
            f"{machine_type}{i:03d}",
            machine_type,
            os_type="ubuntu",
            os_version="22.04",
            arch="x86_64",
            ssh_pub_key=f"ssh-ed25519 KEY{i}",
        )
        for i in range(1, count + 1)
    ]


class Lab:
    """A real embedded queue + inventory + command runner + journal around one Dispatcher."""

    def __init__(
        self,
        root: Path,
        command: str,
        *,
        clock: object | None = None,
        nodes: list[Node] | None = None,
        **settings: object,
    ) -> None:
        self.root = root
        self.queue = EmbeddedQueue(str(root / "queue.sqlite"))
        self.inventory = EmbeddedInventory(str(root / "inventory.sqlite"), "optialloc@test")
        self.inventory.import_nodes(nodes if nodes is not None else lab_nodes())
        self.journal = Journal(str(root / "journal.sqlite"))
        self.runner = CommandRunner(command)
        self.clock = clock or OffsetClock()
        self.archive = str(root / "archive")
        self.dispatcher = Dispatcher(
            queue=self.queue,
            inventory=self.inventory,
            runner=self.runner,
            clock=self.clock,  # type: ignore[arg-type]
            policy=default_policy(),
            journal=self.journal,
            settings=DispatcherSettings(archive_base=self.archive, **settings),  # type: ignore[arg-type]
        )

    def put(
        self,
        nodes: int = 1,
        *,
        priority: int = 100,
        run: str = "run-a",
        machine_type: str = "smithi",
        **body: object,
    ) -> str:
        full = job_body(nodes, run=run, machine_type=machine_type, priority=priority, **body)
        return self.queue.put(machine_type, dump_body(full), priority)

    def tick(self) -> TickReport:
        return self.dispatcher.tick()

    def run_until_idle(self, timeout: float = 60.0) -> TickReport:
        """Tick until nothing runs and nothing startable is left."""
        deadline = time.monotonic() + timeout
        while True:
            report = self.tick()
            if (
                not self.dispatcher.handles()
                and not report.started
                and (not self.queue.pending() or not (report.plan and report.plan.starts))
            ):
                return report
            if time.monotonic() > deadline:
                raise AssertionError(f"lab not idle within {timeout} s")
            time.sleep(0.05)

    def finished_ok(self, job_id: str) -> bool:
        rows = self.journal.rows_for(job_id)
        return bool(rows) and rows[-1].state == "done" and rows[-1].exit_status == 0

    def close(self) -> None:
        self.journal.close()
        self.queue.close()
        self.inventory.close()


def job_body(
    nodes: int = 1,
    *,
    run: str = "run-a",
    owner: str = "scheduled_me@host",
    machine_type: str = "smithi",
    priority: int = 100,
    **extra: object,
) -> dict[str, Any]:
    """A teuthology job body needing `nodes` nodes (one role list per node)."""
    return {
        "name": run,
        "owner": owner,
        "machine_type": machine_type,
        "priority": priority,
        "roles": [[f"osd.{i}"] for i in range(nodes)],
        **extra,
    }


def mixed_bodies(count: int, rng: random.Random) -> list[dict[str, Any]]:
    """`count` 1-3-node jobs of three runs, two owners, mixed priorities and short durations
    (the crash tests and scripts/campaign_crash.py)."""
    return [
        job_body(
            rng.choice((1, 1, 2, 3)),
            run=f"run-{i % 3}",
            owner=f"scheduled_u{i % 2}@x",
            priority=rng.choice((75, 100, 1000)),
            duration=rng.choice(("0.05", "0.2", "0.4")),
        )
        for i in range(count)
    ]


def put_bodies(state: Path, bodies: Iterable[Mapping[str, Any]]) -> list[str]:
    """Queue teuthology bodies in the embedded queue of `state` (the state_dir), each in
    its machine type's tube at its own priority, as `optialloc schedule` does; their ids."""
    queue = EmbeddedQueue(str(state / "queue.sqlite"))
    try:
        return [queue.put(b["machine_type"], dump_body(b), b["priority"]) for b in bodies]
    finally:
        queue.close()


def read_records(path: Path) -> list[tuple[str, list[str], float, float]]:
    """Lines `<job_id> <node,node> <start> <end>` the test jobs append (one per run)."""
    records = []
    if not path.exists():
        return records
    for line in path.read_text().splitlines():
        job_id, nodes, start, end = line.split()
        records.append((job_id, nodes.split(","), float(start), float(end)))
    return records


def assert_no_overlap(records: list[tuple[str, list[str], float, float]]) -> None:
    """No node is used by two jobs at the same time (from the jobs' own records)."""
    by_node: dict[str, list[tuple[float, float, str]]] = {}
    for job_id, nodes, start, end in records:
        for node in nodes:
            by_node.setdefault(node, []).append((start, end, job_id))
    for node, spans in by_node.items():
        spans.sort()
        for (_s1, e1, j1), (s2, _e2, j2) in itertools.pairwise(spans):
            assert s2 >= e1, f"node {node} used by jobs {j1} and {j2} at once ({s2} < {e1})"


RECORD_COMMAND = (
    "sh -c 's=$(date +%s.%N); sleep {body[duration]}; e=$(date +%s.%N); "
    'echo "{job_id} {nodes} $s $e" >> ' + "{records}'"
)


def record_command(records: Path) -> str:
    """A runner_command whose jobs sleep `duration` and append their record to `records`."""
    return RECORD_COMMAND.replace("{records}", str(records))


def env_without_crash() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("OPTIALLOC_CRASH_AT", None)
    return env


def serve_cmd(config: Path) -> list[str]:
    """`optialloc serve --exit-on-empty-queue` on `config`, as a subprocess argument list."""
    return [
        sys.executable,
        "-m",
        "optialloc",
        "--config",
        str(config),
        "serve",
        "--exit-on-empty-queue",
    ]


def run_serve(config: Path, crash_at: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run `serve_cmd(config)` to its end (output captured); `crash_at` sets
    OPTIALLOC_CRASH_AT (`<step>[:<n>]`), otherwise it is cleared."""
    env = env_without_crash()
    if crash_at is not None:
        env["OPTIALLOC_CRASH_AT"] = crash_at
    return subprocess.run(
        serve_cmd(config), capture_output=True, text=True, timeout=120, cwd=REPO, env=env
    )


def teuthology_schedule_body(
    i: int,
    *,
    machine_type: str = "smithi",
    priority: int = 1000,
    nodes: int = 1,
    run: str | None = None,
    owner: str = "scheduled_alice@teuth",
    **extra: object,
) -> dict[str, Any]:
    """A job body exactly as `teuthology-schedule --worker <machine_type>` 1.3.0 writes it
    (every field it sets; see teuthology-interfaces.md section 1), plus `extra` fields."""
    roles = [["mon.a", "mgr.x", "osd.0", "osd.1"], ["client.0"], ["osd.2"], ["osd.3"]]
    return {
        "description": f"rados/basic/{{clusters/fixed-{nodes} tasks/rados_api_{i}}}",
        "email": None,
        "first_in_suite": False,
        "last_in_suite": False,
        "machine_type": machine_type,
        "name": run or f"teuthology-2026-12-01_20:00:03-rados-main-distro-default-{machine_type}",
        "no_nested_subset": False,
        "os_type": "ubuntu",
        "os_version": "22.04",
        "owner": owner,
        "priority": priority,
        "roles": roles[:nodes],
        "tasks": [{"install": None}, {"ceph": None}],
        "tube": machine_type,
        "verbose": False,
        **extra,
    }


def scheduled_job(i: int, job_id: str | None = None, **body: Any) -> Job:
    """The `Job` optialloc makes of `teuthology_schedule_body(i, **body)` (id `job_id` or i)."""
    full = teuthology_schedule_body(i, **body)
    return parse_job(
        full,
        job_id=job_id or str(i),
        queued_at=datetime(2026, 12, 1, 20, tzinfo=UTC),
        tube=full["tube"],
        priority=full["priority"],
    )


def record_config(tmp_path: Path, **settings: object) -> Path:
    """`<tmp_path>/config.yaml` for an embedded lab (state in `state/`, created) whose
    runner appends each job to `records.txt` (see `record_command`); `settings` add keys."""
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    path = tmp_path / "config.yaml"
    config = {
        "state_dir": str(state),
        "runner_command": record_command(tmp_path / "records.txt"),
        **settings,
    }
    path.write_text(yaml.safe_dump(config))
    return path


def beanstalk_config(tmp_path: Path, port: int, **extra: object) -> Path:
    """`<tmp_path>/config.yaml` for a lab on the beanstalkd at `port` (state in `state/`)."""
    path = tmp_path / "config.yaml"
    config = {
        "queue_backend": "beanstalk",
        "queue_host": "127.0.0.1",
        "queue_port": port,
        "state_dir": str(tmp_path / "state"),
        **extra,
    }
    path.write_text(yaml.safe_dump(config))
    return path

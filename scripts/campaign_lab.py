"""A small real lab for the reliability campaigns (scripts/campaign_*.py), on either backend.

Real parts only: `optialloc serve` subprocesses, the embedded or a real
beanstalkd queue (started here, 127.0.0.1, a free port, with a binlog), the
embedded inventory, the command runner whose jobs append a record line
(`<job_id> <nodes> <start> <end>`, tests/serve_support.py). `losses()` is
the campaigns' one verdict: everything that should never happen, counted.

It reuses the test helpers (tests/conftest.py, tests/serve_support.py,
tests/queue_support.py) rather than copying them.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import resource
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import yaml  # noqa: E402
from conftest import BeanstalkdProcess, free_port  # noqa: E402
from queue_support import raw_put  # noqa: E402
from serve_support import (  # noqa: E402
    env_without_crash,
    put_bodies,
    read_records,
    record_command,
    serve_cmd,
)

from optialloc.config import load_config  # noqa: E402
from optialloc.dispatch.journal import JOURNAL_FILE, Journal  # noqa: E402
from optialloc.inventory import open_inventory  # noqa: E402
from optialloc.queue import open_queue  # noqa: E402
from optialloc.teuthology import dump_body  # noqa: E402

BACKENDS = ("embedded", "beanstalk")


def campaign_parser(doc: str | None) -> argparse.ArgumentParser:
    """The argument parser of a campaign run as a script; quiets optialloc's own log lines
    (the campaign prints its own), which importing a campaign in a test must not do."""
    logging.getLogger("optialloc").setLevel(logging.ERROR)
    return argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def verdict(total: Losses) -> int:
    """Print the campaign's losses; the exit code is 1 on any loss."""
    print(f"losses: {total.summary()}")
    return 1 if total.total() else 0


@dataclass
class Losses:
    """What must never happen; every count is 0 after a good run."""

    lost: list[str] = field(default_factory=list)  # a good job never run
    twice: list[str] = field(default_factory=list)  # a job run more than once
    overlaps: int = 0  # a node used by two jobs at once
    leaked_locks: list[str] = field(default_factory=list)
    open_rows: int = 0
    claimed: int = 0
    pending: int = 0
    unexpected_buried: list[str] = field(default_factory=list)
    serve_failures: list[str] = field(default_factory=list)

    def total(self) -> int:
        return (
            len(self.lost)
            + len(self.twice)
            + self.overlaps
            + len(self.leaked_locks)
            + self.open_rows
            + self.claimed
            + self.pending
            + len(self.unexpected_buried)
            + len(self.serve_failures)
        )

    def add(self, other: Losses) -> None:
        for name in self.__dataclass_fields__:
            mine, theirs = getattr(self, name), getattr(other, name)
            setattr(self, name, mine + theirs)

    def summary(self) -> str:
        return ", ".join(
            f"{name} {len(v) if isinstance(v, list) else v}" for name, v in vars(self).items()
        )


class CampaignLab:
    """One state dir, one config, one backend; `put` jobs, `serve` them, count `losses`."""

    def __init__(self, root: Path, backend: str, *, tick_seconds: float = 0.3, **config: Any):
        self.root = root
        self.backend = backend
        self.state = root / "state"
        self.state.mkdir(parents=True)
        self.records = root / "records.txt"
        self.beanstalkd: BeanstalkdProcess | None = None
        values: dict[str, Any] = {
            "state_dir": str(self.state),
            "tick_seconds": tick_seconds,
            "locked_by": "optialloc@campaign",
            "runner_command": record_command(self.records),
            **config,
        }
        if backend == "beanstalk":
            binlog = root / "binlog"
            binlog.mkdir()
            self.beanstalkd = BeanstalkdProcess(port=free_port(), binlog_dir=binlog)
            self.beanstalkd.start()
            values.update(queue_backend="beanstalk", queue_port=self.beanstalkd.port)
        self.config = root / "config.yaml"
        self.config.write_text(yaml.safe_dump(values))
        self.expected: list[str] = []  # job ids that must run exactly once
        self.expected_buried: set[str] = set()

    def put(self, bodies: list[dict[str, Any]]) -> list[str]:
        """Queue good teuthology bodies (each once); their ids are expected to run once."""
        if self.beanstalkd is None:
            ids = put_bodies(self.state, bodies)
        else:
            ids = [
                str(raw_put(self.beanstalkd.port, b["machine_type"], dump_body(b), b["priority"]))
                for b in bodies
            ]
        self.expected += ids
        return ids

    def put_raw(self, tube: str, text: str | bytes, priority: int) -> str:
        """Queue a raw body (beanstalk: as bytes on the wire; embedded: `queue.put`)."""
        if self.beanstalkd is not None:
            data = text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")
            conn = __import__("beanstalkc").Connection("127.0.0.1", self.beanstalkd.port)
            try:
                conn.use(tube)
                return str(conn.put(data, priority=priority, ttr=86400))  # type: ignore[arg-type]
            finally:
                conn.close()
        queue = open_queue(load_config(str(self.config)))
        try:
            raw = text.decode("utf-8", "surrogateescape") if isinstance(text, bytes) else text
            return queue.put(tube, raw, priority)
        finally:
            queue.close()

    def spawn(self, crash_at: str | None = None, *extra: str) -> subprocess.Popen[str]:
        env = env_without_crash()
        if crash_at:
            env["OPTIALLOC_CRASH_AT"] = crash_at
        return subprocess.Popen(
            [*serve_cmd(self.config), *extra],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=env,
        )

    def serve(self, crash_at: str | None = None, timeout: float = 600) -> tuple[int, str]:
        """Run serve --exit-on-empty-queue to its end: (exit code, stderr)."""
        proc = self.spawn(crash_at)
        _, err = proc.communicate(timeout=timeout)
        return proc.returncode, err

    def finish(self, proc: subprocess.Popen[str], timeout: float = 900) -> Losses:
        """Wait for a spawned serve to end; the losses, with its exit if it was not 0."""
        _, err = proc.communicate(timeout=timeout)
        losses = self.losses()
        if proc.returncode != 0:
            losses.serve_failures.append(f"serve exit {proc.returncode}: {err[-600:]}")
        return losses

    def records_list(self) -> list[tuple[str, list[str], float, float]]:
        return read_records(self.records)

    def losses(self) -> Losses:
        out = Losses()
        records = self.records_list()
        runs = Counter(r[0] for r in records)
        out.lost = [j for j in self.expected if runs[j] == 0]
        out.twice = [j for j, n in runs.items() if n > 1]
        by_node: dict[str, list[tuple[float, float]]] = {}
        for _, nodes, start, end in records:
            for node in nodes:
                by_node.setdefault(node, []).append((start, end))
        for spans in by_node.values():
            spans.sort()
            out.overlaps += sum(1 for a, b in itertools.pairwise(spans) if b[0] < a[1])
        config = load_config(str(self.config))
        base = os.path.abspath(config.archive_dir).rstrip("/") + "/"
        inventory = open_inventory(config)
        try:
            out.leaked_locks = [
                n.name
                for n in inventory.nodes()
                if n.locked and (n.description or "").startswith(base)
            ]
        finally:
            getattr(inventory, "close", lambda: None)()
        queue = open_queue(config)
        try:
            out.claimed = len(queue.claimed())
            out.pending = len(queue.pending())
            buried = {b.job_id for b in queue.buried()}
            out.unexpected_buried = sorted(buried - self.expected_buried)
        finally:
            queue.close()
        journal = Journal(str(self.state / JOURNAL_FILE))
        try:
            out.open_rows = len(journal.open_rows())
        finally:
            journal.close()
        return out

    def close(self) -> None:
        if self.beanstalkd is not None:
            self.beanstalkd.stop(kill=True)


def children_peak_rss_mib() -> float:
    """Peak resident memory of any finished child process so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0


def now() -> float:
    return time.time()

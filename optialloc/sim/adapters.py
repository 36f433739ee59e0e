"""Simulated ports: the clock, queue, inventory and runner the real `Dispatcher` runs on in what-if.

They implement the contracts of `optialloc.ports` in memory, driven by the
simulation engine instead of time and processes:
- `SimClock.now()` is the simulated instant the engine set; `sleep` moves nothing.
- `SimQueue` keeps pending jobs in queue order (priority, then submission),
  buries bodies that do not parse (with the reason), never hands a job out twice.
- `SimInventory` locks all-or-nothing and refuses nodes held by someone else.
- `SimRunner` "runs" a job for the runtime the workload gives it: the engine
  ends it at start + runtime (`finish`), then `poll` returns 0; -15 after `kill`.
  The engine, not the runner, decides when a job ends, so jobs ending at the
  same instant are seen in the engine's event order.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from optialloc.dispatch.journal import DispatchRow, Journal
from optialloc.dispatch.journal import _row as journal_row
from optialloc.domain import Job, Node
from optialloc.errors import Conflict, JobParseError, LockBusy, NotFound
from optialloc.ports import BuriedJob, LaunchHandle, TubeStats
from optialloc.teuthology import parse_job

log = logging.getLogger(__name__)


class SimClock:
    """Simulated time: `origin + seconds`; the engine moves it with `set`."""

    def __init__(self, origin: datetime) -> None:
        self.origin = origin
        self.seconds = 0.0
        self._now = origin

    def set(self, seconds: float) -> None:
        self.seconds = seconds
        self._now = self.origin + timedelta(seconds=seconds)

    def now(self) -> datetime:
        return self._now

    def sleep(self, seconds: float) -> None:
        """Nothing to wait for: the engine decides when time moves."""


@dataclass
class _Entry:
    job: Job | None
    tube: str
    body: str
    priority: int
    queued_at: datetime
    seq: int
    state: str = "pending"  # pending, claimed, buried, deleted
    reason: str = ""


class SimQueue:
    """An in-memory `JobQueue`; `add` is the engine's way in (with a given id and submit time)."""

    def __init__(self, clock: SimClock) -> None:
        self.clock = clock
        self._entries: dict[str, _Entry] = {}
        self._seq = itertools.count()
        self._ids = itertools.count(1)
        self._pending: tuple[Job, ...] | None = None
        self._live: dict[str, _Entry] = {}  # pending entries only: listing is O(pending)
        self._paused: dict[str, datetime] = {}

    # -- the engine's side -------------------------------------------------
    def add(self, job: Job, body: str = "") -> None:
        """Queue an already parsed job under its own id."""
        self._set(
            job.job_id, _Entry(job, job.tube, body, job.priority, job.queued_at, next(self._seq))
        )

    def _set(self, job_id: str, entry: _Entry) -> None:
        self._entries[job_id] = entry
        self._state(job_id, entry, entry.state)

    def _state(self, job_id: str, entry: _Entry, state: str) -> None:
        entry.state = state
        if state == "pending" and entry.job is not None:
            self._live[job_id] = entry
        else:
            self._live.pop(job_id, None)
        self._pending = None

    # -- JobQueue ------------------------------------------------------------
    def put(self, tube: str, body: str, priority: int, ttr: int = 86400) -> str:
        job_id = f"sim-{next(self._ids)}"
        while job_id in self._entries:
            job_id = f"sim-{next(self._ids)}"
        now = self.clock.now()
        try:
            job: Job | None = parse_job(
                body, job_id=job_id, queued_at=now, tube=tube, priority=priority
            )
            entry = _Entry(job, tube, body, priority, now, next(self._seq))
        except JobParseError as exc:
            entry = _Entry(None, tube, body, priority, now, next(self._seq), "buried", str(exc))
        self._set(job_id, entry)
        return job_id

    def pending(self) -> Sequence[Job]:
        if self._pending is None:
            live = list(self._live.values())
            live.sort(key=lambda e: (e.priority, e.queued_at, e.seq))
            self._pending = tuple(e.job for e in live if e.job is not None)
        return self._pending

    def pending_count(self) -> int:
        """len(pending()) without sorting (the engine's queue-depth timeline)."""
        return len(self._live)

    def claimed(self) -> Sequence[Job]:
        return [e.job for e in self._entries.values() if e.state == "claimed" and e.job is not None]

    def get(self, job_id: str) -> Job | None:
        entry = self._entries.get(job_id)
        return None if entry is None or entry.state == "deleted" else entry.job

    def _move(self, job_id: str, state: str, reason: str = "") -> None:
        entry = self._entries.get(job_id)
        if entry is None:
            raise NotFound(f"job {job_id}: not in the simulated queue")
        if entry.state != "deleted":
            entry.reason = reason or entry.reason
            self._state(job_id, entry, state)

    def claim(self, job_id: str) -> bool:
        entry = self._entries.get(job_id)
        if entry is None or entry.state != "pending" or entry.job is None:
            return False
        self._state(job_id, entry, "claimed")
        return True

    def release(self, job_id: str) -> None:
        entry = self._entries.get(job_id)
        if entry is not None and entry.state == "claimed":
            self._move(job_id, "pending")

    def bury(self, job_id: str, reason: str) -> None:
        self._move(job_id, "buried", reason)

    def delete(self, job_id: str) -> None:
        if job_id in self._entries:
            self._move(job_id, "deleted")

    def buried(self) -> Sequence[BuriedJob]:
        return [
            BuriedJob(job_id, e.tube, e.reason, e.queued_at, e.body)
            for job_id, e in self._entries.items()
            if e.state == "buried"
        ]

    def kick(self, job_ids: Sequence[str]) -> list[str]:
        kicked = []
        for job_id in job_ids:
            entry = self._entries.get(job_id)
            if entry is not None and entry.state == "buried" and entry.job is not None:
                self._move(job_id, "pending")
                kicked.append(job_id)
        return kicked

    def set_priority(self, job_id: str, priority: int) -> None:
        entry = self._entries.get(job_id)
        if entry is None or entry.state == "deleted":
            raise NotFound(f"job {job_id}: not in the simulated queue")
        entry.priority = priority
        if entry.job is not None:
            entry.job = replace(entry.job, priority=priority)
        self._pending = None

    def pause(self, tube: str, seconds: int) -> None:
        self._paused[tube] = self.clock.now() + timedelta(seconds=seconds)

    def resume(self, tube: str) -> None:
        self._paused.pop(tube, None)

    def paused_tubes(self) -> frozenset[str]:
        now = self.clock.now()
        return frozenset(t for t, until in self._paused.items() if until > now)

    def stats(self) -> Sequence[TubeStats]:
        tubes: dict[str, list[int]] = {}
        for e in self._entries.values():
            counts = tubes.setdefault(e.tube, [0, 0, 0])
            if e.state in ("pending", "claimed", "buried"):
                counts[("pending", "claimed", "buried").index(e.state)] += 1
        paused = self.paused_tubes()
        return [TubeStats(t, c[0], c[1], c[2], t in paused) for t, c in sorted(tubes.items())]

    def close(self) -> None:
        pass


class SimInventory:
    """An in-memory `Inventory` over a fixed set of nodes."""

    def __init__(self, nodes: Sequence[Node], locked_by: str = "optialloc@sim") -> None:
        self.locked_by = locked_by
        self._nodes: dict[str, Node] = {n.name: n for n in nodes}
        self._all: tuple[Node, ...] | None = None

    def nodes(self, machine_type: str | None = None) -> Sequence[Node]:
        if self._all is None:
            self._all = tuple(self._nodes.values())
        if machine_type is None:
            return self._all
        return [n for n in self._all if n.machine_type == machine_type]

    def _get(self, name: str) -> Node:
        node = self._nodes.get(name)
        if node is None:
            raise NotFound(f"node {name}: not in the simulated lab")
        return node

    def lock(
        self, names: Sequence[str], description: str, locked_by: str | None = None
    ) -> Sequence[Node]:
        who = locked_by or self.locked_by
        for name in names:
            node = self._get(name)
            if node.locked and (node.locked_by, node.description) != (who, description):
                raise LockBusy(f"node {name} is locked by {node.locked_by} for {node.description}")
            if not node.up:
                raise LockBusy(f"node {name} is down")
        for name in names:
            self._nodes[name] = replace(
                self._nodes[name], locked=True, locked_by=who, description=description
            )
        self._all = None
        return [self._nodes[n] for n in names]

    def unlock(self, names: Sequence[str], description: str, locked_by: str | None = None) -> None:
        who = locked_by or self.locked_by
        for name in names:
            node = self._get(name)
            if node.locked and (node.locked_by, node.description) != (who, description):
                raise Conflict(f"node {name} is locked by {node.locked_by} for {node.description}")
        for name in names:
            self._nodes[name] = replace(
                self._nodes[name], locked=False, locked_by=None, description=None
            )
        self._all = None

    def set_up(self, names: Sequence[str], up: bool) -> None:
        for name in names:
            self._nodes[name] = replace(self._get(name), up=up)
        self._all = None

    def held(self) -> Sequence[Node]:
        return [n for n in self._nodes.values() if n.locked and n.locked_by == self.locked_by]


class SimRunner:
    """A `Runner` whose jobs run for the workload's runtime on the simulated clock.

    `launched` collects (job_id, nodes) of every launch since the engine last
    drained it; `finish(job_id)` is the engine saying the job's runtime is over.
    """

    def __init__(self, clock: SimClock, runtimes: Mapping[str, float]) -> None:
        self.clock = clock
        self.runtimes = runtimes
        self.launched: list[tuple[str, tuple[str, ...]]] = []
        self._killed: set[str] = set()
        self._ended: set[str] = set()
        self._pids = itertools.count(1000)

    def launch(self, job: Job, nodes: Sequence[Node], archive_path: str) -> LaunchHandle:
        if job.job_id not in self.runtimes:
            raise NotFound(f"job {job.job_id}: the workload gives it no runtime")
        pid = next(self._pids)
        self.launched.append((job.job_id, tuple(n.name for n in nodes)))
        self._ended.discard(job.job_id)
        return LaunchHandle(job.job_id, pid, pid, archive_path, self.clock.now())

    def finish(self, job_id: str) -> None:
        """The engine's completion event: the job's runtime is over."""
        self._ended.add(job_id)

    def poll(self, handle: LaunchHandle) -> int | None:
        if handle.job_id in self._killed:
            return -15
        return 0 if handle.job_id in self._ended else None

    def kill(self, handle: LaunchHandle, grace_s: float) -> None:
        self._killed.add(handle.job_id)

    def adopt(self, job_id: str, archive_path: str) -> LaunchHandle | None:
        return None

    def progress_at(self, handle: LaunchHandle) -> datetime | None:
        return self.clock.now()


class SimJournal(Journal):
    """`Journal(":memory:")` whose `open_rows` reuses rows it already parsed.

    The dispatcher reads every open row each tick; decoding the same job JSON
    thousands of times dominated long simulations. A row is reused only when
    every column is unchanged (keyed by the whole record), so the result is
    exactly what `Journal.open_rows` returns.
    """

    def __init__(self) -> None:
        super().__init__(":memory:")
        self._parsed: dict[tuple[Any, ...], DispatchRow] = {}

    def open_rows(self) -> list[DispatchRow]:
        records = self._db.execute(
            "SELECT * FROM dispatch WHERE settled = 0 ORDER BY id"
        ).fetchall()
        out = []
        fresh: dict[tuple[Any, ...], DispatchRow] = {}
        for record in records:
            key = tuple(record)
            row = self._parsed.get(key)
            if row is None:
                row = journal_row(record)
            fresh[key] = row
            out.append(row)
        self._parsed = fresh
        return out

"""The ports: small Protocols the dispatcher talks to, each with its contract.

Every adapter (beanstalkd, embedded SQLite, paddles, command runner, the
simulator's) implements one of these. Adapters translate library errors into
`optialloc.errors` types: `BackendUnavailable` when the backend cannot be
reached after retries, `NotFound` for an unknown id, `Conflict`/`LockBusy`
when someone else holds the thing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from optialloc.domain import Job, Node


@dataclass(frozen=True)
class BuriedJob:
    """A job set aside with the reason (parse error, launch failure, killed by the monitor)."""

    job_id: str
    tube: str
    reason: str
    buried_at: datetime
    body: str


@dataclass(frozen=True)
class TubeStats:
    """One tube's counts, the `teuthology-queue -s` view."""

    tube: str
    ready: int
    claimed: int
    buried: int
    paused: bool
    pause_seconds_left: int = 0


@runtime_checkable
class JobQueue(Protocol):
    """Pending teuthology jobs across every tube served.

    Contract:
    - `pending()` returns every job that may be dispatched (not claimed, not
      buried, not deleted), parsed, in queue order (priority, then submission).
      Listing never hides a job from anybody and never reorders the queue.
      A body that does not parse is buried with the parse error as its
      reason, and the other jobs are still served. (An adapter may list a
      job from its scheduling fields before its whole body is parsed; such a
      job is never dispatched unparsed: `claim` parses it first and, if that
      fails, buries it and returns False.)
    - `claim(job_id)` atomically takes a pending job for dispatch; it returns
      False if the job is gone, buried or already claimed, so no job is ever
      dispatched twice. A claimed job survives a crash of the claimer: it is
      still listed by `claimed()` until it is released, buried or deleted.
    - `release` returns a claimed job to pending with its original order;
      `bury` sets it aside with a reason; `delete` removes it for good (it was
      launched, or a user deleted it). All three are idempotent.
    """

    def pending(self) -> Sequence[Job]: ...
    def claimed(self) -> Sequence[Job]: ...
    def get(self, job_id: str) -> Job | None: ...
    def claim(self, job_id: str) -> bool: ...
    def release(self, job_id: str) -> None: ...
    def bury(self, job_id: str, reason: str) -> None: ...
    def delete(self, job_id: str) -> None: ...
    def put(self, tube: str, body: str, priority: int, ttr: int = 86400) -> str: ...
    def buried(self) -> Sequence[BuriedJob]: ...
    def kick(self, job_ids: Sequence[str]) -> list[str]: ...
    def set_priority(self, job_id: str, priority: int) -> None: ...
    def pause(self, tube: str, seconds: int) -> None: ...
    def resume(self, tube: str) -> None: ...
    def paused_tubes(self) -> frozenset[str]: ...
    def stats(self) -> Sequence[TubeStats]: ...
    def close(self) -> None: ...


@runtime_checkable
class Inventory(Protocol):
    """The lab's nodes and their locks (paddles or the embedded inventory).

    Contract:
    - `lock(names, description, locked_by)` locks exactly these nodes for one
      job, all-or-nothing, as `locked_by` (the dispatcher passes the job's
      `owner` and its archive path, as teuthology's dispatcher does, so the
      job's own `check_lock` and unlock accept them): on any failure it
      releases what it took and raises `LockBusy` (taken by someone else,
      down: try next tick) or `BackendUnavailable`. Re-locking nodes already
      held by the same `locked_by` with the same `description` succeeds
      (idempotent).
    - `unlock(names, description, locked_by)` unlocks nodes held by that
      `locked_by` with that description; nodes already unlocked are fine (the
      job's supervisor may have unlocked them); a node held with another
      description or by another locker is refused with `Conflict` and left
      locked.
    - `locked_by` (the attribute) is the identity used when the caller names
      none (admin commands, a job without an owner).
    """

    locked_by: str

    def nodes(self, machine_type: str | None = None) -> Sequence[Node]: ...
    def lock(
        self, names: Sequence[str], description: str, locked_by: str | None = None
    ) -> Sequence[Node]: ...
    def unlock(
        self, names: Sequence[str], description: str, locked_by: str | None = None
    ) -> None: ...
    def set_up(self, names: Sequence[str], up: bool) -> None: ...
    def held(self) -> Sequence[Node]: ...


@runtime_checkable
class Reporter(Protocol):
    """Job status where lab users look (paddles `/runs/<run>/jobs/`), or nowhere.

    `status` is one of queued, waiting, running, pass, fail, dead. Reporting
    is best effort: a failure is logged by the adapter and never raised, so a
    down results server never stops dispatching.
    """

    def report(self, job: Job, status: str, **fields: object) -> None: ...


@dataclass(frozen=True)
class LaunchHandle:
    """How to find a launched job again, also after a dispatcher restart."""

    job_id: str
    pid: int
    pgid: int
    archive_path: str
    started_at: datetime


@runtime_checkable
class Runner(Protocol):
    """Starts jobs on their nodes and tells whether they still run.

    Contract: `launch` starts the job in its own process group/session so it
    survives the dispatcher, and returns only once the job's handle is durable
    (a restarted dispatcher can `adopt` it). `poll` returns None while the job
    runs and its exit status once it has ended. `kill` ends the whole process
    group: SIGTERM, then SIGKILL after `grace_s`.
    """

    def launch(self, job: Job, nodes: Sequence[Node], archive_path: str) -> LaunchHandle: ...
    def poll(self, handle: LaunchHandle) -> int | None: ...
    def kill(self, handle: LaunchHandle, grace_s: float) -> None: ...
    def adopt(self, job_id: str, archive_path: str) -> LaunchHandle | None: ...
    def progress_at(self, handle: LaunchHandle) -> datetime | None: ...


@runtime_checkable
class Clock(Protocol):
    """Now and sleep: real for `serve`, simulated for what-if."""

    def now(self) -> datetime: ...
    def sleep(self, seconds: float) -> None: ...

"""Frozen domain types shared by every part of optialloc.

A `Snapshot` is what the dispatcher sees at one tick; `solve(snapshot, policy)`
turns it into a `Plan`. Every datetime here is timezone-aware UTC. Nothing in
this module does I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple

#: Free-form teuthology job body, kept untouched for the runner.
Body = Mapping[str, Any]


def utc(value: datetime) -> datetime:
    """Return `value` as an aware UTC datetime (naive values are taken as UTC)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


@dataclass(frozen=True)
class Node:
    """One test machine as the inventory / lock server describes it."""

    name: str
    machine_type: str
    up: bool = True
    locked: bool = False
    locked_by: str | None = None
    description: str | None = None
    os_type: str | None = None
    os_version: str | None = None
    arch: str | None = None
    ssh_pub_key: str | None = None

    @property
    def free(self) -> bool:
        """Up and not locked by anybody."""
        return self.up and not self.locked


#: Body key of a job's runtime estimate in seconds (real teuthology bodies have none).
ESTIMATE_KEY = "runtime_estimate_s"


def estimate_in_body(body: Mapping[str, Any]) -> float | None:
    """The body's runtime estimate (positive, finite seconds), or None when absent or bad."""
    value = body.get(ESTIMATE_KEY)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value > 0 else None


@dataclass(frozen=True, slots=True)
class Job:
    """A queued teuthology job, parsed from its body (see `optialloc.teuthology`).

    `priority` follows teuthology: lower number = more urgent. `nodes_needed`
    is `len(roles)`. `machine_types` lists every type that may serve the job.
    `body` is the body exactly as queued, for the runner; it takes no part in
    equality or hashing.
    """

    job_id: str
    run: str
    owner: str
    priority: int
    machine_types: tuple[str, ...]
    nodes_needed: int
    queued_at: datetime
    tube: str = ""
    os_type: str | None = None
    os_version: str | None = None
    arch: str | None = None
    first_in_suite: bool = False
    last_in_suite: bool = False
    description: str | None = None
    body: Body = field(default_factory=dict, compare=False, hash=False, repr=False)
    #: seconds, from the body's `runtime_estimate_s` (filled in from `body` when not
    #: given; teuthology bodies have none). Learned estimates live in the Snapshot.
    runtime_estimate_s: float | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.runtime_estimate_s is None and self.body:
            estimate = estimate_in_body(self.body)
            if estimate is not None:
                object.__setattr__(self, "runtime_estimate_s", estimate)


@dataclass(frozen=True)
class RunningJob:
    """A job that holds nodes now."""

    job: Job
    nodes: tuple[str, ...]
    started_at: datetime

    @property
    def job_id(self) -> str:
        return self.job.job_id


@dataclass(frozen=True)
class InvalidJob:
    """A queue entry whose body does not parse; it is buried, never dropped."""

    job_id: str
    tube: str
    error: str
    queued_at: datetime | None = None


@dataclass(frozen=True)
class Snapshot:
    """Everything one scheduling tick looks at, taken at `taken_at`.

    `usage` is optional decayed past usage in node-seconds per owner, for
    fair-share policies; absent owners have used nothing.
    """

    taken_at: datetime
    nodes: tuple[Node, ...]
    queue: tuple[Job, ...]
    running: tuple[RunningJob, ...] = ()
    paused_tubes: frozenset[str] = frozenset()
    invalid: tuple[InvalidJob, ...] = ()
    usage: Mapping[str, float] = field(default_factory=dict, compare=False, hash=False)
    #: runtime estimates (seconds) learned from finished jobs, by job description
    runtime_estimates: Mapping[str, float] = field(default_factory=dict, compare=False, hash=False)


class WaitReason(StrEnum):
    """Why a job was left waiting this tick (the first reason that applies)."""

    NOT_ENOUGH_NODES = "not_enough_nodes"  # fewer free nodes of its types than it needs
    HELD_FOR_JOB = "held_for_job"  # the free nodes are held back for an older/bigger job
    OWNER_OVER_SHARE = "owner_over_share"  # its owner is at the fairness cap
    RUN_OVER_SHARE = "run_over_share"  # its run is at the fairness cap
    LOWER_PRIORITY = "lower_priority"  # capacity went to this tick's other starts
    WAITING_FOR_RUN = "waiting_for_run"  # last_in_suite: the rest of its run is not done
    TUBE_PAUSED = "tube_paused"  # its tube is paused
    INVALID = "invalid"  # can never run here (no such machine type, too many nodes, ...)


@dataclass(frozen=True)
class Start:
    """Start `job_id` on exactly these nodes."""

    job_id: str
    nodes: tuple[str, ...]


@dataclass(frozen=True)
class Hold:
    """Keep `node` free (give it to nobody else) so `for_job_id` can start later."""

    node: str
    for_job_id: str


class Waiting(NamedTuple):
    """A job left in the queue: its 1-based position in dispatch order and why it waits.

    A named tuple, not a dataclass: a plan has one per queued job (20,000 at
    Sepia scale) and a tuple is built in half the time.
    """

    job_id: str
    position: int
    reason: WaitReason
    detail: str = ""


@dataclass(frozen=True)
class SolverStats:
    """How the solve went. `objective` and `bound` are in the policy's weight units."""

    status: str  # OPTIMAL, FEASIBLE, INFEASIBLE, UNKNOWN, MODEL_INVALID, TRIVIAL
    objective: float
    bound: float
    wall_s: float
    variables: int = 0
    constraints: int = 0

    @property
    def gap(self) -> float:
        """Relative optimality gap, 0.0 when proven optimal."""
        if self.bound == self.objective:
            return 0.0
        return abs(self.bound - self.objective) / max(abs(self.bound), 1e-9)


@dataclass(frozen=True)
class Plan:
    """What one tick decided: starts, holds, and a reason for every waiting job.

    `explained` False: the solve was asked for decisions only (`solve(...,
    explain=False)`), so `waiting` is empty although jobs wait; positions and
    reasons are then those of the last explained plan.
    """

    taken_at: datetime
    starts: tuple[Start, ...]
    held: tuple[Hold, ...]
    waiting: tuple[Waiting, ...]
    solver: SolverStats
    explained: bool = True

"""Plain data of a simulation: the jobs that arrive and what happened to them.

Times are float seconds on the simulation's own axis (0 = the workload's
origin); `SimResult.origin` maps them to UTC for anything that needs dates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

#: Default origin of simulated time: a Monday 00:00 UTC, so "20:00 UTC" is meaningful.
DEFAULT_ORIGIN = datetime(2026, 11, 16, tzinfo=UTC)


@dataclass(frozen=True)
class SimJob:
    """One job of a workload.

    `runtime` is the true run time (seconds), known only to the simulator;
    `estimate` is what an estimate-based scheduler may use (None = unknown).
    `nodes` nodes of ONE of `machine_types` are needed for `runtime` seconds.
    `index` is the job's position in submission order (ties on `submit` keep it).
    `body` is the teuthology body the real dispatcher parses (None for traces
    until `workload.ensure_body` makes one).
    """

    job_id: str
    index: int
    submit: float
    runtime: float
    nodes: int
    machine_types: tuple[str, ...]
    priority: int = 1000
    owner: str = ""
    run: str = ""
    estimate: float | None = None
    #: a `last_in_suite` job (no node): it reaches a scheduler once its run has ended
    last_in_suite: bool = False
    body: Mapping[str, Any] | None = field(default=None, compare=False, hash=False, repr=False)

    @property
    def tube(self) -> str:
        """The teuthology tube: the machine type, or `multi` for several."""
        return self.machine_types[0] if len(self.machine_types) == 1 else "multi"


@dataclass
class JobRecord:
    """What happened to one job: start/end (None if it never ran) and where."""

    job: SimJob
    start: float | None = None
    end: float | None = None
    machine_type: str | None = None
    nodes: tuple[str, ...] = ()

    @property
    def wait(self) -> float | None:
        return None if self.start is None else self.start - self.job.submit


@dataclass(frozen=True)
class TickStat:
    """One scheduling decision of an optimizing scheduler: wall time and quality."""

    at: float
    wall_s: float
    status: str
    gap: float
    started: int


@dataclass
class SimResult:
    """A finished simulation of one scheduler over one workload."""

    scheduler: str
    capacity: Mapping[str, int]
    records: list[JobRecord]
    #: (time, busy nodes, queued jobs) after every decision point, in time order.
    timeline: list[tuple[float, int, int]] = field(default_factory=list)
    ticks: list[TickStat] = field(default_factory=list)
    origin: datetime = DEFAULT_ORIGIN
    wall_s: float = 0.0
    label: str = ""
    notes: list[str] = field(default_factory=list)
    #: ticks whose plan the validator refused (nothing started in them)
    rejected_plans: int = 0
    #: the time of the engine's last event (seconds)
    end_time: float = 0.0

    @property
    def total_nodes(self) -> int:
        return sum(self.capacity.values())

"""The discrete-event loop every what-if scheduler runs on.

One engine, one clock, one event order, one accounting for optialloc and for
every baseline, so their figures are comparable and the published-table check
(`tests/test_sim_lublin.py`) validates the loop that also runs optialloc.

Event order (RLScheduler's, see docs/whatif.md): the next arrival is taken when
it is at or before the next completion; completions at the same time end in
start order. With `one_event=True` the scheduler decides after every single
event (needed to reproduce the published table); otherwise it decides once per
distinct event time, after every event at that time (what `serve` sees in one
tick). With `tick_s > 0`, decision times are rounded up to multiples of
`tick_s` (a dispatcher that wakes every `tick_s` seconds).
"""

from __future__ import annotations

import heapq
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Protocol

from optialloc.sim.model import DEFAULT_ORIGIN, JobRecord, SimJob, SimResult, TickStat

log = logging.getLogger(__name__)

#: progress(now_s, finished_jobs, total_jobs): called after decision points.
Progress = Callable[[float, int, int], None]


class SimulationError(RuntimeError):
    """A scheduler asked for something impossible (double start, busy node, wrong type)."""


@dataclass(frozen=True)
class Launch:
    """Start `job` now on `machine_type`: on `nodes` if given, else on any free ones."""

    job: SimJob
    machine_type: str
    nodes: tuple[str, ...] | None = None


def node_names(capacity: Mapping[str, int]) -> dict[str, list[str]]:
    """Deterministic node names per machine type: smithi001, smithi002, ..."""
    return {mt: [f"{mt}{i:03d}" for i in range(1, n + 1)] for mt, n in capacity.items()}


class ClusterState:
    """Free and busy nodes per machine type, and the jobs running now."""

    def __init__(self, names: Mapping[str, Sequence[str]]) -> None:
        self.capacity: dict[str, int] = {mt: len(ns) for mt, ns in names.items()}
        self.node_type: dict[str, str] = {n: mt for mt, ns in names.items() for n in ns}
        # dicts as ordered sets: O(1) removal, deterministic pick order
        self._free: dict[str, dict[str, None]] = {mt: dict.fromkeys(ns) for mt, ns in names.items()}
        self.running: dict[str, JobRecord] = {}

    def free(self, machine_type: str) -> int:
        """Free nodes of one type (0 for an unknown type)."""
        pool = self._free.get(machine_type)
        return 0 if pool is None else len(pool)

    @property
    def free_total(self) -> int:
        return sum(len(p) for p in self._free.values())

    @property
    def busy_nodes(self) -> int:
        return sum(self.capacity.values()) - self.free_total

    def allocate(self, launch: Launch) -> tuple[str, ...]:
        job = launch.job
        if launch.nodes is None:
            pool = self._free.get(launch.machine_type)
            if pool is None or launch.machine_type not in job.machine_types:
                raise SimulationError(
                    f"job {job.job_id}: cannot run on machine type {launch.machine_type!r}"
                )
            if len(pool) < job.nodes:
                raise SimulationError(
                    f"job {job.job_id}: needs {job.nodes} {launch.machine_type} nodes, "
                    f"{len(pool)} free"
                )
            chosen = tuple(islice(pool, job.nodes))
        else:
            chosen = tuple(launch.nodes)
            if len(chosen) != job.nodes or len(set(chosen)) != len(chosen):
                raise SimulationError(
                    f"job {job.job_id}: got {len(chosen)} distinct nodes, needs {job.nodes}"
                )
            for name in chosen:
                mt = self.node_type.get(name)
                if mt is None or mt not in job.machine_types:
                    raise SimulationError(
                        f"job {job.job_id}: node {name} is not of {job.machine_types}"
                    )
                if name not in self._free[mt]:
                    raise SimulationError(f"job {job.job_id}: node {name} is busy (overlap)")
        for name in chosen:
            del self._free[self.node_type[name]][name]
        return chosen

    def release(self, nodes: Iterable[str]) -> None:
        for name in nodes:
            self._free[self.node_type[name]][name] = None


class Scheduler(Protocol):
    """What the engine drives. `decide` returns the jobs to start at `now`.

    The engine calls `arrive` for each arrival and `complete` for each end
    before the `decide` of that time; `queued()` is the number of jobs the
    scheduler still holds. `ticks` collects per-decision solver stats (empty
    for heuristics).
    """

    name: str
    ticks: list[TickStat]

    def arrive(self, job: SimJob, now: float) -> None: ...
    def complete(self, record: JobRecord, now: float) -> None: ...
    def decide(self, now: float, cluster: ClusterState) -> Sequence[Launch]: ...
    def queued(self) -> int: ...


def simulate(
    jobs: Sequence[SimJob],
    scheduler: Scheduler,
    names: Mapping[str, Sequence[str]],
    *,
    one_event: bool = False,
    tick_s: float = 0.0,
    progress: Progress | None = None,
    horizon: float | None = None,
    preload: Sequence[JobRecord] = (),
    start: float | None = None,
) -> SimResult:
    """Run `jobs` (any order; sorted by submit, then index) through `scheduler`.

    Stops when every job has ended, or when nothing runs, nothing is left to
    arrive and the scheduler starts nothing (the rest can never run here:
    their records keep `start=None`), or past `horizon` seconds.
    """
    wall0 = time.perf_counter()
    cluster = ClusterState(names)
    arrivals = sorted(jobs, key=lambda j: (j.submit, j.index))
    records = {j.job_id: JobRecord(j) for j in arrivals}
    if len(records) != len(arrivals):
        raise SimulationError("job ids are not unique")
    ends: list[tuple[float, int, str]] = []  # (end, start sequence, job id)
    seq = 0
    finished = 0
    n_arrivals = total = len(arrivals)
    timeline: list[tuple[float, int, int]] = []
    i = 0
    first = arrivals[0].submit if arrivals else 0.0
    begin = first if start is None else start
    now = begin
    for record in preload:
        record.nodes = cluster.allocate(Launch(record.job, record.machine_type or "", record.nodes))
        record.end = max(record.end if record.end is not None else begin, begin)
        cluster.running[record.job.job_id] = record
        heapq.heappush(ends, (record.end, seq, record.job.job_id))
        seq += 1
    total += len(preload)

    def when(t: float) -> float:
        t = max(t, begin)
        return math.ceil(t / tick_s) * tick_s if tick_s > 0 else t

    while True:
        next_arrival = when(arrivals[i].submit) if i < n_arrivals else math.inf
        next_end = when(ends[0][0]) if ends else math.inf
        t = min(next_arrival, next_end)
        if t == math.inf:
            break
        if horizon is not None and t > horizon:
            break
        now = max(now, t)
        if next_arrival <= next_end:
            take_arrivals, take_ends = True, not one_event and next_end == t
        else:
            take_arrivals, take_ends = False, True
        # Nothing can start when no node is free and nothing ended: skip the
        # decision (batch mode only; the paper's order decides after every event).
        could_start = one_event or cluster.free_total > 0
        while take_arrivals and i < n_arrivals and when(arrivals[i].submit) == t:
            could_start = could_start or arrivals[i].nodes == 0
            scheduler.arrive(arrivals[i], now)
            i += 1
            if one_event:
                break
        while take_ends and ends and when(ends[0][0]) == t:
            _, _, job_id = heapq.heappop(ends)
            record = cluster.running.pop(job_id)
            cluster.release(record.nodes)
            finished += 1
            could_start = True
            scheduler.complete(record, now)
            if one_event:
                break
        if not could_start:
            timeline.append((now, cluster.busy_nodes, scheduler.queued()))
            continue
        for launch in scheduler.decide(now, cluster):
            found = records.get(launch.job.job_id)
            if found is None or found.start is not None:
                raise SimulationError(f"job {launch.job.job_id} started twice or is unknown")
            record = found
            record.nodes = cluster.allocate(launch)
            record.machine_type = launch.machine_type
            record.start = now
            record.end = now + launch.job.runtime
            cluster.running[launch.job.job_id] = record
            heapq.heappush(ends, (record.end, seq, launch.job.job_id))
            seq += 1
        timeline.append((now, cluster.busy_nodes, scheduler.queued()))
        if progress is not None:
            progress(now, finished, total)
    never = sum(1 for r in records.values() if r.start is None)
    if never:
        log.warning("%s: %d of %d job(s) never started", scheduler.name, never, total)
    return SimResult(
        scheduler=scheduler.name,
        capacity=dict(cluster.capacity),
        records=[*preload, *(records[j.job_id] for j in arrivals)],
        timeline=timeline,
        ticks=list(scheduler.ticks),
        origin=DEFAULT_ORIGIN,
        wall_s=time.perf_counter() - wall0,
        end_time=now,
    )

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
`tick_s` (a dispatcher that wakes every `tick_s` seconds). With a `Cadence`
the scheduler decides as `serve`'s loop wakes (`optialloc.dispatch.serve`): a
finish wakes it at once but no sooner than `min_gap_s` after the last
decision, an arrival at the next queue check (every `arrival_poll_s` after the
last decision), and with nothing happening it ticks every `idle_s` (only when
a node is free and a job waits: otherwise such a tick can start nothing).
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


@dataclass(frozen=True)
class Cadence:
    """When an event-driven scheduler decides (see the module docstring); seconds."""

    min_gap_s: float
    arrival_poll_s: float
    idle_s: float

    def describe(self) -> str:
        return (
            f"on every arrival and finish (finishes >= {self.min_gap_s:g} s apart, "
            f"arrivals seen every {self.arrival_poll_s:g} s, idle tick {self.idle_s:g} s)"
        )


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
    cadence: Cadence | None = None,
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
    # last_in_suite jobs reach every scheduler once the rest of their run has
    # ended (the dispatcher waits for the run too): alike for every scheduler
    run_left: dict[str, int] = {}
    for job in [*arrivals, *(r.job for r in preload)]:
        if job.run and not job.last_in_suite:
            run_left[job.run] = run_left.get(job.run, 0) + 1
    gated: dict[str, list[SimJob]] = {}

    last = -math.inf  # the last decision time (cadence only)

    def when(t: float) -> float:
        t = max(t, begin)
        return math.ceil(t / tick_s) * tick_s if tick_s > 0 else t

    def when_end(t: float) -> float:
        if cadence is None:
            return when(t)
        return max(t, begin, last + cadence.min_gap_s)

    def when_arrival(t: float) -> float:
        if cadence is None:
            return when(t)
        t = max(t, begin)
        if t <= last or last == -math.inf or cadence.arrival_poll_s <= 0:
            return max(t, last)
        return last + math.ceil((t - last) / cadence.arrival_poll_s) * cadence.arrival_poll_s

    while True:
        next_arrival = when_arrival(arrivals[i].submit) if i < n_arrivals else math.inf
        next_end = when_end(ends[0][0]) if ends else math.inf
        t = min(next_arrival, next_end)
        idle = False
        if (
            cadence is not None
            and cadence.idle_s > 0
            and last + cadence.idle_s < t
            and t < math.inf
            and cluster.free_total > 0
            and scheduler.queued() > 0
        ):
            t, idle = last + cadence.idle_s, True
        if t == math.inf:
            break
        if horizon is not None and t > horizon:
            break
        now = max(now, t)
        if cadence is not None:
            # serve's tick sees every arrival and finish up to now
            take_arrivals = take_ends = not idle
        elif next_arrival <= next_end:
            take_arrivals, take_ends = True, not one_event and next_end == t
        else:
            take_arrivals, take_ends = False, True
        # Nothing can start when no node is free and nothing ended: skip the
        # decision (batch mode only; the paper's order decides after every event).
        could_start = one_event or cluster.free_total > 0
        while (
            take_arrivals
            and i < n_arrivals
            and (arrivals[i].submit <= t if cadence is not None else when(arrivals[i].submit) == t)
        ):
            job = arrivals[i]
            i += 1
            if job.last_in_suite and run_left.get(job.run, 0) > 0:
                gated.setdefault(job.run, []).append(job)
                continue
            could_start = could_start or job.nodes == 0
            scheduler.arrive(job, now)
            if one_event:
                break
        while (
            take_ends
            and ends
            and (ends[0][0] <= t if cadence is not None else when(ends[0][0]) == t)
        ):
            _, _, job_id = heapq.heappop(ends)
            record = cluster.running.pop(job_id)
            cluster.release(record.nodes)
            finished += 1
            could_start = True
            scheduler.complete(record, now)
            run = record.job.run
            if run and not record.job.last_in_suite and run in run_left:
                run_left[run] -= 1
                if run_left[run] == 0:
                    for job in gated.pop(run, ()):
                        scheduler.arrive(job, now)
            if one_event:
                break
        last = now
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

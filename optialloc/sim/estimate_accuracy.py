"""How good are estimated starts? Replay a workload, estimate along the way, compare.

`measure` runs one what-if simulation of a policy (the real dispatcher on the
engine, exactly as `optialloc whatif`) and, at sampled decision points, right
after the dispatcher's tick, takes the snapshot that tick left (queue, nodes,
running jobs, usage, learned runtime estimates) and runs
`optialloc.sim.estimate.estimate_starts` on it. The estimates never feed back
into the simulation. Two kinds of samples:

- **arrival samples**: every `every_arrival`-th decision point at which jobs
  arrived; the estimate of each job that arrived there and still waits is its
  estimate **at submission**;
- **clock samples**: one every `every_hours` of simulated time.

`accuracy` then compares, per priority band, each job's estimate at
submission, and its estimate made `lead_s` (1 h) before its actual start
(the sample of either kind closest to `start - lead_s`, within
`tolerance_s`), with the actual start: median and p90 of the absolute error,
the median signed error (positive: the job started later than estimated),
and how many jobs had no estimate within the horizon. Jobs that started in
their own arrival tick never wait and are left out (counted apart), as
are jobs that need no node (`last_in_suite`), as in the what-if metrics.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from optialloc.dispatch.snapshotter import take_snapshot
from optialloc.sim.engine import ClusterState, Launch, simulate
from optialloc.sim.metrics import BANDS, band_of, percentile
from optialloc.sim.model import JobRecord, SimJob, SimResult, TickStat
from optialloc.sim.optialloc_sched import OptiallocScheduler
from optialloc.sim.scenario import Scenario, make_scheduler

#: The row of all bands together.
ALL = "all"


@dataclass
class Sample:
    """Estimates made at `at` (simulated seconds): job id -> estimated start (seconds)."""

    at: float
    queued: int
    wall_s: float
    estimates: dict[str, float]
    arrived: tuple[str, ...] = ()  # arrival samples: the jobs that arrived at this decision


@dataclass
class _Sampler:
    """An engine `Scheduler` that delegates to optialloc and estimates after sampled ticks."""

    inner: OptiallocScheduler
    estimate: Callable[..., dict[str, Any]]
    every_arrival: int
    every_s: float
    samples: list[Sample] = field(default_factory=list)
    _arrived: list[str] = field(default_factory=list)
    _arrival_ticks: int = 0
    _next_clock: float = 0.0

    name: str = field(init=False)
    ticks: list[TickStat] = field(init=False)

    def __post_init__(self) -> None:
        self.name = self.inner.name
        self.ticks = self.inner.ticks  # the same list: the dispatcher's solver figures

    def arrive(self, job: SimJob, now: float) -> None:
        self.inner.arrive(job, now)
        self._arrived.append(job.job_id)

    def complete(self, record: JobRecord, now: float) -> None:
        self.inner.complete(record, now)

    def queued(self) -> int:
        return self.inner.queued()

    def decide(self, now: float, cluster: ClusterState) -> Sequence[Launch]:
        launches = self.inner.decide(now, cluster)
        arrived = tuple(self._arrived)
        self._arrived.clear()
        by_arrival = False
        if arrived:
            self._arrival_ticks += 1
            by_arrival = self.every_arrival > 0 and self._arrival_ticks % self.every_arrival == 0
        by_clock = self.every_s > 0 and now >= self._next_clock
        if by_clock:
            self._next_clock = (now // self.every_s + 1) * self.every_s
        if by_arrival or by_clock:
            self._sample(now, arrived if by_arrival else ())
        return launches

    def _sample(self, now: float, arrived: tuple[str, ...]) -> None:
        inner = self.inner
        dispatcher = inner.dispatcher
        running = dispatcher.running_jobs()
        snapshot = take_snapshot(
            inner.queue,
            inner.inventory,
            running,
            inner.clock,
            usage=dispatcher.usage.at(inner.clock.now(), running),
            runtime_estimates=dispatcher.runtimes.estimates(),
        )
        wall = time.perf_counter()
        found = self.estimate(snapshot, dispatcher.policy)
        origin = inner.origin
        self.samples.append(
            Sample(
                at=now,
                queued=len(snapshot.queue),
                wall_s=time.perf_counter() - wall,
                estimates={j: (t - origin).total_seconds() for j, t in found.items()},
                arrived=arrived,
            )
        )


def measure(
    scenario: Scenario,
    policy_path: str,
    estimate: Callable[..., dict[str, Any]],
    *,
    every_arrival: int = 1,
    every_hours: float = 0.0,
) -> tuple[SimResult, list[Sample]]:
    """Simulate `policy_path` on the scenario's first window, estimating at sampled ticks.

    `estimate(snapshot, policy)` is `estimate_starts` with the settings under test.
    """
    load = scenario.windows[0]
    inner = make_scheduler("policy", policy_path, scenario, load)
    assert isinstance(inner, OptiallocScheduler)
    sampler = _Sampler(inner, estimate, every_arrival, every_hours * 3600.0)
    result = simulate(
        load.jobs,
        sampler,
        scenario.names,
        one_event=scenario.one_event,
        tick_s=scenario.tick_s,
        preload=[replace(r) for r in load.preload],
        start=load.start,
        cadence=scenario.cadence,
    )
    return result, sampler.samples


@dataclass
class BandErrors:
    """Absolute errors (seconds) of one band at one moment, and the jobs left out."""

    errors: list[float] = field(default_factory=list)  # estimate - actual start
    no_estimate: int = 0

    def row(self) -> dict[str, float]:
        absolute = [abs(e) for e in self.errors]
        return {
            "jobs": len(self.errors) + self.no_estimate,
            "median_abs_s": percentile(absolute, 50),
            "p90_abs_s": percentile(absolute, 90),
            "median_signed_s": -percentile(self.errors, 50),
            "no_estimate": self.no_estimate,
        }


def accuracy(
    result: SimResult,
    samples: Sequence[Sample],
    *,
    lead_s: float = 3600.0,
    tolerance_s: float = 300.0,
) -> dict[str, Any]:
    """Errors per band at submission and `lead_s` before the start (see the module docstring)."""
    records = {r.job.job_id: r for r in result.records}
    at_submit: dict[str, BandErrors] = {}
    before: dict[str, BandErrors] = {}
    started_at_once = 0
    for sample in samples:
        for job_id in sample.arrived:
            record = records[job_id]
            if record.job.nodes == 0:  # last_in_suite: no node, left out as in the metrics
                continue
            if record.start is None or record.start <= sample.at:
                started_at_once += record.start is not None
                continue
            _add(at_submit, record, sample.estimates.get(job_id))
    ordered = sorted(samples, key=lambda s: s.at)
    times = [s.at for s in ordered]
    for record in records.values():
        if record.start is None or record.job.nodes == 0:
            continue
        target = record.start - lead_s
        k = bisect_left(times, target)
        best = None
        for cand in ordered[max(k - 1, 0) : k + 1]:
            off = abs(cand.at - target)
            if off <= tolerance_s and record.job.submit <= cand.at < record.start:
                best = cand if best is None or off < abs(best.at - target) else best
        if best is not None:
            _add(before, record, best.estimates.get(record.job.job_id))
    order = [*(label for label, _, _ in BANDS), ALL]
    return {
        "at_submission": {b: at_submit[b].row() for b in order if b in at_submit},
        "before_start": {b: before[b].row() for b in order if b in before},
        "started_at_once": started_at_once,
        "samples": len(samples),
        "estimate_wall_s": [s.wall_s for s in samples],
        "queued": [s.queued for s in samples],
        "lead_s": lead_s,
        "tolerance_s": tolerance_s,
    }


def _add(table: dict[str, BandErrors], record: JobRecord, estimate: float | None) -> None:
    assert record.start is not None
    for band in (band_of(record.job.priority), ALL):
        errors = table.setdefault(band, BandErrors())
        if estimate is None:
            errors.no_estimate += 1
        else:
            errors.errors.append(estimate - record.start)


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h"


def format_table(report: Mapping[str, Any]) -> str:
    """The accuracy report as a Markdown table: a row per band and moment."""
    lines = [
        "| band | estimate made | jobs | median abs. error | p90 abs. error "
        "| median late (+) / early (-) | no estimate |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    lead_h = report["lead_s"] / 3600
    for key, moment in (
        ("at_submission", "at submission"),
        ("before_start", f"{lead_h:g} h before"),
    ):
        for band, row in report[key].items():
            lines.append(
                f"| {band} | {moment} | {row['jobs']:,} | {_hours(row['median_abs_s'])} "
                f"| {_hours(row['p90_abs_s'])} | {row['median_signed_s'] / 3600:+.2f} h "
                f"| {row['no_estimate']:,} |"
            )
    return "\n".join(lines)

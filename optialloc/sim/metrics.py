"""Score a finished simulation with every metric of evaluation.md.

Definitions (also in docs/whatif.md):
- measurement window: [first submit + warm-up, last submit]; warm-up is
  `warmup_fraction` (default 5 %) of the arrival span; the drain after the
  last arrival is excluded. A run with a single arrival instant uses
  [first submit, last end]; one where no job ran inside the window (a
  snapshot's queue, submitted before the replay starts) uses
  [first start, last end].
- utilization: node-seconds busy inside the window / (nodes x window length).
- wait = start - submit over jobs that started; a job that never started
  counts with wait = end of simulation - submit (a lower bound) and is also
  counted in `never_started`.
- bounded slowdown: max(1, (wait + run) / max(run, tau)), tau = 10 s.
- priority-weighted wait: sum(w * wait) / sum(w), w = 1000 / max(priority, 1).
- Jain's index over owners of x = node-seconds received inside the window /
  node-seconds demanded by jobs submitted before the window's end.
- run turnaround: per run (the body's `name`), last end - first submit, over
  runs whose jobs all ran; also weighted by the run's w = 1000 / max(priority, 1).
- `last_in_suite` jobs (no node) are left out of every wait, slowdown, band
  and owner figure and reported apart (`last_in_suite_*`): they wait for their
  run under every scheduler (the engine hands them over when the run is done).
- 4-node / 1-node ratio with a floor: per band, max wait of jobs needing 4 or
  more nodes / max wait of 1-node jobs, each at least `RATIO_FLOOR_S` (1 h), so
  412 s against 125 s reads 1.0, not 3.3.
- bound: with `bound_s` (the start bound `plan` documents for a job, see
  `optialloc.ranking.start_bound_s`), the largest wait / bound over jobs and
  how many jobs waited past their bound.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from optialloc.sim.model import JobRecord, SimJob, SimResult

TAU_S = 10.0
DAY_S = 86400.0
#: floor of both max waits in the 4-node / 1-node ratio (`*_floor_1h` keys)
RATIO_FLOOR_S = 3600.0
#: Reporting bands of teuthology priorities: (label, low inclusive, high exclusive).
BANDS = (
    ("<10", 0, 10),
    ("10-49", 10, 50),
    ("50-74", 50, 75),
    ("75-99", 75, 100),
    ("100-149", 100, 150),
    ("150-199", 150, 200),
    ("200-999", 200, 1000),
    (">=1000", 1000, 2**32),
)


def band_of(priority: int) -> str:
    """The reporting band label of a teuthology priority."""
    for label, low, high in BANDS:
        if low <= priority < high:
            return label
    return BANDS[-1][0]


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def bounded_slowdown(wait: float, run: float, tau: float = TAU_S) -> float:
    return max(1.0, (wait + run) / max(run, tau))


def jain(values: Iterable[float]) -> float:
    """Jain's fairness index (sum x)^2 / (n sum x^2); 1.0 for no or all-zero values."""
    xs = list(values)
    square = sum(x * x for x in xs)
    if not xs or square == 0:
        return 1.0
    return sum(xs) ** 2 / (len(xs) * square)


def window_of(result: SimResult, warmup_fraction: float = 0.05) -> tuple[float, float]:
    """The measurement window (seconds) described in the module docstring."""
    submits = [r.job.submit for r in result.records]
    if not submits:
        return (0.0, 0.0)
    first, last = min(submits), max(submits)
    if last > first:
        return (first + (last - first) * warmup_fraction, last)
    ends = [r.end for r in result.records if r.end is not None]
    return (first, max(ends, default=first))


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def _busy(started: Sequence[JobRecord], w0: float, w1: float) -> dict[str, float]:
    busy: dict[str, float] = defaultdict(float)
    for r in started:
        assert r.start is not None and r.end is not None and r.machine_type is not None
        busy[r.machine_type] += len(r.nodes) * _overlap(r.start, r.end, w0, w1)
    return busy


def _waits(records: Sequence[JobRecord], sim_end: float) -> list[float]:
    return [
        (r.start if r.start is not None else max(sim_end, r.job.submit)) - r.job.submit
        for r in records
    ]


def summarize(
    result: SimResult,
    warmup_fraction: float = 0.05,
    bound_s: Callable[[SimJob], float] | None = None,
) -> dict[str, Any]:
    """Every metric of evaluation.md for one run, as a JSON-ready dict (units in key names)."""
    every = result.records
    sim_end = max([r.end for r in every if r.end is not None] + [result.end_time])
    w0, w1 = window_of(result, warmup_fraction)
    span = max(w1 - w0, 1e-9)
    records = [r for r in every if not r.job.last_in_suite]
    bookkeeping = [r for r in every if r.job.last_in_suite]
    bookkeeping_waits = _waits(bookkeeping, sim_end)
    waits = _waits(records, sim_end)
    started = [r for r in records if r.start is not None]
    busy = _busy(started, w0, w1)
    if started and not any(busy.values()):
        # a snapshot's queue was submitted before the replay starts: measure the replay
        w0 = min(r.start for r in started if r.start is not None)
        w1 = max(r.end for r in started if r.end is not None)
        span = max(w1 - w0, 1e-9)
        busy = _busy(started, w0, w1)
    total_nodes = max(result.total_nodes, 1)
    weights = [1000.0 / max(r.job.priority, 1) for r in records]
    by_band: dict[str, list[float]] = defaultdict(list)
    by_band_nodes: dict[str, dict[int, float]] = defaultdict(dict)
    for r, wait in zip(records, waits, strict=True):
        band = band_of(r.job.priority)
        by_band[band].append(wait)
        nodes = by_band_nodes[band]
        nodes[r.job.nodes] = max(nodes.get(r.job.nodes, 0.0), wait)
    ratios = [n[4] / max(n[1], 1.0) for n in by_band_nodes.values() if 4 in n and 1 in n]
    floored: dict[str, float] = {}
    for band, nodes in by_band_nodes.items():
        big = [w for k, w in nodes.items() if k >= 4]
        if big and 1 in nodes:
            floored[band] = max(max(big), RATIO_FLOOR_S) / max(nodes[1], RATIO_FLOOR_S)
    over_bound = (
        [w / max(bound_s(r.job), 1.0) for r, w in zip(records, waits, strict=True)]
        if bound_s is not None
        else []
    )
    multi = [w for r, w in zip(records, waits, strict=True) if r.job.nodes > 1]
    single = [w for r, w in zip(records, waits, strict=True) if r.job.nodes == 1]
    received: dict[str, float] = defaultdict(float)
    demanded: dict[str, float] = defaultdict(float)
    for r in records:
        if r.job.submit <= w1:
            demanded[r.job.owner] += r.job.nodes * r.job.runtime
            if r.start is not None and r.end is not None:
                received[r.job.owner] += r.job.nodes * _overlap(r.start, r.end, r.job.submit, w1)
    shares = [received[o] / d for o, d in demanded.items() if d > 0]
    runs: dict[str, list[JobRecord]] = defaultdict(list)
    for r in every:
        runs[r.job.run or r.job.job_id].append(r)
    done_runs = [rs for rs in runs.values() if all(x.end is not None for x in rs)]
    turnaround = [
        max(x.end for x in rs if x.end is not None) - min(x.job.submit for x in rs)
        for rs in done_runs
    ]
    run_weights = [1000.0 / max(min(x.job.priority for x in rs), 1) for rs in done_runs]
    tick_walls = [t.wall_s for t in result.ticks]
    statuses: dict[str, int] = defaultdict(int)
    for t in result.ticks:
        statuses[t.status] += 1
    per_type: dict[str, dict[str, float]] = {}
    for mt, capacity in sorted(result.capacity.items()):
        mt_waits = [
            w
            for r, w in zip(records, waits, strict=True)
            if (r.machine_type or r.job.machine_types[0]) == mt
        ]
        per_type[mt] = {
            "nodes": capacity,
            "utilization": busy[mt] / max(capacity * span, 1e-9),
            "jobs": len(mt_waits),
            "mean_wait_s": sum(mt_waits) / len(mt_waits) if mt_waits else 0.0,
            "max_wait_s": max(mt_waits, default=0.0),
        }
    n = max(len(records), 1)
    return {
        "jobs": len(every),
        "never_started": len(every) - sum(1 for r in every if r.start is not None),
        "window_start_s": w0,
        "window_end_s": w1,
        "utilization": sum(busy.values()) / (total_nodes * span),
        "mean_wait_s": sum(waits) / n,
        "p50_wait_s": percentile(waits, 50),
        "p95_wait_s": percentile(waits, 95),
        "p99_wait_s": percentile(waits, 99),
        "max_wait_s": max(waits, default=0.0),
        "mean_bounded_slowdown": sum(
            bounded_slowdown(w, r.job.runtime) for r, w in zip(records, waits, strict=True)
        )
        / n,
        "priority_weighted_wait_s": sum(w * x for w, x in zip(weights, waits, strict=True))
        / max(sum(weights), 1e-9),
        "share_wait_over_24h": sum(1 for w in waits if w > DAY_S) / n,
        "max_wait_multi_node_s": max(multi, default=0.0),
        "max_wait_1_node_s": max(single, default=0.0),
        "worst_4_vs_1_node_max_wait_ratio": max(ratios, default=0.0),
        "jain_owners": jain(shares),
        "owners": len(shares),
        "runs_finished": len(turnaround),
        "mean_run_turnaround_s": sum(turnaround) / len(turnaround) if turnaround else 0.0,
        "max_run_turnaround_s": max(turnaround, default=0.0),
        "priority_weighted_run_turnaround_s": sum(
            w * t for w, t in zip(run_weights, turnaround, strict=True)
        )
        / max(sum(run_weights), 1e-9),
        "worst_4_vs_1_node_max_wait_ratio_floor_1h": max(floored.values(), default=0.0),
        "max_wait_ratio_4_vs_1_node_by_band_floor_1h": dict(sorted(floored.items())),
        "max_wait_over_bound": max(over_bound, default=0.0),
        "jobs_past_bound": sum(1 for x in over_bound if x > 1.0),
        "last_in_suite_jobs": len(bookkeeping),
        "last_in_suite_mean_wait_s": (
            sum(bookkeeping_waits) / len(bookkeeping_waits) if bookkeeping_waits else 0.0
        ),
        "last_in_suite_max_wait_s": max(bookkeeping_waits, default=0.0),
        "solver_ticks": len(tick_walls),
        "solver_p50_s": percentile(tick_walls, 50),
        "solver_p99_s": percentile(tick_walls, 99),
        "solver_max_gap": max((t.gap for t in result.ticks), default=0.0),
        "solver_status": dict(statuses),
        "plans_rejected": result.rejected_plans,
        "sim_wall_s": result.wall_s,
        "max_wait_by_band_s": {band: max(ws) for band, ws in sorted(by_band.items())},
        "max_wait_by_band_and_nodes_s": {
            band: {str(k): v for k, v in sorted(nodes.items())}
            for band, nodes in sorted(by_band_nodes.items())
        },
        "per_machine_type": per_type,
    }

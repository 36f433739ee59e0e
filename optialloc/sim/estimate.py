"""Estimated start per waiting job: a forward replay of one snapshot through the real dispatcher.

`estimate_starts(snapshot, policy)` answers Slurm's `squeue --start` question
for every queued job: if nothing new were submitted, when would it start?

How: the snapshot's queue, nodes and running jobs are loaded into the
what-if engine's simulated ports (`optialloc.sim.adapters`: clock, queue,
inventory, runner, in-memory journal) and the real `Dispatcher.tick()` runs
on the simulated clock (snapshot, solve with `policy`, validate, commit),
as `serve` would, until the horizon. A job's estimate is the simulated
instant it starts.

Contract:

- **Inputs.** `snapshot`: a `Snapshot` as a tick sees it (queue, nodes with
  their locks, running jobs with `started_at`, paused tubes, owners' usage,
  learned runtime estimates). `policy`: the live policy. Nothing else is read.
- **Result.** `{job_id: estimated start}` (aware UTC datetimes, never before
  `snapshot.taken_at`). A queued job missing from the result has **no
  estimate within the horizon**: it would not start within `horizon_s`, or
  it can never start as things stand (its tube is paused, it needs more
  nodes than are up, ...), or the replay ran out of `max_wall_s`.
- **No new arrivals.** Only the jobs queued now are replayed: a job
  submitted later with a better priority can only make the real start later
  than estimated (and a job deleted or reprioritised can make it earlier).
- **Durations.** Every job, queued or running, lasts its runtime estimate:
  the body's `runtime_estimate_s`, else the one learned for its description
  (`runtime_estimates`, default `snapshot.runtime_estimates`:
  `optialloc.dispatch.runtimes`), else the fallback `default_runtime_s`
  (default: the median of the learned estimates, or `FALLBACK_RUNTIME_S`
  when nothing is learned yet). Durations are capped by the job's time limit
  (`dispatch.monitor.time_limit`). A running job ends at `started_at + its
  duration`; one already past that is expected to end `OVERDUE_FRACTION` of
  its duration from now (at least one `cadence_s`, at most its time limit).
- **The lab stays as it is.** Down nodes stay down, nodes locked by people
  stay locked, paused tubes stay paused, for the whole horizon.
- **Bounded.** The replay decides when jobs end, on a cadence that grows with
  the look-ahead (`cadence_s` near now, `cadence_ratio` x the look-ahead
  later, at most `max_cadence_s`): an estimate is as fine as the replay's
  decisions are at that distance. A job started at a coarse decision is
  dated back to when its nodes were free (not earlier than the first end
  since the previous decision), so coarse decisions do not leave nodes idle
  in simulated time. Each solve is limited to `solver_time_limit_s` (and the
  policy's own limit), skips the per-job explanation (not needed here), and
  plans are not re-validated unless `validate=True` (the live dispatcher
  validates every plan it commits); `max_wall_s` stops the replay outright.
- **Pure toward the live lab.** It never touches a real queue, lock server,
  runner, journal or state file: every port is in memory, the runner starts
  no process, and nothing is reported anywhere. The dispatcher's log lines
  from the replay are dropped (in the calling thread only), so the live
  dispatcher's log stays readable.
- **Threads.** Safe to call from a background thread: the only shared
  thing it changes is adding, once, a filter (that drops nothing of other
  threads) to the `optialloc.*` loggers. It is CPU-bound Python: beside a
  tick loop in the same process it competes for the GIL, so a caller that
  must not slow ticks should run it in a separate process (`Snapshot`,
  `Policy` and the result pickle).

Figures (docs/whatif.md "Estimated start times"): 11 s of CPU at Sepia scale
(`fixtures/snapshots/sepia.gen.yaml`: 20,000 queued, 340 nodes) with the
defaults (`scripts/bench_estimate.py`); accuracy per priority band on the
Sepia-like week from `scripts/estimate_accuracy.py`.
"""

from __future__ import annotations

import heapq
import logging
import math
import statistics
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from optialloc.dispatch.dispatcher import Dispatcher, DispatcherSettings
from optialloc.dispatch.monitor import time_limit
from optialloc.dispatch.runtimes import RuntimeHistory
from optialloc.domain import Job, Node, Plan, Snapshot
from optialloc.policy import Policy
from optialloc.ranking import runtime_estimate_s
from optialloc.sim.adapters import SimClock, SimInventory, SimJournal, SimQueue, SimRunner
from optialloc.solver import solve

log = logging.getLogger(__name__)

#: Duration of a job with no estimate when nothing at all is learned yet (seconds).
FALLBACK_RUNTIME_S = 3600.0
#: A running job past its estimate is expected to run this share of it again.
OVERDUE_FRACTION = 0.25
#: `locked_by` of the nodes the snapshot's running jobs hold, inside the replay.
RUNNING_LOCKER = "running@estimate"
DEFAULT_HORIZON_S = 48 * 3600.0


@dataclass(frozen=True)
class _End:
    """A job of the replay ends at `at` (seconds after the snapshot) on `nodes`."""

    job_id: str
    nodes: tuple[str, ...]
    running: bool  # one of the snapshot's running jobs (its nodes are unlocked directly)


class _FrozenRuntimes(RuntimeHistory):
    """The snapshot's learned estimates, unchanged by the replay's own (estimated) runs."""

    def __init__(self, estimates: Mapping[str, float]) -> None:
        super().__init__(":memory:")
        self._frozen = dict(estimates)

    def observe(self, job: Job, runtime_s: float, at: datetime) -> float | None:
        return None

    def estimates(self) -> Mapping[str, float]:
        return self._frozen


_quiet = threading.local()


class _QuietReplay(logging.Filter):
    """Drops records logged by a thread while it replays (other threads log as usual)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(_quiet, "on", False)


_QUIET = _QuietReplay()


def _silence_replay_logs() -> None:
    """Attach the filter to every optialloc logger (a logger's filters see only its own records)."""
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if (
            name.startswith("optialloc.")
            and isinstance(logger, logging.Logger)
            and _QUIET not in logger.filters
        ):
            logger.addFilter(_QUIET)


def _solve_quietly(snapshot: Snapshot, policy: Policy, *, explain: bool = True) -> Plan:
    """The real solver, without the per-job positions and reasons the replay never reads."""
    return solve(snapshot, policy, explain=False)


def estimate_starts(
    snapshot: Snapshot,
    policy: Policy,
    *,
    runtime_estimates: Mapping[str, float] | None = None,
    horizon_s: float = DEFAULT_HORIZON_S,
    default_runtime_s: float | None = None,
    cadence_s: float = 60.0,
    cadence_ratio: float = 0.1,
    max_cadence_s: float = 1800.0,
    solver_time_limit_s: float = 1.0,
    max_job_time: float = 259200.0,
    validate: bool = False,
    max_wall_s: float | None = None,
) -> dict[str, datetime]:
    """Estimated start of each queued job of `snapshot` under `policy` (see the module docstring).

    `runtime_estimates`: learned runtime per job description (seconds;
    default `snapshot.runtime_estimates`). `max_job_time`: the config's
    `max_job_time` (the time limit before the policy's own limits).
    """
    if horizon_s <= 0 or cadence_s <= 0 or max_cadence_s < cadence_s or cadence_ratio < 0:
        raise ValueError(
            "estimate_starts: horizon_s and cadence_s must be > 0, "
            "max_cadence_s >= cadence_s and cadence_ratio >= 0"
        )
    wall0 = time.perf_counter()
    learned = dict(snapshot.runtime_estimates if runtime_estimates is None else runtime_estimates)
    fallback = default_runtime_s
    if fallback is None:
        fallback = statistics.median(learned.values()) if learned else FALLBACK_RUNTIME_S
    limit_policy = replace(
        policy,
        solver=replace(
            policy.solver, time_limit_s=min(policy.solver.time_limit_s, solver_time_limit_s)
        ),
    )

    def duration(job: Job) -> float:
        estimate = runtime_estimate_s(job, learned)
        value = fallback if estimate is None else estimate
        return max(1.0, min(value, time_limit(job, max_job_time, policy)))

    origin = snapshot.taken_at
    clock = SimClock(origin)
    queue = SimQueue(clock)
    for job in snapshot.queue:
        queue.add(job)
    for tube in snapshot.paused_tubes:
        queue.pause(tube, int(horizon_s + max_cadence_s) + 1)

    # The snapshot's running jobs: their nodes locked under RUNNING_LOCKER until they end.
    ends: list[tuple[float, int, _End]] = []
    holder: dict[str, str] = {}
    known = {node.name for node in snapshot.nodes}
    for k, running in enumerate(snapshot.running):
        held = tuple(name for name in running.nodes if name in known)
        for name in held:
            holder[name] = running.job_id
        length = duration(running.job)
        elapsed = (origin - running.started_at).total_seconds()
        remaining = length - elapsed
        if remaining <= 0:  # overdue: it ends soon, and by its time limit at the latest
            limit = time_limit(running.job, max_job_time, policy)
            remaining = min(max(OVERDUE_FRACTION * length, cadence_s), max(limit - elapsed, 0.0))
        heapq.heappush(ends, (remaining, k, _End(running.job_id, held, True)))
    nodes = [_as_replayed(node, holder.get(node.name)) for node in snapshot.nodes]
    inventory = SimInventory(nodes, locked_by="optialloc@estimate")
    runner = SimRunner(clock, {job.job_id: duration(job) for job in snapshot.queue})
    dispatcher = Dispatcher(
        queue=queue,
        inventory=inventory,
        runner=runner,
        clock=clock,
        policy=limit_policy,
        journal=SimJournal(),
        settings=DispatcherSettings(
            max_job_time=int(max_job_time),
            archive_base="/nonexistent/optialloc-estimate",
            validate=validate,
        ),
        solve=_solve_quietly,
        runtimes=_FrozenRuntimes(learned),
    )
    for owner, node_seconds in snapshot.usage.items():
        dispatcher.usage.add(owner, node_seconds, origin)

    free_at = {node.name: 0.0 for node in nodes}  # when each node was last freed
    estimates: dict[str, datetime] = {}
    seq = len(snapshot.running)
    now, floor = 0.0, 0.0
    _silence_replay_logs()
    _quiet.on = True
    try:
        while True:
            clock.set(now)
            dispatcher.tick()
            for job_id, names in runner.launched:
                # dated back to when its nodes were free, not before the first end
                # since the previous decision (what made this start possible)
                start = max([floor, *(free_at.get(n, 0.0) for n in names)])
                estimates[job_id] = origin + timedelta(seconds=start)
                seq += 1
                heapq.heappush(
                    ends, (start + runner.runtimes[job_id], seq, _End(job_id, names, False))
                )
            runner.launched.clear()
            if not ends or (max_wall_s is not None and time.perf_counter() - wall0 > max_wall_s):
                break  # nothing runs: nothing queued can ever start (or out of time)
            first = ends[0][0]
            step = _step(first, cadence_s, cadence_ratio, max_cadence_s)
            later = max(math.ceil(first / step) * step, now + 1.0)
            if later > horizon_s:
                break
            while ends and ends[0][0] <= later:
                at, _, end = heapq.heappop(ends)
                if end.running:
                    inventory.unlock(end.nodes, _running_description(end.job_id), RUNNING_LOCKER)
                else:
                    runner.finish(end.job_id)
                for name in end.nodes:
                    free_at[name] = at
            now, floor = later, first
    finally:
        _quiet.on = False
    log.debug(
        "estimated %d of %d queued job(s) in %.1f s (horizon %.0f h)",
        len(estimates),
        len(snapshot.queue),
        time.perf_counter() - wall0,
        horizon_s / 3600,
    )
    return estimates


def _step(at: float, cadence_s: float, ratio: float, max_cadence_s: float) -> float:
    """The decision grid at `at` seconds ahead: `cadence_s` x a power of 2, at most
    `ratio` x `at` (a fixed grid per level, so decisions do not creep end by end)."""
    wanted = ratio * at / cadence_s
    step = cadence_s * 2 ** math.floor(math.log2(wanted)) if wanted >= 1 else cadence_s
    return min(step, max_cadence_s)


def _running_description(job_id: str) -> str:
    return f"running/{job_id}"


def _as_replayed(node: Node, running_job: str | None) -> Node:
    """The node as the replay starts it: held by its running job, or as the snapshot has it."""
    if running_job is None:
        return node
    return replace(
        node,
        locked=True,
        locked_by=RUNNING_LOCKER,
        description=_running_description(running_job),
    )

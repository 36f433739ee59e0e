"""Issue 17's starvation scenario through the real dispatcher, deciding as serve does.

A 4-node priority-200 job is queued into a fresh 8-node lab together with a
steady stream of priority-50 1-node jobs at offered load about 1. It must
start within the bound `plan` states for it in its wait reason ("reserved
from HH:MM at the latest", plus max_job_time: every node busy then frees by
it). The lab's max_job_time is 2 h here (the stream's jobs run 10-60 min), so
the bound (rank 8.6 h after queueing + 2 h) is tight enough to fail, as the
contrast test shows without reservations. The issue reports 16 h for such a
job under an older default; the relative-starvation rule of the current one
starts it after about 1.5 h.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from optialloc.domain import Node
from optialloc.policy import default_policy
from optialloc.ranking import reservation_order_s
from optialloc.sim.engine import ClusterState, Launch, simulate
from optialloc.sim.model import DEFAULT_ORIGIN, SimJob
from optialloc.sim.optialloc_sched import OptiallocScheduler
from optialloc.sim.scenario import serve_cadence
from optialloc.sim.workload import ensure_body

MAX_JOB_TIME_S = 7200.0
BOUND = re.compile(r"reserved from (\d\d):(\d\d) at the latest")  # within a day here


def _jobs(seed: int = 7, hours: float = 30.0, load: float = 1.0) -> list[SimJob]:
    rng = random.Random(seed)
    # the stream has filled the lab when the big job comes, an hour in
    big = SimJob("big", 0, 3600.0, 1800.0, 4, ("smithi",), 200, "scheduled_dev@lab", "run-big")
    jobs = [big]
    t, k = 0.0, 1
    mean = 35 * 60.0  # mean runtime of the uniform 10-60 min below
    while t < hours * 3600:
        runtime = rng.uniform(600, 3600)
        jobs.append(
            SimJob(f"s{k}", k, round(t, 1), runtime, 1, ("smithi",), 50, "ci@lab", f"stream-{k}")
        )
        k += 1
        t += rng.expovariate(load * 8 / mean)  # 8 nodes busy on average at load 1
    return [replace(j, body=ensure_body(j)) for j in jobs]


@pytest.mark.parametrize("load", [1.0, 1.1])
def test_big_job_starts_within_the_bound_plan_states(load: float) -> None:
    policy = replace(default_policy(), max_job_time_s=MAX_JOB_TIME_S)
    jobs = _jobs(load=load)
    nodes = [Node(f"smithi{i:03d}", "smithi") for i in range(1, 9)]
    reasons: list[str] = []

    class Recording(OptiallocScheduler):
        def decide(self, now: float, cluster: ClusterState) -> Sequence[Launch]:
            launches = super().decide(now, cluster)
            if self.last_plan is not None:
                reasons.extend(w.detail for w in self.last_plan.waiting if w.job_id == "big")
            return launches

    scheduler = Recording(
        name="default", policy=policy, nodes=nodes, jobs=jobs, origin=DEFAULT_ORIGIN
    )
    result = simulate(jobs, scheduler, {"smithi": [n.name for n in nodes]}, cadence=serve_cadence())
    record = next(r for r in result.records if r.job.job_id == "big")
    assert record.start is not None
    assert reasons, "plan gave the waiting job no reason"
    found = BOUND.search(reasons[0])
    assert found, reasons[0]
    latest = _clock_time(DEFAULT_ORIGIN, int(found[1]), int(found[2]))
    reserved_by = (latest - DEFAULT_ORIGIN).total_seconds()
    assert record.start <= reserved_by + MAX_JOB_TIME_S, (record.start / 3600, reasons[0])


def test_without_reservations_the_same_job_waits_past_that_bound() -> None:
    """The contrast: the bound comes from the reservations, not from the workload."""
    base = default_policy()
    policy = replace(
        base,
        max_job_time_s=MAX_JOB_TIME_S,
        reservations=replace(base.reservations, enabled=False),
    )
    jobs = _jobs(load=1.1)
    nodes = [Node(f"smithi{i:03d}", "smithi") for i in range(1, 9)]
    scheduler = OptiallocScheduler(
        name="off", policy=policy, nodes=nodes, jobs=jobs, origin=DEFAULT_ORIGIN
    )
    result = simulate(jobs, scheduler, {"smithi": [n.name for n in nodes]}, cadence=serve_cadence())
    record = next(r for r in result.records if r.job.job_id == "big")
    bound = 3600 + reservation_order_s(200, policy) + MAX_JOB_TIME_S
    assert record.start is None or record.start > bound


def _clock_time(origin: datetime, hour: int, minute: int) -> datetime:
    """The first HH:MM at or after `origin` (the bound is within a day here)."""
    at = origin.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return at if at >= origin else at + timedelta(days=1)

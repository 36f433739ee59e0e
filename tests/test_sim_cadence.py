"""What-if decides as serve does; last_in_suite alike for every scheduler; greedy (issue 17)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from optialloc.config import Config
from optialloc.dispatch.serve import ARRIVAL_CHECK_S, MIN_TICK_GAP_S
from optialloc.sim.baselines import Greedy, TeuthologyToday, make_baseline
from optialloc.sim.engine import Cadence, ClusterState, Launch, node_names, simulate
from optialloc.sim.metrics import summarize
from optialloc.sim.model import JobRecord, SimJob, TickStat
from optialloc.sim.scenario import serve_cadence

CADENCE = Cadence(min_gap_s=0.2, arrival_poll_s=1.0, idle_s=10.0)


def _job(
    i: int, submit: float, runtime: float, nodes: int = 1, prio: int = 100, **kw: object
) -> SimJob:
    return SimJob(str(i), i, submit, runtime, nodes, ("a",), prio, "o", kw.pop("run", ""), **kw)  # type: ignore[arg-type]


class Recorder:
    """Greedy, recording when it was asked to decide."""

    name = "recorder"

    def __init__(self) -> None:
        self.ticks: list[TickStat] = []
        self.inner = Greedy()
        self.times: list[float] = []

    def arrive(self, job: SimJob, now: float) -> None:
        self.inner.arrive(job, now)

    def complete(self, record: JobRecord, now: float) -> None:
        pass

    def decide(self, now: float, cluster: ClusterState) -> Sequence[Launch]:
        self.times.append(now)
        return self.inner.decide(now, cluster)

    def queued(self) -> int:
        return self.inner.queued()


def test_serve_cadence_is_serves_defaults() -> None:
    cadence = serve_cadence()
    assert cadence.min_gap_s == MIN_TICK_GAP_S
    assert cadence.arrival_poll_s == ARRIVAL_CHECK_S
    assert cadence.idle_s == Config().tick_seconds


def test_decisions_follow_events_with_serves_gaps() -> None:
    # one node; job 1 runs 0..100 s; job 3 (2 nodes: never fits) keeps the queue non-empty
    jobs = [_job(1, 0, 100), _job(2, 30.5, 50), _job(3, 0.05, 10, nodes=2), _job(4, 200, 10)]
    rec = Recorder()
    result = simulate(jobs, rec, {"a": ["a1"]}, cadence=CADENCE)
    starts = {r.job.job_id: r.start for r in result.records}
    assert starts["1"] == 0.0
    # no node free from 0 to 100 s: the arrivals at 0.05 and 30.5 s decide nothing (skipped);
    # job 1 ends at 100 s: a decision at once, job 2 starts; it ends at 150 s; from then a
    # node is free and job 3 waits: serve's idle tick every 10 s until job 4 arrives
    assert starts["2"] == 100.0 and starts["4"] == 200.0
    assert rec.times == [0.0, 100.0, 150.0, 160.0, 170.0, 180.0, 190.0, 200.0, 210.0]


def test_finishes_closer_than_the_gap_share_one_decision() -> None:
    jobs = [_job(1, 0, 10), _job(2, 0, 10.1), _job(3, 0, 10.15), _job(4, 0.0, 5)]
    rec = Recorder()
    simulate(jobs, rec, {"a": ["a1", "a2", "a3"]}, cadence=Cadence(0.2, 1.0, 0.0))
    # job 4 starts at 10 s (job 1 ended); the ends at 10.1 and 10.15 wait for 10.2 s
    assert 10.0 in rec.times and 10.2 in rec.times
    assert not [t for t in rec.times if 10.0 < t < 10.2]


def test_fixed_ticks_stay_available() -> None:
    jobs = [_job(1, 0, 100), _job(2, 30.5, 50)]
    rec = Recorder()
    result = simulate(jobs, rec, {"a": ["a1"]}, tick_s=60)
    assert all(t % 60 == 0 for t in rec.times)
    assert {r.job.job_id: r.start for r in result.records}["2"] == 120.0


@pytest.mark.parametrize("name", ["greedy", "teuthology", "fcfs", "easy"])
def test_last_in_suite_waits_for_its_run_under_every_scheduler(name: str) -> None:
    jobs = [
        _job(1, 0, 100, run="r"),
        _job(2, 0, 300, run="r"),
        _job(3, 1, 60, nodes=0, run="r", last_in_suite=True),
        _job(4, 5, 50, run="s"),
    ]
    result = simulate(jobs, make_baseline(name), node_names({"a": 2}), cadence=CADENCE)
    rec = {r.job.job_id: r for r in result.records}
    assert rec["3"].start == 300.0  # the run's last job ended at 300 s
    m = summarize(result)
    assert m["jobs"] == 4 and m["last_in_suite_jobs"] == 1
    assert m["last_in_suite_max_wait_s"] == 299.0
    # node jobs only: waits 0, 0, 100 (job 4 after job 1)
    assert m["max_wait_s"] == 95.0 and m["max_wait_by_band_s"] == {"100-149": 95.0}


def test_greedy_starts_by_priority_and_starves_a_big_job() -> None:
    # 2 nodes; a 2-node job (priority 200) queued behind a stream of 1-node jobs at 100
    jobs = [_job(0, 0, 1000, nodes=2, prio=200)]
    jobs += [_job(i, (i - 1) * 50.0, 100, prio=100) for i in range(1, 40)]
    result = simulate(jobs, Greedy(), node_names({"a": 2}), cadence=CADENCE)
    rec = {r.job.job_id: r for r in result.records}
    # every 1-node job starts at once (work-conserving); the big one after the stream
    assert all(rec[str(i)].start == rec[str(i)].job.submit for i in range(1, 40))
    assert rec["0"].start is not None and rec["0"].start >= 38 * 50.0
    greedy = Greedy()
    greedy.arrive(_job(7, 0, 10, prio=500), 0)
    greedy.arrive(_job(8, 1, 10, prio=50), 1)
    cluster = ClusterState({"a": ["a1"]})
    assert [la.job.job_id for la in greedy.decide(1, cluster)] == ["8"]


def test_teuthology_still_blocks_on_its_head() -> None:
    base = TeuthologyToday()
    base.arrive(_job(1, 0, 10, nodes=2), 0)
    base.arrive(_job(2, 1, 10), 1)
    assert base.decide(1, ClusterState({"a": ["a1"]})) == []

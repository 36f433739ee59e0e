"""optialloc inside the simulator: the real Dispatcher over the simulated ports.

Checks the contract of the simulated adapters, then replays small workloads
through `Dispatcher.tick()`: every job runs exactly once, no node runs two
jobs at once, and the lab ends with no lock and an empty queue.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from optialloc.domain import Node
from optialloc.errors import Conflict, LockBusy, NotFound
from optialloc.policy import load_policy
from optialloc.sim.adapters import SimClock, SimInventory, SimQueue, SimRunner
from optialloc.sim.engine import simulate
from optialloc.sim.model import DEFAULT_ORIGIN, SimJob, SimResult
from optialloc.sim.optialloc_sched import OptiallocScheduler
from optialloc.sim.scenario import lab_nodes
from optialloc.sim.workload import read_jsonl, read_snapshot
from optialloc.teuthology import dump_body, parse_job
from tests.conftest import FIXTURES, REPO
from tests.sim_support import SNAPSHOT_YAML


def _no_overlap(result: SimResult) -> None:
    last_end: dict[str, float] = {}
    spans = sorted(
        (r.start, r.end, n) for r in result.records if r.start is not None for n in r.nodes
    )
    for start, end, node in spans:  # type: ignore[misc]
        assert last_end.get(node, float("-inf")) <= start, f"node {node} runs two jobs at t={start}"
        last_end[node] = end


def test_sim_queue_contract() -> None:
    clock = SimClock(DEFAULT_ORIGIN)
    queue = SimQueue(clock)
    body = {"name": "r", "owner": "o", "machine_type": "smithi", "roles": [["a"]], "priority": 100}
    late = parse_job(body, job_id="b", queued_at=DEFAULT_ORIGIN + timedelta(seconds=5))
    early = parse_job({**body, "priority": 500}, job_id="a", queued_at=DEFAULT_ORIGIN)
    queue.add(early)
    queue.add(late)
    assert [j.job_id for j in queue.pending()] == ["b", "a"]  # priority first
    assert queue.claim("b") and not queue.claim("b")
    assert [j.job_id for j in queue.claimed()] == ["b"]
    queue.release("b")
    assert queue.pending_count() == 2
    bad = queue.put("smithi", "roles: [not, a, list", 10)
    assert [b.job_id for b in queue.buried()] == [bad] and "YAML" in queue.buried()[0].reason
    queue.delete("a")
    queue.delete("a")  # idempotent
    assert [j.job_id for j in queue.pending()] == ["b"]
    queue.set_priority("b", 7)
    assert queue.pending()[0].priority == 7


def test_sim_inventory_locks_all_or_nothing() -> None:
    inv = SimInventory([Node("n1", "smithi"), Node("n2", "smithi"), Node("n3", "smithi", up=False)])
    inv.lock(["n1"], "job-1")
    inv.lock(["n1"], "job-1")  # same holder and description: idempotent
    with pytest.raises(LockBusy):
        inv.lock(["n2", "n1"], "job-2")
    assert not any(n.locked for n in inv.nodes() if n.name == "n2"), "a refused lock takes nothing"
    with pytest.raises(LockBusy):
        inv.lock(["n3"], "job-3")
    with pytest.raises(Conflict):
        inv.unlock(["n1"], "job-2")
    inv.unlock(["n1"], "job-1")
    assert inv.held() == []


def test_sim_runner_ends_a_job_when_the_engine_says_so() -> None:
    clock = SimClock(DEFAULT_ORIGIN)
    runner = SimRunner(clock, {"j": 30.0})
    job = parse_job(
        {"machine_type": "smithi", "roles": [["a"]]}, job_id="j", queued_at=DEFAULT_ORIGIN
    )
    clock.set(10)
    handle = runner.launch(job, [Node("n1", "smithi")], "/a/j")
    assert handle.started_at == DEFAULT_ORIGIN + timedelta(seconds=10)
    clock.set(40)
    assert runner.poll(handle) is None  # the engine has not processed its end yet
    runner.finish("j")
    assert runner.poll(handle) == 0
    assert runner.launched == [("j", ("n1",))]
    with pytest.raises(NotFound):
        runner.launch(
            parse_job(
                {"roles": [["a"]], "machine_type": "x"}, job_id="k", queued_at=DEFAULT_ORIGIN
            ),
            [],
            "/a/k",
        )


def test_demo_workload_through_the_real_dispatcher_runs_every_job_once() -> None:
    nodes = lab_nodes(str(FIXTURES / "labs" / "demo.yaml"))
    load = read_jsonl(FIXTURES / "workloads" / "demo.jsonl")
    names: dict[str, list[str]] = {}
    for node in nodes:
        names.setdefault(node.machine_type, []).append(node.name)
    scheduler = OptiallocScheduler(
        name="default",
        policy=load_policy(str(REPO / "models" / "default.yaml")),
        nodes=nodes,
        jobs=load.jobs,
        origin=load.origin,
    )
    result = simulate(load.jobs, scheduler, names, tick_s=60)
    assert not scheduler.failed, scheduler.notes
    assert [r.job.job_id for r in result.records if r.start is None] == []
    assert len({r.job.job_id for r in result.records}) == len(load.jobs)
    _no_overlap(result)
    # the dispatcher's own view agrees: nothing pending or claimed, no lock left
    assert scheduler.queue.pending() == () and list(scheduler.queue.claimed()) == []
    assert [n.name for n in scheduler.inventory.nodes() if n.locked] == []
    assert result.ticks and all(t.status for t in result.ticks)
    for r in result.records:
        assert r.start is not None and r.start >= r.job.submit
        assert r.machine_type in r.job.machine_types


def test_snapshot_through_the_dispatcher_waits_for_running_jobs(tmp_path: Path) -> None:
    path = tmp_path / "snap.yaml"
    path.write_text(SNAPSHOT_YAML)
    load = read_snapshot(path)
    nodes = list(load.nodes or [])
    scheduler = OptiallocScheduler(
        name="default",
        policy=load_policy(str(REPO / "models" / "default.yaml")),
        nodes=nodes,
        jobs=[*load.jobs, *(r.job for r in load.preload)],
        origin=load.origin,
        preload=load.preload,
    )
    result = simulate(
        load.jobs,
        scheduler,
        {"smithi": ["smithi001", "smithi002"]},
        preload=load.preload,
        start=0.0,
    )
    got = {r.job.job_id: r.start for r in result.records}
    # the 2-node job can only start when the running job ends (t=600 s); job 8 fits at once
    assert got == {"5": -600.0, "7": 600.0, "8": 0.0}
    _no_overlap(result)
    assert [n.name for n in scheduler.inventory.nodes() if n.locked] == []


def test_the_body_sent_to_the_queue_is_the_workloads_body() -> None:
    load = read_jsonl(FIXTURES / "workloads" / "demo.jsonl")
    job = load.jobs[0]
    parsed = parse_job(dump_body(job.body or {}), job_id=job.job_id, queued_at=DEFAULT_ORIGIN)
    assert (parsed.nodes_needed, parsed.machine_types, parsed.priority) == (
        job.nodes,
        job.machine_types,
        job.priority,
    )


def test_jobs_ending_at_the_same_instant_follow_the_engines_event_order() -> None:
    nodes = [Node("n1", "smithi"), Node("n2", "smithi")]
    body = {"name": "r", "owner": "o", "machine_type": "smithi"}
    jobs = [
        SimJob("1", 0, 0.0, 100.0, 1, ("smithi",), body={**body, "roles": [["a"]]}),
        SimJob("2", 1, 0.0, 100.0, 1, ("smithi",), body={**body, "roles": [["a"]]}),
        SimJob("3", 2, 1.0, 10.0, 2, ("smithi",), body={**body, "roles": [["a"], ["b"]]}),
    ]
    scheduler = OptiallocScheduler(
        name="default",
        policy=load_policy(str(REPO / "models" / "default.yaml")),
        nodes=nodes,
        jobs=jobs,
        origin=DEFAULT_ORIGIN,
    )
    # one decision per single event: the dispatcher must not see job 2's end early
    result = simulate(jobs, scheduler, {"smithi": ["n1", "n2"]}, one_event=True)
    assert {r.job.job_id: r.start for r in result.records} == {"1": 0.0, "2": 0.0, "3": 100.0}
    _no_overlap(result)

"""The simulator reproduces RLScheduler's published FCFS and FCFS+backfill table (evaluation.md).

Mean bounded slowdown (tau 10 s) over the 10 windows of 1024 jobs, each window
on an empty 256-node cluster, decided after every single event.
"""

from __future__ import annotations

import statistics

import pytest

from optialloc.sim.baselines import make_baseline
from optialloc.sim.engine import node_names, simulate
from optialloc.sim.metrics import summarize
from optialloc.sim.swf import LUBLIN_WINDOW_JOBS, LUBLIN_WINDOWS, read_swf, window
from tests.conftest import REPO

TRACES = REPO.parent / "shared" / "data" / "traces"

PUBLISHED = {
    ("lublin_256.swf", "fcfs"): 7273.77,
    ("lublin_256.swf", "fcfs-backfill"): 235.82,
    ("lublin_256_new2.swf", "fcfs"): 7842.47,
    ("lublin_256_new2.swf", "fcfs-backfill"): 247.61,
}


def _trace(name: str):  # type: ignore[no-untyped-def]
    path = TRACES / name
    if not path.is_file():
        pytest.fail(
            f"trace {path} is missing: the published-table check needs ../shared/data/traces/{name}"
        )
    return read_swf(path)


@pytest.mark.parametrize(("trace_name", "scheduler"), sorted(PUBLISHED))
def test_reproduces_published_mean_bounded_slowdown(trace_name: str, scheduler: str) -> None:
    trace = _trace(trace_name)
    assert trace.max_nodes == 256
    scores = []
    for start in LUBLIN_WINDOWS:
        jobs = window(trace, start, LUBLIN_WINDOW_JOBS)
        result = simulate(
            jobs,
            make_baseline(scheduler),
            node_names({trace.machine_type: trace.max_nodes}),
            one_event=True,
        )
        assert all(r.start is not None for r in result.records), "every window job must run"
        scores.append(summarize(result)["mean_bounded_slowdown"])
    assert statistics.mean(scores) == pytest.approx(PUBLISHED[(trace_name, scheduler)], abs=0.005)


def test_trace_cleaning_follows_the_protocol() -> None:
    trace = _trace("lublin_256.swf")
    # 10,000 records, none with run time 0 in this trace; sorted by id
    assert len(trace.jobs) == 10000
    assert [j.job_id for j in trace.jobs[:3]] == ["1", "2", "3"]
    first = trace.jobs[0]
    assert (first.submit, first.runtime, first.nodes, first.estimate) == (
        5094.0,
        12072.0,
        16,
        12072.0,
    )

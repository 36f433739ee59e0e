"""Workload readers (JSON Lines, SWF, snapshot) and the generator; errors name line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from optialloc.errors import InputError
from optialloc.sim.generate import WeekParams, generate, load_params, offered_load
from optialloc.sim.swf import as_lab_jobs, parse_window, read_swf, window
from optialloc.sim.workload import check_fits, parse_lines, read_jsonl, read_snapshot, write_jsonl
from tests.conftest import FIXTURES
from tests.sim_support import SNAPSHOT_YAML

BODY = {
    "name": "run-a",
    "owner": "scheduled_a@x",
    "priority": 75,
    "machine_type": "smithi,mira",
    "roles": [["mon.a"], ["osd.0"]],
}


def test_jsonl_line_becomes_a_job_parsed_like_the_live_queue() -> None:
    load = parse_lines(
        [json.dumps({"submit": 60, "runtime": 30.5, "body": BODY, "job_id": "j1"}), "", "# note"]
    )
    (job,) = load.jobs
    assert (job.job_id, job.submit, job.runtime, job.nodes) == ("j1", 60.0, 30.5, 2)
    assert (job.machine_types, job.priority, job.owner, job.run, job.tube) == (
        ("smithi", "mira"),
        75,
        "scheduled_a@x",
        "run-a",
        "multi",
    )


@pytest.mark.parametrize(
    ("line", "where"),
    [
        ("{not json", "w.jsonl:2"),
        (json.dumps({"submit": -1, "runtime": 5, "body": BODY}), "w.jsonl:2: submit"),
        (json.dumps({"submit": 1, "runtime": 0, "body": BODY}), "w.jsonl:2: runtime"),
        (json.dumps({"submit": 1, "runtime": 5}), "w.jsonl:2: body"),
        (
            json.dumps({"submit": 1, "runtime": 5, "body": {**BODY, "roles": "x"}}),
            "w.jsonl:2: body.roles",
        ),
        (json.dumps({"submit": 1, "runtime": 5, "body": BODY, "extra": 1}), "w.jsonl:2"),
        (
            json.dumps({"submit": 1, "runtime": 5, "body": BODY, "job_id": "j1"}),
            "w.jsonl:2: job_id",
        ),
    ],
)
def test_bad_jsonl_lines_are_refused_naming_line_and_field(line: str, where: str) -> None:
    good = json.dumps({"submit": 0, "runtime": 5, "body": BODY, "job_id": "j1"})
    with pytest.raises(InputError) as info:
        parse_lines([good, line], source="w.jsonl")
    assert info.value.field == where


def test_jsonl_round_trip_through_a_file(tmp_path: Path) -> None:
    jobs = generate(
        WeekParams(
            days=1,
            seed=3,
            pr_runs_per_day=2,
            other_runs_per_day=0,
            urgent_runs_per_day=0,
            nightlies=(("rados", "smithi", 5, 8),),
        )
    )
    path = tmp_path / "w.jsonl"
    write_jsonl(jobs, path)
    back = read_jsonl(path).jobs
    assert [(j.job_id, j.submit, j.runtime, j.nodes, j.priority, j.owner) for j in back] == [
        (j.job_id, j.submit, j.runtime, j.nodes, j.priority, j.owner) for j in jobs
    ]


def test_committed_demo_workload_is_what_its_params_generate() -> None:
    params = load_params(FIXTURES / "workloads" / "demo-params.yaml")
    committed = read_jsonl(FIXTURES / "workloads" / "demo.jsonl").jobs
    assert [(j.job_id, j.submit, j.runtime, j.nodes) for j in generate(params)] == [
        (j.job_id, j.submit, j.runtime, j.nodes) for j in committed
    ]


def test_generator_is_seeded_and_teuthology_like() -> None:
    params = WeekParams(days=2, seed=5)
    a, b = generate(params), generate(params)
    assert [(j.submit, j.runtime, j.nodes) for j in a] == [
        (j.submit, j.runtime, j.nodes) for j in b
    ]
    assert generate(WeekParams(days=2, seed=6))[0].runtime != a[0].runtime or len(a) != len(
        generate(WeekParams(days=2, seed=6))
    )
    nightly = [j for j in a if j.priority == 1000]
    assert nightly and all((j.submit % 86400) >= 20 * 3600 for j in nightly)
    assert {j.nodes for j in a} == {1, 2, 3, 4}
    assert all(0 < j.runtime < 259200 for j in a)
    assert any(75 <= j.priority <= 150 for j in a)
    load = offered_load(a, {"smithi": 200, "mira": 100, "gibba": 40})
    assert load["smithi"] > 0.8


def test_generator_params_refuse_unknown_keys(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("generator:\n  seed: 1\n  dayz: 3\n")
    with pytest.raises(InputError, match="dayz"):
        load_params(path)


def test_swf_reader_applies_the_protocol_and_names_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "t.swf"
    path.write_text(
        "; MaxNodes: 8\n; MaxProcs: 16\n"
        "2 10 -1 50 4 -1 -1 6 -1 -1 1 3 1 -1 0 -1 -1 -1\n"  # max(4, 6) procs = 3 nodes
        "1 5 -1 -1 2 -1 -1 -1 100 -1 1 4 1 -1 0 -1 -1 -1\n"  # run -1 -> 10 s
        "3 20 -1 0 2 -1 -1 -1 -1 -1 1 3 1 -1 0 -1 -1 -1\n"  # run 0: dropped
    )
    trace = read_swf(path)
    assert trace.max_nodes == 8
    assert [(j.job_id, j.submit, j.runtime, j.nodes, j.estimate) for j in trace.jobs] == [
        ("1", 5.0, 10.0, 1, 100.0),
        ("2", 10.0, 50.0, 3, 50.0),
    ]
    lab_jobs = as_lab_jobs(window(trace, 0, 2), seed=1, priority=None, user_of={"1": 4, "2": 3})
    assert [j.owner for j in lab_jobs] == ["scheduled_user4@swf", "scheduled_user3@swf"]
    bad = tmp_path / "bad.swf"
    bad.write_text("; MaxNodes: 8\n1 2 3\n")
    with pytest.raises(InputError) as info:
        read_swf(bad)
    assert info.value.field == f"{bad}:2"
    with pytest.raises(InputError, match="MaxNodes"):
        (tmp_path / "nohdr.swf").write_text("1 5 -1 10 2 -1 -1 -1 100 -1 1 4 1 -1 0 -1 -1 -1\n")
        read_swf(tmp_path / "nohdr.swf")
    with pytest.raises(InputError, match="START:COUNT"):
        parse_window("12")
    with pytest.raises(InputError, match="outside"):
        window(trace, 1, 5)


def test_jobs_that_cannot_fit_the_lab_are_refused_by_name() -> None:
    load = parse_lines([json.dumps({"submit": 0, "runtime": 5, "body": BODY, "job_id": "big"})])
    check_fits(load.jobs, {"smithi": 2})
    with pytest.raises(InputError) as info:
        check_fits(load.jobs, {"smithi": 1, "mira": 1})
    assert info.value.field == "job big"


def test_snapshot_workload_keeps_running_jobs_on_their_nodes(tmp_path: Path) -> None:
    path = tmp_path / "snap.yaml"
    path.write_text(SNAPSHOT_YAML)
    load = read_snapshot(path)
    job = load.jobs[0]
    assert (job.job_id, job.submit, job.nodes) == ("7", -3600.0, 2)
    assert len(load.jobs) == 2
    (running,) = load.preload
    assert (running.start, running.end, running.nodes) == (-600.0, 600.0, ("smithi001",))
    with pytest.raises(InputError, match="runtime"):
        path.write_text(path.read_text().replace("  runtime: 600\n", ""))
        read_snapshot(path)

"""The seeded lab generator: deterministic, teuthology-shaped, Sepia-scale by default."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import FIXTURES, REPO

from optialloc.errors import InputError
from optialloc.snapshots.fixturegen import GenParams, generate, params_from_mapping
from optialloc.snapshots.io import load_snapshot, load_snapshot_document
from optialloc.teuthology import parse_job

RUN_NAME = re.compile(
    r"^[a-z0-9]+-\d{4}-\d{2}-\d{2}_\d{2}:\d{2}:\d{2}-[a-z-]+-[a-z]+-distro-default-[a-z]+$"
)
TEUTHOLOGY_BANDS = {10, 25, 40, 50, 75, 80, 90, 100, 110, 120, 125, 150, 200, 250, 500, 800, 1000}


@pytest.fixture(scope="module")
def sepia() -> object:
    return generate(GenParams())


def test_same_seed_same_lab_and_other_seed_other_lab() -> None:
    small = GenParams(scale=0.05)
    first, again = generate(small).snapshot, generate(small).snapshot
    assert first == again
    assert [dict(j.body) for j in first.queue] == [dict(j.body) for j in again.queue]
    assert generate(GenParams(scale=0.05, seed=2)).snapshot != first


def test_default_is_sepia_scale(sepia: object) -> None:
    snap = sepia.snapshot  # type: ignore[attr-defined]
    types = Counter(n.machine_type for n in snap.nodes)
    assert types == {"smithi": 200, "mira": 100, "gibba": 40}
    assert len(snap.queue) == 20000
    runs = {j.run for j in snap.queue} | {r.job.run for r in snap.running}
    assert 140 <= len(runs) <= 150
    owners = {j.owner for j in snap.queue}
    assert 40 <= len(owners) <= 50
    assert all(re.fullmatch(r"scheduled_[a-z0-9]+@teuthology", o) for o in owners)
    assert all(RUN_NAME.match(run) for run in runs), sorted(runs)[:3]


def test_jobs_look_like_teuthology_jobs(sepia: object) -> None:
    snap = sepia.snapshot  # type: ignore[attr-defined]
    needed = Counter(j.nodes_needed for j in snap.queue)
    assert set(needed) == {0, 1, 2, 3, 4} and needed[4] > 500
    assert {j.priority for j in snap.queue} <= TEUTHOLOGY_BANDS
    assert Counter(j.priority for j in snap.queue)[1000] > 5000, "nightlies at 1000 dominate"
    assert sum(1 for j in snap.queue if j.priority <= 150) > 1000, "PR and QE runs at 75-150"
    multi = [j for j in snap.queue if len(j.machine_types) > 1]
    assert multi and all(j.tube == "multi" for j in multi)
    assert all(j.tube == j.machine_types[0] for j in snap.queue if len(j.machine_types) == 1)
    assert sum(1 for j in snap.queue if j.os_type) > 10000
    for job in snap.queue[::97]:
        roles = job.body.get("roles", [])
        assert len(roles) == job.nodes_needed
        assert all(isinstance(node, list) and node for node in roles)
        assert "job_id" not in job.body  # teuthology uses the queue's id
        reparsed = parse_job(job.body, job_id=job.job_id, queued_at=job.queued_at, tube=job.tube)
        assert reparsed == job


def test_runs_end_with_last_in_suite_and_unstarted_runs_begin_with_first(sepia: object) -> None:
    snap = sepia.snapshot  # type: ignore[attr-defined]
    by_run: dict[str, list] = {}
    for job in snap.queue:
        by_run.setdefault(job.run, []).append(job)
    started = {r.job.run for r in snap.running}
    for run, jobs in by_run.items():
        assert jobs[-1].last_in_suite and jobs[-1].nodes_needed == 0, run
        assert sum(j.last_in_suite for j in jobs) == 1
        assert jobs[0].first_in_suite == (run not in started), run
        assert [j.queued_at for j in jobs] == sorted(j.queued_at for j in jobs)


def test_times_nodes_and_running_jobs_are_consistent(sepia: object) -> None:
    snap = sepia.snapshot  # type: ignore[attr-defined]
    times = [j.queued_at for j in snap.queue]
    assert max(times) <= snap.taken_at
    assert max(times) - min(times) > timedelta(days=3)
    names = {n.name: n for n in snap.nodes}
    held = [name for r in snap.running for name in r.nodes]
    assert len(held) == len(set(held)) and held
    for run in snap.running:
        assert run.job.queued_at <= run.started_at <= snap.taken_at
        assert len(run.nodes) == run.job.nodes_needed
        for name in run.nodes:
            assert names[name].locked and names[name].machine_type in run.job.machine_types
    people = [n for n in snap.nodes if n.locked and n.name not in set(held)]
    assert people and all(n.locked_by and not n.locked_by.startswith("optialloc") for n in people)
    assert any(not n.up for n in snap.nodes)
    runtimes = sepia.runtimes  # type: ignore[attr-defined]
    assert set(runtimes) == {j.job_id for j in snap.queue} | {r.job_id for r in snap.running}
    assert all(0 < s <= 259200 for s in runtimes.values())
    ids = [int(j.job_id) for j in snap.queue]
    assert len(set(ids)) == len(ids)


def test_scale_multiplies_the_lab() -> None:
    tenth = generate(GenParams(scale=0.1)).snapshot
    fifth = generate(GenParams(scale=0.2)).snapshot
    assert (len(tenth.queue), len(fifth.queue)) == (2000, 4000)
    assert (len(tenth.nodes), len(fifth.nodes)) == (34, 68)


def test_invalid_entries_carry_the_parsers_error() -> None:
    snap = generate(GenParams(scale=0.02, invalid_jobs=4)).snapshot
    assert len(snap.invalid) == 4
    assert {bad.error.split(":")[0] for bad in snap.invalid} == {
        "roles",
        "machine_type",
        "priority",
    }


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"seed": "x"}, "generator.seed"),
        ({"jobs": 1.5}, "generator.jobs"),
        ({"busy_fraction": 2}, "generator.busy_fraction"),
        ({"nodes": {"smithi": -1}}, "generator.nodes"),
        ({"taken_at": "soon"}, "generator.taken_at"),
        ({"machines": 3}, "generator.machines"),
    ],
)
def test_bad_parameters_name_the_key(data: dict, field: str) -> None:
    with pytest.raises(InputError) as caught:
        params_from_mapping(data, source="p.yaml")
    assert caught.value.field == f"p.yaml: {field}"


def test_committed_sepia_parameters_generate_the_sepia_lab() -> None:
    doc = load_snapshot_document(FIXTURES / "snapshots" / "sepia.gen.yaml")
    assert len(doc.snapshot.queue) == 20000 and len(doc.snapshot.invalid) == 3
    assert doc.snapshot == generate(GenParams(invalid_jobs=3)).snapshot


def test_make_fixture_script_writes_a_loadable_snapshot(tmp_path: Path) -> None:
    out = tmp_path / "lab.yaml"
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "make_fixture.py"),
            "--scale",
            "0.02",
            "--seed",
            "5",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "400 queued jobs" in done.stdout and " MB" in done.stdout
    assert out.read_text().startswith("# Generated by scripts/make_fixture.py")
    assert load_snapshot(out) == generate(GenParams(scale=0.02, seed=5)).snapshot
    bad = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "make_fixture.py"),
            "--params",
            str(tmp_path / "no.yaml"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 3 and "no.yaml" in bad.stderr

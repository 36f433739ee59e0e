"""Snapshot files: round trips, structural errors naming their path, invalid bodies kept."""

from __future__ import annotations

import copy
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import FIXTURES
from hypothesis import given, settings
from hypothesis import strategies as st

from optialloc.domain import InvalidJob
from optialloc.errors import ExitCode, InputError
from optialloc.snapshots.compact import MERGE, dump_compact, merge_common
from optialloc.snapshots.fixturegen import GenParams, generate
from optialloc.snapshots.io import (
    SnapshotFileError,
    dump_snapshot,
    load_snapshot,
    load_snapshot_document,
    snapshot_document_from_mapping,
    snapshot_from_mapping,
    snapshot_to_mapping,
)

SNAPSHOTS = FIXTURES / "snapshots"


def _body(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "yuri-2026-11-24_09:00:00-rados-main-distro-default-smithi",
        "owner": "scheduled_yuri@teuthology",
        "priority": 1000,
        "machine_type": "smithi",
        "roles": [["mon.a", "osd.0"], ["client.0"]],
    }
    body.update(extra)
    return body


def _snapshot_data() -> dict[str, Any]:
    return {
        "taken_at": "2026-11-24T18:00:00Z",
        "nodes": [
            {
                "name": "smithi001",
                "machine_type": "smithi",
                "locked": True,
                "locked_by": "optialloc@x",
            },
            {
                "name": "smithi002",
                "machine_type": "smithi",
                "locked": True,
                "locked_by": "optialloc@x",
            },
            {"name": "smithi003", "machine_type": "smithi", "locked": True, "locked_by": "adam@x"},
            {"name": "smithi004", "machine_type": "smithi", "up": False},
            {"name": "mira001", "machine_type": "mira", "os_type": "ubuntu", "os_version": "22.04"},
        ],
        "running": [
            {
                "job_id": "90",
                "started_at": "2026-11-24T17:00:00Z",
                "nodes": ["smithi001", "smithi002"],
                "body": _body(),
                "runtime": 3600,
            },
        ],
        "queue": [
            {
                "job_id": "101",
                "queued_at": "2026-11-24T09:00:00Z",
                "body": _body(),
                "runtime": 120.5,
            },
            {
                "job_id": "102",
                "queued_at": "2026-11-24T09:00:01Z",
                "tube": "multi",
                "priority": 50,
                "body": _body(machine_type="smithi,mira"),
            },
            {
                "job_id": "103",
                "queued_at": "2026-11-24T09:00:02Z",
                "body": "machine_type: mira\nroles: [[osd.0]]\nowner: me\nname: run-b\n",
            },
        ],
        "paused_tubes": ["mira"],
        "usage": {"scheduled_yuri@teuthology": 7200},
    }


def test_reads_every_part_of_the_documented_format() -> None:
    snap = snapshot_from_mapping(_snapshot_data(), "t.yaml")
    assert snap.taken_at == datetime(2026, 11, 24, 18, tzinfo=UTC)
    assert [n.name for n in snap.nodes] == [
        "smithi001",
        "smithi002",
        "smithi003",
        "smithi004",
        "mira001",
    ]
    assert [n.free for n in snap.nodes] == [False, False, False, False, True]
    assert [j.job_id for j in snap.queue] == ["101", "102", "103"]
    assert snap.queue[1].priority == 50 and snap.queue[1].tube == "multi"
    assert snap.queue[1].machine_types == ("smithi", "mira")
    assert snap.queue[2].machine_types == ("mira",) and snap.queue[2].nodes_needed == 1
    assert snap.running[0].nodes == ("smithi001", "smithi002")
    assert snap.running[0].job.nodes_needed == 2
    assert snap.paused_tubes == frozenset({"mira"})
    assert snap.usage == {"scheduled_yuri@teuthology": 7200.0}
    doc = snapshot_document_from_mapping(_snapshot_data(), "t.yaml")
    assert doc.runtimes == {"90": 3600.0, "101": 120.5}


def test_running_job_without_queued_at_or_timestamp_is_taken_as_queued_when_started() -> None:
    snap = snapshot_from_mapping(_snapshot_data())
    assert snap.running[0].job.queued_at == snap.running[0].started_at


def test_round_trip_through_a_file_gives_an_equal_snapshot(tmp_path: Path) -> None:
    doc = snapshot_document_from_mapping(_snapshot_data(), "t.yaml")
    path = tmp_path / "s.yaml"
    dump_snapshot(doc.snapshot, path, runtimes=doc.runtimes, header="a test\nsecond line")
    text = path.read_text()
    assert text.startswith("# a test\n# second line\n")
    again = load_snapshot_document(path)
    assert again.snapshot == doc.snapshot
    assert dict(again.snapshot.usage) == dict(doc.snapshot.usage)
    assert dict(again.runtimes) == dict(doc.runtimes)
    for before, after in zip(doc.snapshot.queue, again.snapshot.queue, strict=True):
        assert dict(after.body) == dict(before.body)


def test_round_trip_of_a_generated_lab_with_merged_bodies(tmp_path: Path) -> None:
    lab = generate(GenParams(seed=7, scale=0.05, jobs=20000, invalid_jobs=2))
    path = tmp_path / "gen.yaml"
    dump_snapshot(lab.snapshot, path, runtimes=lab.runtimes)
    assert "<<: &" in path.read_text(), "bodies of one run share their common keys"
    again = load_snapshot_document(path)
    assert again.snapshot == lab.snapshot
    assert len(again.snapshot.invalid) == 2
    assert dict(again.runtimes) == dict(lab.runtimes)
    assert [dict(j.body) for j in again.snapshot.queue] == [
        dict(j.body) for j in lab.snapshot.queue
    ]
    assert [dict(r.job.body) for r in again.snapshot.running] == [
        dict(r.job.body) for r in lab.snapshot.running
    ]


def test_to_mapping_writes_tube_and_priority_only_where_they_differ_from_the_body() -> None:
    data = snapshot_to_mapping(snapshot_from_mapping(_snapshot_data()))
    first, second, third = data["queue"]
    assert "priority" not in first and "tube" in first  # the body has no tube key
    assert second["priority"] == 50
    assert third["body"]["machine_type"] == "mira"


def test_an_unparseable_body_becomes_an_invalid_job_and_the_rest_is_kept() -> None:
    data = _snapshot_data()
    data["queue"].insert(
        1,
        {
            "job_id": "555",
            "queued_at": "2026-11-24T10:00:00Z",
            "tube": "smithi",
            "body": _body(roles="mon.a, osd.0"),
        },
    )
    data["queue"].append(
        {"job_id": "556", "queued_at": "2026-11-24T10:00:00Z", "body": ": not yaml: ["}
    )
    snap = snapshot_from_mapping(data)
    assert [j.job_id for j in snap.queue] == ["101", "102", "103"]
    assert snap.invalid == (
        InvalidJob(
            job_id="555",
            tube="smithi",
            error="roles: expected a list of lists (one per node), got str",
            queued_at=datetime(2026, 11, 24, 10, tzinfo=UTC),
        ),
        InvalidJob(
            job_id="556",
            tube="",
            error=snap.invalid[1].error,
            queued_at=datetime(2026, 11, 24, 10, tzinfo=UTC),
        ),
    )
    assert snap.invalid[1].error.startswith("body: not valid YAML")


def test_a_body_shared_by_aliases_is_parsed_once_but_each_entry_keeps_its_id_and_time() -> None:
    text = """
taken_at: 2026-11-24T18:00:00Z
nodes: [{name: s1, machine_type: smithi}]
queue:
- {job_id: '1', queued_at: '2026-11-24T10:00:00Z',
   body: &b {machine_type: smithi, roles: [[a]], owner: o}}
- {job_id: '2', queued_at: '2026-11-24T11:00:00Z', body: *b}
- {job_id: '3', queued_at: '2026-11-24T12:00:00Z', body: *b, priority: 7}
"""
    snap = snapshot_from_mapping(yaml.safe_load(text))
    assert [(j.job_id, j.queued_at.hour, j.priority) for j in snap.queue] == [
        ("1", 10, 1000),
        ("2", 11, 1000),
        ("3", 12, 7),
    ]


BROKEN: list[tuple[str, Any, str]] = [
    ("no taken_at", lambda d: d.pop("taken_at"), "taken_at"),
    ("bad taken_at", lambda d: d.update(taken_at="yesterday"), "taken_at"),
    ("node without name", lambda d: d["nodes"][4].pop("name"), "nodes[4].name"),
    ("node without type", lambda d: d["nodes"][4].pop("machine_type"), "nodes[4].machine_type"),
    ("node up not a bool", lambda d: d["nodes"][3].update(up="no"), "nodes[3].up"),
    (
        "duplicate node",
        lambda d: d["nodes"].append({"name": "mira001", "machine_type": "mira"}),
        "nodes[5].name",
    ),
    (
        "running on unknown node",
        lambda d: d["running"][0]["nodes"].append("smithi999"),
        "running[0].nodes",
    ),
    ("running node says unlocked", lambda d: d["nodes"][0].update(locked=False), "nodes[0].locked"),
    (
        "node in two running jobs",
        lambda d: d["running"].append(
            {
                "job_id": "91",
                "started_at": "2026-11-24T17:00:00Z",
                "nodes": ["smithi002"],
                "body": _body(),
            }
        ),
        "running[1].nodes[0]",
    ),
    (
        "running without started_at",
        lambda d: d["running"][0].pop("started_at"),
        "running[0].started_at",
    ),
    (
        "running body broken",
        lambda d: d["running"][0]["body"].update(priority="high"),
        "running[0].body.priority",
    ),
    ("duplicate job id", lambda d: d["queue"][2].update(job_id="101"), "queue[2].job_id"),
    ("job id also running", lambda d: d["queue"][0].update(job_id="90"), "queue[0].job_id"),
    ("queue entry without job id", lambda d: d["queue"][1].pop("job_id"), "queue[1].job_id"),
    ("bad queued_at", lambda d: d["queue"][1].update(queued_at="tuesday"), "queue[1].queued_at"),
    ("queue entry without body", lambda d: d["queue"][0].pop("body"), "queue[0].body"),
    (
        "priority override not an int",
        lambda d: d["queue"][0].update(priority="1"),
        "queue[0].priority",
    ),
    ("negative runtime", lambda d: d["queue"][0].update(runtime=-5), "queue[0].runtime"),
    ("queue not a list", lambda d: d.update(queue={"a": 1}), "queue"),
    ("queue entry not a mapping", lambda d: d["queue"].append("101"), "queue[3]"),
    ("paused tube not a name", lambda d: d.update(paused_tubes=[3]), "paused_tubes[0]"),
    ("usage negative", lambda d: d.update(usage={"me": -1}), "usage.me"),
]


@pytest.mark.parametrize(("case", "breaks", "path"), BROKEN, ids=[case for case, _, _ in BROKEN])
def test_structural_errors_name_their_path(case: str, breaks: Any, path: str) -> None:
    data = copy.deepcopy(_snapshot_data())
    breaks(data)
    with pytest.raises(SnapshotFileError) as caught:
        snapshot_from_mapping(data, "lab.yaml")
    error = caught.value
    assert error.field == path, case
    assert isinstance(error, InputError) and error.exit_code == ExitCode.BAD_INPUT
    message = str(error)
    assert message.startswith(f"lab.yaml: {path}: "), message
    assert len(error.problem) > 10  # says what is wrong, not just where


def test_not_a_mapping_and_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(SnapshotFileError, match="expected a mapping"):
        snapshot_from_mapping(["a"], "x.yaml")
    with pytest.raises(SnapshotFileError, match="no such file"):
        load_snapshot(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("taken_at: [unclosed\n")
    with pytest.raises(SnapshotFileError, match="not valid YAML"):
        load_snapshot(bad)


def test_unknown_keys_are_warned_about_once(caplog: pytest.LogCaptureFixture) -> None:
    data = _snapshot_data()
    for entry in data["queue"]:
        entry["queued-at"] = "typo"
    with caplog.at_level("WARNING"):
        snapshot_from_mapping(data, "w.yaml")
    warnings = [r.getMessage() for r in caplog.records if "queued-at" in r.getMessage()]
    assert len(warnings) == 1 and "unknown key" in warnings[0] and "w.yaml" in warnings[0]


def test_generator_parameters_file_is_generated(tmp_path: Path) -> None:
    path = tmp_path / "g.gen.yaml"
    path.write_text("generator: {seed: 3, scale: 0.02, jobs: 20000}\n")
    snap = load_snapshot(path)
    assert snap == generate(GenParams(seed=3, scale=0.02)).snapshot
    path.write_text("generator: {seed: 3, colour: blue}\n")
    with pytest.raises(InputError, match=r"generator\.colour"):
        load_snapshot(path)


@pytest.mark.parametrize("name", sorted(p.name for p in SNAPSHOTS.glob("*.yaml")))
def test_every_committed_fixture_loads_and_says_what_it_shows(name: str) -> None:
    path = SNAPSHOTS / name
    assert path.read_text().startswith("# "), (
        f"{name} needs a comment at the top saying what it shows"
    )
    snap = load_snapshot(path)
    assert snap.nodes and (snap.queue or snap.invalid)


def test_json_snapshot_round_trips_and_reports_bad_json(tmp_path: Path) -> None:
    data = _snapshot_data()
    data["queue"][0]["body"]["timestamp"] = datetime(2026, 11, 24, 9, 0, 0)  # as YAML loads it
    doc = snapshot_document_from_mapping(data, "t.yaml")
    path = tmp_path / "s.json"
    dump_snapshot(doc.snapshot, path, runtimes=doc.runtimes, header="ignored: JSON has no comments")
    again = load_snapshot_document(path)
    assert again.snapshot == doc.snapshot and dict(again.runtimes) == dict(doc.runtimes)
    assert again.snapshot.queue[0].body["timestamp"] == "2026-11-24T09:00:00"
    path.write_text('{"taken_at": ')
    with pytest.raises(SnapshotFileError, match="not valid JSON"):
        load_snapshot(path)


def test_merge_common_keeps_every_mapping_equal_after_a_yaml_round_trip() -> None:
    shared = {"tasks": [{"install": None}], "sha1": "abc"}
    bodies: list[dict[str, Any]] = [
        {"name": "r1", "owner": "o", **shared, "description": "a", "seed": 1},
        {"name": "r1", "owner": "o", **shared, "description": "b", "seed": 2},
        {"name": "r1", "owner": "p", **shared, "description": "c", "seed": 3},  # owner differs
        {"name": "r2", "owner": "o", "description": "alone"},  # a group of one
        {"name": "r3", "x": 1},
        {"name": "r3", "x": 2},  # a group with nothing in common but the group key's own value
    ]
    merged = merge_common(bodies, lambda b: b["name"])
    assert MERGE in merged[0] and MERGE not in merged[3]
    assert merged[0][MERGE] is merged[2][MERGE]  # one anchor per group
    assert "owner" not in merged[0][MERGE]
    text = dump_compact({"bodies": merged})
    assert text.count("<<: ") >= 3 and "'<<'" not in text
    assert yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))["bodies"] == bodies
    assert yaml.safe_load(text)["bodies"] == bodies


@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(min_value=0, max_value=100_000),
    scale=st.sampled_from([0.005, 0.01, 0.02]),
    busy=st.floats(min_value=0.0, max_value=1.0),
    suffix=st.sampled_from([".yaml", ".json"]),
)
def test_any_generated_lab_round_trips(seed: int, scale: float, busy: float, suffix: str) -> None:
    lab = generate(GenParams(seed=seed, scale=scale, busy_fraction=busy, invalid_jobs=seed % 3))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"lab{suffix}"
        dump_snapshot(lab.snapshot, path, runtimes=lab.runtimes)
        again = load_snapshot_document(path)
    assert again.snapshot == lab.snapshot
    assert dict(again.runtimes) == dict(lab.runtimes)
    assert [dict(j.body) for j in again.snapshot.queue] == [
        dict(j.body) for j in lab.snapshot.queue
    ]

"""optialloc.teuthology: real teuthology bodies parse unchanged; malformed ones name the field."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import yaml
from conftest import FIXTURES

from optialloc.errors import ExitCode, JobParseError
from optialloc.teuthology import (
    DEFAULT_PRIORITY,
    MAX_BODY_BYTES,
    MULTI_TUBE,
    dump_body,
    load_body,
    parse_job,
    parse_timestamp,
    split_machine_types,
    tube_for,
)

COMPAT = FIXTURES / "bodies" / "teuthology-compat.yaml"
QUEUED = datetime(2026, 11, 24, 18, 0, tzinfo=UTC)


def test_compat_body_parses_unchanged() -> None:
    raw = COMPAT.read_bytes()
    job = parse_job(raw, job_id=42, queued_at=QUEUED, tube="smithi")
    assert job.job_id == "42"
    assert job.nodes_needed == 2
    assert job.priority == 75
    assert job.owner == "scheduled_optialloc@test"
    assert job.run == "optialloc-compat-test"
    assert job.os_type == "ubuntu"
    assert job.os_version == "22.04"
    assert job.machine_types == ("smithi",)
    assert job.tube == "smithi"
    assert not job.first_in_suite and not job.last_in_suite
    assert job.description == "rados/basic/{clusters/fixed-2 tasks/rados_api}"
    # The body is carried through untouched for the runner.
    assert dict(job.body) == yaml.safe_load(raw)
    assert yaml.safe_load(dump_body(job.body)) == yaml.safe_load(raw)


def test_queue_priority_wins_over_body() -> None:
    job = parse_job(COMPAT.read_text(), job_id="1", queued_at=QUEUED, priority=10)
    assert job.priority == 10


def test_defaults_and_multi_types() -> None:
    job = parse_job({"machine_type": "smithi,mira\tgibba smithi"}, job_id="7", queued_at=QUEUED)
    assert job.machine_types == ("smithi", "mira", "gibba")
    assert job.tube == MULTI_TUBE
    assert job.priority == DEFAULT_PRIORITY
    assert job.nodes_needed == 0
    # No machine_type in the body: the tube it was put in.
    assert parse_job({}, job_id="8", queued_at=QUEUED, tube="mira").machine_types == ("mira",)


def test_timestamp_from_body_when_queue_gives_none() -> None:
    job = parse_job({"machine_type": "smithi", "timestamp": "2026-11-20_20:00:03"}, job_id="9")
    assert job.queued_at == datetime(2026, 11, 20, 20, 0, 3, tzinfo=UTC)
    assert parse_timestamp("2026-11-24T18:00:00Z", "t") == QUEUED


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("- just\n- a list\n", "body"),
        ("42\n", "body"),
        ("machine_type: smithi\npriority: high\n", "priority"),
        ("machine_type: smithi\npriority: 1.5\n", "priority"),
        ("machine_type: smithi\npriority: true\n", "priority"),
        ("machine_type: smithi\npriority: -1\n", "priority"),
        ("machine_type: smithi\nroles: mon.a\n", "roles"),
        ("machine_type: smithi\nroles: [[mon.a], osd.0]\n", "roles[1]"),
        ("machine_type: ''\n", "machine_type"),
        ("machine_type: ' , '\n", "machine_type"),
        ("machine_type: [smithi]\n", "machine_type"),
        ("machine_type: smithi\nlast_in_suite: maybe\n", "last_in_suite"),
        ("machine_type: smithi\nowner: [a, b]\n", "owner"),
        ("machine_type: smithi\n  roles: : [\n", "body"),
        ("{unclosed: [1, 2\n", "body"),
    ],
)
def test_malformed_bodies_name_the_field(body: str, field: str) -> None:
    with pytest.raises(JobParseError) as info:
        parse_job(body, job_id="1", queued_at=QUEUED, tube="smithi")
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    assert info.value.exit_code == ExitCode.BAD_INPUT


def test_missing_machine_type_in_multi_tube() -> None:
    with pytest.raises(JobParseError) as info:
        parse_job({"roles": [["a"]]}, job_id="1", queued_at=QUEUED, tube=MULTI_TUBE)
    assert info.value.field == "machine_type"


def test_huge_body_is_refused_before_parsing() -> None:
    huge = b"description: " + b"x" * (MAX_BODY_BYTES + 1)
    with pytest.raises(JobParseError) as info:
        load_body(huge)
    assert info.value.field == "body"
    assert "limit" in info.value.problem
    with pytest.raises(JobParseError):
        load_body(huge.decode())


def test_not_utf8_and_no_timestamp() -> None:
    with pytest.raises(JobParseError) as info:
        load_body(b"\xff\xfe bad")
    assert info.value.field == "body"
    with pytest.raises(JobParseError) as info:
        parse_job({"machine_type": "smithi"}, job_id="1")
    assert info.value.field == "timestamp"
    with pytest.raises(JobParseError) as info:
        parse_job({"machine_type": "smithi", "timestamp": "yesterday"}, job_id="1")
    assert info.value.field == "timestamp"


def test_split_and_tube_helpers() -> None:
    assert split_machine_types(" smithi ,mira,,smithi ") == ("smithi", "mira")
    assert tube_for("smithi") == "smithi"
    assert tube_for("smithi,mira") == MULTI_TUBE


def test_equal_scheduling_fields_share_one_object() -> None:
    """Jobs of one suite share their field objects: the per-tick passes over 20,000
    queued jobs then read a few objects, not 20,000 (CPU caches)."""
    texts = [
        f"name: run-{k % 2}\nowner: {'scheduled_teuthology@x' if k % 2 else 'alice'}\n"
        f"machine_type: smithi,mira\nos_type: ubuntu\nos_version: '22.04'\narch: x86_64\n"
        f"roles: [[mon.a]]\n"
        for k in range(4)
    ]
    at = datetime(2026, 11, 24, tzinfo=UTC)
    a, b, c, d = (parse_job(t.encode(), job_id=str(k), queued_at=at) for k, t in enumerate(texts))
    assert a.machine_types == ("smithi", "mira") and a.machine_types is c.machine_types
    assert a.machine_types is b.machine_types  # same list, other run
    assert a.run is c.run and b.run is d.run and a.run != b.run
    assert a.owner is c.owner and a.tube is b.tube and a.tube == "multi"
    assert a.os_type is d.os_type and a.os_version is b.os_version and a.arch is c.arch

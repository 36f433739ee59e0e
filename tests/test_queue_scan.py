"""The body scanner gives `parse_job` exactly what a full `yaml.safe_load` gives it, or passes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optialloc.errors import JobParseError
from optialloc.queue import scan as queue_scan
from optialloc.queue.scan import FIELDS, scan_fields
from optialloc.teuthology import parse_job

QUEUED = datetime(2026, 11, 24, 18, 0, tzinfo=UTC)

# Text that stresses YAML quoting: indicators, quotes, colons, comments, numbers-as-text,
# booleans-as-text, long text that safe_dump folds over lines, non-ASCII.
_tricky_text = st.one_of(
    st.text(
        alphabet=st.sampled_from([*"ab09 :#'\"-?[]{},&*!|>%@`\\/._~=\n", "é", "ü", "\xa0"]),
        max_size=40,
    ),
    st.sampled_from(
        [
            "",
            " ",
            "null",
            "~",
            "true",
            "No",
            "on",
            "0x1f",
            "0o17",
            "1_000",
            "1:20",
            "22.04",
            "8.10",
            ".inf",
            "-5",
            "+7",
            "2026-11-20",
            "2026-11-20 20:00:03",
            "2026-11-20_20:00:03",
            "smithi,mira",
            "smithi mira",
            "- x",
            "a: b",
            "a #b",
            "'quoted'",
            '"dq"',
            "x" * 120,
            "rados/thrash/{0-size-min-size-overrides/2-size-2-min-size 1-pg-log-overrides/"
            "normal_pg_log 2-recovery-overrides/{more-async-partial-recovery}}",
            "word " * 30,
        ]
    ),
)
_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 2**33),
    st.floats(allow_nan=False, width=32),
    _tricky_text,
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)),
)
_value = st.recursive(
    _scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(_tricky_text, inner, max_size=4),
    ),
    max_leaves=12,
)
_roles = st.one_of(
    st.lists(
        st.lists(st.sampled_from(["mon.a", "osd.0", "client.0", "'q'"]), max_size=3), max_size=5
    ),
    _value,
)
_field_values = {name: (_roles if name == "roles" else _value) for name in FIELDS}
_field_values.update(
    machine_type=st.one_of(st.sampled_from(["smithi", "smithi,mira", "mira gibba", ""]), _value),
    priority=st.one_of(st.integers(-1, 2**32), _value),
)
_body = st.fixed_dictionaries(
    {},
    optional={
        **_field_values,
        **{f"extra{i}": _value for i in range(4)},
        "overrides": _value,
        "tasks": _value,
    },
)


def outcome(mapping_or_fields: Any, tube: str) -> tuple[str, Any]:
    try:
        job = parse_job(mapping_or_fields, job_id="1", queued_at=QUEUED, tube=tube, priority=None)
    except JobParseError as exc:
        return ("error", str(exc))
    return ("job", job)


def check(text: str, tube: str = "smithi") -> dict[str, Any] | None:
    """Assert the scanner agrees with the full parse; returns what it scanned."""
    fields = scan_fields(text)
    if fields is None:
        return None
    full = yaml.safe_load(text)
    assert isinstance(full, dict), text
    assert fields.keys() == {k for k in full if k in FIELDS}, text
    assert outcome(fields, tube) == outcome(full, tube), text
    return fields


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_body, st.sampled_from(["smithi", "multi"]), st.sampled_from([80, 40, 1000]))
def test_scanned_fields_give_the_job_the_full_parse_gives(
    body: dict[str, Any], tube: str, width: int
) -> None:
    text = yaml.safe_dump(body, default_flow_style=False, width=width, allow_unicode=True)
    check(text, tube)


def test_teuthology_like_bodies_are_scanned_not_passed() -> None:
    body = {
        "description": "rados/thrash/{0-size-min-size-overrides/2-size-2-min-size "
        "1-pg-log-overrides/normal_pg_log 2-recovery-overrides/{more-async-partial-recovery}"
        " 3-scrub-overrides/{max-simultaneous-scrubs-3}}",
        "first_in_suite": False,
        "last_in_suite": False,
        "machine_type": "smithi",
        "name": "teuthology-2026-11-20_20:00:03-rados-main-distro-default-smithi",
        "os_type": "ubuntu",
        "os_version": "22.04",
        "owner": "scheduled_teuthology@teuthology",
        "priority": 200,
        "roles": [["mon.a", "osd.0"], ["osd.1", "client.0"], []],
        "timestamp": "2026-11-20_20:00:03",
        "overrides": {
            "ceph": {"log-ignorelist": ["\\(MDS_ALL_DOWN\\)", "it's " * 30], "sha1": "0" * 40},
        },
        "tasks": [{"install": None}, {"exec": {"client.0": ["echo 'a: b' # not a comment"]}}],
    }
    fields = check(yaml.safe_dump(body, default_flow_style=False))
    assert fields is not None
    assert fields["roles"] == [[], [], []]
    assert fields["description"] == body["description"]
    assert fields["os_version"] == "22.04"


@pytest.mark.parametrize(
    "text",
    [
        # quoted scalars (top-level or nested) that go on at column 0 and hide a key
        "a: 'x\npriority: 5'\nmachine_type: smithi\n",
        "a:\n  b: 'x\npriority: 5'\n",
        'a:\n  b: "x\npriority: 5"\n',
        "a:\n- 'x\npriority: 5'\n",
        "a:\n  b: [x,\npriority: 5]\n",
        "a:\n  'k\npriority: 5': v\n",
        # anchors, aliases, merge keys, tags
        "x: &p 5\npriority: *p\n",
        "<<: {priority: 5}\n",
        "priority: !!str 5\n",
        "priority: !!int '5'\n",
        # duplicates: the last one wins
        "priority: 5\npriority: 6\n",
        # flow style, block scalars, sequences where scalars are expected
        "{priority: 5, machine_type: smithi}\n",
        "roles: [[a], [b]]\n",
        "roles:\n  - - a\n",
        "roles:\n- a\n",
        "roles:\n-\n  - a\n",
        "description: |\n  text\n",
        "name:\n  foo\n",
        "owner:\n- a\n",
        # comments, documents, tabs, other line breaks
        "# c\npriority: 5\n",
        "---\npriority: 5\n",
        "priority: 5\n...\n",
        "priority:\t5\n",
        "name: a\r\npriority: 5\r\n",
        "name: a\u2028b\n",
        "description: 'a\n\n  b'\n",
        "description: a\n  # c\n  b\n",
        "name: a\n  b: c\n",
        'description: "a\\"b"\n',
    ],
)
def test_tricky_bodies_are_passed_or_agree(text: str) -> None:
    try:
        yaml.safe_load(text)
    except yaml.YAMLError:
        return  # invalid YAML: whatever is scanned, the full check at claim buries it
    check(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("priority: 0x10\nname: run\n", {"priority": 16, "name": "run"}),
        ("os_version: 8.10\n", {"os_version": 8.1}),
        (
            "first_in_suite: yes\nlast_in_suite: Off\n",
            {"first_in_suite": True, "last_in_suite": False},
        ),
        ("owner: ~\narch:\n", {"owner": None, "arch": None}),
        ("name: a b   # comment\n", {"name": "a b"}),
        ("description: 'it''s\n  folded  '\n", {"description": "it's folded  "}),
        ("description: plain\n  folded\n    text\n", {"description": "plain folded text"}),
        ("roles: []\nmachine_type: smithi\n", {"roles": [], "machine_type": "smithi"}),
        ("roles:\n- []\n- - a\n  - b\n", {"roles": [[], []]}),
        ("a:\n  b: 'x\n    y'\npriority: 5\n", {"priority": 5}),
    ],
)
def test_scalar_rules(text: str, expected: dict[str, Any]) -> None:
    assert check(text) == expected


_everyday_text = st.text(alphabet="abcz09-_./{}, ", min_size=1, max_size=120)
_everyday_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(0, 10**6), _everyday_text),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(_everyday_text, inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.fixed_dictionaries(
        {
            "machine_type": st.sampled_from(["smithi", "smithi,mira"]),
            "name": _everyday_text,
            "description": _everyday_text,
            "priority": st.integers(0, 1000),
            "roles": st.lists(
                st.lists(st.sampled_from(["mon.a", "osd.0"]), max_size=2), max_size=4
            ),
        },
        optional={"owner": _everyday_text, "os_version": st.sampled_from(["22.04", "9"])},
    ),
    st.dictionaries(st.sampled_from(["overrides", "tasks", "seed", "sha1"]), _everyday_value),
)
def test_everyday_teuthology_bodies_are_always_scanned(
    fields: dict[str, Any], extra: dict[str, Any]
) -> None:
    text = yaml.safe_dump({**extra, **fields}, default_flow_style=False)
    assert check(text) is not None, text


_fragment_lines = st.sampled_from(
    [
        "priority: 5",
        "priority: '7'",
        "priority:  0x1f  ",
        "name: a",
        "name: 'a",
        'name: "b',
        "  x: 'y",
        "  - 'z",
        "b'",
        'c"',
        "  k: v",
        "roles:",
        "- - a",
        "- []",
        "  - b",
        "- a",
        "description: x",
        "  y",
        "machine_type: smithi",
        "owner: ~",
        "  'q': 'r'",
        "",
        "extra: [a,",
        "  b]",
        "x: |",
        "  'text",
        "a: &x 1",
        "owner: *x",
        "os_type: 'it''s",
        "  more'",
        "  # c",
        "arch: 'a' # c",
        "first_in_suite: yes",
        'k: "a\\"',
        "timestamp: 2026-11-20 20:00:03",
    ]
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_fragment_lines, min_size=1, max_size=10))
def test_hand_made_fragments_are_passed_or_agree(lines: list[str]) -> None:
    text = "\n".join(lines) + "\n"
    try:
        full = yaml.safe_load(text)
    except yaml.YAMLError:
        return  # not YAML: the full check at claim or in the background buries it
    if isinstance(full, dict):
        check(text)
    else:
        assert scan_fields(text) is None


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="\n -'\"[{a:#", max_size=60))
def test_nested_spanner_lines_are_the_lines_the_regex_finds(text: str) -> None:
    # `_nested_spanner_lines` replaced `_SPAN_NESTED.finditer` for speed: same lines, in order.
    lined = "\n" + text
    expected = [match.start() + 1 for match in queue_scan._SPAN_NESTED.finditer(lined)]
    assert queue_scan._nested_spanner_lines(lined) == expected


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="\n -ab:", max_size=40))
def test_one_line_group_is_the_next_top_level_line_test(text: str) -> None:
    # `_WANTED`'s third group stands for "at the end, or `_NEXT_TOP` matches at the line end".
    lined = "\nowner:" + text
    for found in queue_scan._WANTED.finditer(lined):
        end = found.end()
        one_line = end == len(lined) or queue_scan._NEXT_TOP.match(lined, end) is not None
        assert (found.group(3) is not None) == one_line


def test_cached_values_are_never_shared_mutable_objects() -> None:
    text = "owner: []\nname: {}\nroles: []\nos_type: ubuntu\n"
    first, second = scan_fields(text), scan_fields(text)
    assert first is not None and second is not None
    assert first == second == {"owner": [], "name": {}, "roles": [], "os_type": "ubuntu"}
    for key in ("owner", "name", "roles"):
        assert first[key] is not second[key]

"""Issue 16: the fast body scanner agrees with `yaml.safe_load` or defers, on hostile bodies.

Generated bodies mix the scheduling fields with aliases and anchors, tags
(also unsafe ones), lone surrogates (escaped and raw), NUL, ESC and other
control characters, newlines inside quotes, merge keys, huge and odd numbers,
and small alias bombs. For each one:

- the scanner (`scan_fields`) either passes (None) or returns exactly the
  fields `yaml.safe_load` gives, with the same `parse_job` outcome;
- the ingest check (`scan_body`, what a big batch stores) never raises, and
  whenever the full check (`check_body`) accepts a body, the scanned job is
  the fully parsed one; whenever it refuses it, so does the claim (the row
  is buried before any dispatch: `QueueStore.check_rows`).
"""

from __future__ import annotations

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_queue_scan import check

from optialloc.queue.body import check_body, scan_body
from optialloc.queue.scan import FIELDS

_HOSTILE_VALUES = [
    "run-a",
    "teuthology-2026-12-01_20:00:03-rados-main-distro-default-smithi",
    '"run-\\ud800-x"',
    '"me\\udfff"',
    '"a\\0b"',
    '"\\e[31mred"',
    '"line\\nbreak"',
    "'a\x1bb'",
    "a\x00b",
    "a\x07b",
    "\ud800",
    "&a run-a",
    "*a",
    "&r [x]",
    "!!str 5",
    "!!int '7'",
    "!!float 1",
    "!!python/object/apply:os.system ['true']",
    "!custom x",
    "12846523",
    "4294967295",
    "4294967296",
    "1" + "0" * 40,
    "-1",
    "1e400",
    ".nan",
    "0x" + "f" * 20,
    "0o777",
    "1_000",
    "2026-11-20 20:00:03",
    "2026-13-45",
    "[a, b]",
    "[[a], [b]]",
    "{a: 1}",
    "[]",
    "|\n  block",
    "'multi\n  line'",
    '"multi\n  line"',
    "",
    "~",
    "yes",
]
_EXTRA_LINES = [
    "x: &a [1, 2]",
    "y: *a",
    "base: &b {priority: 5}",
    "<<: *b",
    "merged:\n  <<: *b",
    "z: !!binary aGk=",
    "anchor: &n name",
    "bomb0: &l0 [q, q, q, q, q, q, q, q, q, q]\nbomb1: &l1 [*l0, *l0, *l0, *l0, *l0, *l0]",
    "tasks:\n- install: null\n- ceph: {a: 1}",
    "overrides:\n  ceph:\n    conf: 'x'",
    "  indented: 1",
    "- item",
    "k: 'open",
    "---",
    "%YAML 1.1",
    "# comment",
    "odd\ttab: 1",
]

_line = st.one_of(
    st.tuples(st.sampled_from(sorted(FIELDS)), st.sampled_from(_HOSTILE_VALUES)).map(
        lambda kv: f"{kv[0]}: {kv[1]}" if kv[1] else f"{kv[0]}:"
    ),
    st.sampled_from(_EXTRA_LINES),
    st.text(
        alphabet=st.sampled_from([*"ab:- '\"&*!#[]{}\n", "\x00", "\x1b", "\ud800"]), max_size=12
    ),
)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_line, min_size=1, max_size=10))
def test_hostile_bodies_scan_as_safe_load_reads_them_or_defer(lines: list[str]) -> None:
    text = "\n".join(lines) + "\n"
    try:
        full = yaml.safe_load(text)
    except Exception:
        full = None
    if isinstance(full, dict):
        check(text)
    # The ingest check never raises, whatever the text.
    scanned = scan_body(text, tube="smithi", priority=100, queued_at=1.7e9)
    checked = check_body(text, tube="smithi", priority=100, queued_at=1.7e9)
    if checked.error is None:
        assert scanned.error is None, (text, scanned.error)
        assert (scanned.run, scanned.owner, scanned.nodes) == (
            checked.run,
            checked.owner,
            checked.nodes,
        ), text
        if scanned.job is not None:
            assert scanned.fields_json == checked.fields_json or not scanned.full, text
    elif scanned.error is None:
        assert not scanned.full, text  # only scanned: the full check buries it before a claim


def test_unsafe_tags_are_never_constructed() -> None:
    text = "name: !!python/object/apply:os.system ['touch /tmp/optialloc-pwned']\n"
    checked = check_body(text, tube="smithi", priority=100, queued_at=1.7e9)
    assert checked.error is not None and "body" in checked.error

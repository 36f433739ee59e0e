"""The fast body loader must give exactly what `yaml.safe_load` gives, or fail where it fails."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import yaml
from conftest import FIXTURES
from hypothesis import given, settings
from hypothesis import strategies as st

from optialloc.queue import fast_yaml as queue_yaml

# Strings YAML 1.1 would read as something else when plain: bools, nulls, numbers, dates, ...
TRICKY = [
    "yes",
    "No",
    "on",
    "OFF",
    "~",
    "null",
    "",
    "1e3",
    "0x1F",
    "0o17",
    "017",
    "1_000",
    "190:20:30",
    ".inf",
    "-.Inf",
    ".NaN",
    "2001-12-14",
    "2001-12-14t21:59:43.10-05:00",
    "=",
    "<<",
    ":",
    "- a",
    "#x",
    "'q'",
    "a: b",
    "0b101",
    "+12",
    "3.",
    "y",
    "n",
]

# Bits of YAML syntax to glue into random (mostly invalid) documents.
SYNTAX = [
    "a",
    "[",
    "]",
    "{",
    "}",
    ",",
    ": ",
    "\n",
    "  ",
    "- ",
    "&x ",
    "*x",
    "!!str ",
    "!!int ",
    "? ",
]
SYNTAX += ["|", ">", '"']

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.sampled_from(TRICKY),
    st.dates(),
    st.datetimes(timezones=st.just(dt.UTC)),
)
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.one_of(st.text(max_size=8), st.sampled_from(TRICKY), st.integers()),
            inner,
            max_size=4,
        ),
    ),
    max_leaves=30,
)


def libyaml_load(text: str) -> Any:
    return yaml.load(text, Loader=yaml.CSafeLoader)


def same(text: str, reference: Any = yaml.safe_load) -> None:
    """The fast loader gives what `reference` gives, or raises the same error type."""
    try:
        expected: Any = reference(text)
    except Exception as exc:  # the fast loader must fail the same way
        with pytest.raises(type(exc)):
            queue_yaml.load(text)
        return
    # repr: stricter than == (1, 1.0 and True differ; key order counts), NaN and cycles work.
    assert repr(queue_yaml.load(text)) == repr(expected)


@settings(max_examples=300, deadline=None)
@given(documents, st.booleans())
def test_round_trips_of_any_document_match_safe_load(doc: Any, flow: bool) -> None:
    same(yaml.safe_dump(doc, default_flow_style=flow))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from([*TRICKY, *SYNTAX]),
        max_size=12,
    )
)
def test_random_fragments_match_libyaml(parts: list[str]) -> None:
    # libyaml accepts a few malformed documents the pure-Python scanner refuses (`|#x`):
    # on arbitrary text the reference is libyaml, as it was before this loader.
    same("".join(parts), libyaml_load)


@pytest.mark.parametrize(
    "text",
    [
        "base: &b {a: 1, b: [x, y]}\nuse: *b\nmerged:\n  <<: *b\n  c: 3\n",  # anchors and merge
        "a: !!str 123\nb: !!int '7'\nc: !!float 1\nd: !!binary aGVsbG8=\n",
        "e: !!timestamp 2001-12-14\nf: 2001-12-14 21:59:43.10 -5\ng: 2001-13-45\n",
        "s: !!set {a, b}\no: !!omap [{a: 1}, {b: 2}]\np: !!pairs [{a: 1}]\n",
        "? [1, 2]\n: complex key\n",
        "a: &x [1, *x]\n",  # recursive: handled by the stock loader
        "v: =\n",  # the `value` tag: no safe constructor, same error
        "x: !custom 1\n",
        "dup: 1\ndup: 2\n",
        "",
        "--- 1\n--- 2\n",
        "- &a [x]\n- *a\n- *a\n",
    ],
)
def test_hand_written_corner_cases(text: str) -> None:
    same(text)


def test_aliases_are_shared_not_copied() -> None:
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
    data = queue_yaml.load("\n".join(levels) + "\n")  # 10**8 leaves if expanded
    assert data["a7"][0] is data["a7"][1]


def test_fixture_bodies_match() -> None:
    for path in sorted((FIXTURES / "bodies").glob("*.yaml")):
        same(path.read_text())

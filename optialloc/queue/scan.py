"""Read a job body's scheduling fields without parsing the whole YAML document.

Parsing 20,000 teuthology bodies with libyaml costs seconds; the scheduler
reads a dozen top-level fields of each. teuthology writes bodies with
`yaml.safe_dump` (block style, one top-level key per line at column 0), so
those fields can be read from the text directly: `scan_fields(text)` returns
the values of `FIELDS` present in the body, exactly as `yaml.safe_load` would
give them (scalars resolved with PyYAML's own implicit resolver and safe
constructors; `roles` as one empty list per node, since only its length and
shape matter), or None when the text has anything it does not fully
understand (flow collections, anchors, aliases, tags, block scalars or
sequences in those fields, duplicate keys, tabs, document markers, a quoted
scalar it cannot follow, ...). None means "parse it fully"; a wrong answer is
not allowed. `tests/test_queue_scan.py` checks that `parse_job` on the scanned
fields equals `parse_job` on `yaml.safe_load(text)` for generated and tricky
bodies.

The scan says nothing about the rest of the body: whether the whole text is
valid YAML is checked later (see `queue_body` and docs/queue.md).
"""

from __future__ import annotations

import functools
import re
from typing import Any

import yaml
from yaml.nodes import ScalarNode

#: The top-level fields `optialloc.teuthology.parse_job` reads.
FIELDS = frozenset(
    (
        "machine_type",
        "roles",
        "priority",
        "owner",
        "name",
        "os_type",
        "os_version",
        "arch",
        "first_in_suite",
        "last_in_suite",
        "description",
        "timestamp",
    )
)

# Text the scanner leaves to the full parser: tabs, other line breaks, a BOM,
# characters YAML refuses, directives and document markers.
_UNUSUAL = re.compile(
    "[\t\r\x85\u2028\u2029\ufeff\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff\ufffe\uffff]"
)
_KEY = re.compile(r"([A-Za-z0-9_][A-Za-z0-9_./-]*):(?: +(.*))?$")
# Characters that may start something spanning lines (quoted scalars, flow collections).
_SPANNERS = re.compile("['\"\\[{]")
# Top-level values of other keys that cannot hide a line at column 0: empty collections,
# block scalar headers (their content is indented).
_HARMLESS = re.compile(r"(?:\[\]|\{\}|[|>][-+1-9]{0,2}) *$")
# Nested or sequence-item lines that may open something spanning lines (the definition;
# `_nested_spanner_lines` finds the same lines faster, tests compare the two).
_SPAN_NESTED = re.compile("\n[ -][^\n'\"\\[{]*['\"\\[{]")
# A top-level line that is not `key: simple one-line value` (or blank, or nested, or an item).
_BAD_TOP = re.compile(
    r"\n(?![ \n]|\Z|-(?: |$)|[A-Za-z0-9_][A-Za-z0-9_./-]*:(?:$| +(?:"
    r"[^'\"&*!?{\[|>\s#][^\n]*"
    r"|'[^'\n]*(?:''[^'\n]*)*' *(?:#[^\n]*)?"
    r"|\"[^\"\\\n]*\" *(?:#[^\n]*)?"
    r"|(?:\[\]|\{\}|[|>][-+1-9]{0,2}|) *"
    r")$))",
    re.M,
)
# A nested line whose only quoted scalar is one closed on the line: `  key: 'value'`.
_CLOSED_QUOTE = re.compile(r" +(?:- )*(?:[A-Za-z0-9_][^'\"\[{\n#:]*: +)?'[^'\n]*' *$", re.M)
# The start of the next top-level line (a key; not an item, not nested, not blank).
_NEXT_TOP = re.compile(r"\n(?:[^ \n-]|-[^ \n])")
# A wanted field's key line, with the value on it (`_BAD_TOP` has vetted every key line).
# Its third group is "" (not None) when the value is all on that line (what follows is the
# next top-level line, or the end): one regex step instead of a `_NEXT_TOP` match per field.
_WANTED = re.compile(
    "\n(" + "|".join(sorted(FIELDS)) + r"):(?: +([^\n]*))?(?=\n|\Z)"
    r"((?=\n(?:[^ \n-]|-[^ \n])|\Z))?"
)
# A plain scalar may not start with these (PyYAML's check_plain, kept stricter).
_PLAIN_START = frozenset("-?:,[]{}#&*!|>'\"%@`")
# A value starting with these is not something this scanner follows.
_NODE_PROPERTY = frozenset("&*!?{[|>")

_resolvers = yaml.resolver.Resolver.yaml_implicit_resolvers
_constructor = yaml.constructor.SafeConstructor()
_STR = "tag:yaml.org,2002:str"


class _Unsure(Exception):
    """The text needs the full parser."""


class _Spanning(Exception):
    """A quoted scalar may span lines outside the wanted fields: scan line by line."""


@functools.lru_cache(maxsize=4096)
def _resolve_plain(value: str) -> Any:
    """A plain scalar as `yaml.safe_load` builds it (implicit tag, then safe constructor)."""
    candidates = (*_resolvers.get(value[0] if value else "", ()), *_resolvers.get(None, ()))
    tag = next((tag for tag, regexp in candidates if regexp.match(value)), _STR)
    if tag == _STR:
        return value
    return _constructor.yaml_constructors[tag](_constructor, ScalarNode(tag, value))


def _close(line: str, start: int, quote: str) -> int:
    """Index just past the quote closing a scalar opened before `start`, or -1 if still open."""
    i = start
    if quote == "'":
        while True:
            j = line.find("'", i)
            if j < 0:
                return -1
            if line.startswith("'", j + 1):  # '' is an escaped quote
                i = j + 2
                continue
            return j + 1
    while True:
        j = line.find('"', i)
        k = line.find("\\", i)
        if j < 0:
            return -1
        if 0 <= k < j:
            i = k + 2
            continue
        return j + 1


def _rest_is_blank(line: str, i: int) -> bool:
    """Only spaces or a comment follow position `i` (PyYAML takes `'x'#c` as a comment too)."""
    rest = line[i:].lstrip(" ")
    return not rest or rest[0] == "#"


def _opens_quote(line: str) -> str | None:
    """The quote of a quoted scalar left open at the end of `line` (a line of nested content).

    Raises `_Unsure` for anything that could span lines in ways not followed here.
    """
    i = len(line) - len(line.lstrip(" "))
    while i < len(line):
        if line.startswith("- ", i):
            i += 2
            while line.startswith(" ", i):
                i += 1
            continue
        ch = line[i]
        if ch in "'\"":
            end = _close(line, i + 1, ch)
            if end < 0:
                return ch
            rest = line[end:].lstrip(" ")
            if rest.startswith(":") and (len(rest) == 1 or rest[1] == " "):
                i = len(line) - len(rest) + 1  # it was a quoted key: a value may follow
                while line.startswith(" ", i):
                    i += 1
                continue
            if rest and not rest.startswith("#"):
                raise _Unsure
            return None
        if ch in _NODE_PROPERTY:
            if line[i:].rstrip(" ") in ("[]", "{}"):
                return None
            raise _Unsure  # anchors, tags, flow collections, block scalars: not followed here
        colon = line.find(": ", i)
        if colon < 0 or " #" in line[i:colon] or ch == "#":
            return None  # a plain scalar (or a comment): quotes inside it are just text
        i = colon + 2
        while line.startswith(" ", i):
            i += 1
    return None


def _fold(first: str, more: list[str]) -> str:
    """Join a multi-line flow scalar's lines as YAML folds them (no blank lines here)."""
    if not more:
        return first
    parts = [first.rstrip(" ")]
    parts += [m.strip(" ") for m in more[:-1]]
    parts.append(more[-1].lstrip(" "))
    return " ".join(parts)


def _plain(first: str, more: list[str]) -> Any:
    """A plain scalar value from the key line's text and its continuation lines."""
    if first[0] in _PLAIN_START and not (first[0] == "-" and len(first) > 1 and first[1] != " "):
        raise _Unsure
    if not more and " #" not in first and ": " not in first:
        value = first.rstrip(" ")
        if not value.endswith(":"):
            return _resolve_plain(value)
    pieces: list[str] = []
    for index, piece in enumerate([first, *more]):
        cut = piece.find(" #")
        if cut >= 0:
            if more:
                raise _Unsure  # a comment inside a multi-line scalar ends it: leave it
            piece = piece[:cut]
        piece = piece.strip(" ")
        if not piece or ": " in piece or piece.endswith(":") or piece.startswith("#"):
            raise _Unsure
        if index and piece[0] in _PLAIN_START:
            raise _Unsure
        pieces.append(piece)
    return _resolve_plain(" ".join(pieces))


def _value(key: str, text: str, more: list[str], items: list[str]) -> Any:
    """The value of a wanted field: `text` after `key: `, its continuation lines and `- ` items."""
    if key == "roles":
        if more:
            raise _Unsure
        if not text:
            if not items:
                return None
            nodes: list[list[str]] = []
            for item in items:
                inner = item[2:].rstrip(" ")
                if not (inner.startswith("- ") or inner == "[]"):
                    raise _Unsure  # not a list per node: parse_job will say why
                nodes.append([])
            return nodes
        if items or text.rstrip(" ") != "[]":
            raise _Unsure
        return []
    if items:
        raise _Unsure
    if not text:
        if more:
            raise _Unsure
        return None
    quote = text[0]
    if quote in "'\"":
        # The whole scalar: opening line and continuation lines up to the closing quote.
        lines = [text, *more]
        if any(not m.strip(" ") for m in more):
            raise _Unsure  # blank lines are newlines in flow scalars: leave them to YAML
        body = "\n".join(lines)
        end = _close(body, 1, quote)
        if end < 0 or not _rest_is_blank(body, end) or "\n" in body[end:]:
            raise _Unsure
        inner = body[1 : end - 1]
        if quote == '"':
            if "\\" in inner:
                raise _Unsure
        else:
            inner = inner.replace("''", "'")
        parts = inner.split("\n")
        return _fold(parts[0], parts[1:])
    if quote in "[{":
        stripped = text.rstrip(" ")
        if stripped == "[]":
            return []
        if stripped == "{}":
            return {}
        raise _Unsure
    if quote in _NODE_PROPERTY:
        raise _Unsure
    return _plain(text, more)


def _nested_spanner_lines(lined: str) -> list[int]:
    """Start of each nested or item line with a spanner: where `_SPAN_NESTED` matches, + 1.

    Found from the (few) spanner characters rather than by a regex stepping
    through every nested line, which costs several times more per body.
    """
    starts: list[int] = []
    last = -1
    for match in _SPANNERS.finditer(lined):
        start = lined.rfind("\n", 0, match.start()) + 1
        if start != last and lined[start] in " -":
            starts.append(start)
        last = start
    return starts


@functools.lru_cache(maxsize=8192)
def _one_line(key: str, text: str) -> Any:
    """`_value` of a field whose value is all on its key line, cached on the raw text.

    Owner, name, machine type, OS, priority, ... repeat across a run's jobs;
    the cache is exact (the value depends on nothing else). Only for values
    that are immutable: callers build roles, `[]` and `{}` afresh with `_value`.
    """
    return _value(key, text, [], [])


def _scan_fast(text: str) -> dict[str, Any]:
    """`_scan_lines` for bodies whose other lines are all simple, found with a few regexes.

    Raises `_Spanning` when a line may be part of something spanning lines, or
    is not a plain `key: simple value` line at column 0: then `_scan_lines`
    follows the text line by line.
    """
    lined = "\n" + text
    if _BAD_TOP.search(lined):
        raise _Spanning
    for start in _nested_spanner_lines(lined):
        if _CLOSED_QUOTE.match(lined, start):
            continue
        end = lined.find("\n", start)
        if _opens_quote(lined[start : end if end >= 0 else None]):
            raise _Spanning
    fields: dict[str, Any] = {}
    for found in _WANTED.finditer(lined):
        name, value, one_line = found.groups()
        if name in fields:
            raise _Unsure  # a duplicate key: the last one wins in YAML; leave it to YAML
        if one_line is not None:  # a one-line value (most of them)
            value = value or ""
            if name == "roles" or value[:1] in ("[", "{"):
                fields[name] = _value(name, value, [], [])  # mutable: never shared
            else:
                fields[name] = _one_line(name, value)
            continue
        value = value or ""
        line_end = found.end()
        following = _NEXT_TOP.search(lined, line_end)
        block = lined[line_end + 1 : following.start() if following else None].split("\n")
        while block and not block[-1]:
            block.pop()
        if "" in block:
            raise _Unsure  # a blank line inside a wanted value
        if name == "roles":
            if block and block[0][0] == " ":
                raise _Unsure  # an indented block under roles: leave it to YAML
            more, items = [], [line for line in block if line[0] == "-"]
        else:
            more = [line for line in block if line[0] == " "]
            items = [line for line in block if line[0] == "-"]
        fields[name] = _value(name, value, more, items)
    return fields


def _scan_lines(text: str) -> dict[str, Any]:
    """The scan, following quoted scalars line by line wherever they are."""
    fields: dict[str, Any] = {}
    seen: set[str] = set()
    key: str | None = None  # the wanted field whose lines are being collected
    first = ""
    more: list[str] = []
    items: list[str] = []
    open_quote: str | None = None  # inside a quoted scalar that spans lines
    lines = text.split("\n")
    if not lines[-1]:
        lines.pop()  # the final line break
    for line in lines:
        if open_quote is not None:
            if line[:1] != " ":
                raise _Unsure  # a quoted scalar going on at column 0: leave it to YAML
            if key is not None:
                more.append(line)
            end = _close(line, 0, open_quote)
            if end >= 0:
                open_quote = None
                if not _rest_is_blank(line, end):
                    raise _Unsure
            continue
        if not line:
            if key is not None and (more or items):
                raise _Unsure  # a blank line inside a wanted value
            continue
        if line[0] == " ":
            if key == "roles":
                if not items:
                    raise _Unsure  # an indented block under roles: leave it to YAML
            elif key is not None:
                more.append(line)
                continue
            if _SPANNERS.search(line):
                open_quote = _opens_quote(line)
                if key is not None and open_quote is not None:
                    raise _Unsure
            continue
        if line.startswith("- ") or line == "-":
            if key is not None:
                items.append(line)
            if _SPANNERS.search(line):
                open_quote = _opens_quote(line)
                if key is not None and open_quote is not None:
                    raise _Unsure
            continue
        if key is not None:
            fields[key] = _value(key, first, more, items)
            key = None
        match = _KEY.match(line)
        if match is None:
            raise _Unsure
        name, value = match.group(1), match.group(2) or ""
        if name in seen:
            raise _Unsure  # duplicate keys: the last one wins in YAML; leave it to YAML
        seen.add(name)
        if name in FIELDS:
            key, first, more, items = name, value, [], []
            if value and value[0] in "'\"" and _close(value, 1, value[0]) < 0:
                open_quote = value[0]
        elif value and value[0] in "'\"":
            end = _close(value, 1, value[0])
            if end < 0:
                open_quote = value[0]
            elif not _rest_is_blank(value, end):
                raise _Unsure
        elif value[:1] in _NODE_PROPERTY and not _HARMLESS.match(value):
            raise _Unsure
    if open_quote is not None:
        raise _Unsure
    if key is not None:
        fields[key] = _value(key, first, more, items)
    return fields


def scan_fields(text: str) -> dict[str, Any] | None:
    """The `FIELDS` present in a `yaml.safe_dump`-style body, as `yaml.safe_load` gives them.

    None when the scanner is not sure: then the body must be parsed fully.
    Valid only if the whole text is valid YAML; that is checked separately.
    """
    if (
        not text
        or text[0] in " -#%.\n"  # a mapping starts with a key line (else: not a mapping)
        or _UNUSUAL.search(text)
        # Document markers and directives after the first line ("\n---", "\n...", "\n%")
        # are not key lines: `_BAD_TOP` sends them to `_scan_lines`, which passes them on.
    ):
        return None
    try:
        try:
            return _scan_fast(text)
        except _Spanning:
            return _scan_lines(text)
    except (_Unsure, yaml.YAMLError, ValueError, TypeError, KeyError):
        return None

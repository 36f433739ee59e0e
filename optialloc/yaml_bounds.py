"""Bounds on a job body's YAML, checked before anything is built from it.

A body is user input put in a shared queue; one body must never cost the
dispatcher more than a bounded amount of memory and CPU, nor crash it:

- nesting: libyaml's composer recurses once per level and overflows the C
  stack (a segfault, not an exception) near 100,000 levels; 10,000 levels
  already cost a second. `check_nesting` counts the levels from libyaml's
  event stream (an iterative parser: safe at any depth), but only when a
  cheap look at the text says the body could be that deep.
- aliases: YAML aliases share one node, so 500 bytes can describe 10**8
  leaves ("billion laughs"). PyYAML builds them shared, but anything that
  walks the result (JSON, the runner's `orig.config.yaml`) expands them.
  `check_graph` measures the expanded size and depth of the composed node
  graph, memoised per node (linear in the text), and refuses recursive aliases.
- text: a lone surrogate (`"\\ud800"` is valid YAML) cannot be encoded as
  UTF-8, so SQLite, JSON files and the file system all refuse it later, far
  from the body. `check_graph` refuses it in any key or value.

Every refusal is a `JobParseError` naming the field ("body" or the key whose
value is bad) and the limit: the queue buries that one body with the reason.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from optialloc.errors import JobParseError

#: Most collection levels a body may nest (teuthology bodies have about 8).
MAX_DEPTH = 64
#: Most nodes a body may hold once its aliases are expanded (teuthology bodies: a few
#: hundred to a few thousand; the 1 MiB body limit bounds bodies without aliases).
MAX_NODES = 200_000

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SURROGATE = re.compile("[\ud800-\udfff]")
# Characters that may open a level: flow brackets, block sequence dashes, `?` keys.
_OPENERS = re.compile(r"[\[{]")
_INDENT = re.compile(r"^[ \-?:]*", re.M)


def _may_be_deep(text: str) -> bool:
    """False when the text cannot nest past `MAX_DEPTH` (cheap, conservative).

    Each flow level needs an opening bracket and each block level at least one
    more column of indentation (or a `- `/`? ` on the line), so the sum of the
    bracket count and the widest line prefix bounds the depth.
    """
    brackets = len(_OPENERS.findall(text))
    if brackets <= MAX_DEPTH // 2:
        widest = max((len(m) for m in _INDENT.findall(text)), default=0)
        return brackets + widest > MAX_DEPTH
    return True


def check_nesting(text: str) -> None:
    """Refuse a body nested deeper than `MAX_DEPTH` before it is composed."""
    if not _may_be_deep(text):
        return
    depth = 0
    try:
        for event in yaml.parse(text, Loader=_Loader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    raise JobParseError(
                        "body",
                        f"nested more than {MAX_DEPTH} levels deep: flatten it "
                        "(teuthology bodies need about 8)",
                    )
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError:
        return  # the parse proper reports it, with its usual message


def _too_big(what: str) -> JobParseError:
    return JobParseError(
        "body",
        f"{what}: YAML aliases (&anchor / *alias) expand it past the bounds "
        f"({MAX_NODES} nodes, {MAX_DEPTH} levels); write the values out or drop the aliases",
    )


def _bad_text(key: str, value: str) -> JobParseError:
    where = _SURROGATE.search(value)
    at = where.start() if where else 0
    code = f"\\u{ord(value[at]):04x}"
    return JobParseError(
        key or "body",
        f"holds a lone surrogate {code} at character {at}, which is not Unicode text "
        "(no file, database or JSON can store it): fix the text where the job was made",
    )


def check_graph(root: Node) -> None:
    """Refuse a composed body whose expansion is too big, too deep, recursive, or whose
    text has a lone surrogate. Memoised per node: linear in the composed graph."""
    sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded nodes, depth)
    open_: set[int] = set()  # nodes whose children are being measured
    stack: list[tuple[Node, bool, str]] = [(root, False, "")]
    while stack:
        node, children_done, key = stack.pop()
        ident = id(node)
        if isinstance(node, ScalarNode):
            if _SURROGATE.search(node.value):
                raise _bad_text(key, node.value)
            sizes[ident] = (1, 0)
            continue
        if children_done:
            open_.discard(ident)
            total, deepest = 1, 0
            for child in _children(node):
                size, depth = sizes[id(child)]
                total += size
                deepest = max(deepest, depth)
            if total > MAX_NODES:
                raise _too_big(f"{total} nodes or more")
            if deepest + 1 > MAX_DEPTH:
                raise _too_big(f"more than {MAX_DEPTH} levels deep")
            sizes[ident] = (total, deepest + 1)
            continue
        if ident in sizes:
            continue  # an alias of a node measured already
        if ident in open_:
            raise _too_big("a recursive alias (a value that contains itself)")
        open_.add(ident)
        stack.append((node, True, key))
        if isinstance(node, MappingNode):
            for key_node, value_node in node.value:
                name = key_node.value if isinstance(key_node, ScalarNode) else ""
                name = name.encode("utf-8", "backslashreplace").decode("utf-8")[:80]
                inner = name if not key else f"{key}.{name}"
                stack.append((key_node, False, inner))
                stack.append((value_node, False, inner))
        else:
            stack.extend((child, False, key) for child in _children(node))


def _children(node: Node) -> list[Node]:
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, SequenceNode):
        return list(node.value)
    return []


def safe_load(text: str) -> Any:
    """`yaml.safe_load(text)` within the bounds above (`JobParseError` past them).

    Raises `yaml.YAMLError` where `yaml.safe_load` would.
    """
    check_nesting(text)
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        check_graph(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()

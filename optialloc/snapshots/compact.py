"""Compact YAML for many similar mappings: shared items written once, merged back on load.

A big snapshot holds thousands of job bodies that differ in a few keys (the
jobs of one suite run share owner, priority, branch, sha1, tasks...). Written
plainly, such a file is mostly repetition, and reading it is dominated by
PyYAML constructing the same scalars again and again. `dump_compact` writes
each group's common items once, under an anchor, and every body as
`<<: *anchor` plus its own keys. Any YAML 1.1 loader (PyYAML's safe loaders
included) merges them back into plain, equal mappings: the data is unchanged,
only its spelling is shorter.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any

import yaml

_BaseDumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _MergeKey(str):
    """The `<<` merge key (a plain `'<<'` string would be quoted and lose its meaning)."""

    __slots__ = ()


MERGE = _MergeKey("<<")


class CompactDumper(_BaseDumper):
    """A safe dumper that knows the merge key; the module-level dumpers stay untouched."""


def _represent_merge(dumper: Any, _data: _MergeKey) -> yaml.ScalarNode:
    return yaml.ScalarNode("tag:yaml.org,2002:merge", "<<")


CompactDumper.add_representer(_MergeKey, _represent_merge)


def _same(a: Any, b: Any) -> bool:
    # Identity first: nested objects shared by a generator compare in O(1).
    return a is b or (type(a) is type(b) and a == b)


def merge_common(
    mappings: list[Mapping[str, Any]],
    group_of: Callable[[Mapping[str, Any]], Hashable],
    min_group: int = 2,
) -> list[Mapping[str, Any]]:
    """The same mappings, each rewritten as `{MERGE: common, own keys}` within its group.

    `group_of` says which mappings are alike (e.g. one suite run with one key
    set). Groups smaller than `min_group`, and groups with nothing in common,
    are returned as they are. Loading the dumped result gives mappings equal
    to the input ones.
    """
    groups: dict[Hashable, list[int]] = {}
    for index, mapping in enumerate(mappings):
        groups.setdefault(group_of(mapping), []).append(index)
    out: list[Mapping[str, Any]] = list(mappings)
    for members in groups.values():
        if len(members) < min_group:
            continue
        first = mappings[members[0]]
        common = dict(first)
        for index in members[1:]:
            other = mappings[index]
            for key in list(common):
                if key not in other or not _same(common[key], other[key]):
                    del common[key]
            if not common:
                break
        if not common:
            continue
        for index in members:
            own = {k: v for k, v in mappings[index].items() if k not in common}
            out[index] = {MERGE: common, **own}
    return out


def dump_compact(data: Any, **options: Any) -> str:
    """`yaml.dump` with `CompactDumper` (block style, keys in insertion order)."""
    options.setdefault("sort_keys", False)
    options.setdefault("default_flow_style", False)
    options.setdefault("allow_unicode", True)
    options.setdefault("width", 120)
    return str(yaml.dump(data, Dumper=CompactDumper, **options))

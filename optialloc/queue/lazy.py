"""A job body that is parsed from its stored text only when something reads it.

The first view of a big backlog is built from scanned scheduling fields
(`optialloc.queue.scan`); the full body is needed only by the runner of a dispatched
job, a snapshot dump, or a runner command template. `LazyBody` is a `dict`
(so `json.dumps`, `dict(...)`, `yaml` dumps and `Job.body: Mapping` users all
work) whose full content is loaded with the fast YAML loader on first read
and cached. Until then it holds the scanned fields, so code that bypasses
`dict` methods at C level never sees an empty body.

A body whose text does not parse raises `JobParseError` on first read: such
a job is never dispatched (claims check the full body first, see
`optialloc.queue.embedded`), so only listings of a not yet validated job can meet it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml

from optialloc.queue.parse import load_mapping


class LazyBody(dict[str, Any]):
    """The mapping of a job body's YAML `text`, parsed on first read (see module docstring)."""

    __slots__ = ("_loaded", "_text")

    def __init__(self, text: str, scanned: dict[str, Any]) -> None:
        super().__init__(scanned)
        dict.pop(self, "roles", None)  # only its shape was scanned, not its content
        self._text = text
        self._loaded = False
        if not dict.__len__(self):
            self._load()

    def _load(self) -> None:
        if not self._loaded:
            full = load_mapping(self._text)  # JobParseError if the text is not a YAML mapping
            dict.clear(self)
            dict.update(self, full)
            self._loaded = True

    @property
    def text(self) -> str:
        """The body exactly as queued."""
        return self._text

    def __getitem__(self, key: str) -> Any:
        self._load()
        return dict.__getitem__(self, key)

    def __iter__(self) -> Iterator[str]:
        self._load()
        return dict.__iter__(self)

    def __len__(self) -> int:
        self._load()
        return dict.__len__(self)

    def __contains__(self, key: object) -> bool:
        self._load()
        return dict.__contains__(self, key)

    def __eq__(self, other: object) -> bool:
        self._load()
        if isinstance(other, LazyBody):
            other._load()
        return dict.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = None

    def __repr__(self) -> str:
        self._load()
        return dict.__repr__(self)

    def __reduce__(self) -> tuple[Any, ...]:
        return (dict, (self.copy(),))

    def get(self, key: str, default: Any = None) -> Any:
        self._load()
        return dict.get(self, key, default)

    def keys(self) -> Any:
        self._load()
        return dict.keys(self)

    def items(self) -> Any:
        self._load()
        return dict.items(self)

    def values(self) -> Any:
        self._load()
        return dict.values(self)

    def copy(self) -> dict[str, Any]:
        self._load()
        return dict(dict.items(self))

    def __or__(self, other: Any) -> Any:
        return self.copy() | other

    def __ror__(self, other: Any) -> Any:
        return other | self.copy()


def _represent(dumper: Any, data: LazyBody) -> Any:
    return dumper.represent_dict(data.copy())


# yaml looks representers up by exact type: teach the dumpers a body is a mapping.
for _dumper in (yaml.SafeDumper, yaml.Dumper, getattr(yaml, "CSafeDumper", None)):
    if _dumper is not None:
        _dumper.add_representer(LazyBody, _represent)
try:  # the compact snapshot dumper copies its table when imported: register there too
    from optialloc.snapshots.compact import CompactDumper

    CompactDumper.add_representer(LazyBody, _represent)
except ImportError:  # pragma: no cover - yaml_compact is part of optialloc
    pass

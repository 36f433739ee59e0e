"""Lab YAML files: the nodes an embedded inventory starts from (format in docs/nodes.md).

A lab file has a `name`, a list of explicit `nodes`, and/or `groups` that
expand to many nodes named `<prefix><number zero-padded to digits>`.
`load_lab(path)` validates the whole file and either returns every node or
raises one `LabError` listing every problem, each with its YAML line and the
node it concerns, so nothing is ever half-imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from optialloc.domain import Node
from optialloc.errors import InputError
from optialloc.yaml_errors import describe_yaml_error

LINE_KEY = "__line__"

TOP_KEYS = ("name", "nodes", "groups")
NODE_KEYS = ("name", "machine_type", "up", "os_type", "os_version", "arch", "ssh_pub_key")
GROUP_KEYS = (
    "machine_type",
    "count",
    "prefix",
    "start",
    "digits",
    "up",
    "os_type",
    "os_version",
    "arch",
)
#: More problems than this are summarised: the first ones are enough to start fixing.
MAX_REPORTED = 20


class LabError(InputError):
    """A lab YAML file that does not validate; `problems` lists every finding."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.problems = problems
        shown = problems[:MAX_REPORTED]
        more = f"; and {len(problems) - MAX_REPORTED} more" if len(problems) > MAX_REPORTED else ""
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(
            path, f"{len(problems)} {noun}, nothing imported: " + "; ".join(shown) + more
        )


@dataclass(frozen=True)
class Lab:
    """A validated lab file: its name and every node, in file order."""

    name: str
    nodes: tuple[Node, ...]


class _LineLoader(yaml.SafeLoader):
    """A safe loader that records each mapping's line and refuses duplicate keys.

    PyYAML silently keeps the last of two equal keys; in a lab file that hides
    a typo, so it is an error here.
    """

    duplicate_keys: list[str]

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                self.duplicate_keys.append(
                    f"line {key_node.start_mark.line + 1}: key {key!r} appears twice in one mapping"
                )
            seen.add(key)
        mapping = super().construct_mapping(node, deep=deep)
        mapping[LINE_KEY] = node.start_mark.line + 1
        return mapping


def _where(entry: dict[str, Any], what: str) -> str:
    return f"line {entry.get(LINE_KEY, '?')} ({what})"


def _text(entry: dict[str, Any], key: str, where: str, problems: list[str]) -> str | None:
    """An optional string attribute; integers are taken as text, floats must be quoted."""
    value = entry.get(key)
    if value is None:
        return None
    if isinstance(value, (bool, float)):
        problems.append(f"{where}: {key} {value!r} must be text: quote it, e.g. {key}: '{value}'")
        return None
    if isinstance(value, int):
        return str(value)
    if not isinstance(value, str):
        problems.append(f"{where}: {key} must be text, got {type(value).__name__}")
        return None
    return value


def _flag(entry: dict[str, Any], where: str, problems: list[str]) -> bool:
    value = entry.get("up", True)
    if not isinstance(value, bool):
        problems.append(f"{where}: up must be true or false, got {value!r}")
        return True
    return value


def _unknown(
    entry: dict[str, Any], known: tuple[str, ...], where: str, problems: list[str]
) -> None:
    for key in entry:
        if key != LINE_KEY and key not in known:
            problems.append(f"{where}: unknown key {key!r} (known keys: {', '.join(known)})")


def _node(entry: Any, index: int, problems: list[str]) -> Node | None:
    if not isinstance(entry, dict):
        problems.append(
            f"nodes[{index}]: expected a mapping with name and machine_type, got {entry!r}"
        )
        return None
    name = entry.get("name")
    where = _where(entry, f"node {name}" if name else f"nodes[{index}]")
    _unknown(entry, NODE_KEYS, where, problems)
    machine_type = entry.get("machine_type")
    ok = True
    if not isinstance(name, str) or not name.strip():
        problems.append(f"{where}: every node needs a name (text)")
        ok = False
    if not isinstance(machine_type, str) or not machine_type.strip():
        problems.append(f"{where}: node has no machine_type: add machine_type: <type>, e.g. smithi")
        ok = False
    up = _flag(entry, where, problems)
    os_type, os_version, arch, key = (
        _text(entry, k, where, problems) for k in ("os_type", "os_version", "arch", "ssh_pub_key")
    )
    if not ok:
        return None
    assert isinstance(name, str) and isinstance(machine_type, str)
    return Node(
        name=name.strip(),
        machine_type=machine_type.strip(),
        up=up,
        os_type=os_type,
        os_version=os_version,
        arch=arch,
        ssh_pub_key=key,
    )


def _int(
    entry: dict[str, Any],
    key: str,
    default: int | None,
    minimum: int,
    where: str,
    problems: list[str],
) -> int | None:
    value = entry.get(key, default)
    if value is None:
        problems.append(f"{where}: group needs {key} (an integer >= {minimum})")
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        problems.append(f"{where}: {key} must be an integer >= {minimum}, got {value!r}")
        return None
    return value


def _group(entry: Any, index: int, problems: list[str]) -> list[tuple[Node, int]]:
    if not isinstance(entry, dict):
        problems.append(
            f"groups[{index}]: expected a mapping with machine_type and count, got {entry!r}"
        )
        return []
    machine_type = entry.get("machine_type")
    where = _where(entry, f"group {machine_type}" if machine_type else f"groups[{index}]")
    _unknown(entry, GROUP_KEYS, where, problems)
    if not isinstance(machine_type, str) or not machine_type.strip():
        problems.append(f"{where}: group has no machine_type: add machine_type: <type>")
        return []
    count = _int(entry, "count", None, 1, where, problems)
    start = _int(entry, "start", 1, 0, where, problems)
    digits = _int(entry, "digits", 3, 1, where, problems)
    prefix = entry.get("prefix", machine_type)
    if not isinstance(prefix, str):
        problems.append(f"{where}: prefix must be text, got {prefix!r}")
        return []
    up = _flag(entry, where, problems)
    os_type, os_version, arch = (
        _text(entry, k, where, problems) for k in ("os_type", "os_version", "arch")
    )
    if count is None or start is None or digits is None:
        return []
    line = int(entry.get(LINE_KEY, 0))
    return [
        (
            Node(
                name=f"{prefix}{number:0{digits}d}",
                machine_type=machine_type.strip(),
                up=up,
                os_type=os_type,
                os_version=os_version,
                arch=arch,
            ),
            line,
        )
        for number in range(start, start + count)
    ]


def parse_lab(text: str, source: str = "lab") -> Lab:
    """Validate a lab document given as text; `source` names it in errors."""
    loader = _LineLoader(text)
    loader.duplicate_keys = []
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as exc:
        raise LabError(source, [f"not valid YAML: {describe_yaml_error(exc)}"]) from exc
    finally:
        loader.dispose()
    problems = list(loader.duplicate_keys)
    if not isinstance(data, dict):
        raise LabError(source, [*problems, "expected a mapping with name, nodes and/or groups"])
    _unknown(data, TOP_KEYS, "top level", problems)
    name = data.get("name") or Path(source).stem
    if not isinstance(name, str):
        problems.append(f"name must be text, got {name!r}")
        name = str(name)
    raw_nodes = data.get("nodes") or []
    raw_groups = data.get("groups") or []
    located: list[tuple[Node, int]] = []
    if not isinstance(raw_nodes, list):
        problems.append("nodes must be a list of mappings")
        raw_nodes = []
    if not isinstance(raw_groups, list):
        problems.append("groups must be a list of mappings")
        raw_groups = []
    for index, entry in enumerate(raw_nodes):
        node = _node(entry, index, problems)
        if node is not None:
            located.append((node, int(entry.get(LINE_KEY, 0))))
    for index, entry in enumerate(raw_groups):
        located.extend(_group(entry, index, problems))
    first_line: dict[str, int] = {}
    for node, line in located:
        if node.name in first_line:
            problems.append(
                f"line {line}: duplicate node name {node.name} (first defined on line "
                f"{first_line[node.name]}): rename one or shrink the group"
            )
        else:
            first_line[node.name] = line
    if not located and not problems:
        problems.append("the lab defines no nodes: add a nodes or groups list")
    if problems:
        raise LabError(source, problems)
    return Lab(name=name, nodes=tuple(node for node, _ in located))


def load_lab_file(path: str | Path) -> Lab:
    """Read and validate a lab file; a missing file is an `InputError` naming it."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise InputError(str(path), "lab file does not exist: pass an existing lab YAML") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(str(path), f"cannot read the lab file: {exc}") from exc
    return parse_lab(text, source=str(path))


def load_lab(path: str | Path) -> list[Node]:
    """Every node of the lab file at `path`, validated (see `parse_lab`)."""
    return list(load_lab_file(path).nodes)

"""Snapshot files: one scheduling tick's view of a lab, saved as YAML and read back.

(Reading is here; writing is `optialloc.snapshots.write`, re-exported.)

A snapshot file is how a tick is replayed outside the dispatcher (`optialloc
plan --dry-run --snapshot FILE`, regression fixtures, bug reports). The format
is documented in docs/snapshot-format.md. Contract:

- `snapshot_from_mapping` accepts the documented keys; a structurally broken
  file (missing `taken_at`, a node without a name, a running job on an unknown
  node, duplicate job ids or node names, a timestamp that does not parse...)
  raises `SnapshotFileError`, an `InputError` whose `field` is the path inside
  the file (e.g. `queue[12].queued_at`) and whose message says the fix.
- A queue entry whose teuthology *body* does not parse is not an error: it
  becomes an `InvalidJob` in `snapshot.invalid` with the parse error, exactly
  as the live queue would bury it. Nothing is dropped.
- `snapshot_to_mapping` / `dump_snapshot` write what `snapshot_from_mapping`
  reads back into an equal `Snapshot` (the body is the source of truth for a
  job's fields; the queue's tube and priority override are written explicitly).
- A path ending in `.json` is read and written as JSON (the same keys): big
  snapshots load several times faster that way than as YAML.
- A file whose top level has a `generator:` key holds fixture-generator
  parameters instead of a lab (see `optialloc.snapshots.fixturegen`); `load_snapshot`
  generates the snapshot from them, so large labs need not be committed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from optialloc.domain import InvalidJob, Job, Node, RunningJob, Snapshot
from optialloc.errors import JobParseError
from optialloc.filekind import looks_like
from optialloc.snapshots.fields import FieldReader, JobCache, SnapshotFileError
from optialloc.snapshots.write import dump_snapshot, snapshot_to_mapping
from optialloc.yaml_errors import describe_yaml_error

__all__ = [
    "SnapshotDocument",
    "SnapshotFileError",
    "dump_snapshot",
    "load_snapshot",
    "load_snapshot_document",
    "snapshot_document_from_mapping",
    "snapshot_from_mapping",
    "snapshot_to_mapping",
]

# libyaml's loader is ~10x faster than the pure-Python one on big snapshots.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_TOP_KEYS = {
    "taken_at",
    "nodes",
    "queue",
    "running",
    "paused_tubes",
    "usage",
    "invalid",
    "runtime_estimates",
}
_NODE_KEYS = {
    "name",
    "machine_type",
    "up",
    "locked",
    "locked_by",
    "description",
    "os_type",
    "os_version",
    "arch",
    "ssh_pub_key",
}
_QUEUE_KEYS = {"job_id", "queued_at", "tube", "priority", "body", "runtime"}
_RUNNING_KEYS = {"job_id", "queued_at", "started_at", "tube", "nodes", "body", "runtime"}
_INVALID_KEYS = {"job_id", "tube", "error", "queued_at"}


@dataclass(frozen=True)
class SnapshotDocument:
    """A loaded snapshot file: the `Snapshot` plus what only the what-if simulator uses.

    `runtimes` maps job ids (queued or running) to their known run time in
    seconds, from the optional `runtime` key of queue and running entries.
    """

    snapshot: Snapshot
    runtimes: Mapping[str, float] = field(default_factory=dict)


def _read_nodes(reader: FieldReader, raw: list[Any], running_nodes: set[str]) -> tuple[Node, ...]:
    nodes: list[Node] = []
    seen: dict[str, str] = {}
    for index, item in enumerate(raw):
        path = f"nodes[{index}]"
        entry = reader.mapping(item, path, _NODE_KEYS, "one node")
        name = reader.text(entry, "name", path, required=True)
        assert name is not None
        if name in seen:
            raise reader.fail(f"{path}.name", f"duplicate node {name!r} (also at {seen[name]})")
        seen[name] = path
        machine_type = reader.text(entry, "machine_type", path, required=True)
        assert machine_type is not None
        # A node a running job holds is locked unless the file says otherwise.
        locked = reader.flag(entry, "locked", path, default=name in running_nodes)
        if name in running_nodes and not locked:
            raise reader.fail(
                f"{path}.locked",
                f"node {name!r} is held by a running job but says locked: false; "
                "set locked: true or remove it from that job's nodes",
            )
        nodes.append(
            Node(
                name=name,
                machine_type=machine_type,
                up=reader.flag(entry, "up", path, default=True),
                locked=locked,
                locked_by=reader.text(entry, "locked_by", path, required=False),
                description=reader.text(entry, "description", path, required=False),
                os_type=reader.text(entry, "os_type", path, required=False),
                os_version=reader.text(entry, "os_version", path, required=False),
                arch=reader.text(entry, "arch", path, required=False),
                ssh_pub_key=reader.text(entry, "ssh_pub_key", path, required=False),
            )
        )
    return tuple(nodes)


def _running_node_names(reader: FieldReader, raw: list[Any]) -> dict[str, str]:
    """Node name -> path of the running entry holding it (checked for double holds)."""
    held: dict[str, str] = {}
    for index, item in enumerate(raw):
        path = f"running[{index}]"
        entry = reader.mapping(item, path, _RUNNING_KEYS, "one running job")
        names = entry.get("nodes")
        if names is None:
            names = []
        if not isinstance(names, list):
            raise reader.fail(f"{path}.nodes", f"expected a list of node names, got {names!r}")
        for position, name in enumerate(names):
            if not isinstance(name, str) or not name:
                raise reader.fail(
                    f"{path}.nodes[{position}]", f"expected a node name, got {name!r}"
                )
            if name in held:
                raise reader.fail(
                    f"{path}.nodes[{position}]",
                    f"node {name!r} is already held by {held[name]}: a node runs one job at a time",
                )
            held[name] = path
    return held


def _amounts(
    reader: FieldReader,
    top: Mapping[str, Any],
    key: str,
    problem: str,
    unit: str,
    *,
    positive: bool = False,
) -> dict[str, float]:
    """The optional top-level mapping `key` of name: number (>= 0, or > 0 if `positive`)."""
    raw = top.get(key) or {}
    if not isinstance(raw, Mapping):
        raise reader.fail(key, problem)
    out: dict[str, float] = {}
    for name, value in raw.items():
        bad = isinstance(value, bool) or not isinstance(value, int | float)
        if bad or value < 0 or (positive and value == 0):
            bound = "> 0" if positive else ">= 0"
            raise reader.fail(f"{key}.{name}", f"expected {unit} {bound}, got {value!r}")
        out[str(name)] = float(value)
    return out


def _body_of(reader: FieldReader, entry: Mapping[str, Any], path: str) -> Any:
    if "body" not in entry or entry["body"] is None:
        raise reader.fail(
            f"{path}.body", "missing: give the teuthology job body (a mapping or YAML text)"
        )
    return entry["body"]


def _tube_of(reader: FieldReader, entry: Mapping[str, Any], body: Any, path: str) -> str:
    tube = reader.text(entry, "tube", path, required=False)
    if tube:
        return tube
    # teuthology-schedule writes the tube into the body too.
    if isinstance(body, Mapping) and isinstance(body.get("tube"), str):
        return str(body["tube"])
    return ""


def _priority_of(reader: FieldReader, entry: Mapping[str, Any], path: str) -> int | None:
    value = entry.get("priority")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 2**32 - 1:
        raise reader.fail(
            f"{path}.priority",
            f"expected an integer 0..4294967295 (lower = more urgent), got {value!r}",
        )
    return value


def snapshot_document_from_mapping(data: Any, source: str = "snapshot") -> SnapshotDocument:
    """Validate a loaded snapshot mapping; see the module docstring for the contract."""
    reader = FieldReader(source)
    if isinstance(data, Mapping) and not {"taken_at", "queue"} & set(data):
        # not a snapshot at all: say what it is instead of a warning per key
        kind = looks_like(data)
        what = f"this is {kind}, not a snapshot" if kind else "not a snapshot"
        keys = sorted(map(str, data))
        shown = ", ".join(keys[:6]) + (", ..." if len(keys) > 6 else "")
        raise reader.fail(
            "(top level)",
            f"{what}: it has no taken_at/nodes/queue (its keys: {shown}); "
            "see docs/snapshot-format.md",
        )
    top = reader.mapping(data, "(top level)", _TOP_KEYS, "a snapshot with taken_at, nodes, queue")
    if top.get("taken_at") is None:
        raise reader.fail(
            "taken_at", "missing: give the snapshot's time, e.g. taken_at: '2026-11-24T18:00:00Z'"
        )
    taken_at = reader.time(top["taken_at"], "taken_at")

    raw_running = reader.listing(top, "running")
    held = _running_node_names(reader, raw_running)
    nodes = _read_nodes(reader, reader.listing(top, "nodes"), set(held))
    known_nodes = {node.name for node in nodes}
    for name, path in held.items():
        if name not in known_nodes:
            raise reader.fail(
                f"{path}.nodes",
                f"node {name!r} is not in nodes: list it under nodes or fix the name",
            )

    cache = JobCache()
    seen_ids: dict[str, str] = {}
    runtimes: dict[str, float] = {}
    running: list[RunningJob] = []
    for index, item in enumerate(raw_running):
        path = f"running[{index}]"
        entry = item  # already checked to be a mapping
        job_id = reader.job_id(entry, path, seen_ids)
        if entry.get("started_at") is None:
            raise reader.fail(
                f"{path}.started_at", "missing: give when the job started (ISO 8601, UTC)"
            )
        started_at = reader.time(entry["started_at"], f"{path}.started_at")
        queued_at = reader.optional_time(entry, "queued_at", path)
        body = _body_of(reader, entry, path)
        if queued_at is None and not (
            isinstance(body, Mapping) and body.get("timestamp") is not None
        ):
            queued_at = started_at  # nothing better is known, and it cannot be later
        try:
            job = cache.parse(body, job_id, queued_at, _tube_of(reader, entry, body, path), None)
        except JobParseError as exc:
            raise reader.fail(f"{path}.body.{exc.field}", exc.problem) from exc
        running.append(
            RunningJob(job=job, nodes=tuple(entry.get("nodes") or ()), started_at=started_at)
        )
        runtime = reader.seconds(entry, "runtime", path)
        if runtime is not None:
            runtimes[job_id] = runtime

    queue: list[Job] = []
    invalid: list[InvalidJob] = []
    for index, item in enumerate(reader.listing(top, "queue")):
        path = f"queue[{index}]"
        entry = reader.mapping(item, path, _QUEUE_KEYS, "one queued job")
        job_id = reader.job_id(entry, path, seen_ids)
        queued_at = reader.optional_time(entry, "queued_at", path)
        body = _body_of(reader, entry, path)
        tube = _tube_of(reader, entry, body, path)
        priority = _priority_of(reader, entry, path)
        runtime = reader.seconds(entry, "runtime", path)
        if runtime is not None:
            runtimes[job_id] = runtime
        try:
            queue.append(cache.parse(body, job_id, queued_at, tube, priority))
        except JobParseError as exc:
            invalid.append(
                InvalidJob(job_id=job_id, tube=tube, error=str(exc), queued_at=queued_at)
            )

    for index, item in enumerate(reader.listing(top, "invalid")):
        path = f"invalid[{index}]"
        entry = reader.mapping(item, path, _INVALID_KEYS, "one unparseable job")
        job_id = reader.job_id(entry, path, seen_ids)
        queued_at = reader.optional_time(entry, "queued_at", path)
        invalid.append(
            InvalidJob(
                job_id=job_id,
                tube=reader.text(entry, "tube", path, required=False) or "",
                error=reader.text(entry, "error", path, required=True) or "",
                queued_at=queued_at,
            )
        )

    paused: set[str] = set()
    for index, tube in enumerate(reader.listing(top, "paused_tubes")):
        if not isinstance(tube, str) or not tube:
            raise reader.fail(f"paused_tubes[{index}]", f"expected a tube name, got {tube!r}")
        paused.add(tube)

    usage = _amounts(
        reader, top, "usage", "expected a mapping of owner: node-seconds used", "node-seconds"
    )
    estimates = _amounts(
        reader,
        top,
        "runtime_estimates",
        "expected a mapping of job description: seconds",
        "seconds",
        positive=True,
    )

    snapshot = Snapshot(
        taken_at=taken_at,
        nodes=nodes,
        queue=tuple(queue),
        running=tuple(running),
        paused_tubes=frozenset(paused),
        invalid=tuple(invalid),
        usage=usage,
        runtime_estimates=estimates,
    )
    return SnapshotDocument(snapshot=snapshot, runtimes=runtimes)


def snapshot_from_mapping(data: Any, source: str = "snapshot") -> Snapshot:
    """The `Snapshot` in a loaded mapping; raises `SnapshotFileError` naming the path."""
    return snapshot_document_from_mapping(data, source).snapshot


def load_snapshot_document(path: str | Path) -> SnapshotDocument:
    """Read a snapshot file (or fixture-generator parameters) into a `SnapshotDocument`."""
    source = str(path)
    try:
        with open(path, encoding="utf-8") as handle:
            if source.endswith(".json"):
                data = json.load(handle)
            else:
                data = yaml.load(handle, Loader=_Loader)
    except FileNotFoundError as exc:
        raise SnapshotFileError(
            source, "--snapshot", "no such file: give an existing snapshot file"
        ) from exc
    except yaml.YAMLError as exc:
        raise SnapshotFileError(
            source, "(file)", f"not valid YAML ({describe_yaml_error(exc)})"
        ) from exc
    except json.JSONDecodeError as exc:
        raise SnapshotFileError(
            source, f"(line {exc.lineno})", f"not valid JSON ({exc.msg})"
        ) from exc
    except UnicodeDecodeError as exc:
        raise SnapshotFileError(source, "(file)", f"not UTF-8 text ({exc.reason})") from exc
    if isinstance(data, Mapping) and "generator" in data:
        from optialloc.snapshots.fixturegen import generate, params_from_mapping

        generated = generate(params_from_mapping(data["generator"], source=source))
        return SnapshotDocument(snapshot=generated.snapshot, runtimes=generated.runtimes)
    return snapshot_document_from_mapping(data, source)


def load_snapshot(path: str | Path) -> Snapshot:
    """Read a snapshot file; raises `SnapshotFileError` (an `InputError`) if it is malformed."""
    return load_snapshot_document(path).snapshot

"""Writing snapshot files: the inverse of `optialloc.snapshots.io`'s reading.

`snapshot_to_mapping` / `dump_snapshot` write what `snapshot_from_mapping`
reads back into an equal `Snapshot` (the body is the source of truth for a
job's fields; the queue's tube and priority override are written explicitly).
A path ending in `.json` is written as JSON (the same keys, no header); YAML
output shares repeated body values between jobs of a run
(`optialloc.snapshots.compact`) to stay small.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from optialloc.domain import Job, Node, Snapshot
from optialloc.snapshots.compact import dump_compact, merge_common
from optialloc.teuthology import DEFAULT_PRIORITY


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _node_to_mapping(node: Node) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": node.name,
        "machine_type": node.machine_type,
        "up": node.up,
        "locked": node.locked,
        "locked_by": node.locked_by,
    }
    for key in ("os_type", "os_version", "arch", "description", "ssh_pub_key"):
        value = getattr(node, key)
        if value is not None:
            out[key] = value
    return out


def _body_priority(job: Job) -> int:
    value = job.body.get("priority", DEFAULT_PRIORITY)
    return value if isinstance(value, int) and not isinstance(value, bool) else DEFAULT_PRIORITY


def snapshot_to_mapping(
    snapshot: Snapshot, runtimes: Mapping[str, float] | None = None
) -> dict[str, Any]:
    """The mapping `snapshot_from_mapping` reads back into an equal `Snapshot`.

    Jobs are written from their bodies; the queue's tube and priority only
    where they differ from the body's. `runtimes` (seconds per
    job id) are written as each entry's `runtime`.
    """
    runtimes = runtimes or {}
    queue: list[dict[str, Any]] = []
    for job in snapshot.queue:
        entry: dict[str, Any] = {"job_id": job.job_id, "queued_at": _iso(job.queued_at)}
        if job.tube != job.body.get("tube"):
            entry["tube"] = job.tube
        if job.priority != _body_priority(job):
            entry["priority"] = job.priority
        if job.job_id in runtimes:
            entry["runtime"] = runtimes[job.job_id]
        entry["body"] = job.body
        queue.append(entry)
    running: list[dict[str, Any]] = []
    for run in snapshot.running:
        item: dict[str, Any] = {
            "job_id": run.job_id,
            "queued_at": _iso(run.job.queued_at),
            "started_at": _iso(run.started_at),
            "nodes": list(run.nodes),
        }
        if run.job.tube != run.job.body.get("tube"):
            item["tube"] = run.job.tube
        if run.job_id in runtimes:
            item["runtime"] = runtimes[run.job_id]
        item["body"] = run.job.body
        running.append(item)
    out: dict[str, Any] = {
        "taken_at": _iso(snapshot.taken_at),
        "nodes": [_node_to_mapping(node) for node in snapshot.nodes],
        "queue": queue,
        "running": running,
        "paused_tubes": sorted(snapshot.paused_tubes),
    }
    if snapshot.invalid:
        out["invalid"] = [
            {
                "job_id": bad.job_id,
                "tube": bad.tube,
                "error": bad.error,
                "queued_at": _iso(bad.queued_at) if bad.queued_at else None,
            }
            for bad in snapshot.invalid
        ]
    if snapshot.usage:
        out["usage"] = dict(snapshot.usage)
    if snapshot.runtime_estimates:
        # exact values: a replayed snapshot must give the same plan
        out["runtime_estimates"] = dict(sorted(snapshot.runtime_estimates.items()))
    return out


def _json_value(value: Any) -> Any:
    # YAML bodies may hold timestamps or dates as objects; JSON has only strings.
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} cannot be written as JSON")


def _body_group(body: Mapping[str, Any]) -> tuple[Any, ...]:
    # Jobs of one run with the same keys share most values (see optialloc.snapshots.compact).
    return (str(body.get("name")), tuple(sorted(map(str, body))))


def dump_snapshot(
    snapshot: Snapshot,
    path: str | Path,
    *,
    runtimes: Mapping[str, float] | None = None,
    header: str = "",
) -> None:
    """Write `snapshot` as a YAML snapshot file; `header` lines become `#` comments at the top.

    A path ending in `.json` gets the same mapping as JSON instead (no header:
    JSON has no comments; timestamps inside bodies become ISO strings), which
    loads several times faster than YAML.
    """
    data = snapshot_to_mapping(snapshot, runtimes)
    if str(path).endswith(".json"):
        text = json.dumps(data, separators=(",", ":"), default=_json_value)
        Path(path).write_text(text + "\n", encoding="utf-8")
        return
    for key in ("running", "queue"):
        entries = data[key]
        bodies = merge_common([entry["body"] for entry in entries], _body_group)
        for entry, body in zip(entries, bodies, strict=True):
            entry["body"] = body
    text = dump_compact(data)
    comment = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines())
    Path(path).write_text(comment + text, encoding="utf-8")

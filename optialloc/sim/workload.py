"""Workload files for what-if: JSON Lines, snapshots, and teuthology bodies for trace jobs.

JSON Lines format (one job a line; blank lines and lines starting with `#`
are skipped):

    {"submit": 3600, "runtime": 1800, "body": {teuthology job body}, "job_id": "17"}

`submit` is seconds after the workload's origin (>= 0), `runtime` the job's
true run time in seconds (> 0), `job_id` optional (default: the line number).
The body is parsed exactly as the live queue would (`teuthology.parse_job`):
a line that does not parse is an `InputError` naming the file, the line and
the field, because a what-if on a silently shortened workload would mislead.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from optialloc.domain import ESTIMATE_KEY, Node
from optialloc.errors import InputError, JobParseError
from optialloc.sim.model import DEFAULT_ORIGIN, JobRecord, SimJob
from optialloc.teuthology import parse_job


@dataclass
class Workload:
    """Jobs to replay, plus (from a snapshot) jobs already running and the lab.

    `start` is when the simulation starts (jobs submitted earlier arrive
    then, keeping their true submit time for waits); None = first submit.
    """

    jobs: list[SimJob]
    origin: datetime = DEFAULT_ORIGIN
    preload: list[JobRecord] = field(default_factory=list)
    nodes: list[Node] | None = None
    start: float | None = None
    source: str = ""


def job_from_body(
    body: Mapping[str, Any],
    *,
    job_id: str,
    index: int,
    submit: float,
    runtime: float,
    origin: datetime,
) -> SimJob:
    """A `SimJob` from a teuthology body, parsed exactly like the live queue does."""
    job = parse_job(body, job_id=job_id, queued_at=origin + timedelta(seconds=submit))
    return SimJob(
        job_id=job_id,
        index=index,
        submit=submit,
        runtime=runtime,
        nodes=job.nodes_needed,
        machine_types=job.machine_types,
        priority=job.priority,
        owner=job.owner,
        run=job.run,
        last_in_suite=job.last_in_suite,
        body=dict(body),
    )


def _number(entry: Mapping[str, Any], key: str, where: str, *, positive: bool) -> float:
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"{where}: {key}", f"expected a number of seconds, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise InputError(
            f"{where}: {key}", f"{value} must be {'> 0' if positive else '>= 0'} seconds"
        )
    return float(value)


def parse_lines(
    lines: Iterable[str], source: str = "workload", origin: datetime = DEFAULT_ORIGIN
) -> Workload:
    """Parse JSON Lines text (see the module docstring); errors name `source:line`."""
    jobs: list[SimJob] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        where = f"{source}:{number}"
        try:
            entry = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(where, f"not valid JSON ({exc.msg} at column {exc.colno})") from exc
        if not isinstance(entry, dict):
            raise InputError(where, "expected a JSON object with submit, runtime and body")
        unknown = set(entry) - {"submit", "runtime", "body", "job_id"}
        if unknown:
            raise InputError(
                where, f"unknown key(s) {sorted(unknown)}: use submit, runtime, body, job_id"
            )
        submit = _number(entry, "submit", where, positive=False)
        runtime = _number(entry, "runtime", where, positive=True)
        body = entry.get("body")
        if not isinstance(body, dict):
            raise InputError(f"{where}: body", "expected a teuthology job body (a JSON object)")
        job_id = str(entry.get("job_id", number))
        if job_id in seen:
            raise InputError(
                f"{where}: job_id", f"{job_id!r} appears twice: job ids must be unique"
            )
        seen.add(job_id)
        try:
            jobs.append(
                job_from_body(
                    body,
                    job_id=job_id,
                    index=len(jobs),
                    submit=submit,
                    runtime=runtime,
                    origin=origin,
                )
            )
        except JobParseError as exc:
            raise InputError(f"{where}: body.{exc.field}", exc.problem) from exc
    if not jobs:
        raise InputError(source, "no jobs: a workload needs at least one JSON line")
    return Workload(jobs=jobs, origin=origin, source=source)


def read_jsonl(path: str | Path, origin: datetime = DEFAULT_ORIGIN) -> Workload:
    """Read a JSON Lines workload file."""
    try:
        with open(path, encoding="utf-8") as handle:
            return parse_lines(handle, source=str(path), origin=origin)
    except OSError as exc:
        raise InputError("--workload", f"cannot read {path}: {exc.strerror}") from exc


def write_jsonl(jobs: Sequence[SimJob], path: str | Path) -> None:
    """Write jobs (each with a body) as JSON Lines, compact, in submit order."""
    with open(path, "w", encoding="utf-8") as handle:
        for job in sorted(jobs, key=lambda j: (j.submit, j.index)):
            entry = {
                "submit": round(job.submit, 3),
                "runtime": round(job.runtime, 3),
                "job_id": job.job_id,
                "body": dict(ensure_body(job)),
            }
            handle.write(json.dumps(entry, separators=(",", ":"), sort_keys=True) + "\n")


def ensure_body(job: SimJob) -> Mapping[str, Any]:
    """The job's teuthology body; trace jobs get a minimal one with the same fields."""
    if job.body is not None:
        return job.body
    body: dict[str, Any] = {
        "name": job.run or f"trace-{job.job_id}",
        "owner": job.owner or "scheduled_trace@sim",
        "priority": job.priority,
        "machine_type": ",".join(job.machine_types),
        "roles": [[f"osd.{k}"] for k in range(job.nodes)],
        "description": f"trace job {job.job_id}",
    }
    if job.estimate is not None:
        # A trace's requested time: what a policy with reservations.backfill may use.
        body[ESTIMATE_KEY] = job.estimate
    return body


def read_snapshot(path: str | Path, default_runtime: float | None = None) -> Workload:
    """A snapshot file as a workload: its queue arrives at time 0, running jobs keep their nodes.

    Every queued and running job needs a `runtime` (seconds) in the file, or
    `default_runtime`; a running job past its runtime ends at time 0.
    """
    from optialloc.snapshots.io import load_snapshot_document

    document = load_snapshot_document(path)
    snap = document.snapshot
    origin = snap.taken_at
    missing = [j.job_id for j in snap.queue if j.job_id not in document.runtimes]
    missing += [r.job_id for r in snap.running if r.job_id not in document.runtimes]
    if missing and default_runtime is None:
        raise InputError(
            f"{path}: runtime",
            f"{len(missing)} job(s) have no runtime (first: {missing[0]}): add `runtime: SECONDS` "
            "to their queue/running entries or pass --default-runtime SECONDS",
        )

    def runtime_of(job_id: str) -> float:
        value = document.runtimes.get(job_id)
        return float(default_runtime if value is None else value)  # type: ignore[arg-type]

    jobs: list[SimJob] = []
    for index, job in enumerate(sorted(snap.queue, key=lambda j: (j.queued_at, j.job_id))):
        jobs.append(
            SimJob(
                job_id=job.job_id,
                index=index,
                submit=(job.queued_at - origin).total_seconds(),
                runtime=runtime_of(job.job_id),
                nodes=job.nodes_needed,
                machine_types=job.machine_types,
                priority=job.priority,
                owner=job.owner,
                run=job.run,
                last_in_suite=job.last_in_suite,
                body=dict(job.body),
            )
        )
    preload: list[JobRecord] = []
    for k, running in enumerate(snap.running):
        job = running.job
        started = (running.started_at - origin).total_seconds()
        sim_job = SimJob(
            job_id=job.job_id,
            index=-1 - k,
            submit=(job.queued_at - origin).total_seconds(),
            runtime=runtime_of(job.job_id),
            nodes=len(running.nodes),
            machine_types=job.machine_types,
            priority=job.priority,
            owner=job.owner,
            run=job.run,
            last_in_suite=job.last_in_suite,
            body=dict(job.body),
        )
        by_name = {n.name: n for n in snap.nodes}
        mt = (
            by_name[running.nodes[0]].machine_type
            if running.nodes and running.nodes[0] in by_name
            else None
        )
        preload.append(
            JobRecord(
                sim_job,
                start=started,
                end=max(started + sim_job.runtime, 0.0),
                machine_type=mt,
                nodes=tuple(running.nodes),
            )
        )
    nodes = [n for n in snap.nodes if n.up]
    return Workload(
        jobs=jobs, origin=origin, preload=preload, nodes=nodes, start=0.0, source=str(path)
    )


def check_fits(jobs: Sequence[SimJob], capacity: Mapping[str, int]) -> None:
    """Refuse jobs no machine type of the lab could ever hold (they would block FCFS forever)."""
    for job in jobs:
        if not any(capacity.get(mt, 0) >= job.nodes for mt in job.machine_types):
            have = ", ".join(f"{mt}: {capacity.get(mt, 0)}" for mt in job.machine_types)
            raise InputError(
                f"job {job.job_id}",
                f"needs {job.nodes} node(s) of {'/'.join(job.machine_types)} "
                f"but the lab has {have}: "
                "use a lab with these machine types or drop the job from the workload",
            )

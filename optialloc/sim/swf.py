"""Read Standard Workload Format traces the way RLScheduler does, and map them to labs.

Protocol (evaluation.md): nodes = max(allocated, requested procs) (fields 5
and 8); requested time (field 9) = run time where it is -1; a run time of -1
becomes 10 s; jobs with run time 0 are dropped; jobs are sorted by id;
cluster size = the `MaxNodes` header (`MaxProcs` / `MaxNodes` procs per node).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from optialloc.errors import InputError
from optialloc.sim.model import SimJob

#: RLScheduler's test windows: 0-based starts into the cleaned job list.
LUBLIN_WINDOWS = (1981, 2756, 4299, 8850, 3316, 2714, 5228, 7762, 4022, 7085)
LUBLIN_WINDOW_JOBS = 1024
#: Priority bands used when a trace gets teuthology priorities: (low, high, weight).
PRIORITY_BANDS = (
    (10, 49, 0.02),
    (50, 74, 0.08),
    (75, 100, 0.2),
    (101, 150, 0.2),
    (151, 200, 0.1),
    (1000, 1000, 0.4),
)


@dataclass(frozen=True)
class SwfTrace:
    """A cleaned trace: jobs in id order, the cluster size in nodes."""

    path: Path
    jobs: tuple[SimJob, ...]
    max_nodes: int
    machine_type: str


def read_swf(path: str | Path, machine_type: str = "swf") -> SwfTrace:
    """Read an SWF file; errors name the file, line and field."""
    path = Path(path)
    max_nodes = 0
    max_procs = 0
    raw: list[tuple[int, int, int, int, int]] = []  # id, submit, run, procs, req time
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise InputError("--swf", f"cannot read {path}: {exc.strerror}") from exc
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text:
            continue
        if text.startswith(";"):
            key, _, value = text[1:].partition(":")
            if key.strip() == "MaxNodes":
                max_nodes = _header_int(path, number, "MaxNodes", value)
            elif key.strip() == "MaxProcs":
                max_procs = _header_int(path, number, "MaxProcs", value)
            continue
        fields = text.split()
        if len(fields) < 18:
            raise InputError(f"{path}:{number}", f"expected 18 SWF fields, got {len(fields)}")
        try:
            job_id, submit, run = int(fields[0]), int(float(fields[1])), int(float(fields[3]))
            procs = max(int(fields[4]), int(fields[7]))
            req_time = int(float(fields[8]))
        except ValueError as exc:
            raise InputError(f"{path}:{number}", f"SWF fields must be numbers ({exc})") from exc
        if req_time == -1:
            req_time = run
        if run < 0:
            run = 10
        if run > 0:
            raw.append((job_id, submit, run, procs, req_time))
    if max_nodes <= 0:
        raise InputError(f"{path}", "no '; MaxNodes:' header: cannot size the cluster")
    per_node = (max_procs or max_nodes) / max_nodes
    raw.sort(key=lambda r: r[0])
    jobs = tuple(
        SimJob(
            job_id=str(job_id),
            index=index,
            submit=float(submit),
            runtime=float(run),
            nodes=math.ceil(procs / per_node),
            machine_types=(machine_type,),
            estimate=float(req_time),
        )
        for index, (job_id, submit, run, procs, req_time) in enumerate(raw)
    )
    return SwfTrace(path=path, jobs=jobs, max_nodes=max_nodes, machine_type=machine_type)


def _header_int(path: Path, number: int, name: str, value: str) -> int:
    try:
        return int(value.strip())
    except ValueError as exc:
        raise InputError(
            f"{path}:{number}", f"{name} header is not an integer: {value.strip()!r}"
        ) from exc


def window(trace: SwfTrace, start: int, count: int) -> list[SimJob]:
    """Jobs `start .. start+count-1` of the cleaned list, re-indexed from 0."""
    if start < 0 or count <= 0 or start + count > len(trace.jobs):
        raise InputError(
            "--window",
            f"{start}:{count} is outside the trace's {len(trace.jobs)} jobs (use START:COUNT)",
        )
    return [replace(j, index=k) for k, j in enumerate(trace.jobs[start : start + count])]


def parse_window(text: str) -> tuple[int, int]:
    """Parse `START:COUNT` (0-based start, job count)."""
    start, sep, count = text.partition(":")
    try:
        if not sep:
            raise ValueError
        return int(start), int(count)
    except ValueError as exc:
        raise InputError("--window", f"{text!r} is not START:COUNT, e.g. 1981:1024") from exc


def as_lab_jobs(
    jobs: Sequence[SimJob],
    *,
    seed: int = 0,
    priority: int | None = None,
    compress: float = 1.0,
    user_of: dict[str, int] | None = None,
) -> list[SimJob]:
    """Give trace jobs teuthology attributes: owner per SWF user, priorities, run names.

    Priorities are drawn from the teuthology bands (`PRIORITY_BANDS`) with
    `seed`, one per user-day, unless `priority` fixes one for all. Each job
    is its own run (traces have no suite runs). `compress` scales submit
    times (0.5 = twice the load).
    """
    rng = random.Random(seed)
    bands = [b[:2] for b in PRIORITY_BANDS]
    weights = [b[2] for b in PRIORITY_BANDS]
    out: list[SimJob] = []
    run_priority: dict[str, int] = {}
    base = jobs[0].submit if jobs else 0.0
    for job in jobs:
        user = (user_of or {}).get(job.job_id, 0)
        submit = base + (job.submit - base) * compress
        # a trace has no suite runs: each job is its own run (no run caps across jobs)
        run = f"swf-{job.job_id}"
        if priority is not None:
            prio = priority
        else:
            key = f"{user}-{int(submit // 86400)}"  # one priority per user-day
            if key not in run_priority:
                low, high = rng.choices(bands, weights)[0]
                run_priority[key] = rng.randint(low, high)
            prio = run_priority[key]
        owner = f"scheduled_user{user}@swf"
        out.append(replace(job, submit=submit, priority=prio, owner=owner, run=run))
    return out


def read_users(path: str | Path) -> dict[str, int]:
    """SWF field 12 (user id) per job id, for owner mapping."""
    users: dict[str, int] = {}
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        fields = line.split()
        if fields and not line.lstrip().startswith(";") and len(fields) >= 12:
            users[fields[0]] = int(fields[11])
    return users

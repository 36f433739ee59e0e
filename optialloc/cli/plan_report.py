"""Show a `Plan` to people and programs: a JSON-ready dict and plain-text tables.

Used by `optialloc plan`, and meant for the dispatcher's log and the status
API, so the same words describe a tick everywhere. Nothing here does I/O.

`plan_to_dict(plan)` always has `taken_at`, `starts` (`job_id`, `nodes`),
`held` (`node`, `for_job_id`), `waiting` (`job_id`, `position`, `reason`,
`detail`) and `solver` (`status`, `objective`, `bound`, `gap`, `wall_s`,
`variables`, `constraints`). Given the snapshot, job entries also carry `run`,
`owner`, `priority`, `nodes_needed` and `machine_types`, and the dict gains
`lab` counts and the `invalid` entries (which the dispatcher buries).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from optialloc.domain import Job, Plan, Snapshot


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _jobs_by_id(snapshot: Snapshot | None) -> dict[str, Job]:
    if snapshot is None:
        return {}
    jobs = {job.job_id: job for job in snapshot.queue}
    jobs.update((run.job_id, run.job) for run in snapshot.running)
    return jobs


def _job_fields(job: Job | None) -> dict[str, Any]:
    if job is None:
        return {}
    return {
        "run": job.run,
        "owner": job.owner,
        "priority": job.priority,
        "nodes_needed": job.nodes_needed,
        "machine_types": list(job.machine_types),
    }


def lab_counts(snapshot: Snapshot) -> dict[str, int]:
    """Node and job counts of a snapshot (nodes: free = up and unlocked)."""
    running_nodes = {name for run in snapshot.running for name in run.nodes}
    return {
        "nodes": len(snapshot.nodes),
        "free": sum(1 for node in snapshot.nodes if node.free),
        "down": sum(1 for node in snapshot.nodes if not node.up),
        "running_jobs": len(snapshot.running),
        "locked_by_jobs": len(running_nodes),
        "locked_by_people": sum(
            1 for n in snapshot.nodes if n.locked and n.name not in running_nodes
        ),
        "queued": len(snapshot.queue),
        "invalid": len(snapshot.invalid),
    }


def plan_to_dict(plan: Plan, snapshot: Snapshot | None = None) -> dict[str, Any]:
    """A JSON-ready description of `plan` (see the module docstring for the keys)."""
    jobs = _jobs_by_id(snapshot)
    out: dict[str, Any] = {
        "taken_at": _iso(plan.taken_at),
        "starts": [
            {"job_id": s.job_id, "nodes": list(s.nodes), **_job_fields(jobs.get(s.job_id))}
            for s in plan.starts
        ],
        "held": [{"node": h.node, "for_job_id": h.for_job_id} for h in plan.held],
        "waiting": [
            {
                "job_id": w.job_id,
                "position": w.position,
                "reason": str(w.reason),
                "detail": w.detail,
                **_job_fields(jobs.get(w.job_id)),
            }
            for w in plan.waiting
        ],
        "solver": {
            "status": plan.solver.status,
            "objective": plan.solver.objective,
            "bound": plan.solver.bound,
            "gap": plan.solver.gap,
            "wall_s": plan.solver.wall_s,
            "variables": plan.solver.variables,
            "constraints": plan.solver.constraints,
        },
    }
    if snapshot is not None:
        out["lab"] = lab_counts(snapshot)
        out["paused_tubes"] = sorted(snapshot.paused_tubes)
        out["invalid"] = [
            {"job_id": bad.job_id, "tube": bad.tube, "error": bad.error} for bad in snapshot.invalid
        ]
    return out


def _cell(value: Any, width: int = 60) -> str:
    text = "-" if value is None or value == "" else str(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def format_table(
    headers: Sequence[str], rows: Iterable[Sequence[Any]], last_free: bool = True
) -> list[str]:
    """Left-aligned columns two spaces apart; cells are cut at 60 characters but the last one."""
    cells = [
        [_cell(v, 10**6 if last_free and i == len(headers) - 1 else 60) for i, v in enumerate(row)]
        for row in rows
    ]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return lines


def _capped(rows: list[list[Any]], limit: int | None) -> tuple[list[list[Any]], int]:
    if limit is None or len(rows) <= limit:
        return rows, 0
    return rows[:limit], len(rows) - limit


def _nodes_text(names: Sequence[str]) -> str:
    return ",".join(names) if names else "(none needed)"


def _section(
    title: str, headers: Sequence[str], rows: list[list[Any]], limit: int | None
) -> list[str]:
    """A titled table; `title` may contain `{n}` for the row count, else the count follows it."""
    shown, more = _capped(rows, limit)
    lines = [(title.format(n=len(rows)) if "{n}" in title else f"{title} ({len(rows)})") + ":"]
    if not rows:
        return [*lines, "  (none)", ""]
    lines += ["  " + line for line in format_table(headers, shown)]
    if more:
        lines.append(f"  ... and {more} more (raise --limit to see them, or use --json)")
    return [*lines, ""]


def format_solver(plan: Plan) -> str:
    """One line: status, objective, bound and gap (policy weight units), wall time in seconds."""
    s = plan.solver
    return (
        f"solver: {s.status}, objective {s.objective:.4f} weight units, bound {s.bound:.4f}, "
        f"gap {100.0 * s.gap:.2f} %, time {s.wall_s:.3f} s "
        f"({s.variables} variables, {s.constraints} constraints)"
    )


def format_plan(plan: Plan, snapshot: Snapshot, *, limit: int | None = 50) -> str:
    """The plan as text tables: starts, waiting jobs in order with reasons, held nodes, solver line.

    Each table shows at most `limit` rows (None: all) and says how many more there are.
    """
    jobs = _jobs_by_id(snapshot)
    counts = lab_counts(snapshot)
    paused = ", ".join(sorted(snapshot.paused_tubes)) or "none"
    lines = [
        f"snapshot taken at {_iso(snapshot.taken_at)}: {counts['nodes']} nodes "
        f"({counts['free']} free, {counts['down']} down, {counts['locked_by_jobs']} used by "
        f"running jobs, {counts['locked_by_people']} locked by people), {counts['queued']} queued "
        f"jobs, {counts['running_jobs']} running, paused tubes: {paused}",
        "",
    ]

    def job_cells(job_id: str) -> list[Any]:
        job = jobs.get(job_id)
        if job is None:
            return [job_id, None, None, None]
        return [job_id, job.run, job.owner, job.priority]

    start_rows = [[*job_cells(s.job_id), _nodes_text(s.nodes)] for s in plan.starts]
    lines += _section("starts", ["job", "run", "owner", "priority", "nodes"], start_rows, limit)

    wait_rows = []
    for w in plan.waiting:
        job = jobs.get(w.job_id)
        needed = f"{job.nodes_needed} {','.join(job.machine_types)}" if job else None
        wait_rows.append([w.position, *job_cells(w.job_id), needed, str(w.reason), w.detail])
    lines += _section(
        "waiting, in dispatch order",
        ["pos", "job", "run", "owner", "priority", "needs", "reason", "detail"],
        wait_rows,
        limit,
    )

    by_job: dict[str, list[str]] = {}
    for hold in plan.held:
        by_job.setdefault(hold.for_job_id, []).append(hold.node)
    held_rows = [
        [*job_cells(job_id), len(names), ",".join(names)] for job_id, names in by_job.items()
    ]
    lines += _section(
        f"held nodes ({len(plan.held)} nodes kept free for {{n}} job(s))",
        ["job", "run", "owner", "priority", "held", "nodes"],
        held_rows,
        limit,
    )

    if snapshot.invalid:
        bad_rows = [[bad.job_id, bad.tube, bad.error] for bad in snapshot.invalid]
        lines += _section(
            "invalid queue entries (the dispatcher buries them)",
            ["job", "tube", "error"],
            bad_rows,
            limit,
        )
    lines.append(format_solver(plan))
    return "\n".join(lines)


def summary_counts(plan: Plan) -> Mapping[str, int]:
    """How many starts, held nodes and waiting jobs a plan has."""
    return {"starts": len(plan.starts), "held": len(plan.held), "waiting": len(plan.waiting)}

"""Changes to the queue that people ask for, shared by the `queue` CLI and the web API.

Each function takes an open `JobQueue` and does one admin action the same
way whichever front end asked: pause or resume a tube, delete jobs (by id or
by run), change priorities (of a job or of a whole run), kick buried jobs.
Bad input raises `InputError`, an unknown job or run `NotFound`, a job the
dispatcher is starting right now `Conflict`, each with a message naming the
thing and the fix. The JSON-ready records both front ends list jobs with are
here too (`list_records`, `stats_records`, `buried_records`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from optialloc.errors import Conflict, InputError, NotFound
from optialloc.ports import BuriedJob, JobQueue, TubeStats
from optialloc.queue.embedded import EmbeddedQueue, check_priority
from optialloc.queue.store import Row

#: job_id -> (position, reason, detail) from the dispatcher's last explained tick.
Positions = Mapping[str, tuple[int, str, str]]


# -- records (pure) ------------------------------------------------------------------


def format_age(seconds: float) -> str:
    """A short age with its unit: 45 s, 12 min, 3.5 h, 2.1 d."""
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def list_records(
    rows: Sequence[Row], now: float, positions: Positions | None = None
) -> list[dict[str, Any]]:
    """One JSON-ready record per pending row; position/reason come from the dispatcher if given."""
    records = []
    for row in rows:
        position, reason, detail = (positions or {}).get(row.job_id, (None, None, None))
        records.append(
            {
                "job_id": row.job_id,
                "tube": row.tube,
                "priority": row.priority,
                "owner": row.owner or "",
                "run": row.run or "",
                "nodes": row.nodes if row.nodes is not None else 0,
                "queued_at": datetime.fromtimestamp(row.queued_at, UTC).isoformat(),
                "age_s": round(max(0.0, now - row.queued_at), 3),
                "state": row.state,
                "position": position,
                "reason": reason,
                "detail": detail,
            }
        )
    return records


def stats_records(stats: Sequence[TubeStats]) -> list[dict[str, Any]]:
    return [
        {
            "tube": s.tube,
            "ready": s.ready,
            "claimed": s.claimed,
            "buried": s.buried,
            "paused": s.paused,
            "pause_seconds_left": s.pause_seconds_left,
        }
        for s in stats
    ]


def buried_records(buried: Sequence[BuriedJob]) -> list[dict[str, Any]]:
    return [
        {
            "job_id": b.job_id,
            "tube": b.tube,
            "reason": b.reason,
            "buried_at": b.buried_at.isoformat(),
        }
        for b in buried
    ]


# -- reads and actions -----------------------------------------------------------------


def listing_rows(queue: JobQueue, states: Sequence[str]) -> list[Row]:
    """Stored rows in `states`, in queue order, without building `Job`s (cheap listings)."""
    if isinstance(queue, EmbeddedQueue):  # both adapters derive from it
        return queue.rows(states)
    raise InputError("queue_backend", "this queue adapter has no listing")


def ids_of_run(queue: JobQueue, run: str, states: Sequence[str]) -> list[str]:
    """The job ids of `run` in `states`; `NotFound` when it has none."""
    ids = [r.job_id for r in listing_rows(queue, states) if r.run == run]
    if not ids:
        raise NotFound(f"no queued job of run {run!r}: check the name with `optialloc queue list`")
    return ids


def pause_tube(queue: JobQueue, tube: str, seconds: int) -> None:
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds <= 0:
        raise InputError("seconds", f"{seconds!r} is not a positive number of seconds")
    if not tube:
        raise InputError("tube", "empty: name the tube (machine type or 'multi')")
    queue.pause(tube, seconds)


def resume_tube(queue: JobQueue, tube: str) -> None:
    if not tube:
        raise InputError("tube", "empty: name the tube (machine type or 'multi')")
    queue.resume(tube)


def delete_jobs(queue: JobQueue, job_ids: Sequence[str] = (), run: str | None = None) -> list[str]:
    """Delete these jobs, or every pending and buried job of `run`; returns the ids deleted.

    Nothing is deleted unless every job exists and none is being started.
    """
    if bool(run) == bool(job_ids):
        raise InputError("delete", "give either JOB_ID... or --run NAME (not both, not neither)")
    ids = ids_of_run(queue, run, ("pending", "buried")) if run else list(job_ids)
    claimed = {j.job_id for j in queue.claimed()}
    busy = [i for i in ids if i in claimed]
    if busy:
        raise Conflict(
            f"job(s) {', '.join(busy)} are being started by the dispatcher: "
            "wait for them to run, then stop them with teuthology-kill"
        )
    for job_id in ids:
        if isinstance(queue, EmbeddedQueue) and queue.store.row(job_id) is None:
            raise NotFound(f"no job {job_id} in the queue: list jobs with `optialloc queue list`")
    for job_id in ids:
        queue.delete(job_id)
    return ids


def set_priority(
    queue: JobQueue, priority: int, job_id: str | None = None, run: str | None = None
) -> list[str]:
    """Give one job, or every pending job of `run`, this priority; returns the ids changed."""
    if bool(run) == bool(job_id):
        raise InputError("priority", "give JOB_ID N, or --run NAME N")
    check_priority(priority)
    ids = ids_of_run(queue, run, ("pending",)) if run else [str(job_id)]
    for one in ids:
        queue.set_priority(one, priority)
    return ids


def kick_jobs(queue: JobQueue, job_ids: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """Return buried jobs to the queue: (kicked ids, {id: reason} of those that stay buried)."""
    if not job_ids:
        raise InputError("job_ids", "name at least one buried job (see `optialloc queue buried`)")
    kicked = queue.kick(job_ids)
    wanted = set(job_ids)
    still = {b.job_id: b.reason for b in queue.buried() if b.job_id in wanted}
    return kicked, still

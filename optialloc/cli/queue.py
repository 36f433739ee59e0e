"""`optialloc queue`: list, inspect and change the job queue (replaces `teuthology-queue`).

Works on the configured queue (beanstalkd or embedded). Listing never
hides or reorders jobs: it reads optialloc's store, after moving any new
beanstalkd jobs into it (see docs/queue.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from optialloc.cli.tables import table
from optialloc.config import load_config
from optialloc.dispatch.journal import last_positions
from optialloc.errors import Conflict, InputError, NotFound
from optialloc.ports import BuriedJob, JobQueue, TubeStats
from optialloc.queue import open_queue
from optialloc.queue.embedded import EmbeddedQueue
from optialloc.queue.store import Row

#: How long the CLI retries an unreachable beanstalkd before giving up (seconds).
CLI_RETRY_S = 3.0

#: Optional source of (position, reason) per job id, wired in by the dispatcher work.
#: job_id -> (position, reason, detail) from the dispatcher's last tick.
Positions = Mapping[str, tuple[int, str, str]]

EXAMPLES = {
    "list": "optialloc queue list\n  optialloc queue list --tube smithi --owner scheduled_me@host\n"
    "  optialloc queue list --run my-run --json",
    "stats": "optialloc queue stats\n  optialloc queue stats --json",
    "pause": "optialloc queue pause smithi --seconds 3600",
    "resume": "optialloc queue resume smithi",
    "delete": "optialloc queue delete 1234 1235\n  optialloc queue delete --run my-run",
    "priority": "optialloc queue priority 1234 50\n  optialloc queue priority --run my-run 50",
    "buried": "optialloc queue buried\n  optialloc queue buried --json",
    "kick": "optialloc queue kick 1234 1235",
}


def open_configured_queue(args: argparse.Namespace) -> JobQueue:
    """The queue named by the global --config (or $OPTIALLOC_CONFIG, or the default)."""
    return open_queue(load_config(getattr(args, "config", None)), retry_s=CLI_RETRY_S)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "queue",
        help="list and change queued jobs (teuthology-queue for every tube)",
        description=__doc__.splitlines()[0] if __doc__ else None,
        epilog="examples:\n  " + "\n  ".join(e.splitlines()[0] for e in EXAMPLES.values()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="queue_command", metavar="ACTION", required=True)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog="examples:\n  " + EXAMPLES[name],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        return p

    p = add("list", "every pending job with tube, priority, owner, run, nodes and age")
    p.add_argument("--tube", help="only this tube")
    p.add_argument("--run", help="only this run (job `name`)")
    p.add_argument("--owner", help="only this owner")
    p.add_argument("--json", action="store_true", help="a JSON list of objects")
    p.set_defaults(func=cmd_list)

    p = add("stats", "per tube: ready, claimed, buried, paused")
    p.add_argument("--json", action="store_true", help="a JSON list of objects")
    p.set_defaults(func=cmd_stats)

    p = add("pause", "stop dispatching a tube's jobs for a while")
    p.add_argument("tube")
    p.add_argument("--seconds", type=int, required=True, help="pause length in seconds")
    p.set_defaults(func=cmd_pause)

    p = add("resume", "end a tube's pause now")
    p.add_argument("tube")
    p.set_defaults(func=cmd_resume)

    p = add("delete", "remove queued jobs for good (by id or by run)")
    p.add_argument("job_ids", nargs="*", metavar="JOB_ID")
    p.add_argument("--run", help="every pending and buried job of this run")
    p.set_defaults(func=cmd_delete)

    p = add("priority", "change the priority of queued jobs (lower = more urgent)")
    p.add_argument(
        "args", nargs="+", metavar="JOB_ID N | N", help="JOB_ID and new priority, or N with --run"
    )
    p.add_argument("--run", help="every pending job of this run")
    p.set_defaults(func=cmd_priority)

    p = add("buried", "jobs set aside, with the reason")
    p.add_argument("--json", action="store_true", help="a JSON list of objects")
    p.set_defaults(func=cmd_buried)

    p = add("kick", "return buried jobs to the queue")
    p.add_argument("job_ids", nargs="+", metavar="JOB_ID")
    p.set_defaults(func=cmd_kick)


# -- formatting (pure) -----------------------------------------------------------


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


def format_list(records: Sequence[Mapping[str, Any]]) -> str:
    lines = [
        (
            r["position"],
            r["job_id"],
            r["tube"],
            r["priority"],
            r["owner"],
            r["run"],
            r["nodes"],
            format_age(r["age_s"]),
            r["reason"],
            r["detail"],
        )
        for r in records
    ]
    headers = ("POS", "JOB_ID", "TUBE", "PRIO", "OWNER", "RUN", "NODES", "AGE", "REASON", "DETAIL")
    out = table(headers, lines)
    return out + f"\n{len(records)} job(s) pending"


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


def _emit(data: Any, as_json: bool, text: str) -> None:
    sys.stdout.write((json.dumps(data, indent=1) if as_json else text) + "\n")


# -- handlers ---------------------------------------------------------------------


def _rows(queue: JobQueue, states: Sequence[str]) -> list[Row]:
    if isinstance(queue, EmbeddedQueue):  # both adapters: a cheap listing without building Jobs
        return queue.rows(states)
    raise InputError("queue_backend", "this queue adapter has no listing")


def dispatcher_positions(args: argparse.Namespace) -> Positions:
    """Position, reason and detail per job from the last tick of a dispatcher on this state."""
    return last_positions(load_config(getattr(args, "config", None)).state_dir)


def cmd_list(args: argparse.Namespace, positions: Positions | None = None) -> int:
    if positions is None:
        positions = dispatcher_positions(args)
    queue = open_configured_queue(args)
    try:
        rows = [
            r
            for r in _rows(queue, ("pending",))
            if (args.tube is None or r.tube == args.tube)
            and (args.run is None or r.run == args.run)
            and (args.owner is None or r.owner == args.owner)
        ]
    finally:
        queue.close()
    records = list_records(rows, time.time(), positions)
    # Dispatch order when a dispatcher has ranked the jobs; jobs newer than its
    # last tick follow in queue order.
    records.sort(key=lambda r: (r["position"] is None, r["position"] or 0))
    _emit(records, args.json, format_list(records))
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    queue = open_configured_queue(args)
    try:
        records = stats_records(queue.stats())
    finally:
        queue.close()
    lines = [
        (
            r["tube"],
            r["ready"],
            r["claimed"],
            r["buried"],
            f"yes, {r['pause_seconds_left']} s left" if r["paused"] else "no",
        )
        for r in records
    ]
    _emit(records, args.json, table(("TUBE", "READY", "CLAIMED", "BURIED", "PAUSED"), lines))
    return 0


def cmd_pause(args: argparse.Namespace) -> int:
    if args.seconds <= 0:
        raise InputError("--seconds", f"{args.seconds} is not a positive number of seconds")
    queue = open_configured_queue(args)
    try:
        queue.pause(args.tube, args.seconds)
    finally:
        queue.close()
    print(f"tube {args.tube} paused for {args.seconds} s")
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    queue = open_configured_queue(args)
    try:
        queue.resume(args.tube)
    finally:
        queue.close()
    print(f"tube {args.tube} resumed")
    return 0


def _ids_of_run(queue: JobQueue, run: str, states: Sequence[str]) -> list[str]:
    ids = [r.job_id for r in _rows(queue, states) if r.run == run]
    if not ids:
        raise NotFound(f"no queued job of run {run!r}: check the name with `optialloc queue list`")
    return ids


def cmd_delete(args: argparse.Namespace) -> int:
    if bool(args.run) == bool(args.job_ids):
        raise InputError("delete", "give either JOB_ID... or --run NAME (not both, not neither)")
    queue = open_configured_queue(args)
    try:
        ids = (
            _ids_of_run(queue, args.run, ("pending", "buried")) if args.run else list(args.job_ids)
        )
        claimed = {j.job_id for j in queue.claimed()}
        busy = [i for i in ids if i in claimed]
        if busy:
            raise Conflict(
                f"job(s) {', '.join(busy)} are being started by the dispatcher: "
                "wait for them to run, then stop them with teuthology-kill"
            )
        for job_id in ids:
            if isinstance(queue, EmbeddedQueue) and queue.store.row(job_id) is None:
                raise NotFound(
                    f"no job {job_id} in the queue: list jobs with `optialloc queue list`"
                )
        for job_id in ids:
            queue.delete(job_id)
    finally:
        queue.close()
    print(f"deleted {len(ids)} job(s): {' '.join(ids)}")
    return 0


def cmd_priority(args: argparse.Namespace) -> int:
    expected = 1 if args.run else 2
    if len(args.args) != expected:
        raise InputError("priority", "give JOB_ID N, or --run NAME N")
    try:
        priority = int(args.args[-1])
    except ValueError as exc:
        raise InputError(
            "N", f"{args.args[-1]!r} is not an integer priority (lower = more urgent)"
        ) from exc
    queue = open_configured_queue(args)
    try:
        ids = _ids_of_run(queue, args.run, ("pending",)) if args.run else [args.args[0]]
        for job_id in ids:
            queue.set_priority(job_id, priority)
    finally:
        queue.close()
    print(f"priority {priority} set on {len(ids)} job(s)")
    return 0


def cmd_buried(args: argparse.Namespace) -> int:
    queue = open_configured_queue(args)
    try:
        records = buried_records(queue.buried())
    finally:
        queue.close()
    lines = [
        (r["job_id"], r["tube"], r["buried_at"][:19].replace("T", " "), r["reason"])
        for r in records
    ]
    text = (
        table(("JOB_ID", "TUBE", "BURIED_AT_UTC", "REASON"), lines)
        + f"\n{len(records)} job(s) buried"
    )
    _emit(records, args.json, text)
    return 0


def cmd_kick(args: argparse.Namespace) -> int:
    queue = open_configured_queue(args)
    try:
        kicked = queue.kick(args.job_ids)
        still = {b.job_id: b.reason for b in queue.buried() if b.job_id in set(args.job_ids)}
    finally:
        queue.close()
    print(f"kicked {len(kicked)} job(s): {' '.join(kicked) or '-'}")
    for job_id, reason in still.items():
        print(f"job {job_id} stays buried: {reason}", file=sys.stderr)
    return 0 if not still else int(InputError.exit_code)

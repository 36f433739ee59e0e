"""`optialloc queue`: list, inspect and change the job queue (replaces `teuthology-queue`).

Works on the configured queue (beanstalkd or embedded).

What each action touches, with `queue_backend: beanstalk`:
  list, stats, buried   read only: optialloc's store, and beanstalkd by `peek` and
                        `stats-*` (no reserve, delete, bury, kick or priority change;
                        jobs stay ready in their tubes, in order). Safe beside
                        teuthology's own dispatchers.
  pause, resume         pause/unpause the tube in beanstalkd too (teuthology sees it)
  delete, priority, kick  move the jobs from beanstalkd into optialloc's store first
                        (as `serve` does), then change them there
See docs/queue.md and docs/operations.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from optialloc.cli.actions import add_action
from optialloc.cli.tables import table
from optialloc.config import describe_queue, load_config
from optialloc.dispatch.journal import last_positions
from optialloc.errors import InputError
from optialloc.ports import JobQueue
from optialloc.queue import admin, open_queue
from optialloc.queue.admin import (
    Positions,
    buried_records,
    format_age,
    list_records,
    stats_records,
)

__all__ = ["Positions", "buried_records", "format_age", "list_records", "stats_records"]

#: How long the CLI retries an unreachable beanstalkd before giving up (seconds).
CLI_RETRY_S = 3.0

EXAMPLES = {
    "list": "optialloc queue list\n  optialloc queue list --tube smithi --owner scheduled_me@host\n"
    "  optialloc queue list --run my-run --json",
    "stats": "optialloc queue stats\n  optialloc queue stats --json",
    "pause": "optialloc queue pause smithi --seconds 3600",
    "resume": "optialloc queue resume smithi",
    "delete": "optialloc queue delete 3 4\n  optialloc queue delete --run my-run",
    "priority": "optialloc queue priority 2 50\n  optialloc queue priority --run my-run 50",
    "buried": "optialloc queue buried\n  optialloc queue buried --json",
    "kick": "optialloc queue kick 5 6",
}


def open_configured_queue(args: argparse.Namespace, *, read_only: bool = False) -> JobQueue:
    """The queue named by the global --config (or $OPTIALLOC_CONFIG, or the default).

    `read_only`: the listings; with beanstalkd they peek and change nothing there.
    """
    return open_queue(
        load_config(getattr(args, "config", None)), retry_s=CLI_RETRY_S, read_only=read_only
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "queue",
        help="list and change queued jobs (teuthology-queue for every tube)",
        description=__doc__,
        epilog="examples:\n  " + "\n  ".join(e.splitlines()[0] for e in EXAMPLES.values()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="queue_command", metavar="ACTION", required=True)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        return add_action(sub, name, help_text, EXAMPLES[name])

    p = add(
        "list",
        "every pending job with tube, priority, owner, run, nodes and age "
        "(read only: changes nothing in beanstalkd)",
    )
    p.add_argument("--tube", help="only this tube")
    p.add_argument("--run", help="only this run (job `name`)")
    p.add_argument("--owner", help="only this owner")
    p.add_argument("--json", action="store_true", help="a JSON list of objects")
    p.set_defaults(func=cmd_list)

    p = add("stats", "per tube: ready, claimed, buried, paused (read only)")
    p.add_argument("--json", action="store_true", help="a JSON list of objects")
    p.set_defaults(func=cmd_stats)

    p = add("pause", "stop dispatching a tube's jobs for a while")
    p.add_argument("tube")
    p.add_argument("--seconds", type=int, required=True, help="pause length in seconds")
    p.set_defaults(func=cmd_pause)

    p = add("resume", "end a tube's pause now")
    p.add_argument("tube")
    p.set_defaults(func=cmd_resume)

    p = add(
        "delete",
        "remove queued jobs for good (by id or by run; moves beanstalkd's jobs into "
        "optialloc's store first)",
    )
    p.add_argument("job_ids", nargs="*", metavar="JOB_ID")
    p.add_argument("--run", help="every pending and buried job of this run")
    p.set_defaults(func=cmd_delete)

    p = add(
        "priority",
        "change the priority of queued jobs (lower = more urgent; moves beanstalkd's "
        "jobs into optialloc's store first)",
    )
    p.add_argument(
        "args", nargs="+", metavar="JOB_ID N | N", help="JOB_ID and new priority, or N with --run"
    )
    p.add_argument("--run", help="every pending job of this run")
    p.set_defaults(func=cmd_priority)

    p = add("buried", "jobs set aside, with the reason (read only)")
    p.add_argument("--json", action="store_true", help="a JSON list of objects")
    p.set_defaults(func=cmd_buried)

    p = add(
        "kick",
        "return buried jobs to the queue (moves beanstalkd's jobs into optialloc's store first)",
    )
    p.add_argument("job_ids", nargs="+", metavar="JOB_ID")
    p.set_defaults(func=cmd_kick)


# -- formatting (pure) -----------------------------------------------------------


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


def _emit(data: Any, as_json: bool, text: str) -> None:
    sys.stdout.write((json.dumps(data, indent=1) if as_json else text) + "\n")


# -- handlers ---------------------------------------------------------------------


def dispatcher_positions(args: argparse.Namespace) -> Positions:
    """Position, reason and detail per job from the last tick of a dispatcher on this state."""
    return last_positions(load_config(getattr(args, "config", None)).state_dir)


def cmd_list(args: argparse.Namespace, positions: Positions | None = None) -> int:
    if positions is None:
        positions = dispatcher_positions(args)
    queue = open_configured_queue(args, read_only=True)
    try:
        rows = [
            r
            for r in admin.listing_rows(queue, ("pending",))
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
    queue = open_configured_queue(args, read_only=True)
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


def _say_where(args: argparse.Namespace) -> None:
    """The one line a queue-changing command prints: which queue it changed."""
    config = load_config(getattr(args, "config", None))
    print(f"optialloc queue: changed {describe_queue(config)}", file=sys.stderr)


def cmd_pause(args: argparse.Namespace) -> int:
    if args.seconds <= 0:
        raise InputError("--seconds", f"{args.seconds} is not a positive number of seconds")
    queue = open_configured_queue(args)
    try:
        admin.pause_tube(queue, args.tube, args.seconds)
    finally:
        queue.close()
    print(f"tube {args.tube} paused for {args.seconds} s")
    _say_where(args)
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    queue = open_configured_queue(args)
    try:
        admin.resume_tube(queue, args.tube)
    finally:
        queue.close()
    print(f"tube {args.tube} resumed")
    _say_where(args)
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    if bool(args.run) == bool(args.job_ids):
        raise InputError("delete", "give either JOB_ID... or --run NAME (not both, not neither)")
    queue = open_configured_queue(args)
    try:
        ids = admin.delete_jobs(queue, args.job_ids, args.run)
    finally:
        queue.close()
    print(f"deleted {len(ids)} job(s): {' '.join(ids)}")
    _say_where(args)
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
        job_id = None if args.run else args.args[0]
        ids = admin.set_priority(queue, priority, job_id=job_id, run=args.run)
    finally:
        queue.close()
    print(f"priority {priority} set on {len(ids)} job(s)")
    _say_where(args)
    return 0


def cmd_buried(args: argparse.Namespace) -> int:
    queue = open_configured_queue(args, read_only=True)
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
        kicked, still = admin.kick_jobs(queue, args.job_ids)
    finally:
        queue.close()
    print(f"kicked {len(kicked)} job(s): {' '.join(kicked) or '-'}")
    _say_where(args)
    for job_id, reason in still.items():
        print(f"job {job_id} stays buried: {reason}", file=sys.stderr)
    return 0 if not still else int(InputError.exit_code)

"""Crash points, failing one attempt, and settling a finished attempt, crash-safely.

A tick's Starts are committed together by `optialloc.dispatch.commit_batch`; every job
goes through the same journal states in the same order (each journal write
committed before the next side effect; see docs/reliability.md for why it
gives exactly-once):

    journal intent -> queue.claim -> inventory.lock -> journal locked
    -> runner.prepare (retire an earlier attempt's files) -> journal launching
    -> runner.launch -> journal running(pid)

The queue entry stays `claimed` while the job runs and is deleted (or
buried, with the reason) when the attempt is settled, so a job killed by the
monitor is buried under its own id. Settling a terminal row = release or mark
down the nodes, delete/bury/release the queue entry, report, mark settled.
Every settle step is idempotent; a backend that is down leaves the row
unsettled and the next tick tries again.

Crash points for the tests: `OPTIALLOC_CRASH_AT=<step>[:<n>]` kills the
process with SIGKILL the n-th time (default first) it passes `<step>`, one of
`STEPS`; each job of a batch passes each commit step once. Never set it in
production.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

from optialloc.dispatch.context import CommitContext
from optialloc.dispatch.journal import DispatchRow
from optialloc.domain import Job
from optialloc.errors import BackendUnavailable, Conflict
from optialloc.ports import LaunchHandle

log = logging.getLogger(__name__)

CRASH_ENV = "OPTIALLOC_CRASH_AT"
STEPS = (
    "intent",
    "claim",
    "lock",
    "locked",
    "prepare",
    "launching",
    "launch",
    "running",
    "finish",
    "unlock",
    "settle",
)

_crash_counts: dict[str, int] = {}
_crash_lock = threading.Lock()  # launches pass their crash point on several threads


def crash_point(step: str) -> None:
    """Die here (SIGKILL) if `OPTIALLOC_CRASH_AT` names this step (tests only)."""
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return
    name, _, nth = spec.partition(":")
    if name != step:
        return
    with _crash_lock:
        _crash_counts[step] = _crash_counts.get(step, 0) + 1
        due = _crash_counts[step] >= int(nth or 1)
    if due:
        log.warning("crash point %s reached: killing the dispatcher (%s=%s)", step, CRASH_ENV, spec)
        logging.shutdown()
        os.kill(os.getpid(), signal.SIGKILL)


def _path_part(text: str, default: str) -> str:
    # a run name is user input: never let it climb out of archive_base
    part = text.replace("/", "_").replace("\0", "_")
    return default if part in ("", ".", "..") else part


def archive_path_for(archive_base: str, job: Job) -> str:
    """`<archive_base>/<run>/<job_id>`, teuthology's layout."""
    return os.path.join(
        archive_base, _path_part(job.run, "unnamed-run"), _path_part(job.job_id, "no-id")
    )


def fail_attempt(
    d: CommitContext,
    row_id: int,
    reason: str,
    *,
    node_action: str,
    disposition: str,
    settle: bool = False,
) -> None:
    """End attempt `row_id` as failed and do what it owes (`node_action`, `disposition`).

    `settle=True`: nothing is owed (e.g. the claim was refused), the row is
    closed at once.
    """
    now = d.clock.now()
    d.journal.advance(
        row_id,
        "failed",
        now,
        reason=reason,
        node_action=node_action,
        disposition=disposition,
        settled=1 if settle else 0,
    )
    if not settle:
        row = d.journal.get(row_id)
        if row is not None:
            settle_row(d, row)


def finish(
    d: CommitContext, row_id: int, handle: LaunchHandle, status: int, kill_reason: str | None
) -> str:
    """Record the end of a running attempt and settle it; returns the outcome line."""
    row = d.journal.get(row_id)
    if row is None:  # pragma: no cover - rows are never deleted
        return "unknown row"
    failed = status != 0
    down = failed and d.settings.mark_down_on_failure
    node_action = "down" if down else "unlock"
    now = d.clock.now()
    if kill_reason is not None:
        state, disposition, reason = "killed", "bury", f"killed by the monitor: {kill_reason}"
    elif status in (126, 127):
        # The shell could not run the command: burying beats failing every retry.
        state, disposition = "failed", "bury"
        reason = (
            f"runner command could not be run (exit {status}): {_last_line(handle.archive_path)}"
        )
    else:
        state, disposition, reason = "done", "delete", None
    d.journal.advance(
        row_id,
        state,
        now,
        exit_status=status,
        reason=reason,
        node_action=node_action,
        disposition=disposition,
    )
    crash_point("finish")
    row = d.journal.get(row_id)
    if row is not None:
        settle_row(d, row)
    return reason or f"exit {status}"


def _last_line(archive_path: str) -> str:
    for name in ("output.log", "supervisor.log"):
        try:
            with open(os.path.join(archive_path, name), "rb") as handle:
                handle.seek(0, os.SEEK_END)
                size = handle.tell()
                handle.seek(max(0, size - 400))
                lines = handle.read().decode("utf-8", "replace").strip().splitlines()
        except OSError:
            continue
        if lines:
            return lines[-1]
    return "no output"


def settle_row(d: CommitContext, row: DispatchRow) -> bool:
    """Do what a terminal row still owes the lock server and the queue. True once settled."""
    try:
        if row.node_action in ("unlock", "down") and row.nodes:
            if row.node_action == "down":
                d.inventory.set_up(list(row.nodes), False)
            try:
                d.inventory.unlock(list(row.nodes), row.archive_path)
            except Conflict as exc:
                log.info(
                    "job %s: nodes %s not ours to unlock (%s)", row.job_id, ",".join(row.nodes), exc
                )
        crash_point("unlock")
        if row.disposition == "delete":
            d.queue.delete(row.job_id)
        elif row.disposition == "bury":
            d.queue.bury(row.job_id, row.reason or "failed")
        elif row.disposition == "release":
            d.queue.release(row.job_id)
    except BackendUnavailable as exc:
        log.warning("job %s: cannot settle yet (%s); retrying next tick", row.job_id, exc)
        return False
    crash_point("settle")
    d.journal.settle(row.id, d.clock.now())
    if row.state == "killed":
        d.report(row.job, "dead", failure_reason=row.reason or "killed")
    elif row.state == "done":
        d.report(row.job, "pass" if row.exit_status == 0 else "fail", exit_status=row.exit_status)
    elif row.state == "failed" and row.disposition == "bury":
        d.report(row.job, "dead", failure_reason=row.reason or "failed")
    return True

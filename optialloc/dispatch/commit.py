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

import hashlib
import logging
import os
import re
import signal
import threading
from collections.abc import Sequence

from optialloc.dispatch.context import CommitContext
from optialloc.dispatch.journal import DispatchRow
from optialloc.domain import Job, Node
from optialloc.errors import BackendUnavailable, Conflict
from optialloc.ports import Inventory, LaunchHandle

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


#: Longest directory name made from a run name, in bytes (file systems allow 255).
MAX_RUN_PART = 200
# What a directory name keeps as it is: teuthology's run names are made of these.
_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:+=@,~-]*")
_UNSAFE_CHAR = re.compile(r"[^A-Za-z0-9_.:+=@,~-]")


def _path_part(text: str, default: str) -> str:
    """A directory name for `text` (user input): itself when it is a plain name of at
    most `MAX_RUN_PART` bytes, else a readable prefix plus a digest of the whole.

    Never empty, `.`, `..`, never holds `/`, NUL, control characters, ESC, newlines
    or anything but `[A-Za-z0-9_.:+=@,~-]`, so it can neither leave archive_base nor
    be refused by the file system. Stable (a function of `text`) and unique (the
    digest marks every changed name, so it cannot collide with a plain one).
    """
    if not text:
        return default
    if len(text) <= MAX_RUN_PART and _SAFE_NAME.fullmatch(text):
        return text
    digest = hashlib.sha256(text.encode("utf-8", "backslashreplace")).hexdigest()[:16]
    prefix = _UNSAFE_CHAR.sub("_", text[: MAX_RUN_PART - len(digest) - 1])
    return f"{prefix}-{digest}"


def archive_path_for(archive_base: str, job: Job) -> str:
    """`<archive_base>/<run>/<job_id>`, teuthology's layout (names made safe: `_path_part`)."""
    return os.path.join(
        archive_base, _path_part(job.run, "unnamed-run"), _path_part(job.job_id, "no-id")
    )


def signal_of(status: int) -> signal.Signals | None:
    """The signal a wrapper's exit status says ended the command (the shell's 128 + n)."""
    if 128 < status < 128 + 65:
        try:
            return signal.Signals(status - 128)
        except ValueError:
            return None
    return None


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
    elif signal_of(status) is not None:
        state, disposition, reason = "failed", _after_signal(d, row), _signal_reason(status, handle)
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


#: With `on_runner_signal: retry`, a job ended by a signal is queued again this many
#: times at most; then it is buried (a job that always dies must not loop forever).
SIGNAL_RETRIES = 2


def _signal_reason(status: int, handle: LaunchHandle) -> str:
    sig = signal_of(status)
    name = sig.name if sig is not None else f"signal {status - 128}"
    return (
        f"runner ended by signal {name} (exit {status}), not by the monitor: "
        f"{_last_line(handle.archive_path)}"
    )


def _after_signal(d: CommitContext, row: DispatchRow) -> str:
    """bury, or release for another attempt (`on_runner_signal: retry`, a bounded number)."""
    if d.settings.on_runner_signal != "retry":
        return "bury"
    earlier = [
        r
        for r in d.journal.rows_for(row.job_id)
        if r.id != row.id and r.exit_status is not None and signal_of(r.exit_status)
    ]
    return "release" if len(earlier) < SIGNAL_RETRIES else "bury"


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


def report_running(
    d: CommitContext, job: Job, nodes: Sequence[Node], archive_path: str, handle: LaunchHandle
) -> None:
    """Report a launched attempt as `running`: its targets (as teuthology writes them in
    `orig.config.yaml`), archive path, pid and start time."""
    ssh_user = getattr(d.runner, "ssh_user", "ubuntu")
    d.report(
        job,
        "running",
        targets={f"{ssh_user}@{node.name}": node.ssh_pub_key for node in nodes},
        archive_path=archive_path,
        pid=handle.pid,
        started=handle.started_at.isoformat(),
    )


def lock_owner(job: Job, inventory: Inventory) -> str:
    """The `locked_by` a job's nodes are locked and unlocked as: its owner.

    teuthology's dispatcher locks a job's nodes as `job_config.get('owner',
    get_user())`; the job's `check_lock` asserts exactly that, and its
    supervisor unlocks them as that owner. A job without an owner is locked as
    the inventory's own `locked_by` (teuthology's `get_user()`: the dispatcher's
    user@host). Which locks are ours is known from the journal (the row's
    nodes and archive path), never from this name.
    """
    return job.owner or inventory.locked_by


def _release(d: CommitContext, row: DispatchRow) -> bool:
    """Unlock (or mark down and unlock) a row's nodes; False while the lock server is away.

    A node already unlocked (the job's supervisor unlocks its targets as its
    owner) is a normal end; a node someone else holds now is left alone.
    """
    nodes = ",".join(row.nodes)
    try:
        if row.node_action == "down":
            d.inventory.set_up(list(row.nodes), False)
        try:
            d.inventory.unlock(list(row.nodes), row.archive_path, lock_owner(row.job, d.inventory))
        except Conflict as exc:
            log.info("job %s: nodes %s not ours to unlock (%s)", row.job_id, nodes, exc)
            return True
    except BackendUnavailable as exc:
        log.warning(
            "job %s: release pending (lock server unreachable): nodes %s stay locked until it "
            "answers; tried again every tick (%s)",
            row.job_id,
            nodes,
            exc,
        )
        return False
    log.info("job %s: nodes %s released", row.job_id, nodes)
    return True


def settle_row(d: CommitContext, row: DispatchRow) -> bool:
    """Do what a terminal row still owes the lock server and the queue. True once settled."""
    try:
        if row.node_action in ("unlock", "down") and row.nodes and not _release(d, row):
            return False
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
    # Reported (durably, into the outbox) before the row is marked settled: a crash in
    # between settles and reports again, and the outbox drops the identical report.
    if row.state == "killed":
        d.report(row.job, "dead", failure_reason=row.reason or "killed")
    elif row.state == "done":
        d.report(row.job, "pass" if row.exit_status == 0 else "fail", exit_status=row.exit_status)
    elif row.state == "failed" and (row.disposition == "bury" or row.exit_status is not None):
        # buried, or ended by a signal and queued again: paddles shows why this attempt died
        d.report(row.job, "dead", failure_reason=row.reason or "failed")
    crash_point("settle")
    d.journal.settle(row.id, d.clock.now())
    return True

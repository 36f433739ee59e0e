"""Start-up repair: make the journal, the lock server, the queue and the processes agree.

Run once before the first tick (and safe to run again). For every journal
row not yet settled:

- `intent` / `locked`: the job never launched. Unlock what is locked with
  its archive path (idempotent) and release the claim.
- `launching`: look for the wrapper's pid file. Found: adopt the job (it is
  running or has ended). Missing: write the `abandoned` tombstone
  exclusively, so a wrapper that has not started yet never will; the job
  never ran: unlock and release. (If the wrapper won that race, adopt.)
- `running`: the same: adopt through the pid file (the next tick polls it
  like any job); a wrapper that never wrote its pid file is tombstoned, so
  the job never ran: unlock and release.
- terminal but unsettled: finish settling (unlock, delete/bury/release).

Then: a job the queue lists as claimed with no open journal row is released
(the dispatcher died between claim and its journal write cannot happen, since
intent is written first, but another tool may have left it); a leaked lock
is unlocked: a locked node whose description is the archive path of an
attempt this journal recorded, with no open row, and whose locked_by is that
job's lock owner (count mode can leave one when the dispatcher dies between
lock_many and the `locked` write). Which locks are ours is read from the
journal, never from locked_by (a job's nodes are locked as its owner), so a
person's lock, or a teuthology dispatcher's sharing the archive base, is never
touched. Every repair is logged and returned.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection

from optialloc.dispatch.commit import lock_owner, report_running, settle_row
from optialloc.dispatch.context import CommitContext
from optialloc.dispatch.journal import DispatchRow, Journal
from optialloc.domain import Node
from optialloc.errors import BackendUnavailable, Conflict
from optialloc.ports import Inventory, LaunchHandle

log = logging.getLogger(__name__)


def _not_launched(d: CommitContext, row: DispatchRow, why: str, repairs: list[str]) -> None:
    d.journal.advance(
        row.id, "failed", d.clock.now(), reason=why, node_action="unlock", disposition="release"
    )
    fresh = d.journal.get(row.id)
    settled = fresh is not None and settle_row(d, fresh)
    repairs.append(
        f"job {row.job_id}: {why}; nodes {','.join(row.nodes) or '-'} unlocked, "
        f"job returned to the queue{'' if settled else ' (pending: backend down)'}"
    )


def _adopt(d: CommitContext, row: DispatchRow, repairs: list[str]) -> bool:
    handle = d.runner.adopt(row.job_id, row.archive_path)
    if handle is None:
        return False
    started = row.started_at or handle.started_at
    handle = LaunchHandle(row.job_id, handle.pid, handle.pgid, row.archive_path, started)
    if row.state != "running":
        d.journal.advance(
            row.id, "running", d.clock.now(), pid=handle.pid, pgid=handle.pgid, started_at=started
        )
    d.track(row.id, handle, None, None)
    _report_adopted(d, row, handle)
    status = d.runner.poll(handle)
    state = "still running" if status is None else f"ended with exit {status} while we were away"
    repairs.append(f"job {row.job_id}: adopted pid {handle.pid} on {','.join(row.nodes)} ({state})")
    return True


def _report_adopted(d: CommitContext, row: DispatchRow, handle: LaunchHandle) -> None:
    """Report an adopted attempt as `running` unless the outbox already has that report
    (the dispatcher died between launching it and writing the report)."""
    last_status = getattr(d.reporter, "last_status", None)
    if last_status is None or last_status(row.job_id) in ("running", "pass", "fail"):
        return
    try:
        known = {node.name: node for node in d.inventory.nodes()}
    except BackendUnavailable:
        known = {}
    nodes = [known.get(name) or Node(name, "") for name in row.nodes]
    report_running(d, row.job, nodes, row.archive_path, handle)


def _launching(d: CommitContext, row: DispatchRow, repairs: list[str]) -> None:
    if _adopt(d, row, repairs):
        return
    # No pid file: the wrapper has not started yet, or never will. The
    # tombstone settles the race either way: written first, the wrapper finds
    # it and exits without running anything; written second, the wrapper owns
    # the launch and we adopt it (once its pid file is complete).
    abandon = getattr(d.runner, "abandon", None)
    if abandon is not None and not abandon(row.archive_path):
        for _ in range(50):
            if _adopt(d, row, repairs):
                return
            d.clock.sleep(0.1)
        log.error(
            "job %s: wrapper claimed the launch but wrote no pid; looking again next tick",
            row.job_id,
        )
        d.orphans = True
        return
    _not_launched(d, row, "dispatcher stopped while launching; the job never started", repairs)


def retry_orphans(d: CommitContext) -> list[str]:
    """Look again at launches reconcile could not settle yet (a wrapper that wrote no pid)."""
    d.orphans = False
    repairs: list[str] = []
    for row in d.journal.open_rows():
        if row.state in ("launching", "running") and row.id not in d.tracked_rows():
            _launching(d, row, repairs)
    for line in repairs:
        log.warning("reconcile: %s", line)
    return repairs


def journal_locks(
    inventory: Inventory, journal: Journal, archive_base: str, skip: Collection[str] = ()
) -> dict[tuple[str, str], list[str]]:
    """Locked nodes whose lock the journal says optialloc took: names by (description,
    locked_by). A lock is ours when its description is the archive path (under
    `archive_base`) of an attempt the journal recorded and its locked_by is that
    job's lock owner; descriptions in `skip` (open attempts) are left out."""
    base = archive_base.rstrip("/") + "/"
    candidates: dict[str, list[Node]] = {}
    for node in inventory.nodes():
        desc = node.description or ""
        if node.locked and desc.startswith(base) and desc not in skip:
            candidates.setdefault(desc, []).append(node)
    ours: dict[tuple[str, str], list[str]] = {}
    for desc, nodes in candidates.items():
        # archive paths end in the job id (archive_path_for): look the job up by it
        rows = [r for r in journal.rows_for(os.path.basename(desc)) if r.archive_path == desc]
        owners = {lock_owner(r.job, inventory) for r in rows}
        for node in nodes:
            if node.locked_by in owners:
                ours.setdefault((desc, node.locked_by or ""), []).append(node.name)
    return ours


def reconcile(d: CommitContext) -> list[str]:
    """Repair after a crash or restart; returns (and logs) one line per repair."""
    repairs: list[str] = []
    open_rows = d.journal.open_rows()
    for row in open_rows:
        if row.id in d.tracked_rows():
            continue
        if row.state in ("intent", "locked"):
            _not_launched(d, row, f"dispatcher stopped before launch ({row.state})", repairs)
        elif row.state == "launching":
            _launching(d, row, repairs)
        elif row.state == "running":
            # launched: adopt it, or (wrapper never wrote its pid file) tombstone it
            _launching(d, row, repairs)
        elif settle_row(d, row):
            repairs.append(f"job {row.job_id}: finished settling ({row.state}: {row.disposition})")
    active_jobs = {row.job_id for row in d.journal.open_rows()}
    active_paths = {row.archive_path for row in d.journal.open_rows()}
    try:
        for job in d.queue.claimed():
            if job.job_id not in active_jobs:
                d.queue.release(job.job_id)
                repairs.append(f"job {job.job_id}: claimed with no dispatch in progress; released")
        leaked = journal_locks(d.inventory, d.journal, d.settings.archive_base, active_paths)
        for (desc, owner), names in leaked.items():
            try:
                d.inventory.unlock(names, desc, owner)
                repairs.append(f"nodes {','.join(names)}: lock for {desc} had no job; unlocked")
            except Conflict as exc:
                log.warning("could not unlock leaked %s: %s", ",".join(names), exc)
    except BackendUnavailable as exc:
        repairs.append(f"queue/lock check skipped, backend unavailable: {exc}")
    for line in repairs:
        log.warning("reconcile: %s", line)
    if not repairs:
        log.info("reconcile: journal, queue and locks agree; nothing to repair")
    return repairs

"""Committing one tick's Starts together: each step done for the whole batch at once.

Every job goes through the journal states of `optialloc.dispatch.commit` in the same
order; what is shared is the transaction, not the state:

    journal intent (all, one transaction) -> queue.claim (all, one store
    transaction when the queue has `claim_many`) -> inventory.lock (all-or-
    nothing per job; all in one transaction when the inventory has
    `lock_each`) -> journal locked (all, one transaction)
    -> runner.prepare (per job) -> journal launching (all, one transaction)
    -> runner.launch (per job, on a few threads) -> journal running (all, one
    transaction)

Why that is as safe as one job at a time: a job's side effect of step k is
only done once its journal state of step k-1 is committed, and a batched
journal write moves every row of the batch or none, so a crash anywhere
leaves each job in a state reconcile already repairs: `intent` or `locked`
(unlock by description, release), `launching` (adopt through the wrapper's
pid file or tombstone the attempt), `running` (adopt). A job whose step fails
is failed and settled on its own (its nodes released, its queue entry
released or buried) and leaves the batch; the others go on. A queue or lock
server that stops answering fails the rest of the batch with "deferred", and
their claims are released.

`claim_many` (queue), `lock_each` (inventory), `prepare` and `launch_many`
(runner) are optional capabilities of the adapters, found with `getattr`;
without them the step is done one job at a time, in the same order.

Crash points (tests): each job passes `intent`, `claim`, `lock`, `locked`,
`prepare`, `launching`, `launch` and `running` once, right after its step
(a batched journal step: after the batch's transaction).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from optialloc.dispatch.commit import (
    archive_path_for,
    crash_point,
    fail_attempt,
    lock_owner,
    report_running,
)
from optialloc.dispatch.context import DEFERRED, CommitContext
from optialloc.domain import Job, Node
from optialloc.errors import BackendUnavailable, OptiallocError
from optialloc.ports import LaunchHandle

log = logging.getLogger(__name__)


@dataclass
class _Attempt:
    """One Start on its way through the commit."""

    job: Job
    nodes: list[Node]
    archive_path: str
    row_id: int = 0
    moved: bool = False  # the lock server picked other nodes (count mode): record them
    handle: LaunchHandle | None = None
    failure: str | None = None  # why it did not start; None while it goes on

    @property
    def names(self) -> list[str]:
        return [node.name for node in self.nodes]


def commit_starts(
    d: CommitContext, starts: Sequence[tuple[Job, Sequence[Node]]], tick: int
) -> list[tuple[Job, bool, str]]:
    """Claim, lock and launch each (job, nodes); (job, True, its nodes) or (job, False, why).

    Results are in the order of `starts`. One job's failure never stops the
    others, except that a queue or lock server that is down defers every job
    not past that step yet (`d.backend_down` is set).
    """
    attempts = [
        _Attempt(job, list(nodes), archive_path_for(d.settings.archive_base, job))
        for job, nodes in starts
    ]
    if not attempts:
        return []
    ids = d.journal.intents(
        [(a.job, a.names, a.archive_path) for a in attempts], tick, d.clock.now()
    )
    for attempt, row_id in zip(attempts, ids, strict=True):
        attempt.row_id = row_id
        crash_point("intent")
    live = _claim(d, attempts)
    live = _lock(d, live)
    d.journal.advance_many(
        "locked", d.clock.now(), [(a.row_id, {"nodes": a.names} if a.moved else {}) for a in live]
    )
    for _ in live:
        crash_point("locked")
    live = _prepare(d, live)
    deadline = d.clock.now() + timedelta(seconds=d.settings.launch_timeout_s)
    d.journal.advance_many(
        "launching", d.clock.now(), [(a.row_id, {"launch_deadline": deadline}) for a in live]
    )
    for _ in live:
        crash_point("launching")
    live = _launch(d, live)
    # `running` goes to the report outbox before the journal says running: a crash in
    # between leaves a `launching` row that reconcile adopts (and reports again if the
    # outbox has not got it: `reconcile._adopt`).
    for a in live:
        assert a.handle is not None
        report_running(d, a.job, a.nodes, a.archive_path, a.handle)
    d.journal.advance_many("running", d.clock.now(), [(a.row_id, _running(a)) for a in live])
    for _ in live:
        crash_point("running")
    for a in live:
        assert a.handle is not None
        d.track(a.row_id, a.handle, a.job, a.names)
    return [
        (a.job, a.failure is None, ",".join(a.names) if a.failure is None else a.failure)
        for a in attempts
    ]


def _running(a: _Attempt) -> dict[str, Any]:
    assert a.handle is not None
    return {"pid": a.handle.pid, "pgid": a.handle.pgid, "started_at": a.handle.started_at}


def _fail(d: CommitContext, a: _Attempt, reason: str, **owed: Any) -> None:
    a.failure = reason
    fail_attempt(d, a.row_id, reason, **owed)


def _defer(d: CommitContext, attempts: Sequence[_Attempt], why: str, *, claimed: bool) -> None:
    """Give up on `attempts` for this tick: a backend is down. Claimed ones are released."""
    if not attempts:
        return
    log.warning("%s: %d start(s) deferred to the next tick", why, len(attempts))
    for a in attempts:
        if claimed:
            _fail(d, a, f"{DEFERRED}{why}", node_action="none", disposition="release")
        else:
            _fail(d, a, f"{DEFERRED}{why}", node_action="none", disposition="none", settle=True)


def _claim(d: CommitContext, attempts: list[_Attempt]) -> list[_Attempt]:
    claim_many = getattr(d.queue, "claim_many", None)
    if claim_many is not None:
        try:
            claimed: dict[str, bool] = claim_many([a.job.job_id for a in attempts])
        except BackendUnavailable as exc:
            d.backend_down = True
            # the claims may or may not have been taken: release them (idempotent)
            _defer(d, attempts, f"queue unavailable: {exc}", claimed=True)
            return []
    else:
        claimed = {}
        for i, a in enumerate(attempts):
            try:
                claimed[a.job.job_id] = d.queue.claim(a.job.job_id)
            except BackendUnavailable as exc:
                d.backend_down = True
                _defer(d, [a], f"queue unavailable: {exc}", claimed=True)
                _defer(d, attempts[i + 1 :], f"queue unavailable: {exc}", claimed=False)
                break
    live = []
    for a in attempts:
        if a.failure is not None:
            continue
        if not claimed.get(a.job.job_id):
            # Someone else has it (or it was deleted): nothing of ours to undo.
            reason = "claim refused: job no longer pending"
            _fail(d, a, reason, node_action="none", disposition="none", settle=True)
            continue
        crash_point("claim")
        live.append(a)
    return live


def _lock(d: CommitContext, attempts: list[_Attempt]) -> list[_Attempt]:
    lock_each = getattr(d.inventory, "lock_each", None)
    if lock_each is not None and attempts:
        try:
            results = lock_each(
                [(a.names, a.archive_path, lock_owner(a.job, d.inventory)) for a in attempts]
            )
        except BackendUnavailable as exc:
            d.backend_down = True
            for a in attempts:
                _lock_refused(d, a, exc)
            return []
        live = []
        for a, result in zip(attempts, results, strict=True):
            if isinstance(result, OptiallocError):
                # paddles stopped answering during this job's locks (the others went on)
                d.backend_down = d.backend_down or isinstance(result, BackendUnavailable)
                _lock_refused(d, a, result)
                continue
            crash_point("lock")
            _took(a, result)
            live.append(a)
        return live
    live = []
    for i, a in enumerate(attempts):
        try:
            locked = d.inventory.lock(a.names, a.archive_path, lock_owner(a.job, d.inventory))
        except OptiallocError as exc:
            _lock_refused(d, a, exc)
            if isinstance(exc, BackendUnavailable):
                d.backend_down = True
                _defer(d, attempts[i + 1 :], f"lock server unavailable: {exc}", claimed=True)
                break
            continue
        crash_point("lock")
        _took(a, locked)
        live.append(a)
    return live


def _lock_refused(d: CommitContext, a: _Attempt, exc: OptiallocError) -> None:
    # unlock too: a lock call that timed out may have succeeded on the server
    reason = f"lock refused for {','.join(a.names)}: {exc}"
    _fail(d, a, reason, node_action="unlock", disposition="release")


def _took(a: _Attempt, locked: Sequence[Node]) -> None:
    got = [node.name for node in locked]
    if got and sorted(got) != sorted(a.names):
        # lock_many (count mode) picks its own nodes: record and use those. A
        # crash before the `locked` write is covered by reconcile's sweep of
        # locks whose description (the archive path) has no open journal row.
        a.nodes, a.moved = list(locked), True


def _prepare(d: CommitContext, attempts: list[_Attempt]) -> list[_Attempt]:
    prepare = getattr(d.runner, "prepare", None)
    if prepare is None:
        return attempts
    live = []
    for a in attempts:
        try:
            prepare(a.archive_path)
        except Exception as exc:  # whatever it is, it is this job's alone
            # e.g. OSError: a run name's path the file system refuses; a retry would fail
            # the same way: bury it, release its nodes, let the rest of the batch go on
            why = exc if isinstance(exc, OptiallocError) else f"{type(exc).__name__}: {exc}"
            _fail(d, a, f"launch failed: {why}", node_action="unlock", disposition="bury")
            continue
        crash_point("prepare")
        live.append(a)
    return live


def _launch(d: CommitContext, attempts: list[_Attempt]) -> list[_Attempt]:
    requests = [(a.job, a.nodes, a.archive_path) for a in attempts]
    launch_many = getattr(d.runner, "launch_many", None)
    results: list[LaunchHandle | OptiallocError]
    if launch_many is not None:
        results = launch_many(requests, after=lambda: crash_point("launch"))
    else:
        results = []
        for request in requests:
            try:
                results.append(d.runner.launch(*request))
            except OptiallocError as exc:
                results.append(exc)
                continue
            except Exception as exc:  # a runner bug costs this job only
                log.exception("launch of job %s failed unexpectedly", request[0].job_id)
                results.append(OptiallocError(f"unexpected error while launching: {exc!r}"))
                continue
            crash_point("launch")
    live = []
    for a, result in zip(attempts, results, strict=True):
        if isinstance(result, LaunchHandle):
            a.handle = result
            live.append(a)
        else:
            # A runner that cannot start the job would fail again: bury, don't retry.
            _fail(d, a, f"launch failed: {result}", node_action="unlock", disposition="bury")
    return live

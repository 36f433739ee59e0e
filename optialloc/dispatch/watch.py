"""Watching running jobs: record the ended ones, kill the ones past their limits.

Once a tick, for every job the dispatcher tracks: an ended job is finished
through `optialloc.dispatch.commit.finish` (recorded, its nodes released or
marked down, its queue entry deleted or buried, its usage and, when it passed,
its runtime learned); a job past its time limit or silent past
`progress_timeout` (`optialloc.dispatch.monitor`) is killed (process group,
SIGTERM then SIGKILL after `kill_grace_seconds`; the kill is sent again if it
has not ended after twice the grace), and buried with the reason when it ends.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from optialloc.dispatch.commit import finish
from optialloc.dispatch.context import CommitContext, TickReport
from optialloc.dispatch.monitor import lease_lost, time_limit
from optialloc.dispatch.runtimes import RuntimeHistory
from optialloc.dispatch.usage import UsageMeter
from optialloc.domain import Job
from optialloc.policy import Policy
from optialloc.ports import LaunchHandle

log = logging.getLogger(__name__)


@dataclass
class Tracked:
    """A launched attempt the dispatcher watches (its journal row id is the key)."""

    handle: LaunchHandle
    job: Job
    nodes: tuple[str, ...]
    kill_reason: str | None = None
    kill_sent_at: datetime | None = None


def watch_running(
    ctx: CommitContext,
    running: dict[int, Tracked],
    *,
    policy: Policy,
    usage: UsageMeter,
    runtimes: RuntimeHistory,
    tick: int,
    report: TickReport,
) -> None:
    """Poll each of `running` once (see the module docstring); ended jobs leave `running`."""
    now = ctx.clock.now()
    for row_id, tracked in list(running.items()):
        handle = tracked.handle
        status = ctx.runner.poll(handle)
        if status is not None:
            del running[row_id]
            ran_s = max(0.0, (now - handle.started_at).total_seconds())
            usage.add(tracked.job.owner, ran_s * len(tracked.nodes), now)
            outcome = finish(ctx, row_id, handle, status, tracked.kill_reason)
            if tracked.kill_reason is not None or status in (126, 127):
                report.failed.append((handle.job_id, outcome))
                log.warning("tick %d: job %s buried: %s", tick, handle.job_id, outcome)
            else:
                report.finished.append((handle.job_id, status))
                if status == 0:
                    runtimes.observe(tracked.job, ran_s, now)
                # the release itself is logged by the commit path: `nodes ... released`
                # once the lock server confirmed it, `release pending` while it is away
                log.info(
                    "tick %d: job %s finished (exit %d) on %s",
                    tick,
                    handle.job_id,
                    status,
                    ",".join(tracked.nodes),
                )
            continue
        limit = time_limit(tracked.job, ctx.settings.max_job_time, policy)
        progress = ctx.runner.progress_at(handle) if ctx.settings.progress_timeout else None
        reason = lease_lost(
            now,
            handle.started_at,
            limit,
            progress_at=progress,
            progress_timeout_s=ctx.settings.progress_timeout,
        )
        if reason is None and tracked.kill_reason is None:
            continue
        resend = (
            tracked.kill_sent_at is not None
            and (now - tracked.kill_sent_at).total_seconds()
            > 2 * ctx.settings.kill_grace_seconds + 5
        )
        if tracked.kill_reason is None or resend:
            tracked.kill_reason = tracked.kill_reason or reason
            tracked.kill_sent_at = now
            ctx.runner.kill(handle, ctx.settings.kill_grace_seconds)
            report.killing.append((handle.job_id, tracked.kill_reason or ""))
            log.warning(
                "tick %d: killing job %s (pid %d): %s",
                tick,
                handle.job_id,
                handle.pid,
                tracked.kill_reason,
            )

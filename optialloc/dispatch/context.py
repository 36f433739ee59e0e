"""What commit, commit_batch and reconcile work with, and nothing more.

`CommitContext` carries the ports (queue, inventory, runner, clock, reporter),
the journal, the dispatcher's settings and two callbacks into the
dispatcher's table of running jobs (`track` a launched attempt, list the
`tracked_rows`). The dispatcher builds one per call and reads back the two
flags a commit or a repair may raise (`backend_down`, `orphans`), so the
commit path calls nothing above it: dispatcher -> commit_batch -> commit,
dispatcher -> reconcile -> commit, never back up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from optialloc.dispatch.journal import Journal
from optialloc.domain import Job, Plan
from optialloc.ports import Clock, Inventory, JobQueue, LaunchHandle, Reporter, Runner

log = logging.getLogger(__name__)

#: How a start given up for this tick (a backend down) is worded in `TickReport.failed`:
#: the job stays queued, so the tick summary counts it as deferred, not failed.
DEFERRED = "deferred: "

#: `track(row_id, handle, job=None, nodes=None)`: watch a launched attempt.
TrackFn = Callable[[int, LaunchHandle, Job | None, Sequence[str] | None], None]


@dataclass(frozen=True)
class DispatcherSettings:
    """The dispatcher's knobs (from the config in `serve`, from the scenario in what-if)."""

    max_job_time: int = 259200  # seconds (teuthology's default)
    progress_timeout: int | None = None  # seconds without log growth before a kill
    kill_grace_seconds: float = 30.0  # SIGTERM -> SIGKILL
    mark_down_on_failure: bool = False
    # A job whose command was ended by a signal not sent by the monitor (OOM killer,
    # an admin): "bury" it with the signal in the reason, or "retry" (queue it again,
    # at most `commit.SIGNAL_RETRIES` times, then bury). Reported dead either way.
    on_runner_signal: str = "bury"
    archive_base: str = "/tmp/optialloc-archive"
    validate: bool = True
    launch_timeout_s: float = 10.0  # how long a launch may take before it is presumed dead
    report_results: bool = True  # False for teuthology: the supervisor reports pass/fail
    # With more than `explain_always_below` queued jobs, waiting jobs' positions and
    # reasons are worked out (and stored) at most every `positions_every_s`: the
    # other ticks solve for decisions only (a third of the solve, and the
    # validator's per-job coverage check, at 20,000 queued).
    positions_every_s: float = 5.0
    explain_always_below: int = 1000
    journal_days: int = 30  # settled dispatch attempts are kept this long


@dataclass
class TickReport:
    """What one tick did. Times in wall-clock seconds: `solver_s` from the Plan,
    `validate_s` the plan check, `commit_s` claim+lock+launch of the starts,
    `tick_s` the whole tick (these phases plus watch, snapshot and positions)."""

    tick: int
    taken_at: datetime
    plan: Plan | None = None
    started: list[str] = field(default_factory=list)
    finished: list[tuple[str, int]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    killing: list[tuple[str, str]] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    solver_s: float = 0.0
    validate_s: float = 0.0
    commit_s: float = 0.0
    tick_s: float = 0.0
    pending: int = 0
    running: int = 0
    error: str | None = None  # a backend was unreachable: nothing was scheduled


@dataclass
class CommitContext:
    """The collaborators of one commit or repair (see the module docstring).

    `backend_down` is raised by a commit that found the queue or the lock
    server unreachable; `orphans` by a repair that left a launch it could not
    decide yet (looked at again next tick).
    """

    queue: JobQueue
    inventory: Inventory
    runner: Runner
    clock: Clock
    journal: Journal
    settings: DispatcherSettings
    reporter: Reporter | None
    track: TrackFn
    tracked_rows: Callable[[], set[int]]
    backend_down: bool = False
    orphans: bool = False

    def report(self, job: Job, status: str, **fields: object) -> None:
        """Tell the results server; never raises (a reporter bug must not stop a commit)."""
        if self.reporter is None:
            return
        if status in ("pass", "fail") and not self.settings.report_results:
            return
        try:
            self.reporter.report(job, status, **fields)
        except Exception as exc:  # the contract says never raises; a bug there must not stop us
            log.warning("reporter failed for job %s (%s): %s", job.job_id, status, exc)

"""The dispatcher: one tick = watch running jobs, snapshot, solve, validate, commit.

All I/O goes through the ports (`JobQueue`, `Inventory`, `Runner`, `Clock`,
`Reporter`) and the `Journal`, so `serve` and the what-if simulator run this
same class. `reconcile()` must run before the first tick (`tick()` runs it if
it was not); see `optialloc.dispatch.reconcile`, `optialloc.dispatch.commit` and
docs/reliability.md for the crash-safety argument.

One tick:
1. settle terminal journal rows a backend outage left unsettled;
2. poll every running job: an ended one is recorded and its nodes released
   (or marked down); one past its time limit or silent past
   `progress_timeout` is killed (process group, SIGTERM then SIGKILL), and
   buried with the reason when it has ended;
3. snapshot queue, nodes and running jobs; solve with `policy`; validate the
   Plan (a Plan with violations is refused: nothing starts this tick);
4. commit the Starts (claim, lock, launch), each step for all of them
   together (`optialloc.dispatch.commit_batch`); one job's failure never stops the
   others.
Every decision is logged; waiting reasons only when they change.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from operator import attrgetter

from optialloc.dispatch.announce import Announcer
from optialloc.dispatch.commit import settle_row
from optialloc.dispatch.commit_batch import commit_starts
from optialloc.dispatch.context import DEFERRED, CommitContext, DispatcherSettings, TickReport
from optialloc.dispatch.journal import Journal
from optialloc.dispatch.reconcile import reconcile, retry_orphans
from optialloc.dispatch.runtimes import RuntimeHistory
from optialloc.dispatch.snapshotter import take_snapshot
from optialloc.dispatch.usage import HISTORY_S, UsageMeter
from optialloc.dispatch.watch import Tracked, watch_running
from optialloc.domain import Job, Node, Plan, RunningJob, Snapshot, Waiting, WaitReason
from optialloc.errors import BackendUnavailable
from optialloc.policy import Policy
from optialloc.ports import Clock, Inventory, JobQueue, LaunchHandle, Reporter, Runner
from optialloc.profiles import jobs_by_id

log = logging.getLogger(__name__)
_JOB_ID = attrgetter("job_id")
_REASON = attrgetter("reason")

#: `solve(snapshot, policy, explain=...)`: `optialloc.solver.solve` or a stand-in.
SolveFn = Callable[..., Plan]
ValidateFn = Callable[[Snapshot, Policy, Plan], list[str]]
#: At most this many waiting-reason changes are logged one by one per tick.
MAX_REASON_LINES = 20


def _default_solve(snapshot: Snapshot, policy: Policy, *, explain: bool = True) -> Plan:
    from optialloc.solver import solve

    return solve(snapshot, policy, explain=explain)


def _default_validate(snapshot: Snapshot, policy: Policy, plan: Plan) -> list[str]:
    from optialloc.check.validator import validate_plan

    return list(validate_plan(snapshot, policy, plan))


class Dispatcher:
    """See the module docstring. `policy` may be replaced between ticks (SIGHUP reload)."""

    def __init__(
        self,
        *,
        queue: JobQueue,
        inventory: Inventory,
        runner: Runner,
        clock: Clock,
        policy: Policy,
        journal: Journal,
        reporter: Reporter | None = None,
        settings: DispatcherSettings | None = None,
        solve: SolveFn | None = None,
        validate: ValidateFn | None = None,
        runtimes: RuntimeHistory | None = None,
    ) -> None:
        self.queue = queue
        self.inventory = inventory
        self.runner = runner
        self.clock = clock
        self.policy = policy
        self.journal = journal
        self.reporter = reporter
        # queued / waiting / dead-before-start for pulpito (off without a results server)
        self.announcer = Announcer(reporter, queue) if reporter is not None else None
        self._last_plan: Plan | None = None
        self.settings = settings or DispatcherSettings()
        self._solve = solve or _default_solve
        self._validate = validate or _default_validate
        self._running: dict[int, Tracked] = {}
        self._reasons: dict[str, WaitReason] = {}
        self._positions_at: datetime | None = None
        self.usage = UsageMeter()  # decayed node-seconds per owner, for fair-share policies
        # runtime estimates learned from passed jobs (in memory unless given a file)
        self.runtimes = runtimes if runtimes is not None else RuntimeHistory()
        self._reconciled = False
        self.launching = True  # False after SIGTERM: watch running jobs, start nothing
        self.backend_down = False  # set by a commit that found the queue or lock server down
        self.orphans = False  # reconcile left a launch it could not decide yet
        self.last_tick = 0

    # -- helpers used by commit / reconcile -------------------------------
    def track(
        self,
        row_id: int,
        handle: LaunchHandle,
        job: Job | None = None,
        nodes: Sequence[str] | None = None,
    ) -> None:
        """Watch a running attempt (job and nodes read from the journal unless given)."""
        if job is None or nodes is None:
            row = self.journal.get(row_id)
            if row is None:
                return
            job, nodes = row.job, row.nodes
        self._running[row_id] = Tracked(handle, job, tuple(nodes))

    def _context(self) -> CommitContext:
        """The narrow view commit and reconcile get of this dispatcher."""
        return CommitContext(
            queue=self.queue,
            inventory=self.inventory,
            runner=self.runner,
            clock=self.clock,
            journal=self.journal,
            settings=self.settings,
            reporter=self.reporter,
            track=self.track,
            tracked_rows=self.tracked_rows,
        )

    def tracked_rows(self) -> set[int]:
        return set(self._running)

    def handles(self) -> list[LaunchHandle]:
        """Handles of the running jobs this dispatcher watches."""
        return [t.handle for t in self._running.values()]

    def running_jobs(self) -> list[RunningJob]:
        return [RunningJob(t.job, t.nodes, t.handle.started_at) for t in self._running.values()]

    # -- the tick --------------------------------------------------------
    def reconcile(self) -> list[str]:
        """Start-up repair (see `optialloc.dispatch.reconcile`); returns what was repaired."""
        ctx = self._context()
        repairs = reconcile(ctx)
        self.orphans = ctx.orphans
        pruned = self.journal.prune(self.clock.now() - timedelta(days=self.settings.journal_days))
        if pruned:
            log.info(
                "journal: forgot %d settled attempt(s) older than %d days",
                pruned,
                self.settings.journal_days,
            )
        since = self.clock.now() - timedelta(seconds=HISTORY_S)
        self.usage.load(self.journal.finished_since(since))
        self._reconciled = True
        return repairs

    def tick(self) -> TickReport:
        """One scheduling round (see the module docstring)."""
        started_wall = time.perf_counter()
        if not self._reconciled:
            self.reconcile()
        tick = self.journal.next_tick()
        self.last_tick = tick
        report = TickReport(tick=tick, taken_at=self.clock.now())
        ctx = self._context()
        if self.orphans:
            retry_orphans(ctx)
            self.orphans = ctx.orphans
        for row in self.journal.unsettled_ended():
            if settle_row(ctx, row):
                log.info("tick %d: job %s settled after a backend outage", tick, row.job_id)
        self._watch(tick, report)
        try:
            running = self.running_jobs()
            usage = self.usage.at(self.clock.now(), running)
            snapshot = take_snapshot(
                self.queue,
                self.inventory,
                running,
                self.clock,
                usage=usage,
                # learned estimates only while they predict (weights.runtime_min_skill)
                runtime_estimates=self.runtimes.trusted_estimates(
                    self.policy.weights.runtime_min_skill
                ),
            )
            report.pending = len(snapshot.queue)
            if self.announcer is not None:
                # before the commit, so a job started in its first tick is `queued` first;
                # holds and invalid jobs from the last plan (one tick old)
                self.announcer.observe(snapshot.queue, self._last_plan)
            if self.launching and snapshot.queue:
                self._plan_and_commit(tick, snapshot, report)
            self._last_plan = report.plan
        except BackendUnavailable as exc:
            # Nothing is lost: running jobs were watched above; no new starts this tick.
            report.error = str(exc)
            log.warning("tick %d: no scheduling this tick: %s", tick, exc)
        report.running = len(self._running)
        report.tick_s = time.perf_counter() - started_wall
        status = report.plan.solver.status if report.plan else "-"
        # starts given up for this tick (a backend down) stay queued: not failures
        deferred = sum(1 for _job_id, why in report.failed if why.startswith(DEFERRED))
        log.info(
            "tick %d: %d started, %d finished, %d failed, %d deferred, %d waiting, %d running; "
            "solver %s %.0f ms; tick %.0f ms",
            tick,
            len(report.started),
            len(report.finished),
            len(report.failed) - deferred,
            deferred,
            report.pending - len(report.started),
            report.running,
            status,
            report.solver_s * 1000,
            report.tick_s * 1000,
        )
        return report

    def _watch(self, tick: int, report: TickReport) -> None:
        watch_running(
            self._context(),
            self._running,
            policy=self.policy,
            usage=self.usage,
            runtimes=self.runtimes,
            tick=tick,
            report=report,
        )

    def _explain_due(self, snapshot: Snapshot) -> bool:
        """Whether this tick works out every waiting job's position and reason."""
        if len(snapshot.queue) <= self.settings.explain_always_below:
            return True
        return (
            self._positions_at is None
            or (snapshot.taken_at - self._positions_at).total_seconds()
            >= self.settings.positions_every_s
        )

    def _plan_and_commit(self, tick: int, snapshot: Snapshot, report: TickReport) -> None:
        plan = self._solve(snapshot, self.policy, explain=self._explain_due(snapshot))
        report.plan = plan
        report.solver_s = plan.solver.wall_s
        if self.settings.validate:
            validate_wall = time.perf_counter()
            violations = self._validate(snapshot, self.policy, plan)
            report.validate_s = time.perf_counter() - validate_wall
            if violations:
                report.rejected = violations
                log.error(
                    "tick %d: plan rejected, nothing starts: %s", tick, "; ".join(violations[:5])
                )
                return
        if plan.explained:
            self._record_waiting(tick, plan)
        pending = jobs_by_id(snapshot.queue)  # the validator's index of this queue
        nodes = {node.name: node for node in snapshot.nodes}
        # counting every queued job's run is only needed to guard a last_in_suite start
        last = any(pending[s.job_id].last_in_suite for s in plan.starts if s.job_id in pending)
        busy_runs = _busy_runs(snapshot) if last else Counter()
        running_ids = {t.job.job_id for t in self._running.values()}
        self.backend_down = False
        commit_wall = time.perf_counter()
        try:
            self._commit_starts(tick, plan, pending, nodes, busy_runs, running_ids, report)
        finally:
            report.commit_s = time.perf_counter() - commit_wall

    def _commit_starts(
        self,
        tick: int,
        plan: Plan,
        pending: Mapping[str, Job],
        nodes: Mapping[str, Node],
        busy_runs: Counter[str],
        running_ids: set[str],
        report: TickReport,
    ) -> None:
        used: set[str] = set()
        accepted: list[tuple[Job, list[Node]]] = []
        for start in plan.starts:
            job = pending.get(start.job_id)
            refusal = self._refuse(
                start.job_id, start.nodes, job, nodes, used, busy_runs, running_ids
            )
            if refusal:
                report.failed.append((start.job_id, refusal))
                log.error("tick %d: job %s not started: %s", tick, start.job_id, refusal)
                continue
            assert job is not None
            used.update(start.nodes)
            accepted.append((job, [nodes[n] for n in start.nodes]))
        # all of the tick's starts go through each step together
        # (see optialloc.dispatch.commit_batch)
        ctx = self._context()
        committed = commit_starts(ctx, accepted, tick)
        self.backend_down = ctx.backend_down
        for job, ok, outcome in committed:
            if ok:
                report.started.append(job.job_id)
                log.info(
                    "tick %d: start job %s on %s (solver %.0f ms)",
                    tick,
                    job.job_id,
                    outcome,
                    plan.solver.wall_s * 1000,
                )
            else:
                report.failed.append((job.job_id, outcome))
                log.warning("tick %d: job %s not started: %s", tick, job.job_id, outcome)

    def _refuse(
        self,
        job_id: str,
        names: Sequence[str],
        job: Job | None,
        nodes: Mapping[str, Node],
        used: set[str],
        busy_runs: Counter[str],
        running_ids: set[str],
    ) -> str | None:
        """A last guard before side effects; the validator should have caught all of these."""
        if job is None:
            return "not pending in this snapshot"
        if job_id in running_ids:
            return "already running"
        for name in names:
            node = nodes.get(name)
            if node is None or not node.free or name in used:
                return f"node {name} is not free"
        if job.last_in_suite and job.run and busy_runs[job.run] > 1:
            return f"last_in_suite: {busy_runs[job.run] - 1} other job(s) of run {job.run} not done"
        return None

    def _record_waiting(self, tick: int, plan: Plan) -> None:
        # Runs over every waiting job each tick (20,000 at 10x Sepia): compare the
        # WaitReason members themselves and build log lines only for the changes.
        previous = self._reasons
        # Built in C (zip/map over the named tuples); most ticks change nothing.
        reasons: dict[str, WaitReason] = dict(
            zip(map(_JOB_ID, plan.waiting), map(_REASON, plan.waiting), strict=True)
        )
        changes: list[Waiting] = []
        if reasons != previous:
            changes = [w for w in plan.waiting if previous.get(w.job_id) is not w.reason]
        for waiting in changes[:MAX_REASON_LINES]:
            log.info(
                "%s",
                f"tick {tick}: job {waiting.job_id} waits: {waiting.reason.value}"
                + (f": {waiting.detail}" if waiting.detail else ""),
            )
        if len(changes) > MAX_REASON_LINES:
            counts = Counter(waiting.reason.value for waiting in changes)
            log.info(
                "tick %d: %d more jobs changed waiting reason (%s)",
                tick,
                len(changes) - MAX_REASON_LINES,
                ", ".join(f"{k}: {v}" for k, v in counts.most_common()),
            )
        self._reasons = reasons
        # Only explained plans come here (`_explain_due`): at most every
        # `positions_every_s` with a big queue, so the positions are stored each time.
        self._positions_at = plan.taken_at
        self.journal.record_plan(
            plan.taken_at,
            ((w.job_id, w.position, w.reason.value, w.detail) for w in plan.waiting),
        )


def _busy_runs(snapshot: Snapshot) -> Counter[str]:
    """Jobs per run still queued or running (a last_in_suite job counts itself once)."""
    counts: Counter[str] = Counter()
    for job in snapshot.queue:
        if job.run:
            counts[job.run] += 1
    for running in snapshot.running:
        if running.job.run:
            counts[running.job.run] += 1
    return counts

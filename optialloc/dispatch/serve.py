"""`optialloc serve`: the dispatcher's loop, its signals and the one-dispatcher-per-lab lock.

- Single instance: an exclusive `flock` on `<state_dir>/dispatcher.lock`,
  whose content names the holder (pid@host, start time). A second `serve` on
  the same state raises `Conflict` (exit code 6) naming the holder.
- Loop: reconcile once, then tick every `tick_seconds`, and at once (at most
  every `MIN_TICK_GAP_S`) when a running job ends or the queue changes.
- SIGTERM / SIGINT: stop launching, finish the current tick, exit 0; running
  jobs keep running (they are in their own sessions) and the next `serve`
  adopts them. SIGHUP: reload the policy file (a bad file is logged and the
  old policy kept).
- `exit_on_empty_queue` (teuthology's flag): exit 0 once nothing is queued or
  running (jobs that can never run here, e.g. of an unknown machine type,
  count as nothing queued) and nothing is claimed, locked for a job or open
  in the journal. Such left-over work is repaired as at start-up and ticked
  again; still there after `STUCK_TICKS` tries and `STUCK_S` seconds, serve
  exits 1 naming it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from types import FrameType

from optialloc.clock import RealClock
from optialloc.config import Config
from optialloc.dispatch.dispatcher import Dispatcher, DispatcherSettings, TickReport
from optialloc.dispatch.journal import JOURNAL_FILE, Journal
from optialloc.dispatch.preflight import announce
from optialloc.dispatch.reconcile import journal_locks
from optialloc.dispatch.runtimes import RUNTIMES_FILE, RuntimeHistory
from optialloc.domain import WaitReason
from optialloc.errors import Conflict, ExitCode, OptiallocError
from optialloc.policy import Policy, load_policy

log = logging.getLogger(__name__)

#: At exit, how long pending reports may still be delivered (seconds).
REPORT_DRAIN_S = 15.0

LOCK_FILE = "dispatcher.lock"
#: Never tick more often than this, even when events keep arriving (seconds).
MIN_TICK_GAP_S = 0.2
#: How often the queue is asked whether something arrived (seconds).
ARRIVAL_CHECK_S = 1.0
#: How often running jobs are polled for their end between ticks (seconds).
EXIT_CHECK_S = 0.1
#: With `exit_on_empty_queue`: idle ticks in a row with work still left over (claims,
#: locks, open journal rows), each followed by a repair pass, before serve gives up and
#: exits non-zero naming what is left; and at least `Server.stuck_s` seconds of them
#: (a lock server or queue that is away at the end is waited for that long).
STUCK_TICKS = 5
STUCK_S = 120.0


@contextmanager
def instance_lock(state_dir: str) -> Iterator[None]:
    """Hold the lab's dispatcher lock for the duration, or raise `Conflict` naming the holder."""
    os.makedirs(state_dir, exist_ok=True)
    path = os.path.join(state_dir, LOCK_FILE)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "unknown process"
            raise Conflict(
                f"another optialloc serve already serves {state_dir}: {holder}; "
                "stop it first (SIGTERM) or use another state_dir"
            ) from None
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}@{socket.gethostname()} since {stamp}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def read_policy(config: Config) -> Policy:
    """The configured policy: a shipped model by name (`default`) or a policy file."""
    return load_policy(config.policy_path)


def settings_from(config: Config) -> DispatcherSettings:
    return DispatcherSettings(
        max_job_time=config.max_job_time,
        progress_timeout=config.progress_timeout,
        kill_grace_seconds=config.kill_grace_seconds,
        mark_down_on_failure=config.mark_down_on_failure,
        on_runner_signal=config.on_runner_signal,
        archive_base=os.path.abspath(config.archive_dir),
        report_results=config.runner != "teuthology",
    )


class Server:
    """The serve loop over a `Dispatcher` built from a `Config` (see the module docstring)."""

    def __init__(
        self,
        config: Config,
        *,
        exit_on_empty_queue: bool = False,
        on_tick: Callable[[TickReport], None] | None = None,
    ) -> None:
        from optialloc.inventory import open_inventory, open_reporter
        from optialloc.queue import open_queue
        from optialloc.runners import open_runner

        self.config = config
        self.exit_on_empty_queue = exit_on_empty_queue
        self.stuck_s = STUCK_S
        self.on_tick = on_tick
        self._stop = False
        self._reload = False
        self.queue = open_queue(config)
        self.inventory = open_inventory(config)
        self.journal = Journal(os.path.join(config.state_dir, JOURNAL_FILE))
        self.runtimes = RuntimeHistory(os.path.join(config.state_dir, RUNTIMES_FILE))
        # Reports go to the durable outbox; a thread delivers them (closed last, in `close`).
        self.reporter = open_reporter(config)
        self.dispatcher = Dispatcher(
            queue=self.queue,
            inventory=self.inventory,
            runner=open_runner(config),
            clock=RealClock(),
            policy=read_policy(config),
            journal=self.journal,
            reporter=self.reporter,
            settings=settings_from(config),
            runtimes=self.runtimes,
        )

    def close(self) -> None:
        close_reporter = getattr(self.reporter, "close", None)
        if close_reporter is not None:
            # Deliver what is pending for a while; the rest goes out at the next start.
            close_reporter(REPORT_DRAIN_S)
        self.journal.close()
        self.runtimes.close()
        self.queue.close()
        close = getattr(self.inventory, "close", None)
        if close is not None:
            close()

    # -- signals ---------------------------------------------------------
    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        log.warning(
            "%s received: no more launches; running jobs stay running and are adopted by "
            "the next serve",
            signal.Signals(signum).name,
        )
        self._stop = True
        self.dispatcher.launching = False

    def _on_hup(self, signum: int, frame: FrameType | None) -> None:
        self._reload = True

    def _reload_policy(self) -> None:
        self._reload = False
        try:
            self.dispatcher.policy = read_policy(self.config)
            log.warning(
                "SIGHUP: policy reloaded from %s (%s)",
                self.config.policy,
                self.dispatcher.policy.name,
            )
        except OptiallocError as exc:
            log.error(
                "SIGHUP: policy %s not reloaded, keeping the old one: %s", self.config.policy, exc
            )

    # -- loop --------------------------------------------------------------
    def _queue_marker(self) -> int:
        """A number that changes when jobs arrive (cheap; per-tube ready counts)."""
        try:
            return hash(tuple((s.tube, s.ready, s.claimed) for s in self.queue.stats()))
        except OptiallocError:
            return 0

    def _empty(self, report: TickReport) -> bool:
        if (
            report.error
            or self.dispatcher.journal.unsettled_ended()
            or report.running
            or self.dispatcher.tracked_rows()
            or report.started
        ):
            return False
        if report.pending == 0:
            return True
        plan = report.plan
        # An unexplained plan says nothing about why jobs wait: decide on an explained one.
        return (
            plan is not None
            and plan.explained
            and not plan.starts
            and all(w.reason == WaitReason.INVALID for w in plan.waiting)
        )

    def left_over(self) -> list[str]:
        """What is still claimed, locked for a job or open in the journal (empty: nothing).

        With nothing queued or running, any of these is work not finished:
        `--exit-on-empty-queue` must not exit 0 over it.
        """
        d = self.dispatcher
        left: list[str] = []
        rows = d.journal.open_rows()
        if rows:
            states = ", ".join(sorted({f"{r.state}" for r in rows}))
            ids = ", ".join(sorted({r.job_id for r in rows})[:10])
            left.append(f"{len(rows)} open journal row(s) ({states}; jobs {ids})")
        try:
            claimed = [job.job_id for job in d.queue.claimed()]
            # jobs' nodes are locked as their owners: the journal says which locks are ours
            ours = journal_locks(d.inventory, d.journal, d.settings.archive_base)
            held = [name for names in ours.values() for name in names]
        except OptiallocError as exc:
            return [*left, f"cannot check the queue and the locks: {exc}"]
        if claimed:
            left.append(f"{len(claimed)} claimed job(s) ({', '.join(sorted(claimed)[:10])})")
        if held:
            left.append(f"{len(held)} node(s) locked for jobs ({', '.join(sorted(held)[:10])})")
        return left

    def _wait(self) -> None:
        """Sleep until the next tick is due, a job ends, or the queue changes."""
        due = time.monotonic() + self.config.tick_seconds
        earliest = time.monotonic() + MIN_TICK_GAP_S
        marker = self._queue_marker()
        next_arrival_check = time.monotonic() + ARRIVAL_CHECK_S
        while not self._stop and not self._reload:
            now = time.monotonic()
            if now >= due:
                return
            if now >= earliest and self._any_ended():
                return
            if now >= next_arrival_check:
                next_arrival_check = now + ARRIVAL_CHECK_S
                if self._queue_marker() != marker:
                    return
            time.sleep(min(EXIT_CHECK_S, max(0.0, due - now)))

    def _new_round(self) -> None:
        """A lock server found away last tick may be asked again (its client's breaker)."""
        new_round = getattr(self.inventory, "new_round", None)
        if new_round is not None:
            new_round()

    def _any_ended(self) -> bool:
        d = self.dispatcher
        return any(d.runner.poll(handle) is not None for handle in d.handles())

    def run(self) -> int:
        """Serve until SIGTERM (or, with `exit_on_empty_queue`, an empty queue); returns 0."""
        previous = {
            sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        }
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)
        try:
            stuck, since = 0, time.monotonic()
            repairs = self.dispatcher.reconcile()
            log.info(
                "serve: started on %s (%d repair(s) at start-up, %d job(s) adopted)",
                self.config.state_dir,
                len(repairs),
                len(self.dispatcher.tracked_rows()),
            )
            while True:
                if self._reload:
                    self._reload_policy()
                try:
                    self._new_round()
                    report = self.dispatcher.tick()
                except Exception:
                    # A daemon keeps serving: the journal makes a retried tick safe.
                    log.exception(
                        "serve: tick failed; retrying in %.1f s", self.config.tick_seconds
                    )
                    if self._stop:
                        return 0
                    self._wait()
                    continue
                if self.on_tick is not None:
                    self.on_tick(report)
                if self._stop:
                    log.warning("serve: stopped; %d job(s) left running", report.running)
                    return 0
                if self.exit_on_empty_queue and self._empty(report):
                    left = self.left_over()
                    if not left:
                        log.info(
                            "serve: queue empty, nothing running, claimed, locked or open in "
                            "the journal: exiting (--exit-on-empty-queue)"
                        )
                        return 0
                    stuck += 1
                    since = since if stuck > 1 else time.monotonic()
                    if stuck > STUCK_TICKS and time.monotonic() - since >= self.stuck_s:
                        log.error(
                            "serve: queue empty but work is left that cannot be settled: %s; "
                            "exiting 1 (--exit-on-empty-queue): see docs/operations.md",
                            "; ".join(left),
                        )
                        return int(ExitCode.INTERNAL)
                    # Left over by a commit that failed midway: repair it as at start-up
                    # (nothing is in flight between ticks), then tick again.
                    log.warning("serve: queue empty but %s: repairing", "; ".join(left))
                    self.dispatcher.reconcile()
                    self._wait()
                    continue
                stuck = 0
                self._wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def serve(
    config: Config,
    *,
    exit_on_empty_queue: bool = False,
    on_tick: Callable[[TickReport], None] | None = None,
) -> int:
    """Run the dispatcher for the lab `config` names until stopped; returns the exit code.

    Checks the runner's executable first (`ConfigError`, exit 3, if it is missing)
    and says once which servers it uses and whether they answer
    (`optialloc.dispatch.preflight`).
    """
    announce(config)
    with instance_lock(config.state_dir):
        server = Server(config, exit_on_empty_queue=exit_on_empty_queue, on_tick=on_tick)
        try:
            return server.run()
        finally:
            server.close()

"""The web process's background refresher: rebuilds the `LabView` and the start estimates.

One daemon thread owns the `LabReader` (every SQLite handle of the web
process) and publishes a new immutable `LabView` every `interval_s`; request
handlers only read `refresher.view`. Estimated starts come from
`optialloc.sim.estimate.estimate_starts`, a forward replay of the current
snapshot through the real dispatcher, run every `estimate_every_s` in a
separate, niced process (it is CPU-bound Python for seconds at Sepia scale:
in this process it would hold the GIL against the requests). The estimator
is imported lazily: without it the view says so and `estimated_start` stays
null. With `parent_pid`, the process exits when that parent is gone (`serve`
starting its web server beside itself).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from optialloc.config import Config
from optialloc.web.state import LabReader, LabView

log = logging.getLogger(__name__)

#: What the page says about the estimates' quality (figures: docs/whatif.md).
ACCURACY_NOTE = (
    "Estimated starts replay the current queue through the real policy with the learned "
    "runtimes, assuming nothing new is submitted, so they tend to be early. In a simulated "
    "Sepia-like week, estimates made when a job was queued were off by a median of about "
    "15 min below priority 1000 and about 2 h for nightlies (13 h for 1 job in 10); one hour "
    "before a job started they were off by about 30 min (median; 2 h for 1 job in 10). "
    "Details: docs/whatif.md, 'Estimated start times'."
)


#: With nothing queued, how soon the estimator looks again (seconds).
EMPTY_RECHECK_S = 5.0


def _estimate_worker_init() -> None:
    with contextlib.suppress(OSError):
        os.nice(10)  # never compete with the dispatcher for the CPU
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _estimate(snapshot: Any, policy: Any, max_job_time: float) -> dict[str, datetime]:
    from optialloc.sim.estimate import estimate_starts

    return estimate_starts(snapshot, policy, max_job_time=max_job_time, max_wall_s=120.0)


def estimator_available() -> str | None:
    """None when `optialloc.sim.estimate` can be imported, else why not."""
    try:
        from optialloc.sim import estimate

        estimate.estimate_starts  # noqa: B018 (the name itself is what is checked)
    except (ImportError, AttributeError) as exc:
        return f"start-time estimates unavailable ({exc})"
    return None


class Refresher(threading.Thread):
    """Keeps `view` fresh (see the module docstring)."""

    def __init__(
        self,
        config: Config,
        *,
        interval_s: float = 1.0,
        estimate_every_s: float = 60.0,
        estimates: bool = True,
        parent_pid: int | None = None,
    ) -> None:
        super().__init__(name="optialloc-web-refresher", daemon=True)
        self.config = config
        self.interval_s = interval_s
        self.estimate_every_s = estimate_every_s
        self.parent_pid = parent_pid
        self.view = LabView(built_at=datetime.now(UTC), error="starting: state not read yet")
        self.ready = threading.Event()
        self._stop_event = threading.Event()
        self._wake = threading.Event()
        self._urgent = False
        self._estimates: dict[str, datetime] = {}
        self._estimates_at: datetime | None = None
        missing = estimator_available() if estimates else "start-time estimates turned off"
        self._note = missing or "estimates not computed yet: the first replay is running"
        self._use_estimator = missing is None
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._future: concurrent.futures.Future[dict[str, datetime]] | None = None
        self._next_estimate = 0.0

    def stop(self) -> None:
        self._stop_event.set()
        self._wake.set()

    def wake(self) -> None:
        """Refresh now rather than at the end of the interval (after an admin action)."""
        self._urgent = True
        self._wake.set()

    def run(self) -> None:
        reader: LabReader | None = None
        try:
            while not self._stop_event.is_set():
                if self.parent_pid is not None and os.getppid() != self.parent_pid:
                    log.warning("web: the serve that started it is gone: exiting")
                    os.kill(os.getpid(), signal.SIGTERM)
                    return
                try:
                    if reader is None:
                        reader = LabReader(self.config)
                    view = reader.read(self._estimates, urgent=self._urgent)
                    self._urgent = False
                    self._poll_estimates(reader)  # after read: the snapshot's queue is fresh
                    self.view = replace(
                        view, estimates_note=self._note, estimates_at=self._estimates_at
                    )
                except Exception as exc:  # keep serving the last good view, say why
                    log.exception("web: refresh failed")
                    self.view = replace(self.view, error=f"state not refreshed: {exc}")
                    if reader is not None:
                        reader.close()
                        reader = None
                self.ready.set()
                self._wake.wait(self.interval_s)
                self._wake.clear()
        finally:
            if reader is not None:
                reader.close()
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)

    def _poll_estimates(self, reader: LabReader) -> None:
        if not self._use_estimator:
            return
        future = self._future
        if future is not None and future.done():
            self._future = None
            try:
                self._estimates = future.result()
                self._estimates_at = datetime.now(UTC)
                self._note = f"{ACCURACY_NOTE} {len(self._estimates)} job(s) start within 48 h."
            except Exception as exc:
                log.warning("web: start-time estimate failed: %s", exc)
                self._note = f"start-time estimate failed: {exc}"
        if self._future is None and time.monotonic() >= self._next_estimate:
            snapshot = reader.snapshot()
            if not snapshot.queue:  # nothing to estimate: look again soon
                self._estimates, self._estimates_at = {}, datetime.now(UTC)
                self._note = ACCURACY_NOTE
                self._next_estimate = time.monotonic() + EMPTY_RECHECK_S
                return
            else:
                if self._pool is None:
                    self._pool = concurrent.futures.ProcessPoolExecutor(
                        max_workers=1,
                        mp_context=multiprocessing.get_context("spawn"),
                        initializer=_estimate_worker_init,
                    )
                self._future = self._pool.submit(
                    _estimate, snapshot, reader.policy, float(self.config.max_job_time)
                )
            self._next_estimate = time.monotonic() + self.estimate_every_s

"""The embedded job queue: `JobQueue` over optialloc's own SQLite store.

The default when no beanstalkd is configured, so optialloc works on a fresh
machine; also the base of the beanstalkd adapter, which moves jobs out of
beanstalkd into the same store (see `beanstalk_queue`).

Reads are incremental: the adapter keeps every pending and claimed `Job` in
memory and, on each call, reads only the rows whose change stamp is newer than
the last one it saw, so a tick over 20,000 queued jobs costs a few
milliseconds once the first view is built.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from optialloc.domain import Job
from optialloc.errors import InputError
from optialloc.ports import BuriedJob, TubeStats
from optialloc.queue.body import from_epoch
from optialloc.queue.store import NewJob, QueueStore, Row
from optialloc.queue.validate import BackgroundValidator
from optialloc.queue.view import QueueView
from optialloc.teuthology import MAX_PRIORITY, PRIORITY_RANGE, TEUTHOLOGY_TTR

log = logging.getLogger(__name__)

def check_priority(priority: int) -> int:
    """The priority range optialloc orders (`teuthology.PRIORITY_RANGE`, inside beanstalkd's
    0..2**32-1); anything else is refused naming the field and the range."""
    if (
        isinstance(priority, bool)
        or not isinstance(priority, int)
        or not 0 <= priority <= MAX_PRIORITY
    ):
        raise InputError(
            "priority",
            f"{priority!r} is not an integer in {PRIORITY_RANGE}, the range optialloc orders "
            "(lower = more urgent; teuthology's default is 1000)",
        )
    return priority


class EmbeddedQueue:
    """`JobQueue` over a SQLite store file (see the port's contract in `optialloc.ports`)."""

    def __init__(self, path: str) -> None:
        self.store = QueueStore(path)
        self._view = QueueView(self.store)
        #: Parses scanned bodies fully in a background process (see `queue_validate`).
        self.validator = BackgroundValidator(self.store)
        self._lock = threading.RLock()  # the view and connections may be shared by threads

    # Subclasses pull jobs in from elsewhere before every read.
    def _sync(self, defer: bool = False) -> None:
        """Take in new jobs; with `defer`, backend work may go on until `_after_read`."""
        return None

    def _after_read(self) -> None:
        """Work a subclass left running in the backend while the view was built."""
        return None

    def _backend_pauses(self) -> dict[str, int]:
        """{tube: seconds left} of pauses the backend itself holds (none here)."""
        return {}

    def _backend_ready(self) -> dict[str, int]:
        """Jobs still ready in the backend and not yet in the store, per tube (none here)."""
        return {}

    # -- listing ---------------------------------------------------------------

    def pending(self) -> Sequence[Job]:
        with self._lock:
            self._sync(defer=True)
            self._view.refresh()  # while beanstalkd works on the deletes of the last ingest
            self._after_read()
            self.validator.start_if_needed()
            return self._view.jobs("pending")

    def claimed(self) -> Sequence[Job]:
        with self._lock:
            self._sync()
            self._view.refresh()
            return self._view.jobs("claimed")

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            self._sync()
            self._view.refresh()
            return self._view.get(job_id)

    def rows(self, states: Sequence[str] = ("pending",)) -> list[Row]:
        """Stored rows in queue order, without building `Job`s (cheap listings for the CLI)."""
        self._sync()
        return self.store.rows(states)

    def buried(self) -> Sequence[BuriedJob]:
        self._sync()
        return [
            BuriedJob(r.job_id, r.tube, r.reason or "", from_epoch(r.state_at), r.body)
            for r in self.store.rows(("buried",))
        ]

    # -- changes ----------------------------------------------------------------

    def claim(self, job_id: str) -> bool:
        """Take a pending job; a body only scanned so far is parsed fully first.

        One that does not parse is buried with the reason and not claimed (False).
        """
        return self.store.claim(job_id)

    def claim_many(self, job_ids: Sequence[str]) -> dict[str, bool]:
        """`claim` for each job in one store transaction (a tick's starts); {job_id: claimed}."""
        return self.store.claim_many(job_ids)

    def release(self, job_id: str) -> None:
        self.store.transition(job_id, "pending", only_from=("claimed",))

    def bury(self, job_id: str, reason: str) -> None:
        self.store.transition(
            job_id, "buried", only_from=("pending", "claimed", "buried"), reason=reason
        )

    def delete(self, job_id: str) -> None:
        self.store.transition(job_id, "deleted", only_from=("pending", "claimed", "buried"))

    def put(self, tube: str, body: str, priority: int, ttr: int = TEUTHOLOGY_TTR) -> str:
        if not tube:
            raise InputError("tube", "empty: name the tube (machine type or 'multi')")
        job = NewJob(
            tube=tube, body=body, priority=check_priority(priority), ttr=ttr, queued_at=time.time()
        )
        job_id = self.store.insert([job])[0]
        self.validator.start_if_needed()
        return job_id

    def kick(self, job_ids: Sequence[str]) -> list[str]:
        return self.store.kick(job_ids)

    def set_priority(self, job_id: str, priority: int) -> None:
        self.store.set_priority(job_id, check_priority(priority))

    def pause(self, tube: str, seconds: int) -> None:
        if seconds <= 0:
            raise InputError("seconds", f"{seconds} is not a positive number of seconds")
        self.store.set_pause(tube, time.time() + seconds)

    def resume(self, tube: str) -> None:
        self.store.set_pause(tube, None)

    def paused_tubes(self) -> frozenset[str]:
        self._sync()
        return frozenset(self.store.pauses()) | frozenset(
            t for t, s in self._backend_pauses().items() if s > 0
        )

    def stats(self) -> Sequence[TubeStats]:
        self._sync()
        counts = self.store.counts()
        now = time.time()
        left = {t: max(0, round(until - now)) for t, until in self.store.pauses().items()}
        for tube, seconds in self._backend_pauses().items():
            left[tube] = max(left.get(tube, 0), seconds)
        extra = self._backend_ready()
        tubes = sorted({t for t, _ in counts} | set(left) | set(extra))
        return [
            TubeStats(
                tube=t,
                ready=counts.get((t, "pending"), 0) + extra.get(t, 0),
                claimed=counts.get((t, "claimed"), 0),
                buried=counts.get((t, "buried"), 0),
                paused=left.get(t, 0) > 0,
                pause_seconds_left=left.get(t, 0),
            )
            for t in tubes
        ]

    def close(self) -> None:
        self.validator.close()
        self.store.close()

"""The report outbox: job status reports kept durably until the results server has them.

`serve` writes every report (queued, waiting, running, pass, fail, dead) here
first, in the dispatcher's thread: one SQLite insert, no network. A
background thread (`OutboxSender`) delivers them, and deletes each one only
once the server has answered it. So:

- a results server that is down costs the tick nothing: reports pile up here
  and go out, in order, when it answers again (retried with exponential
  back-off, 0.5 s doubling to 10 s, one log line per outage);
- a dispatcher killed at any moment loses no report: what was written is
  delivered after the restart; what was not yet written is written again by
  the code that owed it (settling and reconcile report before they record
  the step as done), and a report identical to the last one written for the
  job is not written twice (`add` returns False);
- reports of one job go out one at a time, oldest first, so the server ends
  with the record it would have had without an outage. Reports of different
  jobs go out concurrently (a few at once over the client's keep-alive pool).

A report the server refuses for good (a 4xx other than "already exists",
which the sender turns into an update) is logged and dropped: retrying it
would block that job's later reports forever.

File: `<state_dir>/reports.sqlite`, tables `outbox` (undelivered reports, in
order) and `last` (the last status written per job, for `last_status` and the
duplicate check; rows of finished jobs are forgotten after 30 days).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from optialloc.errors import BackendUnavailable

log = logging.getLogger(__name__)

OUTBOX_FILE = "reports.sqlite"
#: Reports sent at once (each for a different job).
CONCURRENCY = 8
#: Reports read from the outbox per round.
ROUND = 256
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 10.0
#: Statuses after which a job's `last` row may be forgotten.
FINISHED = frozenset({"pass", "fail", "dead"})
FORGET_AFTER_S = 30 * 86400

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    run TEXT NOT NULL,
    status TEXT NOT NULL,
    doc TEXT NOT NULL,
    added_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT
);
CREATE INDEX IF NOT EXISTS outbox_job ON outbox (job_id, seq);
CREATE TABLE IF NOT EXISTS last (
    job_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    digest TEXT NOT NULL,
    at REAL NOT NULL,
    sent INTEGER NOT NULL DEFAULT 0
);
"""


@dataclass(frozen=True)
class Report:
    """One undelivered report: the job dict to send for `job_id` of `run`."""

    seq: int
    job_id: str
    run: str
    status: str
    doc: dict[str, Any]
    attempts: int
    #: a report of this job was delivered before: the server has the record (update it)
    known: bool = False


class Refused(Exception):
    """The server refused a report for good (it would refuse it again)."""


def _encode(status: str, doc: dict[str, Any]) -> tuple[str, str]:
    """(the JSON text stored and sent, the digest that recognises a repeated report)."""
    text = json.dumps(doc, sort_keys=True, default=str)
    return text, hashlib.sha256(f"{status}\n{text}".encode()).hexdigest()[:32]


class Outbox:
    """The SQLite file of undelivered reports; safe to share between two threads."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            path, timeout=30.0, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        # A commit survives a kill of the process (the crash tests), not a power cut.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        #: job_id -> (status, digest) of the last report written (loaded once, kept current)
        self._last: dict[str, tuple[str, str]] = {}
        #: jobs the server has a record of (a report of theirs was delivered)
        self._sent: set[str] = set()
        for job_id, status, digest, sent in self._db.execute(
            "SELECT job_id, status, digest, sent FROM last"
        ):
            self._last[job_id] = (status, digest)
            if sent:
                self._sent.add(job_id)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- writing (the dispatcher's thread) ------------------------------------------------

    def add_many(self, items: Iterable[tuple[str, str, str, dict[str, Any]]]) -> int:
        """Write (job_id, run, status, doc) reports in one transaction; returns how many.

        A report identical to the last one written for its job is skipped.
        """
        now = time.time()
        rows: list[tuple[str, str, str, str, float]] = []
        lasts: list[tuple[str, str, str, float, int]] = []
        for job_id, run, status, doc in items:
            text, digest = _encode(status, doc)
            if self._last.get(job_id, ("", ""))[1] == digest:
                continue
            self._last[job_id] = (status, digest)
            rows.append((job_id, run, status, text, now))
            lasts.append((job_id, status, digest, now, 1 if job_id in self._sent else 0))
        if not rows:
            return 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO outbox (job_id, run, status, doc, added_at) VALUES (?,?,?,?,?)",
                    rows,
                )
                self._db.executemany("INSERT OR REPLACE INTO last VALUES (?,?,?,?,?)", lasts)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                for job_id, *_ in lasts:  # not written: let the next attempt write them
                    self._last.pop(job_id, None)
                raise
        return len(rows)

    def last_status(self, job_id: str) -> str | None:
        """The status of the last report written for `job_id` (delivered or not)."""
        last = self._last.get(job_id)
        return last[0] if last else None

    # -- reading and settling (the sender's thread) ---------------------------------------

    def due(self, limit: int = ROUND) -> list[Report]:
        """The oldest undelivered report of each job, oldest first, at most `limit`."""
        sql = (
            "SELECT seq, job_id, run, status, doc, attempts FROM outbox o"
            " WHERE seq = (SELECT MIN(seq) FROM outbox WHERE job_id = o.job_id)"
            " ORDER BY seq LIMIT ?"
        )
        with self._lock:
            found = self._db.execute(sql, (limit,)).fetchall()
        return [
            Report(s, j, r, st, json.loads(d), a, j in self._sent) for s, j, r, st, d, a in found
        ]

    def delivered(self, reports: Sequence[Report]) -> None:
        if not reports:
            return
        new = sorted({r.job_id for r in reports} - self._sent)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "DELETE FROM outbox WHERE seq = ?", [(r.seq,) for r in reports]
                )
                self._db.executemany(
                    "UPDATE last SET sent = 1 WHERE job_id = ?", [(j,) for j in new]
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        self._sent.update(new)

    def failed(self, seqs: Sequence[int], error: str) -> None:
        if not seqs:
            return
        with self._lock:
            self._db.executemany(
                "UPDATE outbox SET attempts = attempts + 1, error = ? WHERE seq = ?",
                [(error[:500], s) for s in seqs],
            )

    def size(self) -> int:
        """Reports written and not yet delivered."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def forget_finished(self, now: float | None = None) -> int:
        """Drop `last` rows of jobs finished more than 30 days ago (nothing owed for them)."""
        cutoff = (now if now is not None else time.time()) - FORGET_AFTER_S
        marks = ",".join("?" * len(FINISHED))
        with self._lock:
            gone = [
                r[0]
                for r in self._db.execute(
                    f"SELECT job_id FROM last WHERE at < ? AND status IN ({marks})"
                    " AND job_id NOT IN (SELECT job_id FROM outbox)",
                    (cutoff, *sorted(FINISHED)),
                )
            ]
            self._db.executemany("DELETE FROM last WHERE job_id = ?", [(g,) for g in gone])
        for job_id in gone:
            self._last.pop(job_id, None)
            self._sent.discard(job_id)
        return len(gone)


#: send(report): deliver one report; raise BackendUnavailable (retry later) or Refused (drop).
SendFn = Callable[[Report], None]


class OutboxSender:
    """The background thread that empties an `Outbox` through `send` (see the module doc)."""

    def __init__(self, outbox: Outbox, send: SendFn, *, where: str = "the results server") -> None:
        self.outbox = outbox
        self._send = send
        self.where = where
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(CONCURRENCY, thread_name_prefix="report")
        self._thread = threading.Thread(target=self._loop, name="report-outbox", daemon=True)
        self._backoff = 0.0  # seconds to wait before the next round; 0 while the server answers
        self._down_since: float | None = None
        self.delivered = 0  # reports delivered by this sender (for benchmarks and logs)

    def start(self) -> OutboxSender:
        self._thread.start()
        return self

    def wake(self) -> None:
        """New reports were written: look now instead of at the next poll."""
        self._wake.set()

    def _loop(self) -> None:
        last_forget = 0.0
        while not self._stop.is_set():
            if self._backoff:
                self._stop.wait(self._backoff)
                if self._stop.is_set():
                    return
            try:
                sent = self.deliver_round()
            except Exception:  # a bug here must not kill delivery for the rest of the run
                log.exception("report outbox: delivery round failed")
                sent = 0
            if sent == 0 and not self._backoff:
                self._wake.wait(1.0)
                self._wake.clear()
            if time.monotonic() - last_forget > 3600:
                last_forget = time.monotonic()
                self.outbox.forget_finished()

    def deliver_round(self) -> int:
        """Send the due reports once; returns how many were delivered (or dropped)."""
        due = self.outbox.due()
        if not due:
            return 0
        if self._down_since is not None:
            due = due[:1]  # the server was away: one probe, not a burst of time-outs
        outcomes = list(self._pool.map(self._one, due))
        done = [r for r, outcome in zip(due, outcomes, strict=True) if outcome is None]
        retry = [
            (r.seq, outcome)
            for r, outcome in zip(due, outcomes, strict=True)
            if outcome is not None
        ]
        self.outbox.delivered(done)
        self.delivered += len(done)
        if retry:
            self.outbox.failed([s for s, _ in retry], retry[0][1])
            self._server_away(retry[0][1])
        elif done:
            self._server_back()
        return len(done)

    def _one(self, report: Report) -> str | None:
        """None when delivered or dropped; the reason when it must be retried."""
        try:
            self._send(report)
        except BackendUnavailable as exc:
            return str(exc)
        except Refused as exc:
            log.error(
                "report of job %s of %s as %s refused by %s, dropped: %s",
                report.job_id,
                report.run,
                report.status,
                self.where,
                exc,
            )
        return None

    def _server_away(self, why: str) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning(
                "reports pending (%s unreachable): %s; retrying with back-off", self.where, why
            )
        self._backoff = min(BACKOFF_MAX_S, max(BACKOFF_FIRST_S, self._backoff * 2))

    def _server_back(self) -> None:
        if self._down_since is not None:
            log.warning(
                "%s answers again after %.0f s: delivering %d pending report(s)",
                self.where,
                time.monotonic() - self._down_since,
                self.outbox.size(),
            )
        self._down_since = None
        self._backoff = 0.0

    def drain(self, timeout_s: float) -> int:
        """Deliver what is pending for up to `timeout_s` (at shutdown); returns what is left."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.outbox.size():
            if self._down_since is not None and self._backoff >= BACKOFF_MAX_S:
                break  # the server has been away for a while: leave them for the next start
            self.wake()
            time.sleep(0.05)
        return self.outbox.size()

    def close(self, drain_s: float = 0.0) -> int:
        """Stop the thread (after draining up to `drain_s`); returns reports left for later."""
        left = self.drain(drain_s) if drain_s > 0 else self.outbox.size()
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=35.0)
        self._pool.shutdown(wait=True)
        if left:
            log.warning(
                "%d report(s) not delivered to %s yet: sent at the next start", left, self.where
            )
        return left

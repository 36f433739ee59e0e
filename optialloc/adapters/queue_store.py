"""The SQLite job store behind both queue adapters: the single truth about queued jobs.

One row per job, never removed by a state change (a deleted job keeps its row
as `deleted` for a while) so that every process can follow the queue
incrementally: each write transaction bumps one change counter and stamps the
rows it touched with it (`updated_seq`); a reader asks for rows past the last
counter it saw. WAL mode lets CLI processes read while the dispatcher writes;
every write is `BEGIN IMMEDIATE`, so writers serialise and `claim` is one
atomic UPDATE.

States: `pending` (may be dispatched), `claimed` (taken by a dispatcher,
survives its crash), `buried` (set aside with a reason), `deleted`.
Rows ingested from beanstalkd remember the beanstalk id (`source_id`), a body
digest and whether the beanstalk delete was confirmed (`source_done`): that
is how a job re-delivered after a crash is recognised (see docs/queue.md).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from optialloc.adapters.queue_body import Checked, check_body, check_many
from optialloc.errors import BackendUnavailable, NotFound

log = logging.getLogger(__name__)

#: Deleted rows are kept this long (seconds) for incremental readers and dedupe.
DELETED_RETENTION_S = 7 * 86400

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT UNIQUE,
    tube TEXT NOT NULL,
    priority INTEGER NOT NULL,
    state TEXT NOT NULL,
    body TEXT NOT NULL,
    body_json TEXT,
    queued_at REAL NOT NULL,
    ttr INTEGER NOT NULL,
    reason TEXT,
    state_at REAL NOT NULL,
    run TEXT,
    owner TEXT,
    nodes INTEGER,
    source_id TEXT,
    body_hash TEXT,
    source_done INTEGER NOT NULL DEFAULT 1,
    updated_seq INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_updated ON jobs (updated_seq);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, priority, seq);
CREATE INDEX IF NOT EXISTS jobs_source ON jobs (source_id);
CREATE TABLE IF NOT EXISTS tubes (tube TEXT PRIMARY KEY, paused_until REAL NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('changes', 0);
"""

#: Columns every reader gets, in this order (see `Row`).
COLUMNS = (
    "seq, job_id, tube, priority, state, body, body_json, queued_at, reason, state_at,"
    " run, owner, nodes"
)


@dataclass(frozen=True)
class Row:
    """One stored job as readers see it."""

    seq: int
    job_id: str
    tube: str
    priority: int
    state: str
    body: str
    body_json: str | None
    queued_at: float
    reason: str | None
    state_at: float
    run: str | None
    owner: str | None
    nodes: int | None


@dataclass(frozen=True)
class NewJob:
    """A job about to enter the store (from `put` or from a beanstalk reservation)."""

    tube: str
    body: str
    priority: int
    ttr: int
    queued_at: float
    source_id: str | None = None
    body_hash: str | None = None
    error: str | None = None  # already known to be unusable (e.g. not UTF-8): bury with this


class QueueStore:
    """The job table in one SQLite file; safe to open from many processes at once."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.RLock()  # one connection, possibly used from several threads
        directory = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(directory, exist_ok=True)
            self._db = sqlite3.connect(
                path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "PRAGMA synchronous=FULL"
            )  # a committed ingest must survive power loss
            self._init_schema()
        except (OSError, sqlite3.Error) as exc:
            raise BackendUnavailable(
                f"cannot open the queue store {path} ({exc}): check state_dir and its permissions"
            ) from exc

    def _init_schema(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA.strip().split(";"):
                if statement.strip():
                    self._db.execute(statement)
            cutoff = time.time() - DELETED_RETENTION_S
            self._db.execute(
                "DELETE FROM jobs WHERE state = 'deleted' AND source_done = 1 AND state_at < ?",
                (cutoff,),
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._db.close()

    # -- transactions -------------------------------------------------------

    def _begin(self, statement: str) -> None:
        try:
            self._db.execute(statement)
        except sqlite3.OperationalError as exc:  # locked past the timeout, disk gone, ...
            raise BackendUnavailable(
                f"the queue store {self.path} cannot be used ({exc}): check state_dir, "
                "or look for a stuck optialloc process holding it"
            ) from exc

    @contextmanager
    def write(self) -> Iterator[int]:
        """One write transaction; yields the change number to stamp rows with."""
        with self._lock:
            yield from self._write()

    def _write(self) -> Iterator[int]:
        self._begin("BEGIN IMMEDIATE")
        try:
            cur = self._db.execute(
                "UPDATE meta SET value = value + 1 WHERE key = 'changes' RETURNING value"
            )
            change = int(cur.fetchone()[0])
            yield change
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """One consistent read snapshot."""
        with self._lock:
            self._begin("BEGIN")
            try:
                yield self._db
            finally:
                self._db.execute("COMMIT")

    # -- reads ----------------------------------------------------------------

    def changes(self) -> int:
        with self.read() as db:
            return int(db.execute("SELECT value FROM meta WHERE key = 'changes'").fetchone()[0])

    def rows_since(self, change: int) -> tuple[int, list[Row]]:
        """(current change number, rows touched after `change`) from one snapshot."""
        with self.read() as db:
            now = int(db.execute("SELECT value FROM meta WHERE key = 'changes'").fetchone()[0])
            if now == change:
                return now, []
            cur = db.execute(f"SELECT {COLUMNS} FROM jobs WHERE updated_seq > ?", (change,))
            return now, [Row(*r) for r in cur.fetchall()]

    def rows(self, states: Sequence[str], job_ids: Sequence[str] | None = None) -> list[Row]:
        """Rows in `states` (optionally only these ids), in queue order."""
        marks = ",".join("?" * len(states))
        sql = f"SELECT {COLUMNS} FROM jobs WHERE state IN ({marks})"
        params: list[object] = list(states)
        if job_ids is not None:
            sql += f" AND job_id IN ({','.join('?' * len(job_ids))})"
            params.extend(job_ids)
        sql += " ORDER BY priority, seq"
        with self.read() as db:
            return [Row(*r) for r in db.execute(sql, params).fetchall()]

    def row(self, job_id: str) -> Row | None:
        with self.read() as db:
            r = db.execute(f"SELECT {COLUMNS} FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return Row(*r) if r else None

    def counts(self) -> dict[tuple[str, str], int]:
        """{(tube, state): count} for every non-deleted state."""
        sql = "SELECT tube, state, COUNT(*) FROM jobs WHERE state != 'deleted' GROUP BY 1, 2"
        with self.read() as db:
            return {(tube, state): int(n) for tube, state, n in db.execute(sql).fetchall()}

    def pauses(self) -> dict[str, float]:
        """{tube: paused_until epoch seconds} for tubes still paused now."""
        sql = "SELECT tube, paused_until FROM tubes WHERE paused_until > ?"
        with self.read() as db:
            return {t: float(u) for t, u in db.execute(sql, (time.time(),)).fetchall()}

    # -- writes -----------------------------------------------------------------

    def insert(self, jobs: Sequence[NewJob]) -> list[str]:
        """Store new jobs in one transaction; returns their job ids in order.

        Each body is checked on the way in: one that does not parse is stored
        `buried` with the parse error as its reason. A job ingested from
        beanstalkd keeps its beanstalk id as job id unless that id is already
        taken (beanstalkd reused ids after a restart without binlog): then it
        gets `<beanstalk id>-<seq>` and a warning is logged.
        """
        ids: list[str] = []
        now = time.time()
        # Parse before taking the write lock: other processes keep writing meanwhile.
        checks = check_many([(j.body, j.tube, j.priority, j.queued_at) for j in jobs])
        with self.write() as change:
            for job, parsed in zip(jobs, checks, strict=True):
                checked = Checked(None, None, None, None, job.error) if job.error else parsed
                state = "buried" if checked.error else "pending"
                cur = self._db.execute(
                    "INSERT INTO jobs (job_id, tube, priority, state, body, body_json, queued_at,"
                    " ttr, reason, state_at, run, owner, nodes, source_id, body_hash, source_done,"
                    " updated_seq)"
                    " VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        job.tube,
                        job.priority,
                        state,
                        job.body,
                        checked.body_json,
                        job.queued_at,
                        job.ttr,
                        checked.error,
                        now,
                        checked.run,
                        checked.owner,
                        checked.nodes,
                        job.source_id,
                        job.body_hash,
                        0 if job.source_id else 1,
                        change,
                    ),
                )
                seq = int(cur.lastrowid or 0)
                job_id = job.source_id or str(seq)
                if (
                    job.source_id
                    and self._db.execute(
                        "SELECT 1 FROM jobs WHERE job_id = ?", (job_id,)
                    ).fetchone()
                ):
                    job_id = f"{job.source_id}-{seq}"
                    log.warning(
                        "beanstalk job id %s was already used by an earlier job (beanstalkd "
                        "restarted without its binlog?): stored as job %s",
                        job.source_id,
                        job_id,
                    )
                self._db.execute("UPDATE jobs SET job_id = ? WHERE seq = ?", (job_id, seq))
                if checked.error:
                    log.warning("job %s in tube %s buried: %s", job_id, job.tube, checked.error)
                ids.append(job_id)
        return ids

    def unconfirmed(self, source_ids: Sequence[str]) -> dict[tuple[str, str], str]:
        """{(source_id, body_hash): job_id} of ingested rows still maybe in beanstalkd."""
        found: dict[tuple[str, str], str] = {}
        for start in range(0, len(source_ids), 500):
            chunk = list(source_ids[start : start + 500])
            sql = (
                "SELECT source_id, body_hash, job_id FROM jobs WHERE source_done = 0"
                f" AND source_id IN ({','.join('?' * len(chunk))})"
            )
            with self.read() as db:
                for source_id, digest, job_id in db.execute(sql, chunk).fetchall():
                    found[(source_id, digest)] = job_id
        return found

    def confirm_source_deleted(self, job_ids: Sequence[str]) -> None:
        """Record that beanstalkd no longer holds these jobs (readers ignore this: no stamp)."""
        if not job_ids:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "UPDATE jobs SET source_done = 1 WHERE job_id = ?", [(j,) for j in job_ids]
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def transition(
        self, job_id: str, to: str, *, only_from: Sequence[str], reason: str | None = None
    ) -> bool:
        """Move a job to state `to` if it is in one of `only_from`; NotFound if no such job."""
        with self.write() as change:
            marks = ",".join("?" * len(only_from))
            cur = self._db.execute(
                f"UPDATE jobs SET state = ?, reason = COALESCE(?, reason), state_at = ?,"
                f" updated_seq = ? WHERE job_id = ? AND state IN ({marks})",
                (to, reason, time.time(), change, job_id, *only_from),
            )
            if cur.rowcount == 1:
                return True
            if not self._db.execute("SELECT 1 FROM jobs WHERE job_id = ?", (job_id,)).fetchone():
                raise NotFound(
                    f"no job {job_id} in the queue: list jobs with `optialloc queue list`"
                )
            return False

    def set_priority(self, job_id: str, priority: int) -> None:
        with self.write() as change:
            cur = self._db.execute(
                "UPDATE jobs SET priority = ?, updated_seq = ?"
                " WHERE job_id = ? AND state != 'deleted'",
                (priority, change, job_id),
            )
            if cur.rowcount != 1:
                raise NotFound(f"no queued job {job_id}: list jobs with `optialloc queue list`")

    def kick(self, job_ids: Sequence[str]) -> list[str]:
        """Return buried jobs to pending; a body that still does not parse stays buried."""
        kicked: list[str] = []
        with self.write() as change:
            for job_id in job_ids:
                r = self._db.execute(
                    f"SELECT {COLUMNS} FROM jobs WHERE job_id = ?", (job_id,)
                ).fetchone()
                if r is None:
                    raise NotFound(
                        f"no job {job_id}: list buried jobs with `optialloc queue buried`"
                    )
                row = Row(*r)
                if row.state != "buried":
                    continue
                checked = check_body(
                    row.body, tube=row.tube, priority=row.priority, queued_at=row.queued_at
                )
                if checked.error:
                    self._db.execute(
                        "UPDATE jobs SET reason = ?, updated_seq = ? WHERE job_id = ?",
                        (checked.error, change, job_id),
                    )
                    continue
                self._db.execute(
                    "UPDATE jobs SET state = 'pending', reason = NULL, state_at = ?, body_json = ?,"
                    " run = ?, owner = ?, nodes = ?, updated_seq = ? WHERE job_id = ?",
                    (
                        time.time(),
                        checked.body_json,
                        checked.run,
                        checked.owner,
                        checked.nodes,
                        change,
                        job_id,
                    ),
                )
                kicked.append(job_id)
        return kicked

    def set_pause(self, tube: str, until: float | None) -> None:
        """Pause `tube` until the epoch time `until`, or resume it (None)."""
        with self.write():
            if until is None:
                self._db.execute("DELETE FROM tubes WHERE tube = ?", (tube,))
            else:
                self._db.execute(
                    "INSERT INTO tubes (tube, paused_until) VALUES (?, ?)"
                    " ON CONFLICT (tube) DO UPDATE SET paused_until = excluded.paused_until",
                    (tube, until),
                )

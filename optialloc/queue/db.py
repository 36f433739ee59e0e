"""The SQLite file under the queue store: schema, row types, connection and transactions.

WAL mode lets CLI processes read while the dispatcher writes; every write is
`BEGIN IMMEDIATE`, so writers serialise. Each write transaction bumps one
change counter that rows touched by it are stamped with (`updated_seq`).
The operations on jobs are in `queue_store`.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from optialloc.errors import BackendUnavailable

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
    updated_seq INTEGER NOT NULL,
    fields TEXT,
    checked INTEGER NOT NULL DEFAULT 1
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
    " run, owner, nodes, fields, checked"
)
#: Columns added since the first schema: (name, definition) for stores made before.
_ADDED = (("fields", "TEXT"), ("checked", "INTEGER NOT NULL DEFAULT 1"))


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
    fields_json: str | None = None
    checked: bool = True  # False: only scanned, the full body is still to be parsed


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


class StoreBase:
    """The job table in one SQLite file, its schema and its transactions (see `QueueStore`)."""

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
            # NORMAL: in WAL mode a commit survives a crash of the process, not a power
            # cut. New jobs are committed with FULL (see `write(durable=True)`), because
            # after an ingest commit the jobs are deleted from beanstalkd.
            self._db.execute("PRAGMA synchronous=NORMAL")
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
            have = {r[1] for r in self._db.execute("PRAGMA table_info(jobs)").fetchall()}
            for name, definition in _ADDED:
                if name not in have:
                    self._db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {definition}")
            self._db.execute(
                "CREATE INDEX IF NOT EXISTS jobs_unchecked ON jobs (checked) WHERE checked = 0"
            )
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
    def write(self, durable: bool = False) -> Iterator[int]:
        """One write transaction; yields the change number to stamp rows with.

        `durable`: the commit is on disk (fsync) before this returns, power cut
        included; otherwise it survives a crash of this process only.
        """
        with self._lock:
            if not durable:
                yield from self._write()
                return
            self._db.execute("PRAGMA synchronous=FULL")
            try:
                yield from self._write()
            finally:
                self._db.execute("PRAGMA synchronous=NORMAL")

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

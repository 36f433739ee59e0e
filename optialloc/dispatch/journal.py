"""The dispatcher's journal: one durable row per dispatch attempt (SQLite, WAL).

Why it exists: committing a Plan touches three systems (queue, lock server,
processes) that share no transaction. Each step is first written here, so a
dispatcher killed at any point can tell on restart what it had done and
finish or undo it (see docs/reliability.md).

Row states, in order: `intent` (job, nodes, archive_path chosen) -> `locked`
-> `launching` -> `running` (pid/pgid known) -> `done` (exit status) /
`failed` (reason) / `killed` (reason, by the monitor). A terminal row also
says what is still owed to the other systems (`node_action`: unlock, down or
none; `disposition`: delete, bury, release or none for the queue entry) and is
`settled` once that was done. Every transition is committed before the
caller's next side effect. `intents` and `advance_many` write the rows of a
tick's whole batch of starts in one transaction (all or none), which is what
makes committing many starts per tick cheap (see `optialloc.dispatch.commit_batch`).

The journal also keeps the last Plan's waiting positions and reasons
(`last_plan`), read by `optialloc queue list` through `last_positions`.
`Journal(":memory:")` is a private in-memory journal for the simulator.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from optialloc.domain import Job, utc

ACTIVE_STATES = ("intent", "locked", "launching", "running")
TERMINAL_STATES = ("done", "failed", "killed")
JOURNAL_FILE = "journal.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS dispatch (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    state TEXT NOT NULL,
    nodes TEXT NOT NULL,
    archive_path TEXT NOT NULL,
    tick INTEGER NOT NULL,
    job TEXT NOT NULL,
    pid INTEGER,
    pgid INTEGER,
    started_at TEXT,
    launch_deadline TEXT,
    exit_status INTEGER,
    reason TEXT,
    node_action TEXT NOT NULL DEFAULT 'none',
    disposition TEXT NOT NULL DEFAULT 'none',
    settled INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS dispatch_open ON dispatch(settled, state);
CREATE INDEX IF NOT EXISTS dispatch_job ON dispatch(job_id);
CREATE TABLE IF NOT EXISTS last_plan (
    job_id TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    taken_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def job_to_json(job: Job) -> str:
    """Serialize a Job (body included) so a restarted dispatcher can rebuild it."""
    data: dict[str, Any] = {}
    for f in fields(Job):
        value = getattr(job, f.name)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, tuple):
            value = list(value)
        elif f.name == "body":
            value = dict(value)
        data[f.name] = value
    return json.dumps(data, default=str)


def job_from_json(text: str) -> Job:
    """Inverse of `job_to_json`."""
    data = json.loads(text)
    data["queued_at"] = utc(datetime.fromisoformat(data["queued_at"]))
    data["machine_types"] = tuple(data["machine_types"])
    return Job(**data)


@dataclass(frozen=True)
class DispatchRow:
    """One dispatch attempt as the journal holds it."""

    id: int
    job_id: str
    state: str
    nodes: tuple[str, ...]
    archive_path: str
    tick: int
    job: Job
    pid: int | None
    pgid: int | None
    started_at: datetime | None
    launch_deadline: datetime | None
    exit_status: int | None
    reason: str | None
    node_action: str
    disposition: str
    settled: bool
    created_at: datetime
    updated_at: datetime


def _dt(value: str | None) -> datetime | None:
    return utc(datetime.fromisoformat(value)) if value else None


def _row(record: sqlite3.Row) -> DispatchRow:
    return DispatchRow(
        id=record["id"],
        job_id=record["job_id"],
        state=record["state"],
        nodes=tuple(json.loads(record["nodes"])),
        archive_path=record["archive_path"],
        tick=record["tick"],
        job=job_from_json(record["job"]),
        pid=record["pid"],
        pgid=record["pgid"],
        started_at=_dt(record["started_at"]),
        launch_deadline=_dt(record["launch_deadline"]),
        exit_status=record["exit_status"],
        reason=record["reason"],
        node_action=record["node_action"],
        disposition=record["disposition"],
        settled=bool(record["settled"]),
        created_at=_dt(record["created_at"]) or datetime.min,
        updated_at=_dt(record["updated_at"]) or datetime.min,
    )


_INSERT_INTENT = (
    "INSERT INTO dispatch (job_id, state, nodes, archive_path, tick, job, created_at, updated_at)"
    " VALUES (?, 'intent', ?, ?, ?, ?, ?, ?)"
)
_ADVANCE_COLUMNS = frozenset(
    {
        "nodes",
        "pid",
        "pgid",
        "started_at",
        "launch_deadline",
        "exit_status",
        "reason",
        "node_action",
        "disposition",
        "settled",
    }
)


def _update(
    row_id: int, state: str, now: datetime, values: Mapping[str, Any]
) -> tuple[str, list[Any]]:
    """The UPDATE moving `row_id` to `state` with `values`; ValueError on an unknown column."""
    unknown = set(values) - _ADVANCE_COLUMNS
    if unknown:
        raise ValueError(f"journal: unknown column(s) {sorted(unknown)}")
    cols = ["state = ?", "updated_at = ?"]
    params: list[Any] = [state, now.isoformat()]
    for key, value in values.items():
        cols.append(f"{key} = ?")
        if key == "nodes":
            value = json.dumps(list(value))
        params.append(value.isoformat() if isinstance(value, datetime) else value)
    params.append(row_id)
    return f"UPDATE dispatch SET {', '.join(cols)} WHERE id = ?", params


class Journal:
    """The SQLite journal at `path` (created if missing; ":memory:" for simulations).

    One connection, used from one thread (the dispatcher's). Each method is
    one committed transaction.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        if path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, timeout=30.0)
        self._db.row_factory = sqlite3.Row
        if path != ":memory:":
            # WAL: readers (queue list) never block the dispatcher. NORMAL sync
            # keeps every commit across a process kill (the OS has the pages);
            # only a power loss may lose the last commits, and it kills the jobs too.
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    # -- dispatch rows -------------------------------------------------
    def intent(
        self, job: Job, nodes: Sequence[str], archive_path: str, tick: int, now: datetime
    ) -> int:
        """Record the decision to start `job` on `nodes`; returns the row id."""
        return self.intents([(job, nodes, archive_path)], tick, now)[0]

    def intents(
        self,
        items: Sequence[tuple[Job, Sequence[str], str]],
        tick: int,
        now: datetime,
    ) -> list[int]:
        """`intent` for each (job, nodes, archive_path), all in one transaction; row ids in order.

        All rows are durable together or none is: the caller claims nothing
        before this returns.
        """
        stamp = now.isoformat()
        ids: list[int] = []
        with self._transaction():
            for job, nodes, archive_path in items:
                cursor = self._db.execute(
                    _INSERT_INTENT,
                    (
                        job.job_id,
                        json.dumps(list(nodes)),
                        archive_path,
                        tick,
                        job_to_json(job),
                        stamp,
                        stamp,
                    ),
                )
                ids.append(int(cursor.lastrowid or 0))
        return ids

    def advance(self, row_id: int, state: str, now: datetime, **values: Any) -> None:
        """Move row `row_id` to `state`, setting the named columns too."""
        sql, params = _update(row_id, state, now, values)
        self._db.execute(sql, params)

    def advance_many(
        self, state: str, now: datetime, rows: Sequence[tuple[int, Mapping[str, Any]]]
    ) -> None:
        """`advance` each (row id, columns) to `state`, all in one transaction.

        Either every row moves or none does, so a crash leaves the whole
        batch in its previous state (one that reconcile repairs).
        """
        if not rows:
            return
        with self._transaction():
            for row_id, values in rows:
                self._db.execute(*_update(row_id, state, now, values))

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN")
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def settle(self, row_id: int, now: datetime) -> None:
        """Mark a terminal row's duties to the queue and lock server as done."""
        self._db.execute(
            "UPDATE dispatch SET settled = 1, updated_at = ? WHERE id = ?",
            (now.isoformat(), row_id),
        )

    def get(self, row_id: int) -> DispatchRow | None:
        record = self._db.execute("SELECT * FROM dispatch WHERE id = ?", (row_id,)).fetchone()
        return _row(record) if record else None

    def open_rows(self) -> list[DispatchRow]:
        """Rows not yet settled: active attempts and terminal ones with duties left."""
        records = self._db.execute(
            "SELECT * FROM dispatch WHERE settled = 0 ORDER BY id"
        ).fetchall()
        return [_row(r) for r in records]

    def prune(self, before: datetime) -> int:
        """Forget settled attempts last updated before `before`; returns how many."""
        cursor = self._db.execute(
            "DELETE FROM dispatch WHERE settled = 1 AND updated_at < ?", (before.isoformat(),)
        )
        return int(cursor.rowcount or 0)

    def unsettled_ended(self) -> list[DispatchRow]:
        """Terminal rows whose duties to the queue and lock server are not done yet."""
        records = self._db.execute(
            "SELECT * FROM dispatch WHERE settled = 0 AND state IN ('done', 'failed', 'killed')"
            " ORDER BY id"
        ).fetchall()
        return [_row(r) for r in records]

    def rows_for(self, job_id: str) -> list[DispatchRow]:
        records = self._db.execute(
            "SELECT * FROM dispatch WHERE job_id = ? ORDER BY id", (job_id,)
        ).fetchall()
        return [_row(r) for r in records]

    def finished_since(self, since: datetime) -> list[tuple[str, int, datetime, datetime]]:
        """(owner, nodes, started_at, ended_at) of attempts that ran and ended after `since`."""
        records = self._db.execute(
            "SELECT job, nodes, started_at, updated_at FROM dispatch WHERE started_at IS NOT NULL"
            " AND state IN ('done', 'failed', 'killed') AND updated_at >= ?",
            (since.isoformat(),),
        ).fetchall()
        out = []
        for r in records:
            job = json.loads(r["job"])
            started, ended = _dt(r["started_at"]), _dt(r["updated_at"])
            if started is not None and ended is not None:
                out.append(
                    (str(job.get("owner") or ""), len(json.loads(r["nodes"])), started, ended)
                )
        return out

    def all_rows(self) -> list[DispatchRow]:
        return [_row(r) for r in self._db.execute("SELECT * FROM dispatch ORDER BY id").fetchall()]

    def outcomes_by_run(self) -> list[tuple[str, str, str, int]]:
        """(run, owner, status, count) of the attempts still journaled, statuses as pulpito
        names them: `waiting` (being started), `running`, `pass`, `fail` (non-zero exit), `dead`."""
        records = self._db.execute(
            "SELECT json_extract(job, '$.run') AS run, json_extract(job, '$.owner'), CASE"
            " WHEN state IN ('intent', 'locked', 'launching') THEN 'waiting'"
            " WHEN state = 'running' THEN 'running'"
            " WHEN state = 'done' AND exit_status = 0 THEN 'pass'"
            " WHEN state = 'done' THEN 'fail' ELSE 'dead' END AS status, COUNT(*)"
            " FROM dispatch GROUP BY 1, 2, 3"
        ).fetchall()
        return [(str(r[0] or ""), str(r[1] or ""), str(r[2]), int(r[3])) for r in records]

    # -- tick counter and last plan ------------------------------------
    def next_tick(self) -> int:
        """Increment and return the durable tick counter (ticks number on across restarts)."""
        record = self._db.execute("SELECT value FROM meta WHERE key = 'tick'").fetchone()
        tick = int(record["value"]) + 1 if record else 1
        self._db.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('tick', ?)", (str(tick),)
        )
        return tick

    def record_plan(self, taken_at: datetime, waiting: Iterable[tuple[str, int, str, str]]) -> None:
        """Replace the stored waiting list with (job_id, position, reason, detail) rows."""
        stamp = taken_at.isoformat()
        self._db.execute("BEGIN")
        try:
            self._db.execute("DELETE FROM last_plan")
            self._db.executemany(
                "INSERT OR REPLACE INTO last_plan (job_id, position, reason, detail, taken_at)"
                " VALUES (?, ?, ?, ?, ?)",
                ((job_id, pos, reason, detail, stamp) for job_id, pos, reason, detail in waiting),
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def positions(self) -> dict[str, tuple[int, str, str]]:
        records = self._db.execute(
            "SELECT job_id, position, reason, detail FROM last_plan"
        ).fetchall()
        return {r["job_id"]: (r["position"], r["reason"], r["detail"]) for r in records}


def last_positions(state_dir: str) -> dict[str, tuple[int, str, str]]:
    """The last tick's (position, reason, detail) per waiting job, read from `state_dir`.

    Empty when no dispatcher has run there yet. Safe while `serve` runs (WAL).
    """
    path = os.path.join(state_dir, JOURNAL_FILE)
    if not os.path.exists(path):
        return {}
    journal = Journal(path)
    try:
        return journal.positions()
    finally:
        journal.close()

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

import json
import logging
import time
from collections.abc import Sequence

from optialloc.domain import Job
from optialloc.errors import JobParseError, NotFound
from optialloc.queue.body import Checked, build_job, check_body, check_many, scan_many
from optialloc.queue.db import COLUMNS, NewJob, Row, StoreBase

__all__ = ["SCAN_AT", "NewJob", "QueueStore", "Row"]

log = logging.getLogger(__name__)

#: From this many new jobs in one insert, bodies are scanned (`queue_scan`), not parsed:
#: the full parse happens in the background and before a claim (see docs/queue.md).
SCAN_AT = 100


class QueueStore(StoreBase):
    """The job table in one SQLite file; safe to open from many processes at once."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self._stored_unchecked = False  # scanned rows stored since `take_unchecked_flag`
        #: (`Job`, fields JSON) built while scanning rows just inserted, by job id, for
        #: `QueueView` to take instead of building them again.
        self.built: dict[str, tuple[Job, str | None]] = {}

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

    def rows_by_id(self, job_ids: Sequence[str]) -> list[Row]:
        """The rows of these job ids (unknown ids are left out), in no particular order."""
        # by id only: a state filter would make SQLite walk the state index instead
        sql = f"SELECT {COLUMNS} FROM jobs WHERE job_id IN (SELECT value FROM json_each(?))"
        with self.read() as db:
            return [Row(*r) for r in db.execute(sql, (json.dumps(list(job_ids)),)).fetchall()]

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
        """Store new jobs in one durable transaction; returns their job ids in order.

        Each body is checked on the way in: one that does not parse is stored
        `buried` with the parse error as its reason. From `SCAN_AT` jobs on,
        bodies are only scanned and stored unchecked (`Row.checked` False):
        `check_rows` parses them fully later. A job ingested from beanstalkd
        keeps its beanstalk id as job id unless that id is already taken
        (beanstalkd reused ids after a restart without binlog): then it gets
        `<beanstalk id>-<seq>` and a warning is logged.
        """
        now = time.time()
        items = [(j.body, j.tube, j.priority, j.queued_at) for j in jobs]
        # Parse before taking the write lock: other processes keep writing meanwhile.
        if len(jobs) >= SCAN_AT:
            checks = scan_many(items, [j.source_id or "" for j in jobs])
        else:
            checks = check_many(items)
        values = []
        for job, parsed in zip(jobs, checks, strict=True):
            checked = Checked(None, None, None, None, job.error) if job.error else parsed
            body = job.body
            if not _encodable(body):  # a caller's text with lone surrogates: keep it, escaped
                body = _escaped(body)
                checked = Checked(None, None, None, None, _NOT_TEXT)
            elif not all(map(_encodable, (checked.run, checked.owner, checked.error))):
                checked = Checked(None, None, None, None, _escaped(checked.error or _NOT_TEXT))
            if checked.error:
                log.warning("job %s in tube %s buried: %s", job.source_id, job.tube, checked.error)
            values.append(
                (
                    job.source_id,
                    job.tube,
                    job.priority,
                    "buried" if checked.error else "pending",
                    body,
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
                    checked.fields_json,
                    1 if checked.full or checked.error else 0,
                )
            )
        sql = (
            "INSERT INTO jobs (job_id, tube, priority, state, body, body_json, queued_at, ttr,"
            " reason, state_at, run, owner, nodes, source_id, body_hash, source_done, fields,"
            f" checked, updated_seq) VALUES ({', '.join('?' * 19)})"
        )
        with self.write(durable=True) as change:
            taken = self._taken([j.source_id for j in jobs if j.source_id])
            ids: list[str] = []
            run: list[tuple[object, ...]] = []  # consecutive rows that keep their beanstalk id
            for job, value in zip(jobs, values, strict=True):
                if job.source_id and job.source_id not in taken:
                    run.append((*value, change))
                    ids.append(job.source_id)
                    continue
                self._db.executemany(sql, run)  # in order: a job's seq is its arrival
                run = []
                ids.append(self._insert_numbered(sql, value, change))
            self._db.executemany(sql, run)
        self._stored_unchecked |= any(not v[-1] for v in values)
        for job_id, checked in zip(ids, checks, strict=True):
            if checked.job is not None and checked.job.job_id == job_id:
                self.built[job_id] = (checked.job, checked.fields_json)
        return ids

    def _taken(self, job_ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(job_ids), 500):
            chunk = list(job_ids[start : start + 500])
            sql = f"SELECT job_id FROM jobs WHERE job_id IN ({','.join('?' * len(chunk))})"
            found.update(r[0] for r in self._db.execute(sql, chunk).fetchall())
        return found

    def _insert_numbered(self, sql: str, value: tuple[object, ...], change: int) -> str:
        """Insert one row whose id derives from its row number (embedded, or a reused id)."""
        source_id = value[0]
        cur = self._db.execute(sql, (None, *value[1:], change))
        seq = int(cur.lastrowid or 0)
        job_id = f"{source_id}-{seq}" if source_id else str(seq)
        if source_id:
            log.warning(
                "beanstalk job id %s was already used by an earlier job (beanstalkd "
                "restarted without its binlog?): stored as job %s",
                source_id,
                job_id,
            )
        self._db.execute("UPDATE jobs SET job_id = ? WHERE seq = ?", (job_id, seq))
        return job_id

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
                self._db.execute(
                    "UPDATE jobs SET source_done = 1"
                    " WHERE job_id IN (SELECT value FROM json_each(?))",
                    (json.dumps(list(job_ids)),),
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

    def claim(self, job_id: str) -> bool:
        """Claim a pending job whose body parses fully (checked now if it was only scanned)."""
        row = self.row(job_id)
        if row is None:
            return False
        if not row.checked and row.state == "pending" and not self.check_rows([row])[job_id]:
            return False
        with self.write() as change:
            cur = self._db.execute(
                "UPDATE jobs SET state = 'claimed', state_at = ?, updated_seq = ?"
                " WHERE job_id = ? AND state = 'pending' AND checked = 1",
                (time.time(), change, job_id),
            )
            return cur.rowcount == 1

    def claim_many(self, job_ids: Sequence[str]) -> dict[str, bool]:
        """`claim` each job, all in one write transaction; {job_id: claimed}.

        Scanned bodies are parsed first (one that fails is buried, not
        claimed). A job that is not pending, or unknown, maps to False.
        """
        if not job_ids:
            return {}
        rows = self.rows_by_id(job_ids)
        unchecked = [r for r in rows if not r.checked and r.state == "pending"]
        if unchecked:
            self.check_rows(unchecked)
        with self.write() as change:
            # `+state`: look the rows up by job id, not by walking every pending row
            cur = self._db.execute(
                "UPDATE jobs SET state = 'claimed', state_at = ?, updated_seq = ?"
                " WHERE job_id IN (SELECT value FROM json_each(?))"
                " AND +state = 'pending' AND checked = 1 RETURNING job_id",
                (time.time(), change, json.dumps(list(job_ids))),
            )
            taken = {r[0] for r in cur.fetchall()}
        return {job_id: job_id in taken for job_id in job_ids}

    def has_unchecked(self) -> bool:
        """Whether some pending row was only scanned (its full parse is still to do)."""
        sql = "SELECT 1 FROM jobs WHERE checked = 0 AND state = 'pending' LIMIT 1"
        with self.read() as db:
            return db.execute(sql).fetchone() is not None

    def take_unchecked_flag(self) -> bool:
        """Whether this store stored scanned rows since the last call."""
        flag, self._stored_unchecked = self._stored_unchecked, False
        return flag

    def unchecked(self, limit: int) -> list[Row]:
        """Up to `limit` rows whose body was only scanned, oldest first."""
        sql = (
            f"SELECT {COLUMNS} FROM jobs WHERE checked = 0 AND state = 'pending'"
            " ORDER BY seq LIMIT ?"
        )
        with self.read() as db:
            return [Row(*r) for r in db.execute(sql, (limit,)).fetchall()]

    def check_rows(self, rows: Sequence[Row]) -> dict[str, bool]:
        """Parse scanned rows fully and record it; {job_id: the job stands as it was listed}.

        A body that does not parse is buried with the reason. A body whose full
        parse gives another `Job` than its scanned fields (the scanner is meant
        never to let that happen) gets the parsed fields and is logged as an
        error; listings then show the corrected job.
        """
        results = check_many([(r.body, r.tube, r.priority, r.queued_at) for r in rows])
        outcome: dict[str, bool] = {}
        with self.write() as change:
            for row, checked in zip(rows, results, strict=True):
                if checked.error:
                    log.warning("job %s in tube %s buried: %s", row.job_id, row.tube, checked.error)
                    self._db.execute(
                        "UPDATE jobs SET state = 'buried', reason = ?, state_at = ?, checked = 1,"
                        " updated_seq = ? WHERE job_id = ? AND checked = 0 AND state != 'deleted'",
                        (checked.error, time.time(), change, row.job_id),
                    )
                    outcome[row.job_id] = False
                    continue
                same = _same_job(row, checked)
                if not same:
                    log.error(
                        "job %s: its scanned fields differ from its parsed body: using the parsed",
                        row.job_id,
                    )
                self._db.execute(
                    "UPDATE jobs SET checked = 1, fields = ?, body_json = ?, run = ?, owner = ?,"
                    " nodes = ?, updated_seq = CASE WHEN ? THEN updated_seq ELSE ? END"
                    " WHERE job_id = ? AND checked = 0",
                    (
                        checked.fields_json,
                        checked.body_json,
                        checked.run,
                        checked.owner,
                        checked.nodes,
                        same,
                        change,
                        row.job_id,
                    ),
                )
                outcome[row.job_id] = same
        return outcome

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
                    " fields = ?, checked = 1, run = ?, owner = ?, nodes = ?, updated_seq = ?"
                    " WHERE job_id = ?",
                    (
                        time.time(),
                        checked.body_json,
                        checked.fields_json,
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


#: Why a body whose text cannot be stored as UTF-8 is buried (it is stored escaped).
_NOT_TEXT = (
    "body: holds lone surrogates, which are not Unicode text (stored with them escaped "
    "as \\udXXX): fix the text where the job was made"
)


def _encodable(text: str | None) -> bool:
    """Whether SQLite (UTF-8) can store `text`: no lone surrogates."""
    if text is None or text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _escaped(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _same_job(row: Row, checked: Checked) -> bool:
    """Whether the fully parsed body makes the same `Job` as the row's scanned fields."""
    try:
        scanned = build_job(
            row.job_id, row.tube, row.priority, row.queued_at, row.body, None, row.fields_json
        )
        parsed = build_job(
            row.job_id,
            row.tube,
            row.priority,
            row.queued_at,
            row.body,
            checked.body_json,
            checked.fields_json,
        )
    except JobParseError:
        return False
    return scanned == parsed

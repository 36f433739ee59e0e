"""A read-only view of beanstalkd's queue: list teuthology's tubes without touching them.

`plan --dry-run`, `queue list`, `queue stats`, `queue buried` and the web
status views may run beside teuthology's own dispatchers (the shadow step of
docs/operations.md). They must change nothing in beanstalkd: no reserve, no
delete, bury, kick or priority change, so every job stays ready in its tube,
in the same order, with the same `stats-job` counters. teuthology-queue reads
a tube by reserving every job and releasing it, which hides the jobs from the
dispatchers meanwhile and counts a reserve and a release on each; this view
never reserves.

How it sees the jobs: beanstalkd ids grow by one per put, and `peek <id>`
returns any job by id without changing it. So a listing walks the ids
upward, pipelined (`wire.peek_many`), from the lowest id still alive at the
last listing (kept in `<store>.shadow-cursor`, optialloc's own file), and
stops once it has seen as many ready jobs of the served tubes as
`stats-tube` counts, or once it is `GAP` ids past the last job it found and
past beanstalkd's `total-jobs`. Jobs a running `serve` already moved into
optialloc's store are read from the store, as before.

Every method that would change the queue raises `InputError`: use `serve` or
the admin verbs (`queue delete/priority/kick/pause/resume`), which say they
move jobs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

from optialloc.domain import Job
from optialloc.errors import InputError, JobParseError
from optialloc.ports import BuriedJob
from optialloc.queue.beanstalk import BeanstalkQueue
from optialloc.queue.body import body_hash, from_epoch
from optialloc.queue.parse import load_mapping
from optialloc.queue.store import Row
from optialloc.queue.wire import Peeked, peek_many
from optialloc.teuthology import TEUTHOLOGY_TTR, parse_job

log = logging.getLogger(__name__)

#: Ids peeked per pipelined batch.
BATCH = 2000
#: How far past the last job found (and past `total-jobs`) a walk goes before it stops.
GAP = 5000


class ReadOnlyQueue(InputError):
    """A change asked of the read-only view."""


class BeanstalkShadow(BeanstalkQueue):
    """`JobQueue` reads over beanstalkd that change nothing there (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._peeked: tuple[Job, ...] | None = None
        self._peeked_rows: list[Row] = []
        self._invalid: list[tuple[Peeked, str]] = []
        self.cursor_path = self.store.path + ".shadow-cursor"

    # -- never ingest -----------------------------------------------------------------

    def _sync(self, defer: bool = False) -> None:
        return None

    def _after_read(self) -> None:
        return None

    # -- the walk ------------------------------------------------------------------------

    def _read_cursor(self) -> int:
        try:
            with open(self.cursor_path, encoding="utf-8") as handle:
                return max(1, int(json.load(handle)["lowest_live_id"]))
        except (OSError, ValueError, KeyError, TypeError):
            return 1

    def _write_cursor(self, lowest: int) -> None:
        tmp = self.cursor_path + ".tmp"
        with contextlib.suppress(OSError):  # only a hint for the next walk
            with open(tmp, "w", encoding="utf-8") as handle:
                json.dump({"lowest_live_id": lowest}, handle)
            os.replace(tmp, self.cursor_path)

    def walk(self) -> list[Peeked]:
        """Every ready job of the served tubes still in beanstalkd, in beanstalkd's order."""
        tubes = set(self.served_tubes())
        stats = self._tube_stats()
        expected = sum(int(s.get("current-jobs-ready", 0)) for t, s in stats.items() if t in tubes)
        total = int(self._call(lambda: self._connection().stats()).get("total-jobs", 0))
        start = self._read_cursor()

        def run() -> tuple[list[Peeked], int | None, int]:
            wire = self._wire_connection()
            ready: list[Peeked] = []
            lowest: int | None = None
            last_found = start - 1
            jid = start
            while len(ready) < expected:
                if jid > total and jid - last_found > GAP:
                    break
                batch = peek_many(wire, list(range(jid, jid + BATCH)))
                for found in batch.values():  # ascending ids
                    lowest = found.jid if lowest is None else min(lowest, found.jid)
                    last_found = max(last_found, found.jid)
                    if found.state == "ready" and found.tube in tubes:
                        ready.append(found)
                jid += BATCH
            return ready, lowest, jid

        ready, lowest, end = self._call(run)
        self._write_cursor(lowest if lowest is not None else end)
        ready.sort(key=lambda p: (p.priority, p.jid))  # beanstalkd's own order
        if len(ready) < expected:
            log.info(
                "beanstalkd counts %d ready job(s) in %s, the walk found %d (jobs came or went)",
                expected,
                ",".join(sorted(tubes)),
                len(ready),
            )
        return ready

    def _refresh_peeked(self) -> None:
        """Read beanstalkd once per view object: the jobs not yet in optialloc's store."""
        if self._peeked is not None:
            return
        ready = self.walk()
        texts = {p.jid: p.body.decode("utf-8", "replace") for p in ready}
        stored = self.store.unconfirmed([str(p.jid) for p in ready])
        now = time.time()
        jobs: list[Job] = []
        rows: list[Row] = []
        for seq, p in enumerate(ready, start=1):
            text = texts[p.jid]
            if (str(p.jid), body_hash(text)) in stored:  # moved into the store, delete pending
                continue
            queued_at = now - p.age_s
            job_id = str(p.jid)
            try:
                job = parse_job(
                    load_mapping(text),
                    job_id=job_id,
                    queued_at=from_epoch(queued_at),
                    tube=p.tube,
                    priority=p.priority,
                )
            except JobParseError as exc:
                # `serve` will bury it with this reason: list it with the buried ones
                self._invalid.append((p, str(exc)))
                continue
            jobs.append(job)
            rows.append(
                Row(
                    seq=-seq,
                    job_id=job_id,
                    tube=p.tube,
                    priority=p.priority,
                    state="pending",
                    body=text,
                    body_json=None,
                    queued_at=queued_at,
                    reason=None,
                    state_at=now,
                    run=job.run,
                    owner=job.owner,
                    nodes=job.nodes_needed,
                )
            )
        self._peeked, self._peeked_rows = tuple(jobs), rows

    # -- reads: the store plus what is still in beanstalkd ----------------------------------

    def pending(self) -> Sequence[Job]:
        """Stored pending jobs, then the jobs still in beanstalkd (each part in queue order).

        A body that does not parse is left out (`serve` would bury it): `buried` lists it.
        """
        with self._lock:
            self._view.refresh()
            self._refresh_peeked()
            assert self._peeked is not None
            return self._view.jobs("pending") + self._peeked

    def get(self, job_id: str) -> Job | None:
        for job in self.pending():
            if job.job_id == job_id:
                return job
        return super().get(job_id)

    def buried(self) -> Sequence[BuriedJob]:
        """Buried jobs of the store, then the jobs in beanstalkd whose body `serve` would bury
        (with the reason it would give)."""
        self._refresh_peeked()
        now = time.time()
        return list(super().buried()) + [
            BuriedJob(
                str(p.jid),
                p.tube,
                reason,
                from_epoch(now - p.age_s),
                p.body.decode("utf-8", "replace"),
            )
            for p, reason in self._invalid
        ]

    def rows(self, states: Sequence[str] = ("pending",)) -> list[Row]:
        stored = self.store.rows(states)
        if "pending" not in states:
            return stored
        self._refresh_peeked()
        return stored + self._peeked_rows

    # -- changes: refused ---------------------------------------------------------------------

    def _refuse(self, what: str) -> ReadOnlyQueue:
        return ReadOnlyQueue(
            "queue",
            f"{what}: this is the read-only view of beanstalkd (plan --dry-run, queue list/stats);"
            " `optialloc serve` and the queue admin verbs change the queue",
        )

    def claim(self, job_id: str) -> bool:
        raise self._refuse("claim")

    def claim_many(self, job_ids: Sequence[str]) -> dict[str, bool]:
        raise self._refuse("claim")

    def release(self, job_id: str) -> None:
        raise self._refuse("release")

    def bury(self, job_id: str, reason: str) -> None:
        raise self._refuse("bury")

    def delete(self, job_id: str) -> None:
        raise self._refuse("delete")

    def put(self, tube: str, body: str, priority: int, ttr: int = TEUTHOLOGY_TTR) -> str:
        raise self._refuse("put")

    def kick(self, job_ids: Sequence[str]) -> list[str]:
        raise self._refuse("kick")

    def set_priority(self, job_id: str, priority: int) -> None:
        raise self._refuse("priority")

    def pause(self, tube: str, seconds: int) -> None:
        raise self._refuse("pause")

    def resume(self, tube: str) -> None:
        raise self._refuse("resume")

"""Child process for the crash tests: run the queue until it kills itself (SIGKILL) at one step.

Usage: python queue_crash_child.py STEP STORE_PATH PORT
STEP is where the process dies:
  reserve   beanstalk jobs reserved, nothing stored yet
  insert    in the middle of the store transaction (after some rows were written)
  commit    jobs stored, nothing deleted from beanstalkd yet
  delete    half the batch deleted from beanstalkd
  confirm   all deleted from beanstalkd, deletions not yet recorded
  claim     after claiming half the pending jobs (a dispatcher dying mid-tick)
  none      no crash: ingest, print the count, exit 0
SIGKILL is what `kill -9` sends: no cleanup, no atexit, no flushed buffers.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import sys

from optialloc.queue import beanstalk as beanstalk_queue
from optialloc.queue import store as queue_store
from optialloc.queue.beanstalk import BeanstalkQueue
from optialloc.queue.wire import Wire


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class DyingConnection:
    """A SQLite connection that dies at its 10th job row insert, mid-transaction."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._inserts = 0

    def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
        if sql.startswith("INSERT INTO jobs"):
            self._inserts += 1
            if self._inserts == 10:
                assert self._db.in_transaction
                die()
        return self._db.execute(sql, *args)

    def executemany(self, sql: str, rows: list[tuple[object, ...]]) -> sqlite3.Cursor:
        if not sql.startswith("INSERT INTO jobs"):
            return self._db.executemany(sql, rows)

        def counted() -> object:
            for row in rows:
                self._inserts += 1
                if self._inserts == 10:
                    assert self._db.in_transaction
                    die()
                yield row

        return self._db.executemany(sql, counted())

    def __getattr__(self, name: str) -> object:
        return getattr(self._db, name)


def main() -> None:
    step, store_path, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    beanstalk_queue.BATCH = 40  # several batches, so a crash lands mid-ingest

    if step == "reserve":
        QueueStoreInsert = queue_store.QueueStore.insert

        def insert(self, jobs):  # type: ignore[no-untyped-def]
            die()
            return QueueStoreInsert(self, jobs)

        queue_store.QueueStore.insert = insert  # type: ignore[method-assign]
    elif step in ("commit", "delete"):
        original_send = Wire.send_deletes

        def send_deletes(self, jids):  # type: ignore[no-untyped-def]
            if step == "delete":
                original_send(self, jids[: len(jids) // 2])
                self.read_deletes(jids[: len(jids) // 2])
            die()

        Wire.send_deletes = send_deletes  # type: ignore[method-assign]
    elif step == "confirm":

        def confirm(self, job_ids):  # type: ignore[no-untyped-def]
            die()

        queue_store.QueueStore.confirm_source_deleted = confirm  # type: ignore[method-assign]

    queue = BeanstalkQueue(store_path, "127.0.0.1", port)
    if step == "insert":
        queue.store._db = DyingConnection(queue.store._db)  # type: ignore[assignment]
    pending = queue.pending()
    if step == "claim":
        for job in pending[: len(pending) // 2]:
            assert queue.claim(job.job_id)
        die()
    print(len(pending), flush=True)


if __name__ == "__main__":
    main()

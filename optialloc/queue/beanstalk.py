"""The beanstalkd job queue: teuthology's tubes, moved into optialloc's own store.

beanstalkd cannot list a queue without reserving it, and a reserved job is
hidden from everybody else. So before every read this adapter *ingests*:
it reserves every ready job of the served tubes (pipelined, see
`queue_beanstalk_wire`), writes them durably to the SQLite store with their
beanstalk id, tube, priority, ttr and put time, and only then deletes them
from beanstalkd. From there on the store is the single truth (see
`embedded_queue`), shared by every optialloc process.

Never losing a job:
- killed before the store commit: the reservations die with the connection,
  the jobs are ready again in beanstalkd;
- killed after the commit, before the delete: beanstalkd re-delivers the jobs;
  they are recognised by (beanstalk id, body digest) among rows whose delete
  is not yet confirmed, and only deleted, not stored twice;
- a beanstalk id that is already taken by a confirmed-deleted row means
  beanstalkd reused ids (restart without binlog): a new job, stored under a
  distinct id (see `QueueStore.insert`).
Connection failures are retried with backoff (tenacity) for `retry_s`
seconds, with one warning per outage, then raise `BackendUnavailable`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import beanstalkc
import yaml
from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
)

from optialloc.errors import BackendUnavailable, InputError
from optialloc.queue.body import body_hash
from optialloc.queue.embedded import EmbeddedQueue, check_priority
from optialloc.queue.store import NewJob
from optialloc.queue.wire import JobInfo, Reserved, Wire, WireError
from optialloc.teuthology import TEUTHOLOGY_TTR

#: libyaml's safe loader when PyYAML has it: stats-tube answers are read every
#: tick, and the pure-Python loader spends ~2 ms on each.
_STATS_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _parse_stats(text: str) -> Any:
    """beanstalkd's YAML answers (stats, list-tubes), safely loaded."""
    return yaml.load(text, Loader=_STATS_LOADER)


log = logging.getLogger(__name__)

T = TypeVar("T")

#: Errors that mean "the connection is gone": reconnect and retry.
_NETWORK_ERRORS = (OSError, beanstalkc.SocketError, WireError)
#: Jobs reserved per pipelined batch. Small, because beanstalkd (1.12) walks every job
#: a connection holds reserved on each delete: 20,000 deletes while holding 20,000 jobs
#: cost it 6 s of CPU, while holding at most 2 batches of 1,000 about 0.2 s.
BATCH = 1000
#: Reservations asked for first; most ticks find fewer new jobs than this.
PROBE = 16


@dataclass(frozen=True)
class _Owed:
    """Jobs committed to the store whose beanstalkd deletes are not yet confirmed."""

    jids: list[int]
    job_ids: list[str]


def _reason(exc: BaseException) -> str:
    cause: Any = exc
    if isinstance(exc, beanstalkc.SocketError) and exc.args:
        cause = exc.args[0]
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror.lower()
    return str(cause) or type(cause).__name__


class BeanstalkQueue(EmbeddedQueue):
    """`JobQueue` over beanstalkd, with the store at `store_path` (see the module docstring)."""

    def __init__(
        self,
        store_path: str,
        host: str = "127.0.0.1",
        port: int = 11300,
        tubes: Sequence[str] = (),
        retry_s: float = 5.0,
        tolerate_outage: bool = False,
    ) -> None:
        super().__init__(store_path)
        self.host, self.port = host, port
        self._tubes = frozenset(tubes)
        self.retry_s = retry_s
        #: Reads serve the jobs already in the store while beanstalkd is down (the dispatcher),
        #: instead of raising `BackendUnavailable` (the CLI).
        self.tolerate_outage = tolerate_outage
        self._conn: beanstalkc.Connection | None = None
        self._wire: Wire | None = None
        self._owed: _Owed | None = None  # deletes sent on `_wire`, answers not yet read
        self._outage_since: float | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    # -- connection handling ---------------------------------------------------

    def _connection(self) -> beanstalkc.Connection:
        if self._conn is None:
            self._conn = beanstalkc.Connection(
                self.host, self.port, parse_yaml=_parse_stats, connect_timeout=5.0
            )
        return self._conn

    def _wire_connection(self) -> Wire:
        if self._wire is None:
            self._wire = Wire(self.host, self.port)
        return self._wire

    def _drop_connections(self) -> None:
        for closer in (
            self._conn.close if self._conn else None,
            self._wire.close if self._wire else None,
        ):
            if closer is not None:
                with contextlib.suppress(Exception):  # closing a dead socket: nothing left
                    closer()
        self._conn = None
        self._wire = None
        # Reservations die with the connection: those jobs come back and are recognised.
        self._owed = None

    def _call(self, action: Callable[[], T]) -> T:
        """Run `action`, reconnecting with backoff on network errors; one log line per outage."""
        with self._lock:  # one beanstalkd conversation at a time per adapter
            return self._call_unlocked(action)

    def _call_unlocked(self, action: Callable[[], T]) -> T:

        def on_retry(state: Any) -> None:
            self._drop_connections()
            if self._outage_since is None:
                self._outage_since = time.monotonic()
                log.warning(
                    "beanstalkd at %s unreachable (%s): retrying with backoff",
                    self.address,
                    _reason(state.outcome.exception()),
                )

        # Within a known outage, one attempt per call: a tick must not wait out the backoff.
        stop = stop_after_attempt(1) if self._outage_since is not None else None
        try:
            for attempt in Retrying(
                stop=stop or stop_after_delay(self.retry_s),
                wait=wait_exponential(multiplier=0.05, max=1.0),
                retry=retry_if_exception_type(_NETWORK_ERRORS),
                before_sleep=on_retry,
                reraise=True,
            ):
                with attempt:
                    result = action()
        except _NETWORK_ERRORS as exc:
            self._drop_connections()
            if self._outage_since is None:
                self._outage_since = time.monotonic()
            raise BackendUnavailable(
                f"cannot reach beanstalkd at {self.address} ({_reason(exc)}): "
                "start beanstalkd or set queue_host/queue_port"
            ) from exc
        if self._outage_since is not None:
            log.warning(
                "beanstalkd at %s reachable again after %.1f s",
                self.address,
                time.monotonic() - self._outage_since,
            )
            self._outage_since = None
        return result

    # -- ingest ------------------------------------------------------------------

    def served_tubes(self) -> frozenset[str]:
        """The configured tubes, or every tube beanstalkd has now."""
        if self._tubes:
            return self._tubes
        return frozenset(self._call(lambda: self._connection().tubes()))

    def _sync(self, defer: bool = False) -> None:
        try:
            tubes = set(self.served_tubes())
            self._call(lambda: self._ingest(tubes))
            if not defer:
                self._after_read()
        except BackendUnavailable:
            if not self.tolerate_outage:
                raise
            # Logged once per outage by `_call`; the store still has every job taken in.

    def _ingest(self, tubes: set[str]) -> int:
        """Move every ready job of `tubes` into the store, in batches; returns how many.

        The deletes of a batch already committed to the store are sent to
        beanstalkd before the next batch is scanned and stored, and their
        answers read after it, so beanstalkd (which writes each delete to its
        binlog) works while this process does. The last batch's deletes are
        left outstanding (`_owed`) and finished by `_after_read`, after the view
        is built. Dying with deletes outstanding is the "after the commit,
        before the deletes" case of the module docstring.
        """
        wire = self._wire_connection()
        self._finish_owed()
        wire.watch_only(tubes)
        moved = 0
        owed: _Owed | None = None  # committed to the store, not yet deleted in beanstalkd
        while True:
            batch = self._reserve(wire, BATCH)
            infos = wire.stats_jobs([r.jid for r in batch]) if batch else {}
            if owed is not None:
                wire.send_deletes(owed.jids)
            done = self._store_batch(batch, infos) if batch else None
            if owed is not None:
                wire.read_deletes(owed.jids)
                self.store.confirm_source_deleted(owed.job_ids)
            owed = done
            moved += len(batch)
            if owed is None or len(batch) < BATCH:
                break
        if owed is not None:
            wire.send_deletes(owed.jids)
            self._owed = owed
        return moved

    def _finish_owed(self) -> None:
        """Read the answers to the deletes `_ingest` left outstanding and record them."""
        owed, self._owed = self._owed, None
        if owed is not None and self._wire is not None:
            self._wire.read_deletes(owed.jids)
            self.store.confirm_source_deleted(owed.job_ids)

    def _after_read(self) -> None:
        if self._owed is None:
            return
        try:
            self._call(self._finish_owed)
        except BackendUnavailable:
            if not self.tolerate_outage:
                raise
            # The jobs are stored; beanstalkd re-delivers them later and they are recognised.

    @staticmethod
    def _reserve(wire: Wire, limit: int) -> list[Reserved]:
        """Reserve up to `limit` jobs, asking for 16, then 4 times more while all come back.

        An idle tick thus costs one short round trip, not `limit` TIMED_OUT answers.
        """
        got: list[Reserved] = []
        ask = PROBE
        while len(got) < limit:
            ask = min(ask, limit - len(got))
            part = wire.reserve_batch(ask)
            got += part
            if len(part) < ask:
                break
            ask *= 4
        return got

    def _store_batch(self, batch: list[Reserved], infos: dict[int, JobInfo]) -> _Owed:
        """Commit the new jobs of `batch` durably; returns what to delete from beanstalkd."""
        now = time.time()
        texts: dict[int, tuple[str, str | None]] = {}
        for r in batch:
            try:
                texts[r.jid] = (r.body.decode("utf-8"), None)
            except UnicodeDecodeError as exc:
                texts[r.jid] = (
                    r.body.decode("utf-8", "replace"),
                    f"body: not UTF-8 text ({exc.reason} at byte {exc.start})",
                )
        digests = {r.jid: body_hash(texts[r.jid][0]) for r in batch}
        known = self.store.unconfirmed([str(r.jid) for r in batch])
        fresh: list[NewJob] = []
        redelivered: list[str] = []
        for r in sorted(batch, key=lambda r: r.jid):  # submission order within the batch
            info = infos.get(r.jid)
            if info is None:  # reservation lapsed and someone else took it: not ours to store
                continue
            existing = known.get((str(r.jid), digests[r.jid]))
            if existing is not None:
                redelivered.append(existing)
                continue
            text, error = texts[r.jid]
            fresh.append(
                NewJob(
                    tube=info.tube,
                    body=text,
                    priority=info.priority,
                    ttr=info.ttr,
                    queued_at=now - info.age_s,
                    source_id=str(r.jid),
                    body_hash=digests[r.jid],
                    error=error,
                )
            )
        if redelivered:
            log.info(
                "%d job(s) re-delivered by beanstalkd were already stored: deleting them there",
                len(redelivered),
            )
        stored = self.store.insert(fresh)  # durable before anything leaves beanstalkd
        return _Owed([r.jid for r in batch if r.jid in infos], stored + redelivered)

    # -- beanstalkd's own view -------------------------------------------------------

    def _tube_stats(self) -> dict[str, dict[str, Any]]:
        def read() -> dict[str, dict[str, Any]]:
            conn = self._connection()
            names = self._tubes or frozenset(conn.tubes())
            out: dict[str, dict[str, Any]] = {}
            for name in names:
                try:
                    out[name] = conn.stats_tube(name)
                except beanstalkc.CommandFailed:  # tube vanished (no jobs, no watchers)
                    continue
            return out

        try:
            return self._call(read)
        except BackendUnavailable:
            if not self.tolerate_outage:
                raise
            return {}

    def _backend_pauses(self) -> dict[str, int]:
        return {t: int(s.get("pause-time-left", 0)) for t, s in self._tube_stats().items()}

    def _backend_ready(self) -> dict[str, int]:
        return {t: int(s.get("current-jobs-ready", 0)) for t, s in self._tube_stats().items()}

    # -- writes that reach beanstalkd ----------------------------------------------------

    def put(self, tube: str, body: str, priority: int, ttr: int = TEUTHOLOGY_TTR) -> str:
        """Put into beanstalkd exactly as teuthology does; the job is ingested on the next read."""
        check_priority(priority)
        if not tube:
            raise InputError("tube", "empty: name the tube (machine type or 'multi')")

        def put() -> int:
            conn = self._connection()
            conn.use(tube)
            return int(conn.put(body, priority=priority, ttr=ttr))

        try:
            return str(self._call(put))
        except beanstalkc.CommandFailed as exc:
            raise InputError(
                "body",
                f"beanstalkd refused the job ({exc.args[1] if len(exc.args) > 1 else exc}):"
                " bodies over beanstalkd's max job size (-z, default 65535 bytes) cannot be queued",
            ) from exc

    def pause(self, tube: str, seconds: int) -> None:
        """Pause in the store and in beanstalkd (so teuthology's own tools see it too)."""
        super().pause(tube, seconds)
        self._call(lambda: self._connection().pause_tube(tube, int(seconds)))

    def resume(self, tube: str) -> None:
        super().resume(tube)

        def unpause() -> None:
            # beanstalkd has no such tube: nothing is paused there
            with contextlib.suppress(beanstalkc.CommandFailed):
                self._connection().pause_tube(tube, 0)

        self._call(unpause)

    def _known(self, job_id: str) -> None:
        if self.store.row(job_id) is None:
            self._sync()

    def claim(self, job_id: str) -> bool:
        self._known(job_id)
        return super().claim(job_id)

    def claim_many(self, job_ids: Sequence[str]) -> dict[str, bool]:
        if len(self.store.rows_by_id(job_ids)) < len(set(job_ids)):
            self._sync()  # some id is not in the store yet: take in what beanstalkd has
        return super().claim_many(job_ids)

    def release(self, job_id: str) -> None:
        self._known(job_id)
        super().release(job_id)

    def bury(self, job_id: str, reason: str) -> None:
        self._known(job_id)
        super().bury(job_id, reason)

    def delete(self, job_id: str) -> None:
        self._known(job_id)
        super().delete(job_id)

    def set_priority(self, job_id: str, priority: int) -> None:
        self._known(job_id)
        super().set_priority(job_id, priority)

    def kick(self, job_ids: Sequence[str]) -> list[str]:
        self._sync()
        return super().kick(job_ids)

    def close(self) -> None:
        if self._owed is not None:
            with contextlib.suppress(Exception):  # if it fails, beanstalkd re-delivers them
                self._finish_owed()
        self._drop_connections()
        super().close()

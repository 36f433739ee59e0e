"""Fast, faithful parsing of stored job bodies for the queue adapters.

A body entering the queue is *scanned* (`queue_scan`): its scheduling fields
are read from the text without a YAML parse and kept beside it as JSON, so
that building 20,000 `Job`s for a tick costs a `json.loads` of a dozen fields
each; the full mapping is parsed lazily (`optialloc.queue.lazy.LazyBody`). Such a row is
*unchecked*: the whole text is parsed (`check_body`) before the job can be
claimed, and in the background (`queue_validate`). A body the scanner is not
sure about is parsed fully at once (YAML, with `queue_yaml`, in worker
processes for big batches). The text itself is never changed: the runner gets
the body exactly as queued.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from optialloc.domain import Job
from optialloc.errors import JobParseError
from optialloc.queue.lazy import LazyBody
from optialloc.queue.parse import load_mapping
from optialloc.queue.scan import FIELDS, scan_fields
from optialloc.teuthology import MAX_BODY_BYTES, parse_job

log = logging.getLogger(__name__)


def body_hash(text: str) -> str:
    """A short stable digest of a body, used to recognise a re-delivered beanstalk job."""
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def to_json(mapping: dict[str, Any]) -> str | None:
    """JSON for `mapping` if it round-trips exactly (no dates, no non-string keys), else None."""
    try:
        text = json.dumps(mapping, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):
        return None
    return text if json.loads(text) == mapping else None


@dataclass(frozen=True)
class Checked:
    """The outcome of checking a body on entry: its summary, or why it is buried.

    `full`: the whole text was parsed (else only scanned: it must be checked
    before dispatch). `fields_json`: the scanned or parsed scheduling fields.
    """

    body_json: str | None
    run: str | None
    owner: str | None
    nodes: int | None
    error: str | None
    fields_json: str | None = None
    full: bool = True
    #: The `Job` built while scanning (body lazy), for the view to reuse; not stored.
    job: Job | None = field(default=None, compare=False, repr=False)


def _fields_json(mapping: dict[str, Any]) -> str | None:
    return to_json({k: v for k, v in mapping.items() if k in FIELDS})


def scan_body(text: str, *, tube: str, priority: int, queued_at: float) -> Checked:
    """`check_body`, from the scanned scheduling fields when the scanner is sure of them.

    The result is then not `full`: the caller must run `check_body` before the
    job is dispatched. A body the scanner passes on, or whose fields do not
    make a job, gets the full `check_body` at once (with its exact error).
    """
    scanned = _scanned(text, tube, priority, queued_at, "0")
    if scanned is None:
        return check_body(text, tube=tube, priority=priority, queued_at=queued_at)
    return scanned


#: `json.dumps(..., separators=(",", ":"), allow_nan=False)` without building an encoder per call.
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def _scanned(text: str, tube: str, priority: int, queued_at: float, job_id: str) -> Checked | None:
    fields = scan_fields(text) if len(text) <= MAX_BODY_BYTES else None
    if fields is None:
        return None
    try:
        # Scanned values are str, int, float, bool, None or empty lists/dicts: JSON holds
        # them exactly (floats are written with repr); dates and NaN fail here.
        fields_json = _COMPACT_JSON.encode(fields)
    except (TypeError, ValueError):
        return None
    try:
        job = parse_job(
            fields, job_id=job_id, queued_at=from_epoch(queued_at), tube=tube, priority=priority
        )
    except JobParseError:
        return None
    try:
        lazy = LazyBody(text, fields)  # parses now if it scanned no field but roles
    except JobParseError:
        return None  # the full check gives the exact error (found by tests/test_scan_hostile.py)
    object.__setattr__(job, "body", lazy)  # nobody else holds job
    return Checked(
        None, job.run, job.owner, job.nodes_needed, None, fields_json, full=False, job=job
    )


def check_body(text: str, *, tube: str, priority: int, queued_at: float) -> Checked:
    """Parse `text` fully, as the dispatcher will; a body that fails gets `error`, never raises."""
    try:
        mapping = load_mapping(text)
        job = parse_job(
            mapping, job_id="0", queued_at=from_epoch(queued_at), tube=tube, priority=priority
        )
    except JobParseError as exc:
        return Checked(None, None, None, None, str(exc))
    except (RecursionError, ValueError, TypeError) as exc:  # pathological YAML
        return Checked(
            None, None, None, None, f"body: cannot be parsed ({type(exc).__name__}: {exc})"
        )
    return Checked(
        to_json(mapping), job.run, job.owner, job.nodes_needed, None, _fields_json(mapping)
    )


#: Below this many bodies, parsing in this process beats starting worker processes.
PARALLEL_MIN = 2000


def _check_item(item: tuple[str, str, int, float]) -> Checked:
    text, tube, priority, queued_at = item
    return check_body(text, tube=tube, priority=priority, queued_at=queued_at)


def scan_many(
    items: Sequence[tuple[str, str, int, float]], job_ids: Sequence[str]
) -> list[Checked]:
    """`scan_body` for (text, tube, priority, queued_at) items, in order.

    Scanning costs about 0.05 ms a body, so it runs here; the bodies the
    scanner passes on are parsed fully by `check_many` (in parallel if many).
    `job_ids` are the ids the scanned `Checked.job`s get (the expected ones).
    """
    out = [_scanned(*item, job_id) for item, job_id in zip(items, job_ids, strict=True)]
    unsure = [index for index, checked in enumerate(out) if checked is None]
    for index, checked in zip(unsure, check_many([items[i] for i in unsure]), strict=True):
        out[index] = checked
    return [checked for checked in out if checked is not None]


def check_many(items: Sequence[tuple[str, str, int, float]]) -> list[Checked]:
    """`check_body` for (text, tube, priority, queued_at) items, in order.

    YAML parsing costs about 0.2 ms a body, so large batches are spread over
    one forked worker per CPU.
    """
    workers = min(os.cpu_count() or 1, 8)
    if len(items) < PARALLEL_MIN or workers < 2 or "fork" not in mp.get_all_start_methods():
        return [_check_item(item) for item in items]
    chunk = max(1, len(items) // (workers * 4))
    try:
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as pool:
            return list(pool.map(_check_item, items, chunksize=chunk))
    except (OSError, BrokenProcessPool) as exc:  # no processes to spare: do it here
        log.warning("parallel body parsing unavailable (%s): parsing in one process", exc)
        return [_check_item(item) for item in items]


def from_epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def build_job(
    job_id: str,
    tube: str,
    priority: int,
    queued_at: float,
    body: str,
    body_json: str | None,
    fields_json: str | None = None,
) -> Job:
    """The `Job` for a stored row (which was checked on entry, so this rarely raises).

    From the stored scheduling fields when there are some (the body is then a
    `LazyBody`), else from the full JSON, else from the text.
    """
    when = from_epoch(queued_at)
    if fields_json is not None:
        from optialloc.queue.lazy import LazyBody  # imports this module

        fields = json.loads(fields_json)
        job = parse_job(fields, job_id=job_id, queued_at=when, tube=tube, priority=priority)
        # The Job was made here and nobody else holds it yet: give it the full body, lazily.
        object.__setattr__(job, "body", LazyBody(body, fields))
        return job
    mapping = json.loads(body_json) if body_json is not None else load_mapping(body)
    return parse_job(mapping, job_id=job_id, queued_at=when, tube=tube, priority=priority)

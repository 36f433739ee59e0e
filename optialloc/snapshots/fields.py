"""Checked field readers for snapshot files: every error names its path in the file.

`optialloc.snapshots.io` walks a loaded snapshot with a `FieldReader`, which
turns each malformed value into a `SnapshotFileError` whose `field` is the
path (`queue[12].queued_at`) and whose message says the fix, and parses job
bodies through a `JobCache`, so a body shared by many entries is parsed once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from optialloc.domain import Job, utc
from optialloc.errors import InputError, JobParseError
from optialloc.teuthology import parse_job, parse_timestamp

log = logging.getLogger("optialloc.snapshots.io")


class SnapshotFileError(InputError):
    """A snapshot file that does not have the documented structure.

    `field` is the path inside the file (`queue[12].queued_at`), `source` the file.
    """

    def __init__(self, source: str, path: str, problem: str) -> None:
        super().__init__(path, problem)
        self.source = source

    def __str__(self) -> str:
        return f"{self.source}: {self.field}: {self.problem}"


class FieldReader:
    """Walks one loaded mapping, remembering which unknown keys it already warned about."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._warned: set[str] = set()
        self._times: dict[str, datetime] = {}

    def fail(self, path: str, problem: str) -> SnapshotFileError:
        return SnapshotFileError(self.source, path, problem)

    def mapping(self, value: Any, path: str, known: set[str], what: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(path, f"expected a mapping ({what}), got {type(value).__name__}")
        for key in value:
            if key not in known:
                # Warn once per key and list position kind, not once per entry.
                kind = f"{path.split('[')[0]}.{key}"
                if kind not in self._warned:
                    self._warned.add(kind)
                    log.warning(
                        "%s: %s.%s: unknown key ignored (known: %s)",
                        self.source,
                        path,
                        key,
                        ", ".join(sorted(known)),
                    )
        return value

    def listing(self, data: Mapping[str, Any], key: str) -> list[Any]:
        value = data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(key, f"expected a list, got {type(value).__name__}")
        return value

    def text(self, entry: Mapping[str, Any], key: str, path: str, *, required: bool) -> str | None:
        value = entry.get(key)
        if value is None:
            if required:
                raise self.fail(f"{path}.{key}", "missing: this key is required")
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.fail(f"{path}.{key}", f"expected a string, got {value!r}")
        text = str(value).strip()
        if required and not text:
            raise self.fail(f"{path}.{key}", "empty: give a non-empty value")
        return text

    def flag(self, entry: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        value = entry.get(key, default)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.fail(f"{path}.{key}", f"expected true or false, got {value!r}")
        return value

    def time(self, value: Any, path: str) -> datetime:
        # Big snapshots repeat timestamps (jobs queued in the same second), and
        # the C fromisoformat is far faster than parse_timestamp's strptime tries.
        if isinstance(value, str):
            cached = self._times.get(value)
            if cached is not None:
                return cached
            try:
                parsed = utc(datetime.fromisoformat(value))
            except ValueError:
                parsed = None
            if parsed is not None:
                self._times[value] = parsed
                return parsed
        try:
            return parse_timestamp(value, path)
        except JobParseError as exc:
            raise self.fail(path, exc.problem) from exc

    def optional_time(self, entry: Mapping[str, Any], key: str, path: str) -> datetime | None:
        value = entry.get(key)
        return None if value is None else self.time(value, f"{path}.{key}")

    def seconds(self, entry: Mapping[str, Any], key: str, path: str) -> float | None:
        value = entry.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise self.fail(f"{path}.{key}", f"expected a number of seconds >= 0, got {value!r}")
        return float(value)

    def job_id(self, entry: Mapping[str, Any], path: str, seen: dict[str, str]) -> str:
        job_id = self.text(entry, "job_id", path, required=True)
        assert job_id is not None
        if job_id in seen:
            raise self.fail(
                f"{path}.job_id",
                f"duplicate job id {job_id!r} (also at {seen[job_id]}): job ids must be unique",
            )
        seen[job_id] = path
        return job_id


class JobCache:
    """Parses each distinct body once (YAML aliases share one object, raw text repeats).

    Everything `parse_job` derives from a body is the same for every entry
    sharing it, so later entries only get their own id and submission time.
    """

    def __init__(self) -> None:
        self._parsed: dict[tuple[Any, ...], Job | JobParseError] = {}

    def parse(
        self, body: Any, job_id: str, queued_at: datetime | None, tube: str, priority: int | None
    ) -> Job:
        identity: Any = body if isinstance(body, str | bytes) else id(body)
        key = (identity, tube, priority, queued_at is None)
        cached = self._parsed.get(key)
        if cached is None:
            try:
                cached = parse_job(
                    body, job_id=job_id, queued_at=queued_at, tube=tube, priority=priority
                )
            except JobParseError as exc:
                cached = exc
            self._parsed[key] = cached
        if isinstance(cached, JobParseError):
            raise cached
        if cached.job_id == job_id:
            return cached
        return replace(cached, job_id=job_id, queued_at=queued_at or cached.queued_at)

"""Parse teuthology job bodies exactly as `teuthology-schedule` puts them in beanstalkd.

Contract: `parse_job` never changes where or when a job may run by guessing.
A field that is present but malformed raises `JobParseError` naming the field
and what was expected; the caller buries the job with that message. Only
teuthology's own documented defaults are applied (priority 1000, no roles =
no node, machine type = the tube the job was put in when the body has none).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import yaml

from optialloc import yaml_bounds
from optialloc.domain import Job, utc
from optialloc.errors import JobParseError
from optialloc.yaml_errors import describe_yaml_error

#: teuthology's default priority (`teuthology-schedule --priority`).
DEFAULT_PRIORITY = 1000
#: The tube that takes jobs accepting several machine types.
MULTI_TUBE = "multi"
#: beanstalkd's own default max job size is 65,535 bytes; teuthology bodies are
#: a few KiB. Anything past this is refused rather than parsed.
MAX_BODY_BYTES = 1024 * 1024
#: The most urgent-last priority optialloc orders (0 = most urgent). beanstalkd takes up
#: to 2**32-1, but the policy's reservation thresholds grow as priority ** 1.5 and past
#: this they would all saturate at the same bound (see `optialloc.ranking.MAX_WAIT_S`),
#: so such jobs could not be ordered against each other. teuthology uses 0..1000.
MAX_PRIORITY = 100_000
PRIORITY_RANGE = f"0..{MAX_PRIORITY}"
#: teuthology's ttr for every job it puts (one day).
TEUTHOLOGY_TTR = 86400

_TYPE_SPLIT = re.compile(r"[,\s]+")


def split_machine_types(value: str) -> tuple[str, ...]:
    """Split teuthology's `machine_type` on commas, spaces and tabs, keeping order."""
    seen: dict[str, None] = {}
    for part in _TYPE_SPLIT.split(value.strip()):
        if part:
            seen.setdefault(part, None)
    return tuple(seen)


def tube_for(machine_type: str) -> str:
    """The beanstalk tube teuthology puts a job in: its type, or `multi` for several."""
    types = split_machine_types(machine_type)
    return types[0] if len(types) == 1 else MULTI_TUBE


def load_body(text: str | bytes) -> dict[str, Any]:
    """Load a raw beanstalk body (YAML) into a mapping, or raise `JobParseError`."""
    if isinstance(text, bytes):
        if len(text) > MAX_BODY_BYTES:
            raise JobParseError(
                "body", f"{len(text)} bytes is over the {MAX_BODY_BYTES}-byte limit"
            )
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JobParseError(
                "body", f"not UTF-8 text ({exc.reason} at byte {exc.start})"
            ) from exc
    if len(text) > MAX_BODY_BYTES:
        raise JobParseError("body", f"{len(text)} characters is over the {MAX_BODY_BYTES} limit")
    try:
        loaded = yaml_bounds.safe_load(text)  # yaml.safe_load, bounded (alias bombs, depth)
    except yaml.YAMLError as exc:
        raise JobParseError("body", f"not valid YAML ({describe_yaml_error(exc)})") from exc
    if not isinstance(loaded, dict):
        raise JobParseError(
            "body", f"expected a YAML mapping of job fields, got {type(loaded).__name__}"
        )
    return loaded


def _optional_str(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise JobParseError(key, f"expected a string, got {type(value).__name__}")
    text = str(value).strip()
    return text or None


def _flag(body: Mapping[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise JobParseError(key, f"expected true or false, got {value!r}")
    return value


def _priority(body: Mapping[str, Any]) -> int:
    value = body.get("priority", DEFAULT_PRIORITY)
    if value is None:
        return DEFAULT_PRIORITY
    if isinstance(value, bool) or not isinstance(value, int):
        raise JobParseError("priority", f"expected an integer (lower = more urgent), got {value!r}")
    return check_priority_range(value)


def check_priority_range(value: int) -> int:
    """`value` if optialloc can order it (`PRIORITY_RANGE`), else `JobParseError` saying so."""
    if not 0 <= value <= MAX_PRIORITY:
        raise JobParseError(
            "priority",
            f"{value} is outside the range optialloc orders, {PRIORITY_RANGE} (lower = more "
            "urgent; teuthology's default is 1000): schedule it with a priority in that range",
        )
    return value


def _nodes_needed(body: Mapping[str, Any]) -> int:
    roles = body.get("roles")
    if roles is None:
        return 0
    if not isinstance(roles, list):
        raise JobParseError(
            "roles", f"expected a list of lists (one per node), got {type(roles).__name__}"
        )
    for index, node_roles in enumerate(roles):
        if not isinstance(node_roles, list):
            raise JobParseError(
                f"roles[{index}]",
                f"expected a list of role names for one node, got {node_roles!r}",
            )
    return len(roles)


def _machine_types(body: Mapping[str, Any], tube: str) -> tuple[str, ...]:
    value = body.get("machine_type")
    if value is None:
        if tube and tube != MULTI_TUBE:
            return (tube,)
        raise JobParseError(
            "machine_type", "missing: set machine_type (e.g. smithi or 'smithi,mira')"
        )
    if not isinstance(value, str):
        raise JobParseError(
            "machine_type", f"expected a string such as 'smithi,mira', got {value!r}"
        )
    types = split_machine_types(value)
    if not types:
        raise JobParseError("machine_type", "empty: name at least one machine type")
    return types


#: One tuple object per distinct machine-type list (see `_shared_types`).
_TYPE_LISTS: dict[tuple[str, ...], tuple[str, ...]] = {}
_MAX_TYPE_LISTS = 10_000  # a lab has a handful; past this, stop sharing rather than grow


def _shared(value: str | None) -> str | None:
    """One string object for equal values of a scheduling field (see `_shared_types`)."""
    return value if value is None else sys.intern(value)


def _shared_types(types: tuple[str, ...]) -> tuple[str, ...]:
    """One tuple object for equal machine-type lists.

    The solver and the validator read every queued job's scheduling fields on
    every tick (20,000 jobs at Sepia scale); with one object per distinct value
    instead of one per job, those reads stay in the CPU caches (measured: a
    fifth of a cold solve).
    """
    shared = _TYPE_LISTS.get(types)
    if shared is not None:
        return shared
    shared = tuple(map(sys.intern, types))
    if len(_TYPE_LISTS) < _MAX_TYPE_LISTS:
        _TYPE_LISTS[shared] = shared
    return shared


def parse_timestamp(value: Any, field: str) -> datetime:
    """Parse an ISO-8601 or teuthology (`2026-11-20_20:00:03`) timestamp as UTC."""
    if isinstance(value, datetime):
        return utc(value)
    if not isinstance(value, str):
        raise JobParseError(
            field, f"expected a timestamp such as '2026-11-24T18:00:00Z', got {value!r}"
        )
    text = value.strip()
    for fmt in ("%Y-%m-%d_%H:%M:%S", "%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            pass
    try:
        return utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError as exc:
        raise JobParseError(field, f"{text!r} is not a timestamp (use ISO 8601, UTC)") from exc


def parse_job(
    body: Mapping[str, Any] | str | bytes,
    *,
    job_id: str,
    queued_at: datetime | None = None,
    tube: str = "",
    priority: int | None = None,
) -> Job:
    """Parse one teuthology job body into a `Job`.

    `job_id` is the queue's id (teuthology uses the beanstalk job id; a body's
    own `job_id` is ignored for identity). `queued_at` is the queue's submission
    time; without it the body's `timestamp` is used, and without either the
    body is rejected, because aging depends on it. `priority`, when given, is
    the queue's current priority (it wins over the body's after a
    `queue priority` change).
    """
    mapping = load_body(body) if isinstance(body, str | bytes) else body
    if not isinstance(mapping, Mapping):
        raise JobParseError(
            "body", f"expected a mapping of job fields, got {type(mapping).__name__}"
        )
    machine_types = _machine_types(mapping, tube)
    nodes_needed = _nodes_needed(mapping)
    body_priority = _priority(mapping)
    if priority is not None:
        check_priority_range(priority)  # the queue's priority (beanstalkd's pri) wins
    if queued_at is None:
        if mapping.get("timestamp") is None:
            raise JobParseError(
                "timestamp", "no submission time: the queue gave none and the body has no timestamp"
            )
        queued_at = parse_timestamp(mapping["timestamp"], "timestamp")
    owner = _optional_str(mapping, "owner") or ""
    run = _optional_str(mapping, "name") or ""
    return Job(
        job_id=str(job_id),
        run=sys.intern(run),
        owner=sys.intern(owner),
        priority=body_priority if priority is None else priority,
        machine_types=_shared_types(machine_types),
        nodes_needed=nodes_needed,
        queued_at=utc(queued_at),
        tube=sys.intern(tube or tube_for(",".join(machine_types))),
        os_type=_shared(_optional_str(mapping, "os_type")),
        os_version=_shared(_optional_str(mapping, "os_version")),
        arch=_shared(_optional_str(mapping, "arch")),
        first_in_suite=_flag(mapping, "first_in_suite"),
        last_in_suite=_flag(mapping, "last_in_suite"),
        description=_optional_str(mapping, "description"),
        body=dict(mapping),
    )


def dump_body(body: Mapping[str, Any]) -> str:
    """Serialize a body the way teuthology-schedule does (`yaml.safe_dump`)."""
    return yaml.safe_dump(dict(body), default_flow_style=False)

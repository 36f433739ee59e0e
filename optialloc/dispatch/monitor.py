"""The monitor's rules: when a running job has lost its lease and must be killed.

A running job holds a lease while its process lives, it has run for less than
its time limit, and (when `progress_timeout` is set) its log has grown within
that many seconds. This module only decides; the dispatcher acts (kill the
process group, bury with the reason, report `dead`, release the nodes).

Boundaries are inclusive and exact: a job is over its limit when
`elapsed >= limit` (at exactly the limit it is killed, one second before it
is not), and likewise for the progress threshold. All times come from the
caller (the dispatcher's `Clock`), never from the system.

Time limits: the config's `max_job_time` (teuthology's key, default 259200 s),
lowered by the policy's `max_job_time_s` when that is smaller, and by the
first matching rule in the policy's optional `job_time_limits` (a sequence of
mappings with `seconds` and any of `suite`, `max_priority`, `min_priority`,
`machine_type`), so a policy can set per-priority or per-suite limits.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from optialloc.domain import Job


def _rule_matches(rule: Mapping[str, Any], job: Job) -> bool:
    suite = rule.get("suite")
    if suite is not None and job.body.get("suite") != suite:
        return False
    if rule.get("max_priority") is not None and job.priority > int(rule["max_priority"]):
        return False
    if rule.get("min_priority") is not None and job.priority < int(rule["min_priority"]):
        return False
    machine_type = rule.get("machine_type")
    return machine_type is None or machine_type in job.machine_types


def time_limit(job: Job, default_s: float, policy: object | None = None) -> float:
    """The job's time limit in seconds (see the module docstring for the rules)."""
    limit = float(default_s)
    policy_max = getattr(policy, "max_job_time_s", None)
    if isinstance(policy_max, int | float) and 0 < policy_max < limit:
        limit = float(policy_max)
    for rule in getattr(policy, "job_time_limits", None) or ():
        if isinstance(rule, Mapping) and "seconds" in rule and _rule_matches(rule, job):
            return min(limit, float(rule["seconds"]))
    return limit


def lease_lost(
    now: datetime,
    started_at: datetime,
    limit_s: float,
    *,
    progress_at: datetime | None = None,
    progress_timeout_s: float | None = None,
) -> str | None:
    """The reason the job must be killed now, or None while it keeps its lease.

    `progress_at` is when the job's log last grew (None: not yet written);
    silence is counted from the later of that and `started_at`.
    """
    elapsed = (now - started_at).total_seconds()
    if elapsed >= limit_s:
        return f"max_job_time exceeded: ran {elapsed:.0f} s, limit {limit_s:.0f} s"
    if progress_timeout_s is not None:
        last = started_at if progress_at is None else max(progress_at, started_at)
        silent = (now - last).total_seconds()
        if silent >= progress_timeout_s:
            return (
                f"no progress: log unchanged for {silent:.0f} s, limit {progress_timeout_s:.0f} s"
            )
    return None

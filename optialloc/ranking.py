"""What a job is worth under a `Policy`: the one definition shared by the solver and the validator.

- `effective_priority`: teuthology priority (lower = more urgent), improved by
  aging (`aging.rate_per_hour` points per hour waited, counted in whole
  `aging.step_minutes` steps, at most `aging.max_boost` points) and worsened by
  decayed past usage of the job's owner (`fairness.usage_penalty`);
- `job_weight`: `weights.scale / max(effective_priority, 1)`, times
  `1 + weights.lighter_job_bonus / nodes_needed` (among equal priorities,
  fewer nodes first), quantized to `1 / WEIGHT_RESOLUTION` so that the
  solver's integer objective and the validator's float sum agree exactly;
- reservation thresholds (`reservation_threshold_s`, `reservation_order_s`):
  when a waiting job is starved enough to have nodes held for it;
- `dispatch_key`: the order of the queue as users see it (`Waiting.position`).

Pure functions of a job, a time and a `Policy` (`optialloc.policy` holds the
knobs and their loading).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from datetime import datetime

from optialloc.domain import Job
from optialloc.policy import WEIGHT_RESOLUTION, Policy, WeightSettings


def usage_shares(usage: Mapping[str, float]) -> dict[str, float]:
    """Each owner's share (0..1) of the total decayed usage; empty when nobody used anything."""
    total = sum(max(0.0, float(v)) for v in usage.values())
    if total <= 0:
        return {}
    return {owner: max(0.0, float(v)) / total for owner, v in usage.items()}


def aging_boost(waited_s: float, policy: Policy) -> float:
    """Priority points gained after waiting `waited_s` seconds (whole steps, capped)."""
    aging = policy.aging
    if not aging.enabled or waited_s <= 0:
        return 0.0
    step_s = aging.step_minutes * 60.0
    hours = math.floor(waited_s / step_s) * step_s / 3600.0
    return min(aging.rate_per_hour * hours, aging.max_boost)


def effective_priority_at_fn(
    taken_at: datetime, policy: Policy, usage: Mapping[str, float] | None = None
) -> Callable[[int, str, datetime], float]:
    """Effective priority from (priority, owner, queued_at): all it depends on."""
    shares = usage_shares(usage) if usage and policy.fairness.usage_penalty > 0 else {}
    penalty = policy.fairness.usage_penalty

    def effective(priority: int, owner: str, queued_at: datetime) -> float:
        waited = (taken_at - queued_at).total_seconds()
        aged = max(0.0, priority - aging_boost(waited, policy))
        if shares:
            aged *= 1.0 + penalty * shares.get(owner, 0.0)
        return aged

    return effective


def effective_priority_fn(
    taken_at: datetime, policy: Policy, usage: Mapping[str, float] | None = None
) -> Callable[[Job], float]:
    """`effective_priority` for many jobs of one snapshot (usage shares computed once)."""
    at = effective_priority_at_fn(taken_at, policy, usage)

    def effective(job: Job) -> float:
        return at(job.priority, job.owner, job.queued_at)

    return effective


def effective_priority(
    job: Job, taken_at: datetime, policy: Policy, usage: Mapping[str, float] | None = None
) -> float:
    """Teuthology-style priority after aging and usage penalty (lower = more urgent, >= 0)."""
    return effective_priority_fn(taken_at, policy, usage)(job)


def estimate_bucket(seconds: float, base: int = 4) -> float:
    """A runtime estimate rounded to a power of `base` seconds (`weights.runtime_bucket_base`;
    base 4: ..., 17 min, 68 min, 4.6 h, ...): jobs with estimates still fall into few
    solver classes. Base 2 sorts finer at some solve time (docs/policy.md)."""
    return float(base ** round(math.log(max(seconds, 1.0), base)))


def runtime_factor(estimate_s: float | None, policy: Policy) -> float:
    """Weight multiplier for a job's runtime estimate (1 without one, or when off)."""
    w = policy.weights
    if estimate_s is None or w.runtime_exponent == 0:
        return 1.0
    return _runtime_factor(estimate_bucket(estimate_s, w.runtime_bucket_base), w)


def weight_bucket(estimate_s: float, policy: Policy) -> float:
    """The estimate's bucket for grouping jobs: `estimate_bucket`, merged with its
    neighbours where the runtime factor is clamped anyway (same weight, fewer classes)."""
    w = policy.weights
    base = w.runtime_bucket_base
    bucket = estimate_bucket(estimate_s, base)
    if w.runtime_exponent == 0:
        return bucket
    # buckets this many powers of `base` away from the reference's reach the clamp
    span = w.runtime_max_factor ** (1.0 / w.runtime_exponent)
    steps = float(base ** max(0, math.ceil(math.log(span, base) - 1e-9)))
    reference = estimate_bucket(w.runtime_reference_s, base)
    return min(max(bucket, reference / steps), reference * steps)


@functools.lru_cache(maxsize=4096)
def _runtime_factor(bucket: float, w: WeightSettings) -> float:
    # both bucketed: an estimate in the reference's bucket weighs exactly 1
    reference = estimate_bucket(w.runtime_reference_s, w.runtime_bucket_base)
    factor = (reference / bucket) ** w.runtime_exponent
    return min(w.runtime_max_factor, max(1.0 / w.runtime_max_factor, factor))


def weight_units(
    eff_priority: float, nodes_needed: int, policy: Policy, estimate_s: float | None = None
) -> int:
    """Integer weight (units of 1 / WEIGHT_RESOLUTION) of a job; at least 1 so every job counts."""
    base = policy.weights.scale / max(eff_priority, 1.0)
    if policy.weights.node_exponent > 0 and nodes_needed > 1:
        base *= nodes_needed**policy.weights.node_exponent
    base *= runtime_factor(estimate_s, policy)
    bonus = 1.0 + policy.weights.lighter_job_bonus / max(nodes_needed, 1)
    return max(1, round(base * bonus * WEIGHT_RESOLUTION))


def job_weight_fn(
    taken_at: datetime,
    policy: Policy,
    usage: Mapping[str, float] | None = None,
    learned: Mapping[str, float] | None = None,
) -> Callable[[Job], float]:
    """`job_weight` for many jobs of one snapshot (`learned`: its runtime estimates)."""
    effective = effective_priority_fn(taken_at, policy, usage)

    def weight(job: Job) -> float:
        estimate = runtime_estimate_s(job, learned)
        return weight_units(effective(job), job.nodes_needed, policy, estimate) / WEIGHT_RESOLUTION

    return weight


def job_weight(
    job: Job, taken_at: datetime, policy: Policy, usage: Mapping[str, float] | None = None
) -> float:
    """What starting `job` now adds to the objective (the policy's weight units)."""
    return job_weight_fn(taken_at, policy, usage)(job)


#: The longest any reservation threshold or order time may be (100 years): every
#: `queued_at + timedelta(seconds=...)` built from them stays a valid datetime for any
#: priority in beanstalkd's 0..2**32-1 and any exponent. Priorities are refused above
#: `teuthology.MAX_PRIORITY` at ingest, well before the default policy reaches it.
MAX_WAIT_S = 100 * 365.25 * 86400.0


def _priority_scale(priority: int, policy: Policy) -> float:
    """(priority / 1000) ** priority_exponent: 1 for a nightly, smaller for urgent work.

    Saturates at `MAX_WAIT_S` (a float power can overflow for huge priorities)."""
    try:
        scale = float((max(priority, 0) / 1000.0) ** policy.reservations.priority_exponent)
    except OverflowError:
        return MAX_WAIT_S
    return min(scale, MAX_WAIT_S)


def reservation_threshold_s(priority: int, policy: Policy) -> float:
    """Seconds a job of this teuthology priority waits before it gets a reservation.

    `after_hours`, or with `priority_scaled` `after_hours x (priority / 1000) **
    priority_exponent` bounded below by `min_after_hours` (with after_hours 24
    and exponent 1: a PR job at 100 after 2.4 h, a nightly at 1000 after 24 h).
    """
    rules = policy.reservations
    if not rules.priority_scaled:
        return rules.after_hours * 3600.0
    hours = max(rules.min_after_hours, rules.after_hours * _priority_scale(priority, policy))
    return min(hours * 3600.0, MAX_WAIT_S)


def reservation_order_s(priority: int, policy: Policy) -> float:
    """Seconds after `queued_at` that rank a starved job in reservation order.

    `order_hours x (priority / 1000) ** priority_exponent` (at least the job's
    threshold) with `priority_scaled` and `order_hours` set, else the threshold
    itself: the order is by a fixed time per job, so a newly starved job never
    overtakes one ranked before it (the anti-starvation bound, docs/policy.md).
    """
    rules = policy.reservations
    threshold = reservation_threshold_s(priority, policy)
    if not rules.priority_scaled or rules.order_hours is None:
        return threshold
    order = rules.order_hours * _priority_scale(priority, policy) * 3600.0
    return min(max(threshold, order), MAX_WAIT_S)


def start_bound_s(priority: int, policy: Policy) -> float:
    """The longest wait docs/policy.md promises a job of this priority ("The
    anti-starvation bound", first in reservation order): reserved by its rank
    `reservation_order_s` at the latest, then started within `max_job_time_s`
    (every node busy then frees by it). Without reservations: no bound (inf)."""
    if not policy.reservations.enabled:
        return math.inf
    return reservation_order_s(priority, policy) + float(policy.max_job_time_s)


def runtime_estimate_s(job: Job, learned: Mapping[str, float] | None = None) -> float | None:
    """The job's runtime estimate in seconds: its body's `runtime_estimate_s` (read at
    parse time), else the one learned for its description (`Snapshot.runtime_estimates`),
    else None."""
    if job.runtime_estimate_s is not None:
        return job.runtime_estimate_s
    if learned and job.description:
        return learned.get(job.description)
    return None


def dispatch_priority(eff_priority: float, estimate_s: float | None, policy: Policy) -> float:
    """The priority a job is listed by: its effective priority divided by its runtime
    factor (so a job that weighs 4x for being short ranks like one 4x as urgent)."""
    return eff_priority / runtime_factor(estimate_s, policy)


def dispatch_key(job: Job, eff_priority: float) -> tuple[float, int, datetime, str]:
    """Dispatch order: most urgent first (pass `dispatch_priority`, or the effective
    priority when estimates play no part), then fewer nodes, then oldest, then id."""
    return (eff_priority, job.nodes_needed, job.queued_at, job.job_id)

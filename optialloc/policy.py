"""Scheduling policy models (`models/*.yaml`): validated knobs and the weight definition.

A `Policy` is plain frozen data loaded from YAML. This module is also the one
definition of what a job is worth, shared by the solver and the independent
validator:

- `effective_priority`: teuthology priority (lower = more urgent), improved by
  aging (`aging.rate_per_hour` points per hour waited, counted in whole
  `aging.step_minutes` steps, at most `aging.max_boost` points) and worsened by
  decayed past usage of the job's owner (`fairness.usage_penalty`);
- `job_weight`: `weights.scale / max(effective_priority, 1)`, times
  `1 + weights.lighter_job_bonus / nodes_needed` (among equal priorities,
  fewer nodes first), quantized to `1 / WEIGHT_RESOLUTION` so that the
  solver's integer objective and the validator's float sum agree exactly;
- `dispatch_key`: the order of the queue as users see it (`Waiting.position`).

Every validation error is a `PolicyError` naming the dotted field and the
allowed range; unknown keys are errors too, because a typo in a policy must
not silently change scheduling.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from optialloc.domain import Job
from optialloc.errors import PolicyError

#: Weights are integers in units of 1 / WEIGHT_RESOLUTION inside the solver.
WEIGHT_RESOLUTION = 10_000

_DEFAULT_PATH = Path(__file__).resolve().parent.parent / "models" / "default.yaml"


@dataclass(frozen=True)
class WeightSettings:
    """How teuthology priority becomes a weight (see module docstring)."""

    scale: float = 1000.0  # weight of a priority-1 job; priority p weighs scale / p
    lighter_job_bonus: float = 0.01  # relative bonus / nodes_needed: fewer nodes first on ties
    # weight x nodes_needed ** node_exponent: 0 = per job, 1 = per node (a 4-node job
    # is worth four 1-node jobs of its priority, so big urgent jobs are not outbid)
    node_exponent: float = 0.0
    # x clamp((runtime_reference_s / estimate) ** runtime_exponent, 1/max, max) for
    # jobs with a runtime estimate (body or learned from finished jobs, see
    # `optialloc.dispatch.runtimes`): shorter jobs first, as far as the clamp allows. 0 = off.
    runtime_exponent: float = 0.0
    runtime_reference_s: float = 3600.0
    runtime_max_factor: float = 4.0
    # estimates are rounded to powers of this (2 to 4): 2 sorts finer, 4 makes fewer classes
    runtime_bucket_base: int = 4


@dataclass(frozen=True)
class AgingSettings:
    """Effective priority improves by `rate_per_hour` points per hour waited, up to `max_boost`."""

    enabled: bool = True
    rate_per_hour: float = 2.0  # priority points per hour of waiting
    max_boost: float = 500.0  # at most this many points in total
    step_minutes: float = 60.0  # waiting time counts in whole steps (keeps job classes few)


@dataclass(frozen=True)
class ReservationSettings:
    """EASY-style holds: nodes kept free for a starved (or the most urgent) job until it starts."""

    enabled: bool = True
    after_hours: float = 24.0  # a job waiting at least this long gets a reservation
    max_jobs: int = 4  # at most this many reservations at once (oldest first)
    head_of_queue: bool = False  # also reserve for the first job in dispatch order
    # threshold after_hours x priority / 1000 (at least min_after_hours), and reserved
    # jobs chosen by teuthology priority, then age (off: after_hours for all, oldest first)
    priority_scaled: bool = False
    min_after_hours: float = 1.0
    # jobs whose body gives `runtime_estimate_s` may use held nodes when they end
    # (by their estimate) before the reserved job's estimated start (EASY backfill)
    backfill: bool = False
    # thresholds (and ranks) scale with (priority / 1000) ** priority_exponent:
    # above 1, urgent work starves sooner relative to nightlies (1: linear)
    priority_exponent: float = 1.0
    # reservation order: by queued_at + order_hours x priority / 1000 (at least
    # min_after_hours); None = after_hours, i.e. by the time a job became starved.
    # Larger: starved urgent jobs go before starved nightlies for longer.
    order_hours: float | None = None
    # a job needing several nodes is starved too once it has waited relative_after_hours
    # and more than relative_factor x as long as any 1-node job of its priority waits or
    # waited before it started (small jobs of its priority are served, it is not); None = off
    relative_after_hours: float | None = None
    relative_factor: float = 1.0


@dataclass(frozen=True)
class FairnessSettings:
    """Caps on the share of one machine type an owner or a run holds while others wait."""

    owner_max_share: float = 1.0  # 1.0 = no owner cap
    run_max_share: float = 1.0  # 1.0 = no run cap
    usage_penalty: float = 0.0  # effective priority x (1 + penalty x owner's share of usage)
    # caps bind only while another owner/run waits with an equal or better effective
    # priority than the capped one's best job (a nightly backlog does not cap urgent runs)
    peers_only: bool = False
    # a rival counts only while it holds fewer nodes of the type than its own cap allows:
    # a rival at its cap cannot take freed nodes, so capping others for it would hand
    # them to less urgent work (caps then never leave urgent work waiting for nobody)
    work_conserving: bool = False


@dataclass(frozen=True)
class SolverSettings:
    """CP-SAT settings. One worker by default: results are then reproducible."""

    time_limit_s: float = 5.0
    num_workers: int = 1
    relative_gap: float = 0.0
    random_seed: int = 0


@dataclass(frozen=True)
class JobTimeLimit(Mapping[str, Any]):
    """One `job_time_limits` rule: jobs matching every given key get at most `seconds`.

    Read as a mapping (`seconds`, `suite`, `max_priority`, `min_priority`,
    `machine_type`; unset keys absent) by the monitor (`optialloc.dispatch.monitor`).
    """

    seconds: float
    suite: str | None = None
    max_priority: int | None = None
    min_priority: int | None = None
    machine_type: str | None = None

    def _set(self) -> dict[str, Any]:
        return {
            f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None
        }

    def __getitem__(self, key: str) -> Any:
        return self._set()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._set())

    def __len__(self) -> int:
        return len(self._set())


@dataclass(frozen=True)
class Policy:
    """A whole scheduling policy model.

    `reimaged_types` are reinstalled on lock, so a job's OS need not match theirs.
    """

    name: str = "default"
    description: str = ""
    weights: WeightSettings = field(default_factory=WeightSettings)
    aging: AgingSettings = field(default_factory=AgingSettings)
    reservations: ReservationSettings = field(default_factory=ReservationSettings)
    fairness: FairnessSettings = field(default_factory=FairnessSettings)
    solver: SolverSettings = field(default_factory=SolverSettings)
    reimaged_types: frozenset[str] = frozenset()
    max_job_time_s: float = 259200.0  # documents the anti-starvation bound (teuthology's default)
    # per-priority / per-suite / per-type time limits; the first matching rule wins
    job_time_limits: tuple[JobTimeLimit, ...] = ()


# ----------------------------------------------------------------------------- loading

# dotted field -> (kind, low, high): kind is float, int or bool; ranges are inclusive.
_RANGES: dict[str, tuple[type, float, float]] = {
    "weights.scale": (float, 1e-3, 1e9),
    "weights.lighter_job_bonus": (float, 0.0, 1.0),
    "weights.node_exponent": (float, 0.0, 1.0),
    "weights.runtime_exponent": (float, 0.0, 2.0),
    "weights.runtime_reference_s": (float, 1.0, 31536000.0),
    "weights.runtime_max_factor": (float, 1.0, 1000.0),
    "weights.runtime_bucket_base": (int, 2, 4),
    "aging.enabled": (bool, 0, 1),
    "aging.rate_per_hour": (float, 0.0, 1e6),
    "aging.max_boost": (float, 0.0, 4294967295.0),
    "aging.step_minutes": (float, 1.0, 1440.0),
    "reservations.enabled": (bool, 0, 1),
    "reservations.after_hours": (float, 0.0, 8760.0),
    "reservations.max_jobs": (int, 0, 1000),
    "reservations.head_of_queue": (bool, 0, 1),
    "reservations.priority_scaled": (bool, 0, 1),
    "reservations.min_after_hours": (float, 0.0, 8760.0),
    "reservations.backfill": (bool, 0, 1),
    "reservations.order_hours": (float, 0.0, 8760.0),
    "reservations.priority_exponent": (float, 0.5, 3.0),
    "reservations.relative_after_hours": (float, 0.0, 8760.0),
    "reservations.relative_factor": (float, 1.0, 1000.0),
    "fairness.owner_max_share": (float, 0.01, 1.0),
    "fairness.run_max_share": (float, 0.01, 1.0),
    "fairness.usage_penalty": (float, 0.0, 100.0),
    "fairness.peers_only": (bool, 0, 1),
    "fairness.work_conserving": (bool, 0, 1),
    "solver.time_limit_s": (float, 0.01, 3600.0),
    "solver.num_workers": (int, 1, 64),
    "solver.relative_gap": (float, 0.0, 1.0),
    "solver.random_seed": (int, 0, 2**31 - 1),
    "max_job_time_s": (float, 1.0, 31536000.0),
}

_SECTIONS: dict[str, type] = {
    "weights": WeightSettings,
    "aging": AgingSettings,
    "reservations": ReservationSettings,
    "fairness": FairnessSettings,
    "solver": SolverSettings,
}


def _scalar(path: str, value: Any) -> Any:
    kind, low, high = _RANGES[path]
    if kind is bool:
        if not isinstance(value, bool):
            raise PolicyError(path, f"expected true or false, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PolicyError(path, f"expected a number in [{low:g}, {high:g}], got {value!r}")
    if kind is int and not isinstance(value, int):
        raise PolicyError(path, f"expected an integer in [{low:g}, {high:g}], got {value!r}")
    if not math.isfinite(value) or value < low or value > high:
        raise PolicyError(path, f"{value!r} is outside the allowed range [{low:g}, {high:g}]")
    return kind(value)


def _section(name: str, data: Any) -> Any:
    cls = _SECTIONS[name]
    if not isinstance(data, Mapping):
        raise PolicyError(name, f"expected a mapping of settings, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            raise PolicyError(
                f"{name}.{key}", f"unknown setting (allowed: {', '.join(sorted(known))})"
            )
        values[key] = _scalar(f"{name}.{key}", value)
    return cls(**values)


def _time_limits(value: Any) -> tuple[JobTimeLimit, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise PolicyError("job_time_limits", f"expected a list of rules, got {value!r}")
    allowed = {f.name for f in fields(JobTimeLimit)}
    rules = []
    for index, rule in enumerate(value):
        path = f"job_time_limits[{index}]"
        if not isinstance(rule, Mapping):
            raise PolicyError(path, f"expected a mapping with seconds and a match, got {rule!r}")
        unknown = set(rule) - allowed
        if unknown:
            raise PolicyError(
                f"{path}.{sorted(unknown)[0]}",
                f"unknown key (allowed: {', '.join(sorted(allowed))})",
            )
        seconds = rule.get("seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
            raise PolicyError(
                f"{path}.seconds", f"expected a number of seconds > 0, got {seconds!r}"
            )
        for key in ("max_priority", "min_priority"):
            bound = rule.get(key)
            if bound is not None and (isinstance(bound, bool) or not isinstance(bound, int)):
                raise PolicyError(f"{path}.{key}", f"expected an integer priority, got {bound!r}")
        for key in ("suite", "machine_type"):
            name = rule.get(key)
            if name is not None and (not isinstance(name, str) or not name):
                raise PolicyError(f"{path}.{key}", f"expected a non-empty string, got {name!r}")
        rules.append(
            JobTimeLimit(
                seconds=float(seconds),
                suite=rule.get("suite"),
                max_priority=rule.get("max_priority"),
                min_priority=rule.get("min_priority"),
                machine_type=rule.get("machine_type"),
            )
        )
    return tuple(rules)


def policy_from_mapping(data: Mapping[str, Any], source: str = "<policy>") -> Policy:
    """Validate a policy mapping (as loaded from YAML); missing keys take their defaults.

    Raises `PolicyError` whose `field` is the dotted field (e.g. `aging.rate_per_hour`)
    and whose problem states the allowed values and, for files, ends with `(in <source>)`.
    """
    if not isinstance(data, Mapping):
        raise PolicyError(
            source, f"expected a mapping of policy sections, got {type(data).__name__}"
        )
    allowed = {f.name for f in fields(Policy)}
    values: dict[str, Any] = {}
    try:
        for key, value in data.items():
            if key not in allowed:
                raise PolicyError(str(key), f"unknown key (allowed: {', '.join(sorted(allowed))})")
            if key in _SECTIONS:
                values[key] = _section(key, value if value is not None else {})
            elif key in ("name", "description"):
                if not isinstance(value, str):
                    raise PolicyError(key, f"expected a string, got {value!r}")
                values[key] = value
            elif key == "job_time_limits":
                values[key] = _time_limits(value)
            elif key == "reimaged_types":
                if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                    raise PolicyError(key, f"expected a list of machine type names, got {value!r}")
                values[key] = frozenset(value)
            else:
                values[key] = _scalar(key, value)
        policy = Policy(**values)
        if policy.aging.enabled and policy.aging.max_boost > 0 and policy.aging.rate_per_hour == 0:
            raise PolicyError(
                "aging.rate_per_hour", "is 0 while aging is enabled: set > 0 or enabled: false"
            )
    except PolicyError as exc:
        if source == "<policy>":
            raise
        raise PolicyError(exc.field, f"{exc.problem} (in {source})") from None
    return policy


def load_policy(path: str) -> Policy:
    """Load and validate a policy model file; errors name the file and the field."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(
            path, f"cannot read policy file ({exc.strerror}); pass an existing models/*.yaml"
        ) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(path, f"not valid YAML ({str(exc).splitlines()[0]})") from exc
    return policy_from_mapping(data if data is not None else {}, source=path)


def default_policy() -> Policy:
    """The recommended lab policy: the content of models/default.yaml (its defaults if absent)."""
    if _DEFAULT_PATH.exists():
        return load_policy(str(_DEFAULT_PATH))
    return Policy()


# ----------------------------------------------------------------------------- weights


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


def _priority_scale(priority: int, policy: Policy) -> float:
    """(priority / 1000) ** priority_exponent: 1 for a nightly, smaller for urgent work."""
    return float((max(priority, 0) / 1000.0) ** policy.reservations.priority_exponent)


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
    return hours * 3600.0


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
    return max(threshold, rules.order_hours * _priority_scale(priority, policy) * 3600.0)


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

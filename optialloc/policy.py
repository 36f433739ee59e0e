"""Scheduling policy models (`models/*.yaml`): validated knobs and their loading.

A `Policy` is plain frozen data loaded from YAML. What a job is worth under
it (effective priority, weight, reservation thresholds, queue order) is
defined once in `optialloc.ranking`, shared by the solver and the validator.

Every validation error is a `PolicyError` naming the dotted field and the
allowed range; unknown keys are errors too, because a typo in a policy must
not silently change scheduling.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from optialloc.errors import PolicyError
from optialloc.resources import resolve_file, shipped_names, shipped_path
from optialloc.yaml_errors import describe_yaml_error

#: Weights are integers in units of 1 / WEIGHT_RESOLUTION inside the solver.
WEIGHT_RESOLUTION = 10_000

#: The shipped default model (optialloc/data/models/default.yaml; `--policy default`).
_DEFAULT_PATH = shipped_path("models", "default")


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
    # learned estimates are used only while their measured R^2 (RuntimeHistory.skill)
    # is at least this; 0 = always (a body's own runtime_estimate_s is always used)
    runtime_min_skill: float = 0.0


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
    "weights.runtime_min_skill": (float, 0.0, 1.0),
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
    """Load and validate a policy model; errors name the file and the field.

    `path` is a file path, or the bare name of a shipped model (`default`,
    `throughput`; see `optialloc.resources`).
    """
    path = resolve_file("models", path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(
            path,
            f"cannot read policy file ({exc.strerror}); pass an existing file or a shipped "
            f"model name ({', '.join(shipped_names('models'))})",
        ) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(path, f"not valid YAML ({describe_yaml_error(exc)})") from exc
    return policy_from_mapping(data if data is not None else {}, source=path)


def default_policy() -> Policy:
    """The recommended lab policy: the shipped `default` model."""
    return load_policy(str(_DEFAULT_PATH))

"""Policy models: shipped models load, every knob is validated by name, the weight definition."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from solver_support import T0, job

from optialloc.errors import ExitCode, PolicyError
from optialloc.policy import (
    WEIGHT_RESOLUTION,
    Policy,
    default_policy,
    load_policy,
    policy_from_mapping,
)
from optialloc.ranking import dispatch_key, effective_priority, job_weight

MODELS = sorted((REPO / "models").glob("*.yaml"))


def test_shipped_models_load_and_contrast() -> None:
    names = {p.stem for p in MODELS}
    assert {"default", "throughput"} <= names
    for path in MODELS:
        assert isinstance(load_policy(str(path)), Policy)
    default = default_policy()
    assert default == load_policy(str(REPO / "models" / "default.yaml"))
    assert default.aging.enabled and default.reservations.enabled
    assert default.fairness.owner_max_share < 1.0
    throughput = load_policy(str(REPO / "models" / "throughput.yaml"))
    assert not throughput.aging.enabled and not throughput.reservations.enabled
    assert throughput.fairness.owner_max_share == 1.0


def test_empty_mapping_takes_defaults() -> None:
    assert policy_from_mapping({}) == Policy()


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"aging": {"rate_per_hour": -1}}, "aging.rate_per_hour", "[0, 1e+06]"),
        ({"aging": {"rate_per_hour": "fast"}}, "aging.rate_per_hour", "expected a number"),
        ({"aging": {"enabled": "yes"}}, "aging.enabled", "true or false"),
        ({"aging": {"rate_per_hour": 0, "enabled": True}}, "aging.rate_per_hour", "enabled: false"),
        ({"aging": {"step_minutes": 0}}, "aging.step_minutes", "[1, 1440]"),
        ({"fairness": {"owner_max_share": 1.5}}, "fairness.owner_max_share", "[0.01, 1]"),
        ({"fairness": {"run_max_share": 0}}, "fairness.run_max_share", "[0.01, 1]"),
        ({"reservations": {"max_jobs": 2.5}}, "reservations.max_jobs", "integer"),
        ({"solver": {"num_workers": 0}}, "solver.num_workers", "[1, 64]"),
        ({"solver": {"time_limit_s": float("nan")}}, "solver.time_limit_s", "outside"),
        ({"solver": {"relative_gap": 2}}, "solver.relative_gap", "[0, 1]"),
        ({"weights": {"scale": 0}}, "weights.scale", "outside"),
        ({"aging": {"rate_per_huor": 1}}, "aging.rate_per_huor", "unknown setting"),
        ({"fairnes": {}}, "fairnes", "unknown key"),
        ({"aging": [1, 2]}, "aging", "expected a mapping"),
        ({"reimaged_types": "smithi"}, "reimaged_types", "list of machine type"),
        ({"max_job_time_s": 0}, "max_job_time_s", "outside"),
    ],
)
def test_bad_values_name_the_field_and_range(data: dict, field: str, words: str) -> None:
    with pytest.raises(PolicyError) as info:
        policy_from_mapping(data)
    assert info.value.field == field
    assert words in info.value.problem
    assert info.value.exit_code == ExitCode.BAD_INPUT


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "typo.yaml"
    bad.write_text(yaml.safe_dump({"fairness": {"owner_max_shar": 0.5}}))
    with pytest.raises(PolicyError) as info:
        load_policy(str(bad))
    assert info.value.field == "fairness.owner_max_shar"
    assert str(bad) in str(info.value)
    broken = tmp_path / "broken.yaml"
    broken.write_text("aging: [\n")
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy(str(broken))
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(str(tmp_path / "missing.yaml"))


def test_weight_mapping_lower_priority_number_weighs_more() -> None:
    policy = policy_from_mapping({"aging": {"enabled": False}, "weights": {"lighter_job_bonus": 0}})
    weights = [job_weight(job(1, priority=p), T0, policy) for p in (0, 1, 10, 100, 1000)]
    assert weights == [1000.0, 1000.0, 100.0, 10.0, 1.0]  # w = 1000 / max(priority, 1)
    assert job_weight(job(1, priority=4_000_000_000), T0, policy) == 1 / WEIGHT_RESOLUTION


def test_lighter_jobs_first_among_equal_priority() -> None:
    policy = policy_from_mapping({"aging": {"enabled": False}})
    small, big = job(1, nodes_needed=1), job(2, nodes_needed=4)
    assert job_weight(small, T0, policy) > job_weight(big, T0, policy)
    assert dispatch_key(small, 100.0) < dispatch_key(big, 100.0)
    # ...but never above a job of better priority.
    assert job_weight(job(3, nodes_needed=4, priority=99), T0, policy) > job_weight(
        small, T0, policy
    )


def test_aging_improves_priority_in_steps_up_to_the_cap() -> None:
    policy = policy_from_mapping(
        {"aging": {"rate_per_hour": 10, "max_boost": 100, "step_minutes": 60}}
    )
    assert effective_priority(job(1, priority=500, waited_h=0.99), T0, policy) == 500
    assert effective_priority(job(1, priority=500, waited_h=1.0), T0, policy) == 490
    assert effective_priority(job(1, priority=500, waited_h=5.5), T0, policy) == 450
    assert effective_priority(job(1, priority=500, waited_h=500), T0, policy) == 400
    assert effective_priority(job(1, priority=50, waited_h=500), T0, policy) == 0
    # A job queued "in the future" (clock skew) gains nothing.
    future = job(1, priority=500, taken_at=T0 + timedelta(hours=3))
    assert effective_priority(future, T0, policy) == 500
    off = policy_from_mapping({"aging": {"enabled": False}})
    assert effective_priority(job(1, priority=500, waited_h=50), T0, off) == 500


def test_usage_penalty_worsens_heavy_users() -> None:
    policy = policy_from_mapping({"fairness": {"usage_penalty": 1.0}, "aging": {"enabled": False}})
    usage = {"alice": 300.0, "bob": 100.0}
    assert effective_priority(job(1, owner="alice"), T0, policy, usage) == pytest.approx(175.0)
    assert effective_priority(job(1, owner="bob"), T0, policy, usage) == pytest.approx(125.0)
    assert effective_priority(job(1, owner="carol"), T0, policy, usage) == 100.0
    assert effective_priority(job(1, owner="alice"), T0, policy, {}) == 100.0


def test_job_time_limits_load_and_drive_the_monitor(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from optialloc.dispatch.monitor import time_limit
    from optialloc.teuthology import parse_job

    path = tmp_path / "limits.yaml"
    path.write_text(
        "job_time_limits:\n"
        "- {max_priority: 50, seconds: 3600}\n"
        "- {suite: rados, machine_type: smithi, seconds: 7200}\n"
    )
    policy = load_policy(str(path))
    t0 = datetime(2026, 11, 24, tzinfo=UTC)

    def job(**body: object) -> object:
        return parse_job(
            {"machine_type": "smithi", "roles": [["osd.0"]], **body}, job_id="1", queued_at=t0
        )

    assert time_limit(job(priority=40), 259200, policy) == 3600  # type: ignore[arg-type]
    assert time_limit(job(priority=400, suite="rados"), 259200, policy) == 7200  # type: ignore[arg-type]
    assert time_limit(job(priority=400, suite="rbd"), 259200, policy) == 259200  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("rules", "field"),
    [
        ("[{seconds: 0}]", "job_time_limits[0].seconds"),
        ("[{seconds: 60, suit: rados}]", "job_time_limits[0].suit"),
        ("[{seconds: 60, max_priority: high}]", "job_time_limits[0].max_priority"),
        ("{seconds: 60}", "job_time_limits"),
    ],
)
def test_bad_job_time_limits_name_the_field(tmp_path: Path, rules: str, field: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(f"job_time_limits: {rules}\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(str(path))
    assert caught.value.field == field

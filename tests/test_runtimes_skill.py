"""The runtime history measures its own skill and a policy can stop leaning on it (issue 17)."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime

import pytest

from optialloc.dispatch.runtimes import MIN_SCORED, RuntimeHistory
from optialloc.domain import Job
from optialloc.errors import PolicyError
from optialloc.policy import policy_from_mapping

AT = datetime(2026, 11, 16, tzinfo=UTC)


def _history(share: float, runs: int = 600, seed: int = 1) -> RuntimeHistory:
    """Runs of 60 descriptions whose log runtime is `share` description, the rest noise."""
    rng = random.Random(seed)
    typical = {f"suite/test-{k}": rng.gauss(0.0, 1.0) for k in range(60)}
    history = RuntimeHistory()
    for _ in range(runs):
        description = rng.choice(list(typical))
        log_rt = math.log(3000) + math.sqrt(share) * typical[description]
        log_rt += math.sqrt(1 - share) * rng.gauss(0.0, 1.0)
        job = Job("1", "run", "dev", 100, ("smithi",), 1, AT, description=description)
        history.observe(job, math.exp(log_rt), AT)
    return history


def test_skill_tracks_how_much_a_description_explains() -> None:
    informative, useless = _history(0.75).skill(), _history(0.0).skill()
    assert informative is not None and useless is not None
    # the estimates' R^2 is below the share (estimates are learned from few runs)
    assert 0.45 < informative < 0.8
    assert useless < 0.1


def test_skill_unknown_until_enough_predictions_and_estimates_gated() -> None:
    history = _history(0.75, runs=MIN_SCORED)
    assert history.skill() is None
    assert history.trusted_estimates(0.2) == history.estimates()  # unknown: as they are
    good, bad = _history(0.75), _history(0.0)
    assert good.trusted_estimates(0.2) == good.estimates() and good.estimates()
    assert bad.trusted_estimates(0.0) == bad.estimates()  # 0: always
    flat = bad.trusted_estimates(0.2)
    # below the skill: every description, one typical runtime (about the median, 3000 s)
    assert set(flat) == set(bad.estimates()) and len(set(flat.values())) == 1
    assert 2000 < next(iter(flat.values())) < 4500


def test_min_skill_knob_is_validated() -> None:
    policy = policy_from_mapping({"weights": {"runtime_min_skill": 0.2}})
    assert policy.weights.runtime_min_skill == 0.2
    with pytest.raises(PolicyError, match=r"weights\.runtime_min_skill"):
        policy_from_mapping({"weights": {"runtime_min_skill": 1.5}})


@pytest.mark.parametrize(("share", "min_skill", "used"), [(0.0, 0.3, False), (0.75, 0.3, True)])
def test_dispatcher_hands_the_solver_estimates_only_while_they_predict(
    monkeypatch: pytest.MonkeyPatch, share: float, min_skill: float, used: bool
) -> None:
    """Through the real dispatcher in the simulator: what each snapshot carried."""
    from dataclasses import replace

    import optialloc.dispatch.dispatcher as dispatcher_module
    from optialloc.policy import default_policy
    from optialloc.sim.engine import simulate
    from optialloc.sim.family import nodes_of
    from optialloc.sim.generate import WeekParams, generate
    from optialloc.sim.optialloc_sched import OptiallocScheduler

    seen: list[int] = []
    real = dispatcher_module.take_snapshot

    def spy(*args: object, **kw: object) -> object:
        values = (kw.get("runtime_estimates") or {}).values()  # type: ignore[attr-defined]
        seen.append(len(set(values)))
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(dispatcher_module, "take_snapshot", spy)
    lab = (("smithi", 14), ("mira", 14), ("gibba", 14))
    params = WeekParams(seed=2, days=3, scale=0.15, lab=lab, target_load=0.9,
                        runtime_per_description=share)  # fmt: skip
    jobs = generate(params)
    base = default_policy()
    policy = replace(base, weights=replace(base.weights, runtime_min_skill=min_skill))
    nodes = nodes_of(lab)
    scheduler = OptiallocScheduler(
        name="p", policy=policy, nodes=nodes, jobs=jobs, origin=params.origin
    )
    names: dict[str, list[str]] = {}
    for node in nodes:
        names.setdefault(node.machine_type, []).append(node.name)
    simulate(jobs, scheduler, names, tick_s=300)
    skill = scheduler.dispatcher.runtimes.skill()
    assert skill is not None and (skill >= min_skill) == used
    # the last snapshot: learned estimates as they are if skilled, else one typical runtime
    assert len(set(scheduler.dispatcher.runtimes.estimates().values())) > 1
    assert (seen[-1] > 1) == used and seen[-1] >= 1

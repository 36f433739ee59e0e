"""Every committed snapshot fixture, solved with models/default.yaml: valid, as expected, as before.

Each fixture has explicit expectations (what it is there to show) and a golden
summary in fixtures/snapshots/expected/<name>.json (starts, held nodes,
objective, waiting reasons). After an intended change of the solver or the
policy, regenerate the goldens with OPTIALLOC_UPDATE_GOLDEN=1 and review the
diff like code.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections import Counter
from collections.abc import Callable
from functools import cache
from typing import Any

import pytest
from conftest import FIXTURES, REPO

from optialloc.check.validator import plan_objective, validate_plan
from optialloc.domain import Plan, Snapshot, WaitReason
from optialloc.policy import Policy, load_policy
from optialloc.snapshots.io import load_snapshot
from optialloc.solver import solve

SNAPSHOTS = FIXTURES / "snapshots"
EXPECTED = SNAPSHOTS / "expected"
UPDATE = os.environ.get("OPTIALLOC_UPDATE_GOLDEN") == "1"


@cache
def _policy() -> Policy:
    return load_policy(str(REPO / "models" / "default.yaml"))


@cache
def _solved(name: str) -> tuple[Snapshot, Plan]:
    snapshot = load_snapshot(SNAPSHOTS / name)
    return snapshot, solve(snapshot, _policy())


def _fixture_names() -> list[str]:
    return sorted(p.name for p in SNAPSHOTS.glob("*.yaml"))


def _starts(plan: Plan) -> dict[str, tuple[str, ...]]:
    return {s.job_id: s.nodes for s in plan.starts}


def _waits(plan: Plan) -> dict[str, WaitReason]:
    return {w.job_id: w.reason for w in plan.waiting}


def _types(snapshot: Snapshot, names: tuple[str, ...]) -> set[str]:
    by_name = {n.name: n.machine_type for n in snapshot.nodes}
    return {by_name[name] for name in names}


def _summary(plan: Plan) -> dict[str, Any]:
    return {
        "starts": len(plan.starts),
        "held": len(plan.held),
        "waiting": len(plan.waiting),
        "objective": round(plan.solver.objective, 4),
        "waiting_reasons": dict(sorted(Counter(str(w.reason) for w in plan.waiting).items())),
    }


@pytest.mark.parametrize("name", _fixture_names())
def test_fixture_plan_is_valid_and_covers_every_job(name: str) -> None:
    snapshot, plan = _solved(name)
    assert validate_plan(snapshot, _policy(), plan) == []
    assert plan_objective(snapshot, _policy(), plan) == pytest.approx(
        plan.solver.objective, abs=1e-3
    )
    planned = list(_starts(plan)) + list(_waits(plan))
    assert sorted(planned) == sorted(j.job_id for j in snapshot.queue)
    assert plan.solver.status in {"OPTIMAL", "TRIVIAL"}


@pytest.mark.parametrize("name", _fixture_names())
def test_fixture_matches_its_golden_summary(name: str) -> None:
    _snapshot, plan = _solved(name)
    golden = EXPECTED / (name.removesuffix(".yaml") + ".json")
    summary = _summary(plan)
    if UPDATE or not golden.exists():
        golden.write_text(json.dumps(summary, indent=2) + "\n")
        if not UPDATE:
            pytest.fail(f"{golden} did not exist: written now, review and commit it")
    expected = json.loads(golden.read_text())
    assert summary == expected, f"{name} changed; if intended, rerun with OPTIALLOC_UPDATE_GOLDEN=1"


# ------------------------------------------------------- what each fixture shows


def check_small(snapshot: Snapshot, plan: Plan) -> None:
    starts, waits = _starts(plan), _waits(plan)
    used = {name for nodes in starts.values() for name in nodes}
    assert not used & {"smithi001", "smithi002", "smithi003", "mira004"}  # busy, people, down
    assert [bad.job_id for bad in snapshot.invalid] == ["601"]
    assert "601" not in starts and "601" not in waits
    assert starts["401"] == ()  # first_in_suite: no node needed
    assert waits["405"] is WaitReason.WAITING_FOR_RUN
    assert len(used) == 6, "every free node is used or held"


def check_starvation(snapshot: Snapshot, plan: Plan) -> None:
    held_for_big = {h.node for h in plan.held if h.for_job_id == "100"}
    assert "100" in _starts(plan) or len(held_for_big) == 2
    small_starts = {job_id for job_id in _starts(plan) if job_id != "100"}
    assert not small_starts, "the 1-node stream must not take the nodes kept for job 100"
    # 304 and 404 wait for the nodes held for job 100: blamed on the hold, or (starved
    # themselves, with default.yaml's 8 slots and 0.5 h floor) reserved behind job 100
    details = {w.job_id: w for w in plan.waiting}
    for j in ("304", "404"):
        assert details[j].reason is WaitReason.HELD_FOR_JOB or (
            details[j].reason is WaitReason.NOT_ENOUGH_NODES
            and details[j].detail.startswith("reserved:")
        ), details[j]
    # default.yaml scales the threshold by priority: PR jobs at 50 starve within 1.2 h, so
    # 203 (2 h) is reserved too, behind job 100 (starved since 24 h earlier)
    assert _waits(plan)["203"] is WaitReason.NOT_ENOUGH_NODES
    # Without reservations the stream takes the free nodes and job 100 starves.
    no_res = dataclasses.replace(
        _policy(), reservations=dataclasses.replace(_policy().reservations, enabled=False)
    )
    greedy = solve(snapshot, no_res)
    assert validate_plan(snapshot, no_res, greedy) == []
    assert "100" not in _starts(greedy) and not greedy.held
    assert len(_starts(greedy)) == 2


def check_multitype(snapshot: Snapshot, plan: Plan) -> None:
    starts, waits = _starts(plan), _waits(plan)
    assert _types(snapshot, starts["301"]) == {"mira"} and len(starts["301"]) == 2
    assert _types(snapshot, starts["302"]) == {"mira"}
    assert waits["401"] is WaitReason.NOT_ENOUGH_NODES
    assert all(len(_types(snapshot, nodes)) <= 1 for nodes in starts.values())


def check_os_constraints(snapshot: Snapshot, plan: Plan) -> None:
    starts, waits = _starts(plan), _waits(plan)
    assert starts["101"] == ("vps002",)  # the only centos 9.stream VM
    assert starts["102"][0] in {"vps001", "vps003"}
    assert waits["103"] is WaitReason.INVALID  # rhel 9.4: no such VM
    assert waits["104"] is WaitReason.INVALID  # aarch64: no such smithi
    assert _types(snapshot, starts["105"]) == {"smithi"}  # reimaged: OS need not match


def check_last_in_suite(snapshot: Snapshot, plan: Plan) -> None:
    starts, waits = _starts(plan), _waits(plan)
    assert waits["13"] is WaitReason.WAITING_FOR_RUN
    assert waits["33"] is WaitReason.WAITING_FOR_RUN
    assert starts["22"] == () and starts["31"] == ()
    # job 12 (2 nodes, priority 150) waited 4 h, past its scaled 2.8 h threshold
    # (after_hours 48 x (150 / 1000) ** 1.5): the free node is held for it, and job 32
    # (priority 100, queued 5 minutes ago) waits for the hold
    assert [(h.node, h.for_job_id) for h in plan.held] == [("smithi003", "12")]
    assert waits["12"] is WaitReason.NOT_ENOUGH_NODES
    assert waits["32"] is WaitReason.HELD_FOR_JOB


def check_paused_tube(snapshot: Snapshot, plan: Plan) -> None:
    starts, waits = _starts(plan), _waits(plan)
    assert waits["201"] is WaitReason.TUBE_PAUSED and waits["202"] is WaitReason.TUBE_PAUSED
    assert _types(snapshot, starts["301"]) == {"mira"}  # tube multi is not paused
    assert "101" in starts


def check_sepia(snapshot: Snapshot, plan: Plan) -> None:
    assert len(snapshot.queue) == 20000 and len(snapshot.invalid) == 3
    free = sum(1 for n in snapshot.nodes if n.free)
    used = sum(len(s.nodes) for s in plan.starts) + len(plan.held)
    assert 0 < used <= free
    reasons = Counter(w.reason for w in plan.waiting)
    assert reasons[WaitReason.WAITING_FOR_RUN] > 0 and reasons[WaitReason.NOT_ENOUGH_NODES] > 0
    assert plan.solver.gap <= _policy().solver.relative_gap + 1e-9


EXPECTATIONS: dict[str, Callable[[Snapshot, Plan], None]] = {
    "small.yaml": check_small,
    "starvation.yaml": check_starvation,
    "multitype.yaml": check_multitype,
    "os-constraints.yaml": check_os_constraints,
    "last-in-suite.yaml": check_last_in_suite,
    "paused-tube.yaml": check_paused_tube,
    "sepia.gen.yaml": check_sepia,
}


def test_every_fixture_has_expectations() -> None:
    assert set(EXPECTATIONS) == set(_fixture_names())


@pytest.mark.parametrize("name", sorted(EXPECTATIONS))
def test_fixture_shows_what_it_is_for(name: str) -> None:
    snapshot, plan = _solved(name)
    EXPECTATIONS[name](snapshot, plan)

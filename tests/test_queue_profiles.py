"""The queue grouped by profile (solver and validator share it) and the solver's groups on top."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from solver_support import job, nodes, snapshot

from optialloc.policy import default_policy, policy_from_mapping
from optialloc.profiles import PROFILE, jobs_by_id, profile_groups
from optialloc.ranking import weight_bucket
from optialloc.solver.lab import build_lab


def test_jobs_group_by_profile_in_order_of_first_appearance() -> None:
    queue = (
        job(1, 1, run="r1"),
        job(2, 2, run="r1"),
        job(3, 1, run="r1", waited_h=5),  # age is not part of a profile
        job(4, 1, run="r2"),
        job(5, 2, run="r1"),
    )
    groups = profile_groups(queue)
    assert groups.members == ((0, 2), (1, 4), (3,))
    assert groups.profile_of == (0, 1, 0, 2, 1)
    assert groups.keys == tuple(PROFILE(queue[m[0]]) for m in groups.members)


def test_the_same_tuple_is_grouped_once_and_a_list_every_time() -> None:
    queue = tuple(job(k, 1 + k % 3) for k in range(10))
    first = profile_groups(queue)
    assert profile_groups(queue) is first
    copy = tuple(queue)
    assert copy is queue  # tuple(tuple) is the same object: make a really new one
    other = tuple(list(queue))
    assert other is not queue
    again = profile_groups(other)
    assert again is not first and again == first
    as_list = list(queue)
    assert profile_groups(as_list) is not profile_groups(as_list)
    as_list.append(job(99, 4))
    assert profile_groups(as_list).members[-1] == (10,)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.integers(1, 2),  # nodes
            st.sampled_from(["r1", "r2"]),
            st.sampled_from([0.0, 0.2, 1.5, 3.7, 30.0]),  # hours waited: aging steps
            st.sampled_from(["short", "long", "new"]),  # description
        ),
        min_size=1,
        max_size=30,
    ),
    st.booleans(),
)
def test_solver_groups_split_profiles_by_aging_step_and_estimate(
    specs: list[tuple[int, str, float, str]], aging: bool
) -> None:
    learned = {"short": 300.0, "long": 40000.0}
    queue = [
        job(k, n, run=run, waited_h=h, description=d) for k, (n, run, h, d) in enumerate(specs)
    ]
    policy = default_policy()
    if not aging:
        policy = policy_from_mapping({"aging": {"enabled": False}})
    snap = snapshot(nodes("smithi", 4), queue, runtime_estimates=learned)
    lab = build_lab(snap, policy)
    # expected: same profile, same aging step, same estimate bucket <=> same group
    step_s = policy.aging.step_minutes * 60.0

    def key(index: int) -> tuple[object, ...]:
        j = snap.queue[index]
        waited = (snap.taken_at - j.queued_at).total_seconds()
        step = int(waited // step_s) if aging and waited > 0 else 0
        estimate = learned.get(j.description or "")
        weighs = policy.weights.runtime_exponent != 0
        bucket = weight_bucket(estimate, policy) if estimate is not None and weighs else None
        return (PROFILE(j), step, bucket)

    expected: dict[tuple[object, ...], list[int]] = {}
    for index in range(len(queue)):
        expected.setdefault(key(index), []).append(index)
    assert [g.members for g in lab.groups] == list(expected.values())
    for index, group in enumerate(lab.group_of):
        assert index in group.members


def test_jobs_by_id_is_shared_for_one_tuple_and_read_only() -> None:
    queue = tuple(job(k) for k in range(5))
    index = jobs_by_id(queue)
    assert jobs_by_id(queue) is index
    assert list(index) == ["0", "1", "2", "3", "4"] and index["3"] is queue[3]
    with pytest.raises(TypeError):
        index["9"] = queue[0]  # type: ignore[index]
    other = tuple(list(queue)[:2])
    assert list(jobs_by_id(other)) == ["0", "1"]

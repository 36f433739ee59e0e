"""The solver's view of one snapshot: free nodes by type and pool, and who may run at all.

A *pool* is a set of interchangeable nodes of one machine type: same arch, and
on types that are not reimaged on lock also the same installed OS. A job is
*compatible* with a node when the node's type is listed by the job, the arch
matches (a node without a recorded arch serves any), and, on types that are
not reimaged, `os_type`/`os_version` match exactly when the job names them.

Each queued job gets one state: `ok`, `invalid` (can never run in this lab),
`paused` (its tube is paused) or `run` (a `last_in_suite` job whose run still
has other jobs queued or running).

Jobs that agree on everything the solver looks at (owner, run, priority,
types, OS/arch, nodes, tube, last_in_suite and aging step) form one `Group`;
all per-job work after the single scan is done per group, so a solve costs
one pass over the queue plus work proportional to the number of groups.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from operator import attrgetter, neg
from typing import Any

from optialloc.domain import Job, Node, Snapshot
from optialloc.policy import Policy
from optialloc.profiles import LAST_IN_SUITE_FIELD, RUN_FIELD, Profile, profile_groups
from optialloc.ranking import (
    aging_boost,
    dispatch_priority,
    usage_shares,
    weight_bucket,
    weight_units,
)

PoolKey = tuple[str | None, ...]
_QUEUED_AT = attrgetter("queued_at")
_DESCRIPTION = attrgetter("description")
_BODY_ESTIMATE = attrgetter("runtime_estimate_s")
#: The part of a job that decides which nodes fit it.
CompatKey = tuple[tuple[str, ...], str | None, str | None, str | None]

OK, INVALID, PAUSED, RUN = "ok", "invalid", "paused", "run"


def compat_key(job: Job) -> CompatKey:
    return (job.machine_types, job.os_type, job.os_version, job.arch)


def pool_key(node: Node, reimaged: bool) -> PoolKey:
    """The pool a node belongs to inside its machine type."""
    if reimaged:
        return (node.arch,)
    return (node.os_type, node.os_version, node.arch)


def pool_fits(key: CompatKey, pool: PoolKey, reimaged: bool) -> bool:
    """Whether a job with compatibility `key` may use nodes of `pool`."""
    _types, os_type, os_version, arch = key
    node_arch = pool[-1]
    if arch is not None and node_arch is not None and arch != node_arch:
        return False
    if reimaged:
        return True
    return (os_type is None or os_type == pool[0]) and (os_version is None or os_version == pool[1])


@dataclass(eq=False, slots=True)
class Group:
    """Queued jobs the solver cannot tell apart except by age and id."""

    job: Job  # the first member, standing for all
    ckey: CompatKey
    state: str
    eff: float
    units: int
    members: list[int] = field(default_factory=list)
    oldest: float = 0.0  # longest wait of a member, seconds
    why: tuple[Any, str] | None = None  # (WaitReason, detail) shared by waiting members
    #: dispatch priority: `eff` divided by the runtime factor (= eff without estimates)
    rank: float = 0.0


@dataclass
class LabView:
    """Free capacity, job groups and per-job facts for one snapshot (built once per solve)."""

    snapshot: Snapshot
    policy: Policy
    node_by_name: dict[str, Node]
    busy: set[str]
    #: free, not busy nodes per type and pool, each list sorted by name
    free: dict[str, dict[PoolKey, list[str]]]
    #: every node (any state) per type and pool: decides validity and reservation types
    all_pools: dict[str, dict[PoolKey, int]]
    #: nodes per type counted for fairness shares: free or used by a running job
    share_base: dict[str, int]
    jobs: tuple[Job, ...]
    groups: list[Group] = field(default_factory=list)
    group_of: list[Group] = field(default_factory=list)  # per job index
    waited: list[float] = field(default_factory=list)  # per job index, seconds since queued
    invalid_detail: dict[CompatKey | tuple[CompatKey, int], str] = field(default_factory=dict)
    #: per run, its queued or running jobs that are not last_in_suite (a last_in_suite
    #: job waits while its run has any)
    busy_runs: dict[str, int] = field(default_factory=dict)

    def reimaged(self, machine_type: str) -> bool:
        return machine_type in self.policy.reimaged_types

    def total_compatible(self, key: CompatKey, machine_type: str) -> int:
        """Nodes of `machine_type` in any state that could serve a job with `key`."""
        reimaged = self.reimaged(machine_type)
        pools = self.all_pools.get(machine_type, {})
        return sum(n for p, n in pools.items() if pool_fits(key, p, reimaged))

    def state(self, index: int) -> str:
        return self.group_of[index].state

    def eff(self, index: int) -> float:
        return self.group_of[index].eff

    def units(self, index: int) -> int:
        return self.group_of[index].units

    def order_key(self, index: int) -> tuple[float, int, float, str]:
        """Dispatch order of one job: dispatch priority (`policy.dispatch_priority`),
        nodes, oldest first, id."""
        return self.order_keys[index]

    @cached_property
    def order_keys(self) -> list[tuple[float, int, float, str]]:
        """`order_key` of every job, built in C (map/zip): it matters at 200,000 jobs."""
        return list(
            zip(
                map(attrgetter("rank"), self.group_of),
                map(attrgetter("nodes_needed"), self.jobs),
                map(neg, self.waited),
                map(attrgetter("job_id"), self.jobs),
                strict=True,
            )
        )


def build_lab(snapshot: Snapshot, policy: Policy) -> LabView:
    """Index the snapshot's nodes and classify every queued job."""
    node_by_name = {n.name: n for n in snapshot.nodes}
    busy = {name for rj in snapshot.running for name in rj.nodes}
    free: dict[str, dict[PoolKey, list[str]]] = defaultdict(lambda: defaultdict(list))
    all_pools: dict[str, dict[PoolKey, int]] = defaultdict(lambda: defaultdict(int))
    share_base: dict[str, int] = defaultdict(int)
    for node in sorted(snapshot.nodes, key=lambda n: n.name):
        reimaged = node.machine_type in policy.reimaged_types
        key = pool_key(node, reimaged)
        all_pools[node.machine_type][key] += 1
        in_use = node.name in busy
        if node.free and not in_use:
            free[node.machine_type][key].append(node.name)
        if in_use or node.free:
            share_base[node.machine_type] += 1
    lab = LabView(
        snapshot=snapshot,
        policy=policy,
        node_by_name=node_by_name,
        busy=busy,
        free={t: dict(p) for t, p in free.items()},
        all_pools={t: dict(p) for t, p in all_pools.items()},
        share_base=dict(share_base),
        jobs=snapshot.queue,
    )
    _scan(lab)
    return lab


def _scan(lab: LabView) -> None:
    """Group the queued jobs; state, priority and weight per group.

    This runs over every queued job each tick (20,000 at Sepia scale), so the
    per-job work is a few passes done in C (`map`, comprehensions) on top of
    the queue's grouping by profile (`optialloc.profiles`, shared with
    the validator); a profile is split further only where its members differ
    in aging step or estimate bucket, and everything else is per group.
    """
    snapshot, policy = lab.snapshot, lab.policy
    queue = snapshot.queue
    taken_at = snapshot.taken_at
    shares = usage_shares(snapshot.usage) if policy.fairness.usage_penalty > 0 else {}
    waited_l = [(taken_at - q).total_seconds() for q in map(_QUEUED_AT, queue)]
    lab.waited[:] = waited_l
    steps: list[int] | None = None
    if policy.aging.enabled:
        step_s = policy.aging.step_minutes * 60.0
        steps = [int(w // step_s) if w > 0 else 0 for w in waited_l]
    buckets = _estimate_buckets(queue, policy, snapshot.runtime_estimates)
    profiles = profile_groups(queue)
    # A group: a profile, its aging step and, when jobs weigh by their runtime
    # estimate, the estimate's bucket. Most profiles are one suite's jobs queued
    # together, so a set over the members (in C) shows there is nothing to split.
    parts: list[tuple[Profile, list[int]]] = []
    split = False
    for profile, indexes in zip(profiles.keys, profiles.members, strict=True):
        if (steps is None or len(set(map(steps.__getitem__, indexes))) == 1) and (
            buckets is None or len(set(map(buckets.__getitem__, indexes))) == 1
        ):
            parts.append((profile, list(indexes)))
            continue
        split = True
        by_key: dict[tuple[Any, ...], list[int]] = {}
        for index in indexes:
            key = (
                steps[index] if steps is not None else 0,
                buckets[index] if buckets is not None else None,
            )
            by_key.setdefault(key, []).append(index)
        parts.extend((profile, sub) for sub in by_key.values())
    if split:
        # The order of first appearance in the queue, as without the profiles:
        # ties between groups are broken the same way, tick after tick.
        parts.sort(key=lambda part: part[1][0])
    # Runs with work left that is not a last_in_suite job: their last job waits.
    busy_runs: dict[str, int] = lab.busy_runs
    for profile, same in zip(profiles.keys, profiles.members, strict=True):
        if not profile[LAST_IN_SUITE_FIELD]:
            busy_runs[profile[RUN_FIELD]] = busy_runs.get(profile[RUN_FIELD], 0) + len(same)
    for rj in snapshot.running:
        if not rj.job.last_in_suite:
            busy_runs[rj.job.run] = busy_runs.get(rj.job.run, 0) + 1
    for _profile, members in parts:
        first = members[0]
        # Members share the aging step (and estimate bucket), so the first one's wait
        # (and estimate) give the group's priority and weight.
        estimate = buckets[first] if buckets is not None else None
        group = _new_group(lab, queue[first], waited_l[first], shares, busy_runs, estimate)
        group.members = members
        group.oldest = max(map(waited_l.__getitem__, members))
        lab.groups.append(group)
    if split:
        group_of: list[Group | None] = [None] * len(queue)
        for group in lab.groups:
            for index in group.members:
                group_of[index] = group
        lab.group_of[:] = group_of  # type: ignore[assignment]  # every index is filled
    else:
        lab.group_of[:] = map(lab.groups.__getitem__, profiles.profile_of)


def _estimate_buckets(
    queue: Sequence[Job], policy: Policy, learned: Mapping[str, float]
) -> list[float | None] | None:
    """Per job, its runtime estimate's bucket; None when weights ignore estimates."""
    if policy.weights.runtime_exponent == 0:
        return None
    in_bodies = list(map(_BODY_ESTIMATE, queue))
    no_body_estimate = in_bodies.count(None) == len(in_bodies)  # in C: teuthology's case
    if not learned and no_body_estimate:
        return None  # nobody has an estimate: the groups need no split
    # Bucket each distinct learned value once; body estimates (rare) per job.
    by_description = {d: weight_bucket(v, policy) for d, v in learned.items()}
    out: list[float | None] = list(map(by_description.get, map(_DESCRIPTION, queue)))
    if not no_body_estimate:
        for index, body_estimate in enumerate(in_bodies):
            if body_estimate is not None:
                out[index] = weight_bucket(body_estimate, policy)
    return out


def _new_group(
    lab: LabView,
    job: Job,
    waited: float,
    shares: dict[str, float],
    busy_runs: dict[str, int],
    estimate: float | None = None,
) -> Group:
    policy = lab.policy
    ckey = (job.machine_types, job.os_type, job.os_version, job.arch)
    vkey = (ckey, job.nodes_needed)
    if vkey not in lab.invalid_detail:
        lab.invalid_detail[vkey] = _invalid_reason(lab, job) or ""
    if lab.invalid_detail[vkey]:
        state = INVALID
    elif job.tube in lab.snapshot.paused_tubes:
        state = PAUSED
    elif job.last_in_suite and busy_runs.get(job.run, 0) > 0:
        state = RUN
    else:
        state = OK
    eff = max(0.0, job.priority - aging_boost(waited, policy))
    if shares:
        eff *= 1.0 + policy.fairness.usage_penalty * shares.get(job.owner, 0.0)
    units = weight_units(eff, job.nodes_needed, policy, estimate)
    rank = dispatch_priority(eff, estimate, policy)
    return Group(job, ckey, state, eff, units, oldest=waited, rank=rank)


def _invalid_reason(lab: LabView, job: Job) -> str | None:
    """Why `job` can never run in this lab, or None. Jobs needing no node always can."""
    if job.nodes_needed == 0:
        return None
    if not job.machine_types:
        return "lists no machine type"
    key = compat_key(job)
    problems = []
    for machine_type in job.machine_types:
        if machine_type not in lab.all_pools:
            problems.append(f"no {machine_type} node exists")
            continue
        fit = lab.total_compatible(key, machine_type)
        if fit >= job.nodes_needed:
            return None
        total = sum(lab.all_pools[machine_type].values())
        if fit < total:
            wanted = "/".join(str(v) for v in (job.os_type, job.os_version, job.arch) if v)
            problems.append(f"needs {job.nodes_needed} {machine_type} with {wanted}, lab has {fit}")
        else:
            problems.append(f"needs {job.nodes_needed} {machine_type}, lab has {total}")
    return "; ".join(problems)


def share_cap(share: float, base: int, largest_job: int) -> int:
    """Nodes of one type an owner/run may hold while others wait (never below its largest job)."""
    return max(math.ceil(share * base - 1e-9), largest_job)

"""What every rule of the plan check reads: the snapshot indexed once.

`CheckState` groups the queue by profile (`optialloc.profiles`), decides
once per profile whether it can ever run and whether it is eligible now
(paused tube, last_in_suite), and indexes the nodes, the running jobs and
the plan's starts. The rules (`optialloc.check.holds`,
`optialloc.check.fairness`, `optialloc.check.validator`) are methods of
subclasses that append violations to `out`.
"""

from __future__ import annotations

from collections import Counter
from operator import attrgetter

from optialloc.check.backfill import fits as _fits
from optialloc.domain import Job, Node, Plan, Snapshot
from optialloc.policy import Policy
from optialloc.profiles import jobs_by_id, profile_groups

_QUEUED_AT = attrgetter("queued_at")
_JOB_ID = attrgetter("job_id")


def _can_ever_run(job: Job, snapshot: Snapshot, policy: Policy) -> bool:
    if job.nodes_needed == 0:
        return True
    return any(
        sum(1 for n in snapshot.nodes if n.machine_type == t and _fits(job, n, policy))
        >= job.nodes_needed
        for t in job.machine_types
    )


class Profile:
    """Queued jobs sharing a profile (`optialloc.profiles`): a representative,
    the members, the oldest."""

    __slots__ = ("eligible", "job", "members", "oldest", "valid")

    def __init__(self, members: list[Job]) -> None:
        self.job = members[0]
        self.members = members
        self.oldest = min(map(_QUEUED_AT, members))
        self.valid = True
        self.eligible = True


class CheckState:
    """The indexed snapshot, policy and plan; `out` collects violations."""

    #: job ids given reservations this tick (set by `HoldRules._reserved`)
    reserved: list[str]

    def __init__(self, snapshot: Snapshot, policy: Policy, plan: Plan) -> None:
        self.s, self.p, self.plan = snapshot, policy, plan
        self.out: list[str] = []
        self.jobs = jobs_by_id(snapshot.queue)
        self.nodes = {n.name: n for n in snapshot.nodes}
        self.busy = {name for rj in snapshot.running for name in rj.nodes}
        # Validity, eligibility, fairness and reservations read nothing of a job
        # but its profile (and age): the queue is checked once per profile.
        queue = snapshot.queue
        grouped = profile_groups(queue)
        profiles = {
            key: Profile(list(map(queue.__getitem__, members)))
            for key, members in zip(grouped.keys, grouped.members, strict=True)
        }
        pending: Counter[str] = Counter()
        for profile in profiles.values():
            if not profile.job.last_in_suite:
                pending[profile.job.run] += len(profile.members)
        pending.update(rj.job.run for rj in snapshot.running if not rj.job.last_in_suite)
        cache: dict[tuple[object, ...], bool] = {}
        for profile in profiles.values():
            j = profile.job
            ckey = (j.machine_types, j.os_type, j.os_version, j.arch, j.nodes_needed)
            if ckey not in cache:
                cache[ckey] = _can_ever_run(j, snapshot, policy)
            profile.valid = cache[ckey]
            profile.eligible = (
                profile.valid
                and j.tube not in snapshot.paused_tubes
                and not (j.last_in_suite and pending[j.run] > 0)
            )
        self.pending_runs = pending
        self.invalid_ids = {
            j.job_id for profile in profiles.values() if not profile.valid for j in profile.members
        }
        # Eligible profiles that need nodes: what fairness and reservations look at.
        self.candidates = [p for p in profiles.values() if p.eligible and p.job.nodes_needed > 0]
        self.started = {s.job_id: s for s in plan.starts}
        #: nodes per type counted for fairness shares: free or used by a running job
        self.share_base = Counter(
            n.machine_type for n in snapshot.nodes if n.free or n.name in self.busy
        )

    def _node_usable(self, name: str, node: Node, who: str) -> None:
        if not node.up:
            self.out.append(f"{who}: node {name} is down")
        elif node.locked:
            self.out.append(f"{who}: node {name} is locked by {node.locked_by or 'somebody'}")
        elif name in self.busy:
            self.out.append(f"{who}: node {name} is busy with a running job")

"""The validator's own derivation of reservation home types and backfill shadow times.

Kept apart from `optialloc.solver` on purpose (the validator must not share
the solver's code): from the snapshot alone it computes a reserved job's home
type (the listed type with the most fitting nodes in the lab, ties in listed
order) and the shadow time of docs/policy.md, "Backfill around holds".
"""

from __future__ import annotations

from datetime import datetime, timedelta

from optialloc.domain import Job, Node, Snapshot
from optialloc.policy import Policy
from optialloc.ranking import runtime_estimate_s


def fits(job: Job, node: Node, policy: Policy) -> bool:
    """Whether `node` may serve `job`: listed type, arch, and OS on non-reimaged types."""
    if node.machine_type not in job.machine_types:
        return False
    if job.arch and node.arch and job.arch != node.arch:
        return False
    if node.machine_type in policy.reimaged_types:
        return True
    if job.os_type and job.os_type != node.os_type:
        return False
    return not (job.os_version and job.os_version != node.os_version)


def home_type(job: Job, snapshot: Snapshot, policy: Policy) -> str:
    """Listed type with the most nodes (any state) fitting the job; ties: listed order."""
    counts = [
        (sum(1 for n in snapshot.nodes if n.machine_type == t and fits(job, n, policy)), -k, t)
        for k, t in enumerate(job.machine_types)
    ]
    return max(counts)[2]


def shadow_time(
    snapshot: Snapshot, policy: Policy, job: Job, home: str, demand: int
) -> datetime | None:
    """When `demand` nodes of `home` fitting `job` are free by running jobs' estimates.

    Free-now fitting nodes count at once; a running job's fitting nodes free at
    `started_at + estimate` (or `started_at + max_job_time_s` without an
    estimate or once overrun). None: not within the running jobs' nodes.
    """
    busy = {name for rj in snapshot.running for name in rj.nodes}
    nodes = {n.name: n for n in snapshot.nodes}
    have = sum(
        1
        for n in snapshot.nodes
        if n.machine_type == home and n.free and n.name not in busy and fits(job, n, policy)
    )
    limit = timedelta(seconds=policy.max_job_time_s)
    releases = []
    for rj in snapshot.running:
        count = sum(
            1
            for name in rj.nodes
            if name in nodes and nodes[name].machine_type == home and fits(job, nodes[name], policy)
        )
        if count:
            est = runtime_estimate_s(rj.job, snapshot.runtime_estimates)
            end = rj.started_at + (timedelta(seconds=est) if est is not None else limit)
            releases.append((end if end >= snapshot.taken_at else rj.started_at + limit, count))
    when = snapshot.taken_at
    for end, count in sorted(releases, key=lambda item: item[0]):
        if have >= demand:
            break
        have += count
        when = end
    return when if have >= demand else None

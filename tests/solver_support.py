"""Small builders for solver tests and the solver benchmark: nodes, jobs, seeded lab snapshots."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from optialloc.check.validator import validate_plan
from optialloc.domain import Job, Node, Plan, RunningJob, Snapshot
from optialloc.policy import Policy
from optialloc.solver import solve

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def nodes(machine_type: str, count: int, start: int = 1, **attrs: object) -> list[Node]:
    """`count` free nodes named like `smithi001`."""
    return [
        Node(f"{machine_type}{k:03d}", machine_type, **attrs) for k in range(start, start + count)
    ]  # type: ignore[arg-type]


def job(
    job_id: str | int,
    nodes_needed: int = 1,
    types: str | tuple[str, ...] = "smithi",
    priority: int = 100,
    owner: str = "alice",
    run: str = "run-a",
    waited_h: float = 0.0,
    taken_at: datetime = T0,
    **extra: object,
) -> Job:
    """A queued job that has waited `waited_h` hours at `taken_at`."""
    machine_types = tuple(types.split(",")) if isinstance(types, str) else types
    tube = str(extra.pop("tube", machine_types[0] if len(machine_types) == 1 else "multi"))
    return Job(
        job_id=str(job_id),
        run=run,
        owner=owner,
        priority=priority,
        machine_types=machine_types,
        nodes_needed=nodes_needed,
        queued_at=taken_at - timedelta(hours=waited_h),
        tube=tube,
        **extra,  # type: ignore[arg-type]
    )


def snapshot(node_list: list[Node], queue: list[Job], **extra: object) -> Snapshot:
    return Snapshot(taken_at=T0, nodes=tuple(node_list), queue=tuple(queue), **extra)  # type: ignore[arg-type]


#: Sepia-like machine types and their share of the lab's nodes.
LAB_TYPES = (("smithi", 0.6), ("mira", 0.2), ("gibba", 0.12), ("trial", 0.08))


def sepia_snapshot(scale: int = 1, seed: int = 0, busy_fraction: float = 0.0) -> Snapshot:
    """Sepia-scale backlog x `scale`: 20,000 queued jobs in 150 runs of 1-4 node jobs, 50 owners,
    330 free nodes over 4 machine types (about 10% of runs accept two types)."""
    rng = random.Random(seed)
    total_free = 330 * scale
    lab: list[Node] = []
    for machine_type, share in LAB_TYPES:
        lab.extend(nodes(machine_type, round(total_free * share)))
    running: list[RunningJob] = []
    if busy_fraction > 0:
        busy = [n for n in lab if rng.random() < busy_fraction]
        for k, node in enumerate(busy):
            rj_job = job(f"r{k}", 1, node.machine_type, owner=f"owner{k % 50}", run=f"old{k % 20}")
            running.append(RunningJob(rj_job, (node.name,), T0))
    queue: list[Job] = []
    runs = 150 * scale
    total = 20_000 * scale
    # 20,000 / 150 is not whole: the first `total % runs` runs get one job more, so the
    # snapshot holds exactly `total` (it held 19,950 x scale until 2026-12-05)
    per_run, extra = divmod(total, runs)
    names = [t for t, _ in LAB_TYPES]
    next_id = 1
    for r in range(runs):
        owner = f"owner{rng.randrange(50 * scale)}"
        priority = rng.choice((50, 75, 100, 150, 200, 500, 1000, 1000, 1000))
        first = rng.choice(names[:3])
        types: tuple[str, ...] = (first,)
        if rng.random() < 0.1:
            types = (first, rng.choice([t for t in names if t != first]))
        waited = rng.uniform(0, 72)
        for _ in range(per_run + (r < extra)):
            queue.append(
                job(
                    next_id,
                    rng.choice((1, 1, 2, 2, 3, 4)),
                    types,
                    priority=priority,
                    owner=owner,
                    run=f"run{r}",
                    waited_h=waited + rng.uniform(0, 0.5),
                )
            )
            next_id += 1
    assert len(queue) == total
    return Snapshot(
        taken_at=T0,
        nodes=tuple(lab),
        queue=tuple(queue),
        running=tuple(running),
        usage={f"owner{k}": float(rng.randrange(0, 10**6)) for k in range(0, 50 * scale, 3)},
    )


def solve_checked(snap: Snapshot, policy: Policy) -> Plan:
    """Solve and insist that the independent validator accepts the plan and it covers the queue."""
    plan = solve(snap, policy)
    violations = validate_plan(snap, policy, plan)
    assert violations == [], violations
    ids = [s.job_id for s in plan.starts] + [w.job_id for w in plan.waiting]
    assert sorted(ids) == sorted(j.job_id for j in snap.queue)
    return plan

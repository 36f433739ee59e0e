"""Property tests: every plan validates, tiny instances are solved to the brute-force optimum,
and a starved big job starts within the documented bound (after_hours + max_job_time).

Half the instances of the first two come from `contended`, built so that
fairness caps bind with rival owners and runs (free-form labs rarely make
them bind: a cap off by one went unnoticed there). `caps_bind` labels every
example (see `--hypothesis-show-statistics`); docs/testing.md has the bugs
planted to check that these properties find them, and how often they did.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from itertools import combinations

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from solver_support import T0, job

from optialloc.check.validator import plan_objective, validate_plan
from optialloc.domain import (
    Job,
    Node,
    Plan,
    RunningJob,
    Snapshot,
    SolverStats,
    Start,
    Waiting,
    WaitReason,
)
from optialloc.policy import Policy, policy_from_mapping
from optialloc.solver import solve

PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TYPES = ("smithi", "mira", "vps")  # vps is not reimaged: its OS matters
OSES = (("ubuntu", "22.04"), ("centos", "9"))


@st.composite
def labs(draw: st.DrawFn, max_nodes: int = 8, types: tuple[str, ...] = TYPES) -> list[Node]:
    count = draw(st.integers(0, max_nodes))
    out = []
    for k in range(count):
        machine_type = draw(st.sampled_from(types))
        os_type, os_version = draw(st.sampled_from(OSES))
        state = draw(st.sampled_from(("free", "free", "free", "down", "locked")))
        arch = draw(st.sampled_from(("x86_64", "x86_64", None)))
        out.append(
            lab_node(f"{machine_type}{k:02d}", machine_type, state, os_type, os_version, arch)
        )
    return out


def lab_node(
    name: str,
    machine_type: str,
    state: str,
    os_type: str = "ubuntu",
    os_version: str = "22.04",
    arch: str | None = None,
) -> Node:
    """A node in `state`: free, down, or locked by someone else."""
    return Node(
        name,
        machine_type,
        up=state != "down",
        locked=state == "locked",
        locked_by="someone" if state == "locked" else None,
        os_type=os_type,
        os_version=os_version,
        arch=arch,
    )


@st.composite
def queues(
    draw: st.DrawFn, max_jobs: int = 8, choices: tuple[str, ...] = (*TYPES, "ovh")
) -> list[Job]:
    count = draw(st.integers(0, max_jobs))
    out = []
    for k in range(count):
        types = draw(st.lists(st.sampled_from(choices), min_size=1, max_size=2, unique=True))
        os_pick = draw(st.sampled_from((None, *OSES, ("rhel", "8"))))
        out.append(
            job(
                f"j{k}",
                draw(st.integers(0, 3)),
                tuple(types),
                priority=draw(st.sampled_from((1, 10, 15, 18, 75, 100, 500, 1000))),
                owner=draw(st.sampled_from(("alice", "bob", "carol"))),
                run=draw(st.sampled_from(("r1", "r2", "r3"))),
                waited_h=draw(st.sampled_from((0.0, 2.0, 30.0, 100.0))),
                os_type=os_pick[0] if os_pick else None,
                os_version=os_pick[1] if os_pick else None,
                arch=draw(st.sampled_from((None, None, "x86_64", "aarch64"))),
                last_in_suite=draw(st.booleans()) and k % 3 == 0,
                body=estimate_body(draw(st.sampled_from((None, 1800.0, 7200.0, 90000.0)))),
                description=draw(st.sampled_from((None, "short-test", "long-test"))),
            )
        )
    return out


def estimate_body(seconds: float | None) -> dict[str, float]:
    """A body carrying a runtime estimate (for reservations.backfill), or none."""
    return {} if seconds is None else {"runtime_estimate_s": seconds}


@st.composite
def contended(
    draw: st.DrawFn, max_nodes: int = 8, max_jobs: int = 8, types: tuple[str, ...] = TYPES
) -> tuple[list[Node], list[Job], list[bool]]:
    """(lab, queue, busy) where one owner, mostly in one run, wants more of a reimaged
    type than a share of it, while other owners (runs) wait for the same type at the
    same or a better priority: the shape in which fairness caps decide the plan."""
    hot = draw(st.sampled_from([t for t in types if t in ("smithi", "mira")]))
    others = [t for t in types if t != hot]
    hot_count = draw(st.integers(4, max_nodes))
    lab = []
    for k in range(max_nodes):
        if k < hot_count:
            machine_type = hot
            state = draw(st.sampled_from(("free",) * 6 + ("down", "locked")))
        else:
            machine_type = draw(st.sampled_from(others))
            state = draw(st.sampled_from(("free", "free", "down")))
            if k >= hot_count + draw(st.integers(0, 2)):
                break
        lab.append(lab_node(f"{machine_type}{k:02d}", machine_type, state))
    heavy_priority = draw(st.sampled_from((10, 100, 1000)))
    heavy = draw(st.integers(2, max_jobs - 1))
    queue = []
    for k in range(draw(st.integers(heavy + 1, max_jobs))):
        mine = k < heavy
        listed = (hot,) if mine or not others else draw(st.sampled_from(((hot,), (hot, others[0]))))
        queue.append(
            job(
                f"j{k}",
                draw(st.sampled_from((1, 1, 1, 2))) if mine else draw(st.integers(1, 2)),
                listed,
                # rivals as urgent or more (so `peers_only` caps bind too), sometimes less
                priority=heavy_priority
                if mine
                else draw(st.sampled_from((heavy_priority, heavy_priority, 1, 5000))),
                owner="alice" if mine else draw(st.sampled_from(("bob", "carol"))),
                run="r1" if mine and k % 4 else draw(st.sampled_from(("r2", "r3"))),
                waited_h=draw(st.sampled_from((0.0, 2.0, 30.0))),
                body=estimate_body(draw(st.sampled_from((None, 1800.0, 90000.0)))),
            )
        )
    busy = draw(st.lists(st.booleans(), max_size=len(lab)))
    return lab, queue, busy


@st.composite
def policies(draw: st.DrawFn, holds: bool = True, capped: bool = False) -> Policy:
    return policy_from_mapping(
        {
            "aging": {"enabled": draw(st.booleans()), "rate_per_hour": 5.0, "max_boost": 400.0},
            "reservations": {
                "enabled": holds and draw(st.booleans()),
                "after_hours": 24.0,
                "max_jobs": draw(st.integers(1, 3)),
                "head_of_queue": draw(st.booleans()),
                "priority_scaled": draw(st.booleans()),
                "backfill": draw(st.booleans()),
                **({"order_hours": 48.0} if draw(st.booleans()) else {}),
                **(
                    {
                        "relative_after_hours": 1.0,
                        "relative_factor": draw(st.sampled_from((1.0, 3.0))),
                    }
                    if draw(st.booleans())
                    else {}
                ),
            },
            "weights": {
                "node_exponent": draw(st.sampled_from((0.0, 0.5, 1.0))),
                "runtime_exponent": draw(st.sampled_from((0.0, 1.0))),
                "runtime_bucket_base": draw(st.sampled_from((2, 4))),
            },
            "fairness": {
                "owner_max_share": draw(
                    st.sampled_from((0.5, 0.34, 0.25) if capped else (1.0, 0.5, 0.25))
                ),
                "run_max_share": draw(st.sampled_from((1.0, 0.5, 0.4))),
                "usage_penalty": draw(st.sampled_from((0.0, 1.0))),
                "peers_only": draw(st.booleans()),
                "work_conserving": draw(st.booleans()),
            },
            "reimaged_types": ["smithi", "mira"],
        }
    )


def with_running(lab: list[Node], queue: list[Job], busy: list[bool]) -> Snapshot:
    """Mark some free nodes as used by running jobs (one node each)."""
    running = []
    for k, (node, is_busy) in enumerate(zip(lab, busy, strict=False)):
        if is_busy and node.free:
            owner = ("alice", "bob", "dora")[k % 3]
            # started 0-2 h ago, some with a runtime estimate (1 h or 3 h): shadow times vary
            body = estimate_body((None, 3600.0, 10800.0)[k % 3])
            started = T0 - timedelta(hours=k % 3)
            rj_job = job(f"run{k}", 1, node.machine_type, owner=owner, run="r1", body=body)
            running.append(RunningJob(rj_job, (node.name,), started))
    usage = {"alice": 500.0, "bob": 100.0}
    return Snapshot(
        T0,
        tuple(lab),
        tuple(queue),
        tuple(running),
        frozenset({"mira"}) if len(queue) % 4 == 3 else frozenset(),
        usage=usage,
        # learned estimates for two descriptions (the jobs' bodies may override them)
        runtime_estimates={"short-test": 600.0, "long-test": 20000.0},
    )


@st.composite
def instances(
    draw: st.DrawFn,
    max_nodes: int = 8,
    max_jobs: int = 8,
    types: tuple[str, ...] = TYPES,
    choices: tuple[str, ...] = (*TYPES, "ovh"),
    holds: bool = True,
) -> tuple[Snapshot, Policy]:
    """A snapshot and a policy: free-form (`labs`, `queues`, `policies`), or, for half
    the examples, `contended` with a share cap below 1."""
    if draw(st.booleans()):
        lab, queue, busy = draw(contended(max_nodes, max_jobs, types))
        policy = draw(policies(holds, capped=True))
    else:
        lab = draw(labs(max_nodes, types))
        queue = draw(queues(max_jobs, choices))
        busy = draw(st.lists(st.booleans(), max_size=max_nodes))
        policy = draw(policies(holds))
    return with_running(lab, queue, busy), policy


def caps_bind(snap: Snapshot, policy: Policy) -> bool:
    """Whether a fairness cap changes the decision: the best plan without caps breaks one."""
    shares = {"owner_max_share": 1.0, "run_max_share": 1.0}
    uncapped = solve(
        snap, replace(policy, fairness=replace(policy.fairness, **shares)), explain=False
    )
    return any(" cap is " in v for v in validate_plan(snap, policy, uncapped))


@PROPS
@given(instances())
def test_every_plan_validates(case: tuple[Snapshot, Policy]) -> None:
    snap, policy = case
    event(f"fairness caps bind: {caps_bind(snap, policy)}")
    queue = snap.queue
    plan = solve(snap, policy)
    assert validate_plan(snap, policy, plan) == []
    assert abs(plan_objective(snap, policy, plan) - plan.solver.objective) <= 1e-6 * max(
        1.0, plan.solver.objective
    )
    assert plan.solver.bound >= plan.solver.objective - 1e-9
    assert plan.solver.status in ("OPTIMAL", "TRIVIAL")
    assert len(plan.starts) + len(plan.waiting) == len(queue)
    assert sorted(w.position for w in plan.waiting) == list(range(1, len(plan.waiting) + 1))
    # Decisions only (what serve does between explained ticks): the same decisions.
    bare = solve(snap, policy, explain=False)
    assert (bare.starts, bare.held, bare.waiting, bare.explained) == (
        plan.starts,
        plan.held,
        (),
        False,
    )
    assert bare.solver.objective == plan.solver.objective
    assert validate_plan(snap, policy, bare) == []


def brute_force_best(snap: Snapshot, policy: Policy) -> float:
    """Best objective over every plan the validator accepts (starts only, no holds)."""
    free = [
        n for n in snap.nodes if n.free and n.name not in {x for r in snap.running for x in r.nodes}
    ]
    jobs = list(snap.queue)
    best = 0.0

    def ok(starts: list[Start]) -> bool:
        chosen = {s.job_id for s in starts}
        waiting = [
            Waiting(j.job_id, k, WaitReason.LOWER_PRIORITY)
            for k, j in enumerate((j for j in jobs if j.job_id not in chosen), 1)
        ]
        plan = Plan(T0, tuple(starts), (), tuple(waiting), SolverStats("X", 0.0, 0.0, 0.0))
        plan = replace(
            plan, solver=replace(plan.solver, objective=plan_objective(snap, policy, plan))
        )
        return not [v for v in validate_plan(snap, policy, plan) if ": reason " not in v]

    def walk(k: int, starts: list[Start], used: set[str]) -> None:
        nonlocal best
        if k == len(jobs):
            if ok(starts):
                plan = Plan(T0, tuple(starts), (), (), SolverStats("X", 0.0, 0.0, 0.0))
                best = max(best, plan_objective(snap, policy, plan))
            return
        walk(k + 1, starts, used)
        j = jobs[k]
        if j.nodes_needed == 0:
            walk(k + 1, [*starts, Start(j.job_id, ())], used)
            return
        for machine_type in j.machine_types:
            pool = [n.name for n in free if n.machine_type == machine_type and n.name not in used]
            for combo in combinations(pool, j.nodes_needed):
                walk(k + 1, [*starts, Start(j.job_id, combo)], used | set(combo))

    walk(0, [], set())
    return best


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances(6, 5, ("smithi", "vps"), ("smithi", "vps"), holds=False))
def test_tiny_instances_reach_brute_force_optimum(case: tuple[Snapshot, Policy]) -> None:
    snap, policy = case
    event(f"fairness caps bind: {caps_bind(snap, policy)}")
    plan = solve(snap, policy)
    best = brute_force_best(snap, policy)
    assert abs(plan.solver.objective - best) <= 1e-6 * max(1.0, best), (plan, best)


def tick_until_started(
    durations: list[int], arrivals: list[int], policy: Policy, big_nodes: int
) -> float:
    """Simulate hourly ticks on 4 smithi: a stream of urgent 1-node jobs and one big
    low-priority job queued at hour 0. Returns the hour the big job started."""
    lab = tuple(Node(f"smithi{k}", "smithi") for k in range(4))
    big = Job("big", "nightly", "nobody", 1000, ("smithi",), big_nodes, T0, tube="smithi")
    queue: list[Job] = [big]
    running: list[tuple[RunningJob, float]] = []  # (job, end hour)
    next_id = 0
    limit_h = policy.reservations.after_hours + policy.max_job_time_s / 3600.0 + 1
    hour = 0
    while hour <= limit_h + 5:
        now = T0 + timedelta(hours=hour)
        running = [(rj, end) for rj, end in running if end > hour]
        for _ in range(arrivals[hour % len(arrivals)]):
            queue.append(
                Job(
                    f"u{next_id}",
                    f"pr{next_id % 3}",
                    f"dev{next_id % 5}",
                    10,
                    ("smithi",),
                    1,
                    now,
                    tube="smithi",
                )
            )
            next_id += 1
        snap = Snapshot(now, lab, tuple(queue), tuple(rj for rj, _ in running))
        plan = solve(snap, policy)
        assert validate_plan(snap, policy, plan) == []
        by_id = {j.job_id: j for j in queue}
        for start in plan.starts:
            if start.job_id == "big":
                return float(hour)
            duration = durations[next_id % len(durations)]
            running.append((RunningJob(by_id[start.job_id], start.nodes, now), hour + duration))
            next_id += 1
        started = {s.job_id for s in plan.starts}
        queue = [j for j in queue if j.job_id not in started]
        hour += 1
    return float("inf")


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.integers(1, 10), min_size=1, max_size=6),
    st.lists(st.integers(1, 4), min_size=1, max_size=5),
    st.integers(2, 4),
)
def test_big_job_never_starved_past_bound(
    durations: list[int], arrivals: list[int], big_nodes: int
) -> None:
    policy = policy_from_mapping(
        {
            "aging": {"enabled": True, "rate_per_hour": 1.0, "max_boost": 100.0},
            "reservations": {"enabled": True, "after_hours": 6.0, "max_jobs": 1},
            "max_job_time_s": 10 * 3600,  # every job above runs at most 10 h
            "fairness": {"owner_max_share": 1.0, "run_max_share": 1.0},
        }
    )
    started = tick_until_started(durations, arrivals, policy, big_nodes)
    # Bound: after_hours + max_job_time (hourly ticks: the reservation begins at the first
    # tick at or past after_hours, and the last node frees at most max_job_time later).
    assert started <= 6 + 10


def test_without_reservations_the_big_job_starves() -> None:
    """The contrast that makes the bound above meaningful."""
    policy = policy_from_mapping(
        {
            "aging": {"enabled": False},
            "reservations": {"enabled": False},
            "max_job_time_s": 10 * 3600,
            "fairness": {"owner_max_share": 1.0, "run_max_share": 1.0},
        }
    )
    assert tick_until_started([3, 5, 2], [2, 3], policy, 4) == float("inf")


@st.composite
def capped_labs(draw: st.DrawFn) -> tuple[Snapshot, Policy]:
    """One or two single-pool types, many small jobs, binding owner and run caps."""
    lab = [Node(f"smithi{k:02d}", "smithi") for k in range(draw(st.integers(3, 24)))]
    lab += [Node(f"mira{k:02d}", "mira") for k in range(draw(st.integers(0, 8)))]
    queue = [
        job(
            f"j{k}",
            draw(st.integers(1, 3)),
            draw(st.sampled_from(("smithi", "smithi", "mira", "smithi,mira"))),
            priority=draw(st.sampled_from((10, 15, 20, 50, 75, 100, 500))),
            owner=f"o{draw(st.integers(0, 4))}",
            run=f"r{draw(st.integers(0, 5))}",
        )
        for k in range(draw(st.integers(5, 60)))
    ]
    policy = policy_from_mapping(
        {
            "aging": {"enabled": False},
            "reservations": {"enabled": False},
            "fairness": {
                "owner_max_share": draw(st.sampled_from((0.2, 0.35, 0.5, 1.0))),
                "run_max_share": draw(st.sampled_from((0.15, 0.25, 0.4, 1.0))),
            },
            "reimaged_types": ["smithi", "mira"],
        }
    )
    return Snapshot(T0, tuple(lab), tuple(queue)), policy


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(capped_labs())
def test_dropping_dominated_classes_keeps_the_optimum(case: tuple[Snapshot, Policy]) -> None:
    """The exchange-argument pruning (optialloc.solver.classes) never loses objective."""
    from optialloc.solver import classes

    snap, policy = case
    pruned = solve(snap, policy)
    classes.DROP_DOMINATED = False
    try:
        full = solve(snap, policy)
    finally:
        classes.DROP_DOMINATED = True
    assert full.solver.status in ("OPTIMAL", "TRIVIAL")
    assert pruned.solver.status in ("OPTIMAL", "TRIVIAL")
    assert abs(pruned.solver.objective - full.solver.objective) <= 1e-6 * max(
        1.0, full.solver.objective
    )
    assert validate_plan(snap, policy, pruned) == []

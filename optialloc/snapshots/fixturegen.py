"""Seeded generator of teuthology-like labs and queues, for fixtures, tests and benchmarks.

`generate(GenParams(...))` returns a `GeneratedLab` (a `Snapshot` plus known
job run times for the what-if simulator). The same parameters and seed always
give the same snapshot. The default parameters are Sepia-scale (about 200
smithi, 100 mira, 40 gibba; 20,000 queued jobs in 150 runs from 50 owners);
`scale` multiplies nodes, jobs, runs and owners for bigger in-memory labs.

What the queue looks like (docs/snapshot-format.md, "Generated labs"):
- runs of teuthology jobs needing 1-4 nodes each (`len(roles)`), each run
  starting with a `first_in_suite` job (until it has started) and ending with
  a `last_in_suite` job, both needing no node;
- run kinds with teuthology's priority bands: nightlies at 1000 submitted at
  20:00 UTC, PR runs at 75-150, QE runs at 100-150, developer runs at
  200-1000, a few urgent runs at 10-50; submission spread over `days`;
- some runs accept several machine types (`smithi,mira`, tube `multi`), most
  ask for an OS;
- the oldest runs are partly running (about `busy_fraction` of the up,
  unlocked nodes); some nodes are down and some locked by people.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from optialloc.domain import InvalidJob, Job, Node, RunningJob, Snapshot
from optialloc.errors import InputError, JobParseError
from optialloc.snapshots.fixturegen_bodies import (
    BRANCHES,
    NODE_OS,
    NODE_WEIGHTS,
    OS_CHOICES,
    SUITES,
    description_for,
    job_body,
    pick,
    run_name,
    run_shared_parts,
    user_names,
)
from optialloc.teuthology import parse_job, parse_timestamp

#: teuthology's max_job_time (3 days): no generated run time is longer.
MAX_RUNTIME_S = 259200.0

#: Run kinds: (weight, priority choices, relative size range).
_KINDS: dict[str, tuple[float, tuple[int, ...], tuple[int, int]]] = {
    "nightly": (0.25, (1000,), (200, 500)),
    "pr": (0.3, (75, 80, 90, 100, 120, 150), (20, 150)),
    "qe": (0.1, (100, 110, 125, 150), (50, 200)),
    "dev": (0.3, (200, 250, 500, 800, 1000), (10, 100)),
    "urgent": (0.05, (10, 25, 40, 50), (5, 25)),
}


@dataclass(frozen=True)
class GenParams:
    """Generator knobs. Counts are before `scale`; fractions are of the scaled counts."""

    seed: int = 1
    scale: float = 1.0
    taken_at: datetime = datetime(2026, 11, 24, 18, 0, 0, tzinfo=UTC)
    nodes: Mapping[str, int] = field(
        default_factory=lambda: {"smithi": 200, "mira": 100, "gibba": 40}
    )
    jobs: int = 20000  # queued jobs
    runs: int = 150
    owners: int = 50
    days: float = 5.0  # submissions spread over this many days before taken_at
    busy_fraction: float = 0.7  # of up, unlocked nodes, held by running jobs
    down_fraction: float = 0.03
    people_locked_fraction: float = 0.05
    multi_fraction: float = 0.1  # of runs, accepting smithi or mira (tube multi)
    invalid_jobs: int = 0  # extra queue entries whose body does not parse


@dataclass(frozen=True)
class GeneratedLab:
    """A generated snapshot and each job's run time in seconds (queued and running jobs)."""

    snapshot: Snapshot
    runtimes: Mapping[str, float]
    params: GenParams


def params_from_mapping(data: Any, *, source: str = "generator") -> GenParams:
    """`GenParams` from a mapping (a `generator:` section); raises `InputError` naming the key."""
    if not isinstance(data, Mapping):
        raise InputError(f"{source}: generator", "expected a mapping of generator parameters")
    known = {f.name: f for f in fields(GenParams)}
    values: dict[str, Any] = {}
    for key, value in data.items():
        where = f"{source}: generator.{key}"
        if key not in known:
            raise InputError(where, f"unknown parameter (known: {', '.join(sorted(known))})")
        if key == "taken_at":
            try:
                values[key] = parse_timestamp(value, where)
            except JobParseError as exc:
                raise InputError(where, exc.problem) from exc
        elif key == "nodes":
            if not isinstance(value, Mapping) or not all(
                isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0
                for k, v in value.items()
            ):
                raise InputError(
                    where, "expected a mapping of machine type: node count, e.g. {smithi: 200}"
                )
            values[key] = dict(value)
        elif isinstance(value, bool) or not isinstance(value, int | float):
            raise InputError(where, f"expected a number, got {value!r}")
        elif value < 0:
            raise InputError(where, f"must be >= 0, got {value}")
        elif known[key].type == "int":
            if not isinstance(value, int):
                raise InputError(where, f"expected an integer, got {value!r}")
            values[key] = value
        else:
            values[key] = float(value)
    params = GenParams(**values)
    for key in ("busy_fraction", "down_fraction", "people_locked_fraction", "multi_fraction"):
        if getattr(params, key) > 1:
            raise InputError(
                f"{source}: generator.{key}", "is a fraction: give a value between 0 and 1"
            )
    return params


def _scaled(value: float, scale: float) -> int:
    return max(1, round(value * scale)) if value else 0


def _make_nodes(rng: random.Random, params: GenParams, users: list[str]) -> list[Node]:
    nodes: list[Node] = []
    for machine_type, count in params.nodes.items():
        os_weights = NODE_OS.get(machine_type, ((("ubuntu", "22.04"), 1.0),))
        for index in range(1, _scaled(count, params.scale) + 1):
            os_type, os_version = pick(rng, os_weights)
            draw = rng.random()
            up = draw >= params.down_fraction
            people = up and draw < params.down_fraction + params.people_locked_fraction
            user = rng.choice(users[1:] or users)
            nodes.append(
                Node(
                    name=f"{machine_type}{index:03d}",
                    machine_type=machine_type,
                    up=up,
                    locked=people,
                    locked_by=f"{user}@teuthology" if people else None,
                    description=f"debugging {rng.choice(SUITES)} by hand" if people else None,
                    os_type=os_type,
                    os_version=os_version,
                    arch="x86_64",
                )
            )
    return nodes


def _run_sizes(rng: random.Random, kinds: list[str], total: int) -> list[int]:
    """Sizes drawn per kind, rescaled to add up to exactly `total` (each at least 2)."""
    raw = [rng.randint(*_KINDS[kind][2]) for kind in kinds]
    factor = total / max(sum(raw), 1)
    sizes = [max(2, math.floor(size * factor)) for size in raw]
    index = 0
    while sum(sizes) != total:
        step = 1 if sum(sizes) < total else -1
        if step > 0 or sizes[index % len(sizes)] > 2:
            sizes[index % len(sizes)] += step
        index += 1
        if index > 100 * len(sizes):
            break  # total is below 2 per run: leave the minimum
    return sizes


def _runtime(rng: random.Random) -> float:
    """Minutes to hours, long tail capped at max_job_time (median about 40 min)."""
    return round(min(MAX_RUNTIME_S, max(60.0, rng.lognormvariate(math.log(2400), 1.1))), 1)


def generate(params: GenParams | None = None) -> GeneratedLab:
    """A seeded teuthology-like lab snapshot; see the module docstring for its shape."""
    params = params or GenParams()
    rng = random.Random(params.seed)
    taken_at = params.taken_at
    users = user_names(_scaled(params.owners, params.scale))
    nodes = _make_nodes(rng, params, users)
    types = [t for t in params.nodes if _scaled(params.nodes[t], params.scale)]
    run_count = min(
        _scaled(params.runs, params.scale), max(1, _scaled(params.jobs, params.scale) // 2)
    )
    kinds = [pick(rng, {kind: spec[0] for kind, spec in _KINDS.items()}) for _ in range(run_count)]
    sizes = _run_sizes(rng, kinds, _scaled(params.jobs, params.scale)) if run_count else []

    runs: list[dict[str, Any]] = []
    for kind, size in zip(kinds, sizes, strict=True):
        day = rng.uniform(0, params.days)
        start = taken_at - timedelta(days=day)
        if kind == "nightly":
            start = start.replace(hour=20, minute=0, second=rng.randint(0, 59), microsecond=0)
            if start >= taken_at:
                start -= timedelta(days=1)
        else:
            start = start.replace(microsecond=0)
        user = "teuthology" if kind == "nightly" else rng.choice(users[1:] or users)
        if len(types) > 1 and rng.random() < params.multi_fraction:
            machine_type = ",".join(types[:2])
        else:
            machine_type = pick(rng, {t: params.nodes[t] for t in types})
        suite, branch = rng.choice(SUITES), rng.choice(BRANCHES)
        runs.append(
            {
                "taken_at": taken_at,
                "kind": kind,
                "size": size,
                "start": start,
                "user": user,
                "suite": suite,
                "machine_type": machine_type,
                "priority": rng.choice(_KINDS[kind][1]),
                "os": pick(rng, OS_CHOICES),
                "name": run_name(user, start, suite, branch, machine_type),
                "shared": run_shared_parts(rng, suite, branch),
                "seed": rng.randint(0, 9999),  # teuthology-suite --seed: one per run
            }
        )
    runs.sort(key=lambda r: r["start"])

    free: dict[str, list[str]] = {t: [] for t in types}
    for node in nodes:
        if node.free:
            free[node.machine_type].append(node.name)
    busy_target = round(params.busy_fraction * sum(len(v) for v in free.values()))

    next_id = 1000
    queue: list[Job] = []
    running: list[RunningJob] = []
    runtimes: dict[str, float] = {}
    busy = 0

    def make(
        run: dict[str, Any], at: datetime, count: int, first: bool = False, last: bool = False
    ) -> Job:
        nonlocal next_id
        next_id += 1
        body = job_body(
            run=run["name"],
            owner=f"scheduled_{run['user']}@teuthology",
            priority=run["priority"],
            machine_type=run["machine_type"],
            timestamp=run["start"],
            shared=run["shared"],
            nodes=count,
            description=description_for(rng, run["suite"], count) if count else "",
            os=run["os"],
            seed=run["seed"],
            first_in_suite=first,
            last_in_suite=last,
        )
        job = parse_job(body, job_id=str(next_id), queued_at=min(at, taken_at))
        runtimes[job.job_id] = _runtime(rng) if count else 5.0
        return job

    for run in runs:
        at = run["start"]
        # The oldest runs have started: their first jobs hold nodes now, and
        # their first_in_suite job is done (it is only queued for unstarted runs).
        first = make(run, at, 0, first=True)
        begin, running_before = len(queue), len(running)
        for _ in range(run["size"] - 1):
            at += timedelta(seconds=rng.choice((0, 0, 1)))  # several jobs are queued a second
            count = pick(rng, NODE_WEIGHTS)
            job = make(run, at, count)
            pool = next((free[t] for t in job.machine_types if len(free[t]) >= count), None)
            if busy < busy_target and pool is not None:
                held = tuple(pool.pop() for _ in range(count))
                # Started part-way through its own run time, after it was queued.
                elapsed = timedelta(seconds=rng.uniform(0.05, 0.95) * runtimes[job.job_id])
                began = min(taken_at, max(job.queued_at, taken_at - elapsed)).replace(microsecond=0)
                running.append(
                    RunningJob(job=job, nodes=held, started_at=max(began, job.queued_at))
                )
                busy += count
            else:
                queue.append(job)
        if len(running) == running_before:
            queue.insert(begin, first)
        at += timedelta(seconds=1)
        queue.append(make(run, at, 0, last=True))

    # Keep exactly the requested number of queued jobs: running jobs came out of
    # the oldest runs, so top the queue up from the newest run (same shape).
    queue = _trim_or_fill(rng, queue, _scaled(params.jobs, params.scale), runs, make)

    invalid = _invalid_entries(params, taken_at, next_id)
    held_nodes = {name for job in running for name in job.nodes}
    nodes = [
        replace(n, locked=True, locked_by="optialloc@teuthology") if n.name in held_nodes else n
        for n in nodes
    ]
    kept = {job.job_id for job in queue} | {job.job_id for job in running}
    runtimes = {job_id: seconds for job_id, seconds in runtimes.items() if job_id in kept}
    usage = {f"scheduled_{u}@teuthology": float(rng.randint(0, 500_000)) for u in users}
    snapshot = Snapshot(
        taken_at=taken_at,
        nodes=tuple(nodes),
        queue=tuple(queue),
        running=tuple(running),
        paused_tubes=frozenset(),
        invalid=invalid,
        usage=usage,
    )
    return GeneratedLab(snapshot=snapshot, runtimes=runtimes, params=params)


def _trim_or_fill(
    rng: random.Random, queue: list[Job], wanted: int, runs: list[dict[str, Any]], make: Any
) -> list[Job]:
    """Exactly `wanted` queued jobs: drop or add ordinary jobs of the newest runs.

    Bookkeeping jobs stay, so every run still ends with its last_in_suite job.
    """
    if not runs or len(queue) == wanted:
        return queue
    if len(queue) > wanted:
        excess = len(queue) - wanted
        keep = [True] * len(queue)
        for index in range(len(queue) - 1, -1, -1):
            if excess == 0:
                break
            if not (queue[index].first_in_suite or queue[index].last_in_suite):
                keep[index] = False
                excess -= 1
        trimmed = [job for job, kept in zip(queue, keep, strict=True) if kept]
        return trimmed[:wanted]  # only cuts bookkeeping jobs when nothing else is left
    run = runs[-1]
    last = queue.pop() if queue and queue[-1].last_in_suite else None
    at = queue[-1].queued_at if queue else run["start"]
    while len(queue) + (last is not None) < wanted:
        at += timedelta(seconds=rng.choice((0, 0, 1)))
        queue.append(make(run, at, pick(rng, NODE_WEIGHTS)))
    if last is not None:
        queue.append(replace(last, queued_at=min(at + timedelta(seconds=1), run["taken_at"])))
    return queue


def _invalid_entries(params: GenParams, taken_at: datetime, next_id: int) -> tuple[InvalidJob, ...]:
    """Queue entries whose bodies do not parse, with the parser's own error messages."""
    broken: tuple[tuple[str, dict[str, Any]], ...] = (
        ("smithi", {"machine_type": "smithi", "roles": "mon.a,osd.0"}),
        ("smithi", {"machine_type": 7, "roles": [["osd.0"]]}),
        ("multi", {"roles": [["osd.0"]]}),
        ("smithi", {"machine_type": "smithi", "priority": "high", "roles": [["osd.0"]]}),
    )
    out: list[InvalidJob] = []
    for index in range(params.invalid_jobs):
        tube, body = broken[index % len(broken)]
        job_id = str(next_id + 1 + index)
        try:
            parse_job(body, job_id=job_id, queued_at=taken_at, tube=tube)
        except JobParseError as exc:
            queued_at = taken_at - timedelta(hours=1)
            out.append(InvalidJob(job_id=job_id, tube=tube, error=str(exc), queued_at=queued_at))
        else:  # pragma: no cover - every body above is broken on purpose
            raise AssertionError(f"generator body {body!r} parses but should not")
    return tuple(out)

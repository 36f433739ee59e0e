"""Generate teuthology-like what-if workloads (seeded): suite runs in bursts, nightlies, PR runs.

Shape (evaluation.md, "Teuthology-like lab workloads"):
- nightly suites at 20:00 UTC every day, priority 1000, owner
  `scheduled_teuthology@teuthology`, 100-500 jobs each;
- PR / feature runs during the working day (08:00-18:00 UTC) at 75-150, and a
  few 150-200 / 200-999 runs, 10-120 jobs each, from a pool of developers;
- now and then an urgent run (10-49) of 5-25 jobs;
- a run's jobs arrive within a minute (teuthology-suite schedules them in one go);
- 1-4 nodes per job (`len(roles)`), mostly one machine type, some `smithi,mira`;
- runtimes lognormal (median `runtime_median_s`) with a long tail, a few
  jobs hanging until `max_job_time`; with `runtime_per_description` a share of
  the spread belongs to the job's description (the test), as in a real lab
  where a nightly suite repeats its descriptions every night;
- optionally a backlog already queued at time 0 (priority 1000 and 200-999).

`python -m optialloc.sim.generate PARAMS.yaml OUT.jsonl` writes a workload;
a params file is `{generator: {seed: 1, days: 7, ...}}` (keys: `WeekParams`).
"""

from __future__ import annotations

import argparse
import hashlib
import math
import random
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from optialloc.errors import InputError
from optialloc.sim.model import DEFAULT_ORIGIN, SimJob
from optialloc.snapshots.fixturegen_bodies import (
    description_for,
    job_body,
    run_name,
    run_shared_parts,
)

HOUR = 3600.0
DAY = 86400.0
NIGHTLY_OWNER = "scheduled_teuthology@teuthology"
DEVELOPERS = (
    "adam",
    "amy",
    "casey",
    "dan",
    "emma",
    "greg",
    "ilya",
    "jason",
    "josh",
    "kefu",
    "laura",
    "matan",
    "nitzan",
    "patrick",
    "radek",
    "sam",
    "venky",
    "xiubo",
    "yuri",
    "zac",
)


@dataclass(frozen=True)
class WeekParams:
    """Knobs of the generator; the defaults are a Sepia-like week on fixtures/labs/sepia.yaml."""

    seed: int = 1
    days: float = 7.0
    #: (suite, machine_type, min jobs, max jobs) of the nightly runs at `nightly_hour`.
    nightlies: tuple[tuple[str, str, int, int], ...] = (
        ("rados", "smithi", 250, 500),
        ("rbd", "smithi", 100, 250),
        ("fs", "smithi", 150, 350),
        ("rgw", "smithi", 80, 200),
        ("krbd", "mira", 150, 350),
        ("orch", "mira", 150, 350),
        ("upgrade", "smithi,mira", 50, 150),
        ("crimson-rados", "gibba", 100, 200),
    )
    nightly_hour: float = 20.0
    pr_runs_per_day: float = 14.0
    pr_jobs: tuple[int, int] = (10, 120)
    other_runs_per_day: float = 3.0
    urgent_runs_per_day: float = 0.5
    #: machine types of day runs with weights
    day_types: tuple[tuple[str, float], ...] = (
        ("smithi", 0.7),
        ("mira", 0.18),
        ("gibba", 0.07),
        ("smithi,mira", 0.05),
    )
    #: node counts per job with weights
    nodes: tuple[tuple[int, float], ...] = ((1, 0.35), (2, 0.4), (3, 0.15), (4, 0.1))
    runtime_median_s: float = 3000.0
    runtime_sigma: float = 1.0
    #: share of the log-runtime variance that belongs to the job's description (the
    #: test): 0 = every run independent; 0.75 = a description's runs stay within
    #: ~x1.6 of its own typical runtime (sigma 0.5) while descriptions differ widely
    runtime_per_description: float = 0.0
    runtime_min_s: float = 120.0
    hang_fraction: float = 0.002
    max_job_time_s: float = 259200.0
    #: jobs already queued at time 0 (a backlog), split 80 % nightly / 20 % at 200-999
    backlog_jobs: int = 0
    origin: datetime = field(default=DEFAULT_ORIGIN)


def params_from_mapping(data: Any, source: str = "generator") -> WeekParams:
    """`WeekParams` from a mapping; unknown keys are errors naming the key."""
    if not isinstance(data, Mapping):
        raise InputError(f"{source}: generator", "expected a mapping of generator parameters")
    known = {f.name: f for f in fields(WeekParams)}
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            raise InputError(
                f"{source}: generator.{key}", f"unknown parameter (known: {', '.join(known)})"
            )
        default = getattr(WeekParams(), key)
        try:
            if isinstance(default, tuple):
                values[key] = tuple(tuple(v) if isinstance(v, list) else v for v in value)
            elif isinstance(default, datetime):
                values[key] = (
                    value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
                )
            elif isinstance(default, bool) or not isinstance(default, int | float):
                values[key] = value
            else:
                values[key] = type(default)(value)
        except (TypeError, ValueError) as exc:
            raise InputError(f"{source}: generator.{key}", f"bad value {value!r} ({exc})") from exc
    return replace(WeekParams(), **values)


def _pick(rng: random.Random, weighted: Sequence[tuple[Any, float]]) -> Any:
    return rng.choices([v for v, _ in weighted], weights=[w for _, w in weighted], k=1)[0]


def _description_effect(p: WeekParams, description: str) -> float:
    """The description's own log-runtime offset: fixed for a seed (the same test run
    on another night takes about as long), independent of the job stream's rng."""
    digest = hashlib.sha256(f"{p.seed}:{description}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big")).gauss(0.0, 1.0)


def _runtime(rng: random.Random, p: WeekParams, description: str) -> float:
    if rng.random() < p.hang_fraction:
        return p.max_job_time_s - 1.0  # hung until teuthology's limit
    if p.runtime_per_description > 0:
        share = min(p.runtime_per_description, 1.0)
        mu = math.log(p.runtime_median_s)
        mu += p.runtime_sigma * math.sqrt(share) * _description_effect(p, description)
        value = rng.lognormvariate(mu, p.runtime_sigma * math.sqrt(1.0 - share))
    else:
        value = rng.lognormvariate(math.log(p.runtime_median_s), p.runtime_sigma)
    return float(round(min(max(value, p.runtime_min_s), p.max_job_time_s - 1.0)))


class _Builder:
    def __init__(self, p: WeekParams) -> None:
        self.p = p
        self.rng = random.Random(p.seed)
        self.jobs: list[SimJob] = []

    def run(
        self,
        at: float,
        user: str,
        owner: str,
        priority: int,
        suite: str,
        machine_type: str,
        size: int,
    ) -> None:
        rng, p = self.rng, self.p
        when = p.origin + timedelta(seconds=at)
        name = run_name(user, when, suite, "main", machine_type)
        shared = run_shared_parts(rng, suite, "main")
        for k in range(size):
            nodes = _pick(rng, p.nodes)
            submit = round(at + k * 0.2, 1)  # teuthology-suite puts a run in seconds
            body = job_body(
                run=name,
                owner=owner,
                priority=priority,
                machine_type=machine_type,
                timestamp=when,
                shared=shared,
                nodes=nodes,
                description=description_for(rng, suite, nodes),
                os=None,
                seed=rng.randint(0, 9999),
            )
            index = len(self.jobs)
            self.jobs.append(
                SimJob(
                    job_id=str(index + 1),
                    index=index,
                    submit=submit,
                    runtime=_runtime(rng, p, str(body["description"])),
                    nodes=nodes,
                    machine_types=tuple(machine_type.split(",")),
                    priority=priority,
                    owner=owner,
                    run=name,
                    body=body,
                )
            )

    def day_run(self, at: float, low: int, high: int, size: tuple[int, int]) -> None:
        user = self.rng.choice(DEVELOPERS)
        suite = self.rng.choice(("rados", "rbd", "fs", "rgw", "krbd", "orch", "smoke"))
        mt = _pick(self.rng, self.p.day_types)
        jobs = int(min(size[1], max(size[0], self.rng.lognormvariate(math.log(40), 0.7))))
        self.run(
            at, user, f"scheduled_{user}@teuthology", self.rng.randint(low, high), suite, mt, jobs
        )


def _poisson(rng: random.Random, mean: float) -> int:
    # Knuth's method: small means only
    limit, k, prod = math.exp(-mean), 0, rng.random()
    while prod > limit:
        k += 1
        prod *= rng.random()
    return k


def generate(p: WeekParams | None = None) -> list[SimJob]:
    """The workload for `p`, in submit order, ids "1", "2", ... (deterministic for a seed)."""
    p = p or WeekParams()
    b = _Builder(p)
    rng = b.rng
    if p.backlog_jobs:
        nightly = int(p.backlog_jobs * 0.8)
        per = max(1, nightly // max(len(p.nightlies), 1))
        for suite, mt, _, _ in p.nightlies:
            b.run(0.0, "teuthology", NIGHTLY_OWNER, 1000, suite, mt, per)
        rest = p.backlog_jobs - per * len(p.nightlies)
        while rest > 0:
            size = min(rest, 60)
            b.day_run(0.0, 200, 999, (size, size))
            rest -= size
    for day in range(math.ceil(p.days)):
        base = day * DAY
        for _ in range(_poisson(rng, p.pr_runs_per_day)):
            at = base + rng.uniform(8 * HOUR, 18 * HOUR)
            b.day_run(at, 75, 150, p.pr_jobs)
        for _ in range(_poisson(rng, p.other_runs_per_day)):
            at = base + rng.uniform(0, DAY)
            low, high = rng.choice(((151, 200), (200, 999)))
            b.day_run(at, low, high, p.pr_jobs)
        for _ in range(_poisson(rng, p.urgent_runs_per_day)):
            b.day_run(base + rng.uniform(8 * HOUR, 18 * HOUR), 10, 49, (5, 25))
        for suite, mt, low, high in p.nightlies:
            at = base + p.nightly_hour * HOUR + rng.uniform(0, 600)
            if at < p.days * DAY:
                b.run(at, "teuthology", NIGHTLY_OWNER, 1000, suite, mt, rng.randint(low, high))
    jobs = [j for j in b.jobs if j.submit < p.days * DAY]
    jobs.sort(key=lambda j: (j.submit, j.index))
    return [replace(j, index=k) for k, j in enumerate(jobs)]


def offered_load(jobs: Sequence[SimJob], capacity: Mapping[str, int]) -> dict[str, float]:
    """Node-seconds demanded per machine type / (nodes x arrival span); > 1: backlog grows."""
    if not jobs:
        return {}
    span = max(max(j.submit for j in jobs) - min(j.submit for j in jobs), 1.0)
    demand: dict[str, float] = {}
    for j in jobs:
        demand[j.machine_types[0]] = demand.get(j.machine_types[0], 0.0) + j.nodes * j.runtime
    return {mt: demand.get(mt, 0.0) / (n * span) for mt, n in capacity.items()}


def load_params(path: str | Path) -> WeekParams:
    """Read `{generator: {...}}` from a YAML file."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(str(path), f"cannot read generator parameters: {exc.strerror}") from exc
    if not isinstance(data, Mapping) or "generator" not in data:
        raise InputError(str(path), "expected a top-level `generator:` mapping of WeekParams keys")
    return params_from_mapping(data["generator"], source=str(path))


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: write the workload of a params file as JSON Lines."""
    from optialloc.sim.workload import write_jsonl

    parser = argparse.ArgumentParser(
        prog="python -m optialloc.sim.generate", description=__doc__.splitlines()[0]
    )
    parser.add_argument("params", help="YAML with a `generator:` mapping (see WeekParams)")
    parser.add_argument("out", help="output JSON Lines file")
    parser.add_argument("--seed", type=int, help="override the params' seed")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    if args.seed is not None:
        params = replace(params, seed=args.seed)
    jobs = generate(params)
    write_jsonl(jobs, args.out)
    print(f"{args.out}: {len(jobs)} jobs over {params.days:g} days (seed {params.seed})")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

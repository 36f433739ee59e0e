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

Knobs for a family of weeks (docs/whatif.md, "A family of weeks"):
`target_load` (with `lab`) scales runtimes so the offered load is that
share of the lab; `nightly_scale` the nightly burst sizes; `big_share` the
share of 4-8-node jobs; `burst_day` / `burst_factor` a bursty PR day;
`last_in_suite` ends every run with a node-less `last_in_suite` job; a scarce
machine type is a lab with few nodes of a type plus `day_types` weight on it.

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
    #: > 0: scale runtimes (not hangs) so that node-seconds demanded / (lab nodes x
    #: days) is this; needs `lab` ((machine type, nodes), ...)
    target_load: float = 0.0
    lab: tuple[tuple[str, int], ...] = ()
    #: per-type overrides of `target_load` ((machine type, load), ...): a scarce type
    type_load: tuple[tuple[str, float], ...] = ()
    #: nightly run sizes x this (the nightly burst)
    nightly_scale: float = 1.0
    #: every run's size x this (a scaled-down week for a scaled-down lab)
    scale: float = 1.0
    #: >= 0: this share of jobs needs 4-8 nodes (uniform), the rest 1-3 nodes by
    #: the weights of `nodes`; < 0: `nodes` alone
    big_share: float = -1.0
    #: day index (0-based) with `burst_factor` x the PR runs, all between 09:00 and 12:00
    burst_day: int = -1
    burst_factor: float = 3.0
    #: end every run with a `last_in_suite` job (no node; waits for its run)
    last_in_suite: bool = False
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
            elif isinstance(default, bool):
                values[key] = bool(value)
            elif not isinstance(default, int | float):
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

        def body_of(nodes: int, description: str, seed: int, last: bool = False) -> dict[str, Any]:
            return job_body(
                run=name,
                owner=owner,
                priority=priority,
                machine_type=machine_type,
                timestamp=when,
                shared=shared,
                nodes=nodes,
                description=description,
                os=None,
                seed=seed,
                last_in_suite=last,
            )

        for k in range(size):
            nodes = self.nodes()
            submit = round(at + k * 0.2, 1)  # teuthology-suite puts a run in seconds
            description = description_for(rng, suite, nodes)
            body = body_of(min(nodes, 4), description, rng.randint(0, 9999))
            if nodes > 4:  # fixturegen's role layouts stop at 4 nodes
                body["roles"] = [[f"mon.{r}", f"osd.{r}"] for r in range(nodes - 1)] + [
                    ["client.0"]
                ]
            self._add(body, submit, _runtime(rng, p, str(body["description"])), nodes)
        if p.last_in_suite:
            body = body_of(0, f"{suite}/last_in_suite", 0, last=True)
            # teuthology-results mails the summary: a minute
            self._add(body, round(at + size * 0.2, 1), 60.0, 0, last_in_suite=True)

    def _add(
        self,
        body: dict[str, Any],
        submit: float,
        runtime: float,
        nodes: int,
        *,
        last_in_suite: bool = False,
    ) -> None:
        index = len(self.jobs)
        self.jobs.append(
            SimJob(
                job_id=str(index + 1),
                index=index,
                submit=submit,
                runtime=runtime,
                nodes=nodes,
                machine_types=tuple(str(body["machine_type"]).split(",")),
                priority=int(body["priority"]),
                owner=str(body["owner"]),
                run=str(body["name"]),
                last_in_suite=last_in_suite,
                body=body,
            )
        )

    def nodes(self) -> int:
        p, rng = self.p, self.rng
        if p.big_share < 0:
            return int(_pick(rng, p.nodes))
        if rng.random() < p.big_share:
            return rng.randint(4, 8)
        small = [(n, w) for n, w in p.nodes if n < 4] or [(1, 1.0)]
        return int(_pick(rng, small))

    def day_run(self, at: float, low: int, high: int, size: tuple[int, int]) -> None:
        user = self.rng.choice(DEVELOPERS)
        suite = self.rng.choice(("rados", "rbd", "fs", "rgw", "krbd", "orch", "smoke"))
        mt = _pick(self.rng, self.p.day_types)
        jobs = int(min(size[1], max(size[0], self.rng.lognormvariate(math.log(40), 0.7))))
        jobs = max(1, round(jobs * self.p.scale))
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
        if day == p.burst_day:
            for _ in range(_poisson(rng, p.pr_runs_per_day * max(p.burst_factor - 1.0, 0.0))):
                b.day_run(base + rng.uniform(9 * HOUR, 12 * HOUR), 75, 150, p.pr_jobs)
        for _ in range(_poisson(rng, p.other_runs_per_day)):
            at = base + rng.uniform(0, DAY)
            low, high = rng.choice(((151, 200), (200, 999)))
            b.day_run(at, low, high, p.pr_jobs)
        for _ in range(_poisson(rng, p.urgent_runs_per_day)):
            b.day_run(base + rng.uniform(8 * HOUR, 18 * HOUR), 10, 49, (5, 25))
        for suite, mt, low, high in p.nightlies:
            at = base + p.nightly_hour * HOUR + rng.uniform(0, 600)
            if at < p.days * DAY:
                size = max(1, round(rng.randint(low, high) * p.nightly_scale * p.scale))
                b.run(at, "teuthology", NIGHTLY_OWNER, 1000, suite, mt, size)
    jobs = [j for j in b.jobs if j.submit < p.days * DAY]
    if p.target_load > 0:
        jobs = _scale_to_load(jobs, p)
    jobs.sort(key=lambda j: (j.submit, j.index))
    return [replace(j, index=k) for k, j in enumerate(jobs)]


def _scale_to_load(jobs: list[SimJob], p: WeekParams) -> list[SimJob]:
    """Runtimes (not hangs, not bookkeeping jobs) scaled per machine type (a job's
    first type) so each type's offered load over the week is `p.target_load`, or
    its `type_load` entry: node-seconds demanded / (nodes x days)."""
    if not p.lab:
        raise InputError("generator.lab", "target_load needs the lab: [[smithi, 200], ...]")
    hang = p.max_job_time_s - 1.0
    loads = dict(p.type_load)
    factor: dict[str, float] = {}
    for machine_type, nodes in p.lab:
        mine = [j for j in jobs if j.machine_types[0] == machine_type]
        fixed = sum(j.nodes * j.runtime for j in mine if j.runtime >= hang)
        scalable = sum(j.nodes * j.runtime for j in mine if j.runtime < hang)
        want = loads.get(machine_type, p.target_load) * nodes * p.days * DAY
        factor[machine_type] = max(want - fixed, 0.0) / max(scalable, 1.0)
    return [
        j
        if j.runtime >= hang or j.nodes == 0 or j.machine_types[0] not in factor
        else replace(
            j,
            runtime=float(
                round(min(max(j.runtime * factor[j.machine_types[0]], 60.0), hang - 1.0))
            ),
        )
        for j in jobs
    ]


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

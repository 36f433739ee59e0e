"""One what-if comparison: a lab, a workload (or trace windows), policies and baselines.

`load_scenario` turns the CLI's inputs into labs and job lists; `run` replays
every window through every scheduler on the same engine settings and returns
per-scheduler metrics (averaged over windows, each window also kept).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from optialloc.domain import Node
from optialloc.errors import InputError
from optialloc.resources import resolve_file
from optialloc.sim import swf as swf_mod
from optialloc.sim.baselines import MAX_JOB_TIME, make_baseline
from optialloc.sim.engine import Cadence, Progress, Scheduler, simulate
from optialloc.sim.generate import generate as generate_jobs
from optialloc.sim.generate import load_params
from optialloc.sim.metrics import summarize
from optialloc.sim.model import DEFAULT_ORIGIN, SimJob, SimResult
from optialloc.sim.workload import Workload, check_fits, read_jsonl, read_snapshot

log = logging.getLogger(__name__)


@dataclass
class Scenario:
    """Labs and windows to replay; every window runs on `nodes`."""

    nodes: list[Node]
    windows: list[Workload]
    labels: list[str]
    tick_s: float
    one_event: bool = False
    max_job_time: float = MAX_JOB_TIME
    seed: int = 0
    dump_rejected: str | None = None  # directory for snapshots of rejected plans
    #: decide as `serve` does (events, min gap, idle tick); None: `tick_s` / `one_event`
    cadence: Cadence | None = None

    def decisions(self) -> str:
        """The decision cadence in words (every report states it)."""
        if self.cadence is not None:
            return "serve's: " + self.cadence.describe()
        if self.tick_s:
            return f"every {self.tick_s:g} s (fixed ticks)"
        return "after every single event" if self.one_event else "at every event time"

    @property
    def names(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for node in self.nodes:
            out.setdefault(node.machine_type, []).append(node.name)
        return out


@dataclass
class Outcome:
    """One scheduler's results: a metrics dict per window and their mean."""

    name: str
    results: list[SimResult] = field(default_factory=list)
    per_window: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Per-window metrics averaged (numbers) / taken from the first window (the rest)."""
        if len(self.per_window) == 1:
            return dict(self.per_window[0])
        out: dict[str, Any] = {}
        for key, value in self.per_window[0].items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                out[key] = sum(w[key] for w in self.per_window) / len(self.per_window)
            else:
                out[key] = value
        out["windows"] = len(self.per_window)
        return out


def serve_cadence() -> Cadence:
    """When `serve` with its default settings ticks (optialloc.dispatch.serve, config)."""
    from optialloc.config import Config
    from optialloc.dispatch.serve import ARRIVAL_CHECK_S, MIN_TICK_GAP_S

    return Cadence(
        min_gap_s=MIN_TICK_GAP_S, arrival_poll_s=ARRIVAL_CHECK_S, idle_s=Config().tick_seconds
    )


def _with_idle(cadence: Cadence, idle_s: float | None) -> Cadence:
    return cadence if idle_s is None else replace(cadence, idle_s=idle_s)


def lab_nodes(path: str) -> list[Node]:
    """The up nodes of a lab YAML file (or of a shipped lab by name: `demo`)."""
    from optialloc.inventory.lab_file import load_lab

    nodes = [n for n in load_lab(resolve_file("labs", path)) if n.up]
    if not nodes:
        raise InputError("--lab", f"{path} has no node that is up")
    return nodes


def synthetic_lab(machine_type: str, count: int) -> list[Node]:
    return [Node(f"{machine_type}{i:03d}", machine_type) for i in range(1, count + 1)]


def _is_generator(path: str) -> bool:
    return Path(path).suffix in (".yaml", ".yml")


def load_scenario(
    *,
    lab: str | None,
    workload: str | None = None,
    snapshot: str | None = None,
    swf: str | None = None,
    windows: Sequence[str] = (),
    tick_s: float | None = None,
    seed: int = 0,
    swf_priority: int | None = 1000,
    swf_compress: float = 1.0,
    default_runtime: float | None = None,
    max_job_time: float = MAX_JOB_TIME,
    idle_s: float | None = None,
) -> Scenario:
    """Build the scenario from exactly one of `workload`, `snapshot`, `swf` (see the CLI help)."""
    if sum(x is not None for x in (workload, snapshot, swf)) != 1:
        raise InputError("--workload/--snapshot/--swf", "give exactly one workload source")
    if swf is not None:
        trace = swf_mod.read_swf(swf)
        nodes = lab_nodes(lab) if lab else synthetic_lab(trace.machine_type, trace.max_nodes)
        machine_type = max(
            {n.machine_type for n in nodes}, key=lambda mt: sum(n.machine_type == mt for n in nodes)
        )
        users = swf_mod.read_users(swf)
        specs = [swf_mod.parse_window(w) for w in windows] if windows else [(0, len(trace.jobs))]
        loads, labels = [], []
        for start, count in specs:
            jobs = swf_mod.window(trace, start, count)
            jobs = swf_mod.as_lab_jobs(
                jobs, seed=seed, priority=swf_priority, compress=swf_compress, user_of=users
            )
            jobs = [replace(j, machine_types=(machine_type,)) for j in jobs]
            loads.append(Workload(jobs=jobs, source=f"{swf}[{start}:{start + count}]"))
            labels.append(f"{start}:{count}")
        # the published protocol decides after every single event
        return Scenario(
            nodes, loads, labels, tick_s or 0.0, not tick_s, max_job_time=max_job_time, seed=seed
        )
    if windows:
        raise InputError("--window", "windows apply to --swf traces only")
    if snapshot is not None:
        load = read_snapshot(snapshot, default_runtime)
        nodes = lab_nodes(lab) if lab else list(load.nodes or [])
    else:
        assert workload is not None
        if not lab:
            raise InputError(
                "--lab", "a --workload needs a lab: pass --lab fixtures/labs/sepia.yaml"
            )
        workload = resolve_file("workloads", workload)  # `demo`: the shipped one
        if _is_generator(workload):
            params = load_params(workload)
            jobs = generate_jobs(params)
            load = Workload(jobs=jobs, origin=params.origin, source=workload)
        else:
            load = read_jsonl(workload, origin=DEFAULT_ORIGIN)
        if not lab:
            raise InputError(
                "--lab", "a --workload needs a lab: pass --lab fixtures/labs/sepia.yaml"
            )
        nodes = lab_nodes(lab)
    capacity: dict[str, int] = {}
    for node in nodes:
        capacity[node.machine_type] = capacity.get(node.machine_type, 0) + 1
    check_fits(load.jobs, capacity)
    # lab workloads decide as serve does unless fixed ticks are asked for
    return Scenario(
        nodes,
        [load],
        ["all"],
        tick_s or 0.0,
        max_job_time=max_job_time,
        seed=seed,
        cadence=None if tick_s else _with_idle(serve_cadence(), idle_s),
    )


def make_scheduler(kind: str, spec: str, scenario: Scenario, load: Workload) -> Scheduler:
    """A fresh scheduler: kind 'baseline' (spec = its name) or 'policy' (spec = a policy file)."""
    if kind == "baseline":
        return make_baseline(spec, seed=scenario.seed, max_job_time=scenario.max_job_time)
    from optialloc.dispatch.dispatcher import DispatcherSettings
    from optialloc.policy import load_policy
    from optialloc.sim.optialloc_sched import OptiallocScheduler

    policy = load_policy(spec)
    return OptiallocScheduler(
        name=policy_label(spec),
        policy=policy,
        nodes=scenario.nodes,
        jobs=[*load.jobs, *(r.job for r in load.preload)],
        origin=load.origin,
        preload=load.preload,
        settings=DispatcherSettings(
            max_job_time=int(scenario.max_job_time), archive_base="/nonexistent/sim"
        ),
        dump_rejected=scenario.dump_rejected,
    )


def policy_label(path: str) -> str:
    return Path(path).stem


def run(
    scenario: Scenario,
    schedulers: Sequence[tuple[str, str]],
    progress: Callable[[str, int], Progress | None] | None = None,
    workers: int = 1,
) -> list[Outcome]:
    """Replay every window through every (kind, spec) scheduler; one `Outcome` each, in order.

    `progress(label, total_jobs)` may return a callback for one simulation.
    With `workers > 1` the schedulers run in that many processes (no progress).
    """
    if workers > 1 and len(schedulers) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=min(workers, len(schedulers))) as pool:
            futures = [
                pool.submit(_run_one, scenario, kind, spec, None) for kind, spec in schedulers
            ]
            return [f.result() for f in futures]
    return [_run_one(scenario, kind, spec, progress) for kind, spec in schedulers]


def _run_one(
    scenario: Scenario,
    kind: str,
    spec: str,
    progress: Callable[[str, int], Progress | None] | None,
) -> Outcome:
    outcome = Outcome(name=spec if kind == "baseline" else policy_label(spec))
    for load, label in zip(scenario.windows, scenario.labels, strict=True):
        scheduler = make_scheduler(kind, spec, scenario, load)
        total = len(load.jobs) + len(load.preload)
        callback = progress(f"{outcome.name} [{label}]", total) if progress else None
        result = simulate(
            load.jobs,
            scheduler,
            scenario.names,
            one_event=scenario.one_event,
            tick_s=scenario.tick_s,
            progress=callback,
            preload=[replace(r) for r in load.preload],
            start=load.start,
            cadence=scenario.cadence,
        )
        result.origin = load.origin
        result.label = label
        result.notes = list(getattr(scheduler, "notes", []))
        result.rejected_plans = int(getattr(scheduler, "rejected", 0))
        outcome.results.append(result)
        metrics = summarize(result, bound_s=bound_fn(spec if kind == "policy" else None))
        metrics["decisions"] = scenario.decisions()
        outcome.per_window.append(metrics)
        outcome.notes.extend(result.notes)
    return outcome


def bound_fn(policy_path: str | None) -> Callable[[SimJob], float]:
    """A job's documented start bound (`ranking.start_bound_s`) under a policy file, or
    under models/default.yaml for a baseline (what the default promises)."""
    from optialloc.policy import default_policy, load_policy
    from optialloc.ranking import start_bound_s

    policy = load_policy(policy_path) if policy_path else default_policy()
    cache: dict[int, float] = {}

    def bound(job: SimJob) -> float:
        if job.priority not in cache:
            cache[job.priority] = start_bound_s(job.priority, policy)
        return cache[job.priority]

    return bound


def jobs_of(scenario: Scenario) -> list[SimJob]:
    return [j for w in scenario.windows for j in w.jobs]

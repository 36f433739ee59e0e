"""Benchmark: the what-if family matrix (issue 17): twelve seeded weeks plus the Lublin windows.

Every week runs through a policy (default: models/default.yaml), teuthology,
greedy and EASY on the engine, deciding as `serve` does (every arrival and
finish; `--tick-seconds 60` for fixed ticks), and prints every target per
week with its train/test mark (optialloc/sim/family.py). Then the ten Lublin
windows of both traces: the policy's mean bounded slowdown against EASY's.

    nice -n 10 python tests/bench_whatif_matrix.py --workers 2
    nice -n 10 python tests/bench_whatif_matrix.py --split train --policy /tmp/candidate.yaml

Run it alone (it keeps `--workers` cores busy); figures and times in docs/whatif.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TRACES = ROOT.parent / "shared" / "data" / "traces"
BASELINES = ("teuthology", "greedy", "easy")


def run_week(
    name: str, policy: str, scale: float, days: float, tick_s: float | None, idle_s: float | None
) -> dict[str, Any]:
    from dataclasses import replace

    from optialloc.sim import scenario as sc
    from optialloc.sim.family import family, nodes_of
    from optialloc.sim.generate import generate
    from optialloc.sim.workload import Workload

    week = next(w for w in family(scale, days) if w.name == name)
    jobs = generate(week.params)
    scenario = sc.Scenario(
        nodes_of(week.lab),
        [Workload(jobs=jobs, origin=week.params.origin, source=name)],
        ["all"],
        tick_s or 0.0,
        cadence=None if tick_s else sc.serve_cadence(),
    )
    if scenario.cadence is not None and idle_s is not None:
        scenario.cadence = replace(scenario.cadence, idle_s=idle_s)
    started = time.perf_counter()
    kinds = [("policy", policy)] + [("baseline", b) for b in BASELINES]
    outcomes = sc.run(scenario, kinds)
    metrics = {("default" if k == "policy" else o.name): o.summary()
               for (k, _), o in zip(kinds, outcomes, strict=True)}  # fmt: skip
    return {
        "week": name,
        "jobs": len(jobs),
        "wall_s": time.perf_counter() - started,
        "decisions": scenario.decisions(),
        "metrics": metrics,
    }


def run_lublin(trace: str, policy: str) -> dict[str, Any]:
    from optialloc.cli.whatif import _windows
    from optialloc.sim import scenario as sc

    started = time.perf_counter()
    scenario = sc.load_scenario(lab=None, swf=str(TRACES / trace), windows=_windows(["lublin"]),
                                swf_priority=1000)  # fmt: skip
    outcomes = sc.run(scenario, [("policy", policy), ("baseline", "easy")])
    return {
        "trace": trace,
        "wall_s": time.perf_counter() - started,
        "policy": outcomes[0].summary()["mean_bounded_slowdown"],
        "easy": outcomes[1].summary()["mean_bounded_slowdown"],
    }


def main(argv: list[str] | None = None) -> int:
    from optialloc.sim.family import family, targets

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default=str(ROOT / "models" / "default.yaml"))
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--split", choices=("train", "test", "all"), default="all")
    parser.add_argument("--weeks", nargs="*", help="only these week names (w01 ...)")
    parser.add_argument("--scale", type=float, default=0.25, help="lab and jobs x this")
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--tick-seconds", type=float, default=None, help="fixed ticks instead")
    parser.add_argument(
        "--idle-seconds", type=float, default=300.0,
        help="idle tick with nothing happening (serve: 10 s; default here 300 s: the same "
        "decisions on every event, a fifth of the solves; docs/whatif.md)",
    )  # fmt: skip
    parser.add_argument("--no-lublin", action="store_true")
    parser.add_argument("--json", metavar="FILE", help="also write every metric here")
    args = parser.parse_args(argv)
    weeks = [w for w in family(args.scale, args.days)
             if (args.split == "all" or w.split == args.split)
             and (not args.weeks or w.name in args.weeks)]  # fmt: skip
    started = time.perf_counter()
    print(f"policy {args.policy}; lab {weeks[0].lab if weeks else '-'}; days {args.days:g}; "
          f"idle tick {args.idle_seconds:g} s", flush=True)  # fmt: skip
    failed = 0
    results: dict[str, dict[str, Any]] = {}
    # Lublin and the test weeks first: the figures that are reported
    weeks.sort(key=lambda w: (w.split != "test", w.seed))
    with ProcessPoolExecutor(max_workers=max(1, args.workers)) as pool:
        lublin = [] if args.no_lublin else [
            pool.submit(run_lublin, t, args.policy)
            for t in ("lublin_256.swf", "lublin_256_new2.swf")
        ]  # fmt: skip
        futures = {pool.submit(run_week, w.name, args.policy, args.scale, args.days,
                               args.tick_seconds, args.idle_seconds): w for w in weeks}  # fmt: skip
        for future in as_completed(futures):
            week, result = futures[future], future.result()
            results[week.name] = result
            checks = targets(result["metrics"])
            bad = [c for c in checks if not c.ok]
            failed += len(bad) if week.split == "test" else 0
            print(f"\n{week.name} [{week.split}] R2={week.r2} load={week.load} "
                  f"shape={week.shape} jobs={result['jobs']} wall={result['wall_s']:.0f}s "
                  f"{'ALL TARGETS HOLD' if not bad else f'{len(bad)} FAIL'}")  # fmt: skip
            print(f"  decisions: {result['decisions']}")
            for c in checks:
                mark = "ok  " if c.ok else "FAIL"
                print(f"  {mark} {c.name:48s} {c.value:9.3f}  (limit {c.limit:g})", flush=True)
            if args.json:  # so far, in case the run is cut short
                Path(args.json).write_text(json.dumps(list(results.values()), default=str))
        lublin_results = [f.result() for f in lublin]
    for lub in lublin_results:
        ok = lub["policy"] < lub["easy"]
        failed += 0 if ok else 1
        print(f"\nLublin {lub['trace']}: policy {lub['policy']:.2f} vs easy {lub['easy']:.2f} "
              f"{'ok' if ok else 'FAIL'} (wall {lub['wall_s']:.0f}s)")  # fmt: skip
    print(f"\ntotal wall {time.perf_counter() - started:.0f}s; test-week/Lublin failures: {failed}")
    if args.json:
        payload = {"weeks": list(results.values()), "lublin": lublin_results}
        Path(args.json).write_text(json.dumps(payload, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

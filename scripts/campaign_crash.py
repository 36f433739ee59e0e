"""Crash campaign: kill -9 `optialloc serve` at every commit step and at random, both backends.

For each backend (embedded queue, real beanstalkd) and each round:

1. every crash point of the commit path (`optialloc.dispatch.commit.STEPS`:
   intent, claim, lock, locked, prepare, launching, launch, running, finish,
   unlock, settle): queue a batch of 1-3-node jobs, run serve with
   `OPTIALLOC_CRASH_AT=<step>:<n>` (SIGKILL the n-th time it passes there),
   then run serve again to the end;
2. random kills: serve is SIGKILLed at a random moment `--kills` times, then
   run to the end.

After each, the verdict (`campaign_lab.Losses`): every job ran exactly once,
no node used by two jobs at once, no lock, claim or open journal row left,
nothing buried. Figures: kills, jobs, losses, and the recovery time (restart
to the first job started by the new serve; reconcile included).

Usage: nice -n 10 python scripts/campaign_crash.py [--rounds 1] [--jobs 8]
       [--kills 4] [--backend both] [--seed 0]
Exit status 1 on any loss.
"""

from __future__ import annotations

import random
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

from campaign_lab import BACKENDS, CampaignLab, Losses, campaign_parser, verdict

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from serve_support import mixed_bodies

from optialloc.dispatch.commit import STEPS


def _recovery_s(lab: CampaignLab, restarted_at: float, before: int) -> float | None:
    starts = sorted(r[2] for r in lab.records_list()[before:] if r[2] >= restarted_at)
    return starts[0] - restarted_at if starts else None


def crash_at_step(root: Path, backend: str, step: str, nth: int, rng: random.Random, jobs: int):
    lab = CampaignLab(root, backend)
    try:
        lab.put(mixed_bodies(jobs, rng))
        code, _ = lab.serve(crash_at=f"{step}:{nth}")
        crashed = code == -signal.SIGKILL
        before = len(lab.records_list())
        restarted = time.time()
        code2, err2 = lab.serve()
        losses = lab.losses()
        if code2 != 0:
            losses.serve_failures.append(f"{step}: serve exit {code2}: {err2[-500:]}")
        return crashed, losses, _recovery_s(lab, restarted, before)
    finally:
        lab.close()


def random_kills(root: Path, backend: str, kills: int, rng: random.Random, jobs: int):
    lab = CampaignLab(root, backend)
    recoveries: list[float] = []
    try:
        lab.put(mixed_bodies(jobs, rng))
        done = 0
        for _ in range(kills):
            before = len(lab.records_list())
            restarted = time.time()
            proc = lab.spawn()
            time.sleep(rng.uniform(0.5, 2.0))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                done += 1
            proc.communicate(timeout=60)
            rec = _recovery_s(lab, restarted, before)
            if rec is not None and done > 1:
                recoveries.append(rec)
        code, err = lab.serve()
        losses = lab.losses()
        if code != 0:
            losses.serve_failures.append(f"random: serve exit {code}: {err[-500:]}")
        return done, losses, recoveries
    finally:
        lab.close()


def run(rounds: int, jobs: int, kills: int, backends: list[str], seed: int) -> int:
    rng = random.Random(seed)
    total = Losses()
    figures: dict[str, dict[str, float]] = {}
    for backend in backends:
        n_kills = n_jobs = 0
        recoveries: list[float] = []
        started = time.monotonic()
        for r in range(rounds):
            for step in STEPS:
                with tempfile.TemporaryDirectory(prefix="optialloc-crash-") as tmp:
                    nth = rng.randint(1, 3)
                    crashed, losses, rec = crash_at_step(Path(tmp), backend, step, nth, rng, jobs)
                    n_kills += crashed
                    n_jobs += jobs
                    total.add(losses)
                    if rec is not None:
                        recoveries.append(rec)
                    if losses.total():
                        print(f"LOSS {backend} round {r} step {step}:{nth}: {losses.summary()}")
            with tempfile.TemporaryDirectory(prefix="optialloc-crash-") as tmp:
                done, losses, recs = random_kills(Path(tmp), backend, kills, rng, jobs * 2)
                n_kills += done
                n_jobs += jobs * 2
                total.add(losses)
                recoveries += recs
                if losses.total():
                    print(f"LOSS {backend} round {r} random kills: {losses.summary()}")
        figures[backend] = {
            "kills": n_kills,
            "jobs": n_jobs,
            "recovery_median_s": statistics.median(recoveries) if recoveries else float("nan"),
            "recovery_max_s": max(recoveries) if recoveries else float("nan"),
            "wall_s": time.monotonic() - started,
        }
    for backend, f in figures.items():
        print(
            f"crash campaign [{backend}]: {f['kills']:.0f} kill -9, {f['jobs']:.0f} jobs, "
            f"recovery (restart to first start) median {f['recovery_median_s']:.2f} s, "
            f"max {f['recovery_max_s']:.2f} s, wall {f['wall_s']:.0f} s"
        )
    return verdict(total)


def main() -> int:
    parser = campaign_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--kills", type=int, default=4, help="random kills per round")
    parser.add_argument("--backend", choices=[*BACKENDS, "both"], default="both")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    backends = list(BACKENDS) if args.backend == "both" else [args.backend]
    return run(args.rounds, args.jobs, args.kills, backends, args.seed)


if __name__ == "__main__":
    sys.exit(main())

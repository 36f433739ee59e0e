"""Fault campaign: the lab's other parts fail while `optialloc serve` works.

Scenarios (each on a fresh lab, jobs queued first, serve --exit-on-empty-queue):

- beanstalkd: killed (-9) and restarted `--restarts` times at random moments
  (beanstalk backend, binlog on);
- lock server: paddles (tests/paddles_server.py) answers 403 to lock_many for
  a while, then 503 to everything for half of `--outage-s`, then drops every
  connection for the other half, then comes back;
- runner: a missing program, a job hanging past max_job_time, a job killed by
  SIGKILL from outside the monitor, beside good jobs;
- state dir: on a small tmpfs filled to the last byte for `--outage-s`
  (needs root; skipped otherwise). Read-only mid-run cannot be staged: the
  kernel refuses a read-only remount while serve holds its files open;
- clock: the dispatcher's clock jumps 2 h forward and back between ticks
  while jobs run (in-process: tests/serve_support.Lab with its OffsetClock).

Verdict per scenario (`campaign_lab.Losses`): every good job ran exactly
once, every bad one buried with the expected reason, no lock, claim or open
journal row left, serve exits 0. Figures: per scenario, jobs and the time from
the end of the fault to the next job start.

Usage: nice -n 10 python scripts/campaign_faults.py [--outage-s 60] [--restarts 3]
       [--only NAME] [--seed 0]
Exit status 1 on any loss.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from campaign_lab import REPO, CampaignLab, Losses, campaign_parser, verdict

sys.path.insert(0, str(REPO / "tests"))
from inventory_support import fill_paddles
from paddles_server import FakePaddles
from serve_support import Lab, job_body, read_records, record_command

from optialloc.dispatch.journal import Journal


def _good(n: int, duration: str = "0.2") -> list[dict[str, object]]:
    return [job_body(1 + i % 2, run=f"run-{i % 3}", duration=duration) for i in range(n)]


def _first_start_after(records: Path, moment: float) -> float | None:
    starts = sorted(r[2] for r in read_records(records) if r[2] >= moment)
    return starts[0] - moment if starts else None


def _wait_first_start(records: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not read_records(records) and time.monotonic() < deadline:
        time.sleep(0.05)


def beanstalkd_restarts(root: Path, rng: random.Random, restarts: int, **_: object):
    lab = CampaignLab(root, "beanstalk")
    try:
        lab.put(_good(24))
        proc = lab.spawn()
        assert lab.beanstalkd is not None
        last = time.time()
        for _ in range(restarts):
            time.sleep(rng.uniform(0.5, 2.0))
            lab.beanstalkd.restart(kill=True)
            last = time.time()
        losses = lab.finish(proc)
        return losses, len(lab.expected), _first_start_after(lab.records, last)
    finally:
        lab.close()


def lock_server_outage(root: Path, rng: random.Random, outage_s: float, **_: object):
    with FakePaddles() as paddles:
        fill_paddles(paddles)
        lab = CampaignLab(
            root, "embedded", lock_server=paddles.url, results_server=paddles.url, lock_many=True
        )
        try:
            lab.put(_good(30, duration="0.3"))
            proc = lab.spawn()
            _wait_first_start(lab.records)
            time.sleep(rng.uniform(0.0, 1.0))
            paddles.busy_lock_many = 6  # 403: "Cannot lock an already-locked node"
            time.sleep(2.0)
            paddles.unavailable_until = time.monotonic() + outage_s / 2  # 503 to everything
            time.sleep(outage_s / 2)
            paddles.stall_after_locks = 0  # then every connection dropped
            paddles._stalled = True
            time.sleep(outage_s / 2)
            paddles.unstall()
            back = time.time()
            losses = lab.finish(proc)
            losses.leaked_locks += [f"paddles {n}" for n in paddles.locked_nodes()]
            return losses, len(lab.expected), _first_start_after(lab.records, back)
        finally:
            lab.close()


def runner_faults(root: Path, rng: random.Random, **_: object):
    # the script gets the job id and the nodes as $0 and $1
    lab = CampaignLab(root, "embedded", max_job_time=3, kill_grace_seconds=1,
                      runner_command="sh -c '{body[script]}' {job_id} {nodes}")  # fmt: skip
    try:
        good_script = 's=$(date +%s.%N); sleep 0.1; e=$(date +%s.%N); echo "$0 $1 $s $e" >> ' + str(
            lab.records
        )
        good = [job_body(1, run="good", script=good_script) for _ in range(10)]
        lab.put(good)
        bad = {
            "not found": job_body(1, run="missing", script="no-such-program-xyz"),
            "killed by the monitor": job_body(1, run="hang", script="sleep 600"),
            "SIGKILL": job_body(1, run="die", script="kill -KILL $$"),
        }
        ids = {why: lab.put([body])[0] for why, body in bad.items()}
        lab.expected = [j for j in lab.expected if j not in ids.values()]
        lab.expected_buried = set(ids.values())
        code, err = lab.serve()
        losses = lab.losses()
        journal = Journal(str(lab.state / "journal.sqlite"))
        try:
            for why, job_id in ids.items():
                reasons = " ".join(r.reason or "" for r in journal.rows_for(job_id))
                if why not in reasons:
                    losses.serve_failures.append(f"{why}: job {job_id} ended with {reasons!r}")
        finally:
            journal.close()
        if code != 0:
            losses.serve_failures.append(f"serve exit {code}: {err[-600:]}")
        return losses, len(good) + len(bad), None
    finally:
        lab.close()


def state_dir_faults(root: Path, rng: random.Random, outage_s: float, **_: object):
    if os.geteuid() != 0:
        print("state dir faults: skipped (needs root to mount a small tmpfs)")
        return Losses(), 0, None
    mount = root / "mnt"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], check=True)
    try:
        lab = CampaignLab(mount / "lab", "embedded", archive_base=str(root / "archive"))
        lab.records = root / "records.txt"  # outside the faulty file system
        lab.config.write_text(
            lab.config.read_text().replace(str(mount / "lab" / "records.txt"), str(lab.records))
        )
        try:
            lab.put(_good(30, duration="0.3"))
            proc = lab.spawn()
            _wait_first_start(lab.records)  # a fault mid-run, not at start-up
            time.sleep(rng.uniform(0.0, 1.0))
            # (read-only mid-run cannot be staged: the kernel refuses a read-only
            # remount while serve holds its SQLite files open for writing)
            filler = mount / "filler"
            subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"],
                           capture_output=True, check=False)  # fmt: skip
            time.sleep(outage_s)
            filler.unlink()
            back = time.time()
            losses = lab.finish(proc)
            return losses, len(lab.expected), _first_start_after(lab.records, back)
        finally:
            lab.close()
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def clock_jumps(root: Path, rng: random.Random, **_: object):
    records = root / "records.txt"
    lab = Lab(root, record_command(records))
    try:
        ids = [lab.put(run=f"run-{i % 3}", duration="0.3") for i in range(16)]
        jumps = 0
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            lab.tick()
            lab.clock.advance(rng.choice((7200.0, -7200.0)))  # type: ignore[attr-defined]
            jumps += 1
            if not lab.queue.pending() and not lab.dispatcher.handles():
                break
            time.sleep(0.1)
        lab.run_until_idle()
        losses = Losses()
        done = [r[0] for r in read_records(records)]
        losses.lost = [j for j in ids if j not in done]
        losses.twice = sorted({j for j in done if done.count(j) > 1})
        losses.open_rows = len(lab.journal.open_rows())
        losses.claimed = len(lab.queue.claimed())
        losses.unexpected_buried = [b.job_id for b in lab.queue.buried()]
        losses.leaked_locks = [n.name for n in lab.inventory.nodes() if n.locked]
        print(f"clock jumps: {jumps} jumps of +-2 h between ticks")
        return losses, len(ids), None
    finally:
        lab.close()


SCENARIOS: dict[str, Callable[..., tuple[Losses, int, float | None]]] = {
    "beanstalkd": beanstalkd_restarts,
    "lock-server": lock_server_outage,
    "runner": runner_faults,
    "state-dir": state_dir_faults,
    "clock": clock_jumps,
}


def run(outage_s: float, restarts: int, only: list[str] | None, seed: int) -> int:
    rng = random.Random(seed)
    total = Losses()
    for name, scenario in SCENARIOS.items():
        if only and name not in only:
            continue
        with tempfile.TemporaryDirectory(prefix=f"optialloc-fault-{name}-") as tmp:
            started = time.monotonic()
            losses, jobs, recovery = scenario(Path(tmp), rng, outage_s=outage_s, restarts=restarts)
            wall = time.monotonic() - started
        shown = f"{recovery:.1f} s" if recovery is not None else "n/a"
        print(
            f"faults [{name}]: {jobs} jobs, fault end to next start {shown}, wall {wall:.0f} s, "
            f"losses {losses.total()}"
        )
        if losses.total():
            print(f"  LOSS: {losses.summary()}")
            for line in losses.serve_failures[:4]:
                print("   ", line.replace("\n", "\n    "))
        total.add(losses)
    return verdict(total)


def main() -> int:
    parser = campaign_parser(__doc__)
    parser.add_argument("--outage-s", type=float, default=60.0)
    parser.add_argument("--restarts", type=int, default=3)
    parser.add_argument("--only", action="append", choices=sorted(SCENARIOS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    return run(args.outage_s, args.restarts, args.only, args.seed)


if __name__ == "__main__":
    sys.exit(main())

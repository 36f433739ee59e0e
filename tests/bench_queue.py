"""Benchmark: the job queue's view of 20,000 teuthology jobs in a real beanstalkd on loopback.

Run: python tests/bench_queue.py [--jobs 20000] [--runs 3]
Prints (medians of --runs runs, each from a fresh beanstalkd and store):
- put: 20,000 raw puts across 4 tubes, as teuthology-schedule does them;
- first tick: the first `pending()` (moves every job into the store, scans the bodies),
  wall and CPU time of this process;
- later tick: `pending()` with nothing new; and a tick that takes in 50 new jobs
  (the timed `pending()` ingests them: checked, see INGESTED) and claims 10;
- a new reader's first view of an already-ingested store (another process);
- `optialloc queue list` (subprocess, wall time) on the 20,000 jobs.
Targets (issue "Job queue"): later tick <= 50 ms, first tick <= 2 s.
Not collected by pytest (no `test_` prefix); figures go to docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import beanstalkc
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from optialloc.queue import store as queue_store  # noqa: E402
from optialloc.queue.beanstalk import BeanstalkQueue  # noqa: E402
from optialloc.queue.view import QueueView  # noqa: E402
from optialloc.queue.wire import Wire  # noqa: E402

#: Wall time per phase of the first tick, summed over its batches (seconds).
PHASES: dict[str, float] = {}
#: Jobs each `_ingest` call moved from beanstalkd into the store, in call order.
INGESTED: list[int] = []


def time_phase(owner: object, name: str, label: str) -> None:
    """Wrap owner.name so that its wall time is added to PHASES[label]."""
    original = getattr(owner, name)

    def timed(*args: object, **kwargs: object) -> object:
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            PHASES[label] = PHASES.get(label, 0.0) + time.perf_counter() - start

    setattr(owner, name, timed)


for _owner, _name, _label in (
    (Wire, "reserve_batch", "reserve (pipelined)"),
    (Wire, "stats_jobs", "stats-job (pipelined)"),
    (queue_store, "scan_many", "scan bodies (fields only)"),
    (queue_store.QueueStore, "insert", "scan + store, durably per batch"),
    (Wire, "read_deletes", "wait for beanstalkd's deletes"),
    (queue_store.QueueStore, "confirm_source_deleted", "record deletes"),
    (QueueView, "refresh", "build the view"),
):
    time_phase(_owner, _name, _label)


def count_ingests() -> None:
    """Record in INGESTED how many jobs each ingest took in (so a figure can say which
    call did the ingest it names)."""
    original = BeanstalkQueue._ingest

    def counted(self: BeanstalkQueue, tubes: set[str]) -> int:
        moved = original(self, tubes)
        INGESTED.append(moved)
        return moved

    BeanstalkQueue._ingest = counted  # type: ignore[method-assign,unused-ignore]


count_ingests()

TUBES = ("smithi", "mira", "gibba", "multi")


def teuthology_body(i: int) -> str:
    """A realistic body (about 1.3 KB, like a rados suite job) that differs per job."""
    tube = TUBES[i % 4]
    sha1 = f"{i:040x}"
    body = {
        "branch": "main",
        "description": f"rados/thrash/{{clusters/fixed-{1 + i % 4} tasks/job-{i}}}",
        "email": None,
        "first_in_suite": False,
        "last_in_suite": False,
        "machine_type": "smithi,mira" if tube == "multi" else tube,
        "name": f"user{i % 40}-2026-11-20_20:00:03-rados-main-distro-default-smithi",
        "no_nested_subset": False,
        "os_type": "ubuntu",
        "os_version": "22.04",
        "overrides": {
            "ceph": {
                "sha1": sha1,
                "log-ignorelist": ["\\(MDS_ALL_DOWN\\)", "\\(OSD_DOWN\\)"],
                "conf": {"osd": {"debug osd": 20, "osd shutdown pgref assert": True}},
            },
            "install": {"ceph": {"flavor": "default", "sha1": sha1}},
        },
        "owner": f"scheduled_user{i % 40}@teuthology",
        "priority": (75, 100, 200, 1000)[i % 4],
        "roles": [[f"mon.{c}", f"osd.{n}"] for n, c in zip(range(1 + i % 4), "abcd", strict=False)],
        "seed": i,
        "sha1": sha1,
        "suite": "rados",
        "suite_branch": "main",
        "suite_sha1": sha1,
        "tasks": [
            {"install": None},
            {"ceph": None},
            {"workunit": {"clients": {"client.0": ["rados/test.sh", "rados/test_pool.sh"]}}},
        ],
        "teuthology_branch": "main",
        "tube": tube,
        "verbose": False,
    }
    return yaml.safe_dump(body)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_beanstalkd(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    binary = shutil.which("beanstalkd")
    if not binary:
        sys.exit("beanstalkd is not installed (apt-get install beanstalkd)")
    port = free_port()
    binlog = workdir / "binlog"
    binlog.mkdir()
    proc = subprocess.Popen([binary, "-l", "127.0.0.1", "-p", str(port), "-b", str(binlog)])
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return proc, port
        except OSError:
            time.sleep(0.02)
    sys.exit("beanstalkd did not start")


def put_all(port: int, bodies: list[str]) -> float:
    conn = beanstalkc.Connection("127.0.0.1", port, parse_yaml=yaml.safe_load)
    start = time.perf_counter()
    for i, text in enumerate(bodies):
        conn.use(TUBES[i % 4])
        conn.put(text, priority=(75, 100, 200, 1000)[i % 4], ttr=86400)
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


def one_run(bodies: list[str], later_reps: int) -> dict[str, float]:
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        proc, port = start_beanstalkd(workdir)
        try:
            figures["put"] = put_all(port, bodies)
            store = workdir / "state" / "queue-beanstalk.sqlite"
            queue = BeanstalkQueue(str(store), "127.0.0.1", port)
            PHASES.clear()
            start, cpu = time.perf_counter(), time.process_time()
            assert len(queue.pending()) == len(bodies)
            figures["first tick"] = time.perf_counter() - start
            figures["first tick, CPU time of this process"] = time.process_time() - cpu
            figures.update({f"  first tick: {k}": v for k, v in PHASES.items()})
            PHASES.clear()
            times = []
            for _ in range(later_reps):
                start = time.perf_counter()
                queue.pending()
                times.append(time.perf_counter() - start)
            figures["later tick, no change"] = statistics.median(times)
            # A later tick with new work: its `pending()` takes in the 50 jobs put since
            # the last tick (no other call may ingest them first: checked), then it
            # claims 10 of them (the tick's starts).
            times, ingest_times, claim_times = [], [], []
            phases: dict[str, list[float]] = {}
            for rep in range(later_reps):
                put_all(port, [teuthology_body(len(bodies) + rep * 50 + k) for k in range(50)])
                INGESTED.clear()
                PHASES.clear()
                start = time.perf_counter()
                view = queue.pending()
                ingested = time.perf_counter()
                for job in view[:10]:
                    queue.claim(job.job_id)
                end = time.perf_counter()
                if sum(INGESTED) != 50:
                    sys.exit(f"the timed later tick ingested {INGESTED}, not the 50 new jobs")
                times.append(end - start)
                ingest_times.append(ingested - start)
                claim_times.append(end - ingested)
                for label, spent in PHASES.items():
                    phases.setdefault(label, []).append(spent)
            figures["later tick, 50 new ingested + 10 claims"] = statistics.median(times)
            figures["  of which pending(), ingesting the 50"] = statistics.median(ingest_times)
            figures["  of which the 10 claims"] = statistics.median(claim_times)
            for label, spans in phases.items():
                figures[f"    50 new: {label}"] = statistics.median(spans)
            # The background check of the 20,000 scanned bodies (another process).
            start = time.perf_counter()
            queue.validator.wait(600)
            figures["background full parse, left after the ticks"] = time.perf_counter() - start
            figures["rows still unchecked after it"] = float(len(queue.store.unchecked(10**6)))
            other = BeanstalkQueue(str(store), "127.0.0.1", port)
            start = time.perf_counter()
            other.pending()
            figures["new reader, first view"] = time.perf_counter() - start
            other.close()
            queue.close()
            config = workdir / "c.yaml"
            config.write_text(
                yaml.safe_dump(
                    {
                        "queue_backend": "beanstalk",
                        "queue_port": port,
                        "state_dir": str(workdir / "cli-state"),
                    }
                )
            )
            # The CLI's store is separate: its first call ingests nothing (all moved already),
            # so put the jobs again for the CLI's own store, ingest once, then time listings.
            put_all(port, bodies)
            command = [sys.executable, "-m", "optialloc", "--config", str(config), "queue", "list"]
            subprocess.run(command, check=True, capture_output=True, cwd=REPO)
            times = []
            for _ in range(3):
                start = time.perf_counter()
                subprocess.run(command, check=True, capture_output=True, cwd=REPO)
                times.append(time.perf_counter() - start)
            figures["`optialloc queue list` (all jobs)"] = statistics.median(times)
        finally:
            proc.kill()
            proc.wait()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--later-reps", type=int, default=15)
    args = parser.parse_args()
    bodies = [teuthology_body(i) for i in range(args.jobs)]
    mean_size = sum(len(b) for b in bodies) / len(bodies)
    print(f"load average {os.getloadavg()[0]:.1f} at start")
    print(
        f"{args.jobs} jobs, mean body {mean_size:.0f} bytes, {args.runs} runs, "
        f"python {sys.version.split()[0]}, {os.cpu_count()} cores"
    )
    runs = []
    for run in range(args.runs):
        runs.append(one_run(bodies, args.later_reps))
        tick = runs[-1]["later tick, 50 new ingested + 10 claims"] * 1000
        print(f"run {run + 1}: later tick, 50 new ingested + 10 claims {tick:.1f} ms", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    for key in runs[0]:
        values = [r[key] for r in runs]
        unit, scale = ("ms", 1000.0) if statistics.median(values) < 1 else ("s", 1.0)
        if key.startswith("rows "):
            unit, scale = ("rows", 1.0)
        print(
            f"{key:42s} median {statistics.median(values) * scale:8.1f} {unit}"
            f"   (runs: {', '.join(f'{v * scale:.1f}' for v in values)} {unit})"
        )


if __name__ == "__main__":
    main()

"""Benchmark: the report outbox against the paddles look-alike on loopback.

Prints
1. delivery rate: jobs reported per second (each job: queued, running, pass:
   3 reports, POST then PUT as against paddles) with the server up all along,
   and what one `report()` call costs the dispatcher's thread (microseconds);
2. an outage: `--outage-s` seconds (default 60) with the server down while
   `--jobs` jobs (default 1,000) go queued -> running -> pass, their reports
   spread over the outage: the outbox's size at the end of the outage (reports
   and bytes on disk), and how long it takes to deliver everything once the
   server is back (the sender probes with back-off, at most 10 s apart).

    nice -n 10 python3 tests/bench_outbox.py                # about 80 s
    nice -n 10 python3 tests/bench_outbox.py --outage-s 10 --repeat 3

Not a pytest test (no timed assertions); figures for docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from conftest import free_port
from serve_support import scheduled_job

from optialloc.domain import Job
from optialloc.inventory.paddles_client import PaddlesClient
from optialloc.inventory.reporter import OutboxReporter

RUN = "teuthology-2026-12-01_20:00:03-rados-main-distro-default-smithi"


def job(i: int) -> Job:
    return scheduled_job(i, nodes=2)


SERVER = """
import sys, time
sys.path.insert(0, {tests!r})
from paddles_server import FakePaddles
FakePaddles(port={port}).start()
print("ready", flush=True)
sys.stdin.read()
"""


class Server:
    """The look-alike in its own process (as paddles is): no GIL shared with the sender."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> Server:
        code = SERVER.format(tests=str(Path(__file__).resolve().parent), port=self.port)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def statuses(self) -> list[str]:
        jobs = httpx.get(f"{self.url}/runs/{RUN}/jobs/", timeout=30).json()
        return [j["status"] for j in jobs]


def reporter(url: str, path: str) -> OutboxReporter:
    client = PaddlesClient(url, setting="results_server", attempts=1, timeout=5.0, cooldown_s=0.0)
    return OutboxReporter(client, path)


def one_job(rep: OutboxReporter, i: int) -> None:
    rep.report(job(i), "queued")
    rep.report(
        job(i),
        "running",
        targets={f"ubuntu@smithi{i % 100:03d}": "ssh-ed25519 KEY"},
        pid=1000 + i,
        started=datetime.now(UTC).isoformat(),
    )
    rep.report(job(i), "pass", exit_status=0)


def finish(rep: OutboxReporter, server: Server, jobs: int) -> None:
    """Wait until the outbox is empty, close it and check every record ended as pass."""
    while rep.pending():
        time.sleep(0.01)
    rep.close()
    statuses = server.statuses()
    server.stop()
    assert statuses == ["pass"] * jobs, "a record did not end as pass"


def delivery(jobs: int) -> tuple[float, float]:
    """(jobs reported per second, microseconds per report() call)."""
    with tempfile.TemporaryDirectory() as tmp:
        server = Server().start()
        rep = reporter(server.url, os.path.join(tmp, "reports.sqlite"))
        began = time.perf_counter()
        for i in range(jobs):
            one_job(rep, i)
        written = time.perf_counter() - began
        finish(rep, server, jobs)
        elapsed = time.perf_counter() - began
        return jobs / elapsed, written / (3 * jobs) * 1e6


def outage(jobs: int, outage_s: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        server = Server().start()
        path = os.path.join(tmp, "reports.sqlite")
        rep = reporter(server.url, path)
        server.stop()
        began = time.monotonic()
        for i in range(jobs):  # spread over the outage, as a busy lab would
            one_job(rep, i)
            time.sleep(max(0.0, began + outage_s * (i + 1) / jobs - time.monotonic()))
        time.sleep(max(0.0, began + outage_s - time.monotonic()))
        size = rep.pending()
        size_bytes = sum(
            os.path.getsize(path + ext) for ext in ("", "-wal") if os.path.exists(path + ext)
        )
        back = time.monotonic()
        server.start()  # a new process on the same port (an empty database: records are created)
        finish(rep, server, jobs)
        drain_s = time.monotonic() - back
        return {
            "reports": size,
            "bytes": size_bytes,
            "drain_s": drain_s,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--outage-s", type=float, default=60.0)
    parser.add_argument("--repeat", type=int, default=3, help="delivery runs (median)")
    args = parser.parse_args()
    rates, costs = [], []
    for _ in range(args.repeat):
        rate, cost = delivery(args.jobs)
        rates.append(rate)
        costs.append(cost)
    print(
        f"delivery, server up: {statistics.median(rates):.0f} jobs/s reported "
        f"({3 * statistics.median(rates):.0f} reports/s; runs: "
        + ", ".join(f"{r:.0f}" for r in rates)
        + f"); report() costs the tick {statistics.median(costs):.0f} us per call"
    )
    result = outage(args.jobs, args.outage_s)
    print(
        f"outage of {args.outage_s:.0f} s, {args.jobs} jobs: outbox {result['reports']:.0f} "
        f"reports, {result['bytes'] / 1e6:.2f} MB on disk; delivered "
        f"{result['drain_s']:.1f} s after the server came back"
    )


if __name__ == "__main__":
    main()

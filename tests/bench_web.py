"""Benchmark the web view at Sepia scale (not collected by pytest): prints figures.

State: 20,000 queued 1-4-node jobs in the embedded queue (3 machine types,
runs of 200 jobs with one owner and priority each), 330 nodes of which all
but 20 are locked by other users, a journal with one real dispatcher tick
(positions and reasons of every waiting job) and its `last_tick.json`.
`optialloc web --no-estimates` runs as its own process on a free loopback port.

1. `GET /api/queue` first page (100 jobs), and with an owner filter: p50/p90
   over `--requests` sequential requests (keep-alive client).
2. `GET /metrics`: p50/p90 the same way.
3. The page's first paint in Debian's chromium (Playwright, `executable_path`):
   the `first-contentful-paint` entry of a fresh load of `/`, median of 5.
4. Tick time under load: a dispatcher (in this process, as serve runs it)
   ticks over the same state while the web server is idle, then while
   another process requests the API at 50 requests/s (queue pages, filters,
   page fragments, /metrics); alternated `--runs` times, `--ticks` ticks per
   phase. Figure: median tick of each phase and the relative change.

Usage: nice -n 10 python tests/bench_web.py [--runs 3] [--ticks 30] [--queued 20000]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import free_port  # noqa: E402
from serve_support import Lab  # noqa: E402

from optialloc.dispatch.dispatcher import Dispatcher  # noqa: E402
from optialloc.dispatch.last_tick import TickRecorder  # noqa: E402
from optialloc.domain import Node  # noqa: E402
from optialloc.inventory.embedded import EmbeddedInventory  # noqa: E402
from optialloc.queue.embedded import EmbeddedQueue  # noqa: E402
from optialloc.queue.store import NewJob  # noqa: E402
from optialloc.teuthology import dump_body  # noqa: E402

TYPES = (("smithi", 200), ("mira", 80), ("gibba", 50))  # 330 nodes
FREE = 20
CHROMIUM = "/usr/bin/chromium"
LOAD_RATE = 50.0
#: As `serve` starts it (niced), without the estimator (its own niced process, not measured)
WEB_ARGS = ("--no-estimates", "--nice", "10")


def lab_nodes() -> list[Node]:
    return [
        Node(f"{t}{i:04d}", t, os_type="ubuntu", os_version="22.04", arch="x86_64")
        for t, n in TYPES
        for i in range(n)
    ]


def make_state(state: Path, queued: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    state.mkdir(parents=True)
    nodes = lab_nodes()
    inventory = EmbeddedInventory(str(state / "inventory.sqlite"), "optialloc@bench")
    inventory.import_nodes(nodes)
    other = EmbeddedInventory(str(state / "inventory.sqlite"), "someone@else")
    other.lock([n.name for n in nodes[: len(nodes) - FREE]], "held by other users")
    other.close()
    inventory.close()
    run_priority = [rng.choice((75, 100, 200, 1000)) for _ in range(queued // 200 + 1)]
    jobs = []
    now = time.time()
    for i in range(queued):
        machine_type = rng.choices([t for t, _ in TYPES], weights=[n for _, n in TYPES])[0]
        body = {
            "name": f"bench-run-{i // 200}",
            "owner": f"scheduled_u{(i // 200) % 7}@lab",
            "machine_type": machine_type,
            "priority": run_priority[i // 200],
            "roles": [[f"osd.{k}"] for k in range(rng.randint(1, 4))],
        }
        jobs.append(
            NewJob(
                tube=machine_type,
                body=dump_body(body),
                priority=body["priority"],  # type: ignore[arg-type]
                ttr=86400,
                queued_at=now - (queued - i),
            )
        )
    queue = EmbeddedQueue(str(state / "queue.sqlite"))
    queue.store.insert(jobs)
    queue.close()


def dispatcher_for(state: Path) -> tuple[Lab, TickRecorder]:
    """The tests' lab wiring (embedded queue, inventory, journal, command runner) on `state`."""
    return Lab(state, "true", nodes=lab_nodes()), TickRecorder(str(state))


def start_web(tmp: Path, state: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    config = tmp / "config.yaml"
    config.write_text(yaml.safe_dump({"state_dir": str(state), "http_port": port}))
    log = open(tmp / "web.log", "wb")  # noqa: SIM115 (lives as long as the server)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "optialloc",
            "--config",
            str(config),
            "web",
            "--no-estimates",
            "--nice",
            "10",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/api/queue?limit=1", timeout=5).json()["total"] > 0:
                return process, base
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(0.2)
    raise SystemExit("web server not ready within 180 s")


def latencies(client: httpx.Client, url: str, count: int) -> tuple[float, float]:
    """p50 and p90 of `count` GETs; a `{i}` in `url` makes each request a new one
    (answers are cached per view and query string: this measures the work itself)."""
    times = []
    for i in range(count):
        t0 = time.perf_counter()
        answer = client.get(url.format(i=i))
        times.append(time.perf_counter() - t0)
        answer.raise_for_status()
    times.sort()
    return statistics.median(times), times[int(0.9 * (len(times) - 1))]


def first_paint(base: str, loads: int = 5) -> tuple[float, float]:
    from playwright.sync_api import sync_playwright

    paints, loaded = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            for _ in range(loads):
                page = browser.new_page()
                page.goto(base + "/", wait_until="load")
                fcp = page.evaluate(
                    "() => performance.getEntriesByName('first-contentful-paint')[0].startTime"
                )
                load = page.evaluate(
                    "() => performance.getEntriesByType('navigation')[0].loadEventEnd"
                )
                paints.append(float(fcp) / 1000)
                loaded.append(float(load) / 1000)
                page.close()
        finally:
            browser.close()
    return statistics.median(paints), statistics.median(loaded)


def load_main(base: str) -> None:
    """`--load URL`: request the API at LOAD_RATE per second until SIGTERM; print counts."""
    stop = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    paths = [
        "/api/queue",
        "/api/queue?owner=scheduled_u3@lab",
        "/api/queue?tube=mira&offset=100",
        "/fragments/queue",
        "/metrics",
        "/api/nodes",
        "/api/runs",
        "/api/tick",
        "/fragments/overview",
        "/api/usage",
    ]
    done = errors = 0
    lock = threading.Lock()

    def one(path: str) -> None:
        nonlocal errors
        try:
            ok = client.get(path).status_code == 200
        except httpx.HTTPError:
            ok = False
        if not ok:
            with lock:
                errors += 1

    # a few requests in flight at once: the rate holds even when one answer is slow
    with (
        httpx.Client(base_url=base, timeout=30) as client,
        concurrent.futures.ThreadPoolExecutor(8) as pool,
    ):
        print("ready", flush=True)
        start = time.monotonic()
        while not stop:
            wait = start + done / LOAD_RATE - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            pool.submit(one, paths[done % len(paths)])
            done += 1
    elapsed = time.monotonic() - start
    print(f"{done} requests in {elapsed:.1f} s ({done / elapsed:.1f}/s), {errors} errors")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tick_phase(dispatcher: Dispatcher, recorder: TickRecorder, ticks: int) -> float:
    walls = []
    for _ in range(ticks):
        time.sleep(0.05)
        report = dispatcher.tick()
        recorder.record(report)
        walls.append(report.tick_s)
    return statistics.median(walls)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queued", type=int, default=20000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ticks", type=int, default=30)
    parser.add_argument("--load", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        load_main(args.load)
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="optialloc-bench-web-"))
    web = None
    try:
        state = tmp / "state"
        t0 = time.perf_counter()
        make_state(state, args.queued)
        lab, recorder = dispatcher_for(state)
        dispatcher = lab.dispatcher
        recorder.record(dispatcher.tick())  # positions and reasons of every waiting job
        validator = getattr(dispatcher.queue, "validator", None)
        if validator is not None:
            validator.wait(300)  # the background full parse of the bulk insert
        print(f"state: {args.queued} queued, 330 nodes ({time.perf_counter() - t0:.0f} s)")
        web, base = start_web(tmp, state)
        with httpx.Client(base_url=base, timeout=30) as client:
            latencies(client, "/api/queue", 10)  # warm up
            p50, p90 = latencies(client, "/api/queue", args.requests)
            print(f"/api/queue first page: p50 {p50 * 1000:.1f} ms, p90 {p90 * 1000:.1f} ms")
            p50, p90 = latencies(client, "/api/queue?n={i}", args.requests)
            print(
                f"/api/queue first page, uncached: p50 {p50 * 1000:.1f} ms, p90 {p90 * 1000:.1f} ms"
            )
            p50, p90 = latencies(client, "/api/queue?owner=scheduled_u3@lab&n={i}", args.requests)
            print(
                f"/api/queue?owner=..., uncached: p50 {p50 * 1000:.1f} ms, p90 {p90 * 1000:.1f} ms"
            )
            p50, p90 = latencies(client, "/metrics", args.requests)
            print(f"/metrics: p50 {p50 * 1000:.1f} ms, p90 {p90 * 1000:.1f} ms")
            p50, p90 = latencies(client, "/metrics?n={i}", args.requests)
            print(f"/metrics, uncached: p50 {p50 * 1000:.1f} ms, p90 {p90 * 1000:.1f} ms")
        fcp, load_event = first_paint(base)
        print(f"page first paint (chromium, median of 5): {fcp * 1000:.0f} ms", end="")
        print(f"; load event {load_event * 1000:.0f} ms")

        idle_runs: list[float] = []
        load_runs: list[float] = []
        cpu_per_request: list[float] = []
        idle_cpu: list[float] = []
        for run in range(args.runs):
            # alternate the order so that a drift over time does not favour one phase
            for loaded in (False, True) if run % 2 == 0 else (True, False):
                if not loaded:
                    cpu0, t0 = cpu_seconds(web.pid), time.monotonic()
                    idle_runs.append(tick_phase(dispatcher, recorder, args.ticks))
                    idle_cpu.append((cpu_seconds(web.pid) - cpu0) / (time.monotonic() - t0))
                    continue
                load = subprocess.Popen(
                    [sys.executable, __file__, "--load", base], stdout=subprocess.PIPE, text=True
                )
                assert load.stdout is not None and load.stdout.readline().strip() == "ready"
                cpu0 = cpu_seconds(web.pid)
                load_runs.append(tick_phase(dispatcher, recorder, args.ticks))
                load.send_signal(signal.SIGTERM)
                out, _ = load.communicate(timeout=60)
                served = int(out.split()[0])
                cpu_per_request.append((cpu_seconds(web.pid) - cpu0) / max(served, 1))
            print(
                f"run {run + 1}: median tick idle {idle_runs[-1] * 1000:.1f} ms, "
                f"at 50 req/s {load_runs[-1] * 1000:.1f} ms (load: {out.strip()})"
            )
        idle_m, load_m = statistics.median(idle_runs), statistics.median(load_runs)
        print(
            "web server CPU while idle (background refreshes of a changing queue): "
            f"{statistics.median(idle_cpu) * 100:.0f} % of one core"
        )
        cpu = statistics.median(cpu_per_request)
        print(
            f"web server CPU per request under load: {cpu * 1000:.1f} ms "
            f"(50 req/s = {cpu * 50 * 100:.0f} % of one core, refreshes included)"
        )
        print(
            f"tick median over runs: idle {idle_m * 1000:.1f} ms, at 50 req/s "
            f"{load_m * 1000:.1f} ms ({(load_m / idle_m - 1) * 100:+.1f} %)"
        )
        lab.close()
    finally:
        if web is not None:
            web.terminate()
            web.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

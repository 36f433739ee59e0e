"""Several processes lock overlapping node sets in one embedded inventory at once.

Each worker process has its own SQLite connection, as the dispatcher and the
CLI do. While a worker holds a node it owns a marker file for it, created
with O_EXCL after `lock` returns and removed before `unlock`: if two jobs ever
held one node at the same time, the second marker creation fails and is
recorded. No timing is involved in that check.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import threading
from collections import deque
from pathlib import Path
from typing import Any

from inventory_support import paddles_client
from paddles_server import FakePaddles

from optialloc.domain import Node
from optialloc.errors import LockBusy
from optialloc.inventory.embedded import EmbeddedInventory
from optialloc.inventory.paddles import PaddlesInventory

POOL = [f"smithi{i:03d}" for i in range(1, 11)]
WORKERS = 4
ITERATIONS = 150


class Worker:
    """One process's jobs: lock random sets of 1-4 nodes, hold up to two jobs, release."""

    def __init__(self, path: str, markers: str, index: int) -> None:
        self.rng = random.Random(index)
        self.index = index
        self.markers = markers
        # Half the workers share one locked_by (like the dispatcher and the CLI on one
        # host), so only the description tells their jobs apart.
        locked_by = "optialloc@host" if index % 2 else f"other{index}"
        self.inventory = EmbeddedInventory(path, locked_by)
        self.held: deque[tuple[list[str], str]] = deque()
        self.taken = self.busy = 0
        self.clashes: list[str] = []

    def acquire(self, step: int) -> None:
        names = self.rng.sample(POOL, self.rng.randint(1, 4))
        description = f"/archive/w{self.index}/{step}"
        try:
            self.inventory.lock(names, description)
        except LockBusy:
            self.busy += 1
            return
        self.taken += 1
        for name in names:
            try:
                fd = os.open(Path(self.markers, name), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                self.clashes.append(f"{name} locked for {description} while another job held it")
                continue
            os.write(fd, description.encode())
            os.close(fd)
        self.held.append((names, description))

    def release(self) -> None:
        names, description = self.held.popleft()
        for name in names:
            marker = Path(self.markers, name)
            owner = marker.read_text() if marker.exists() else "nobody"
            if owner != description:
                self.clashes.append(f"{name}: marker of {owner} while {description} held it")
            else:
                marker.unlink()
        self.inventory.unlock(names, description)

    def run(self) -> None:
        for step in range(ITERATIONS):
            self.acquire(step)
            while len(self.held) > 1 or (self.held and self.rng.random() < 0.4):
                self.release()
        while self.held:
            self.release()


def worker(path: str, markers: str, index: int, start: Any, results: Any) -> None:
    """Process entry point: always reports, so a crash fails the test with its reason."""
    state = Worker(path, markers, index)
    start.wait()
    try:
        state.run()
    except Exception as exc:
        state.clashes.append(f"worker {index} crashed: {exc!r}")
    state.inventory.close()
    results.put((index, state.taken, state.busy, state.clashes))


def test_no_node_is_ever_held_by_two_jobs(tmp_path: Path) -> None:
    path = str(tmp_path / "inventory.sqlite")
    markers = tmp_path / "markers"
    markers.mkdir()
    setup = EmbeddedInventory(path, "setup")
    setup.import_nodes([Node(name, "smithi") for name in POOL])
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(WORKERS)
    results = context.Queue()
    procs = [
        context.Process(target=worker, args=(path, str(markers), i, start, results))
        for i in range(WORKERS)
    ]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=300) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
        assert proc.exitcode == 0
    clashes = [clash for _, _, _, found in outcomes for clash in found]
    assert clashes == []
    assert sum(taken for _, taken, _, _ in outcomes) > 0
    assert sum(busy for _, _, busy, _ in outcomes) > 0  # the workers did contend
    assert not any(node.locked for node in setup.nodes())
    assert list(markers.iterdir()) == []


def test_paddles_lockers_racing_never_share_a_node_nor_leave_partial_locks() -> None:
    """Threads with their own paddles adapters race for overlapping sets on one server.

    paddles locks node by node, so two exact-mode lockers interleave their
    calls; each must roll back what it took when it loses a node.
    """
    holders: dict[str, str] = {}
    guard = threading.Lock()
    clashes: list[str] = []
    counts = {"taken": 0, "busy": 0}

    def run(server_url: str, index: int) -> None:
        rng = random.Random(index)
        locked_by = "optialloc@host" if index % 2 else f"other{index}"
        inventory = PaddlesInventory(paddles_client(server_url), locked_by)
        held: deque[tuple[list[str], str]] = deque()

        def release() -> None:
            names, description = held.popleft()
            with guard:
                for name in names:
                    holders.pop(name, None)
            inventory.unlock(names, description)

        for step in range(40):
            names = rng.sample(POOL, rng.randint(1, 4))
            description = f"/archive/t{index}/{step}"
            try:
                inventory.lock(names, description)
            except LockBusy:
                with guard:
                    counts["busy"] += 1
            else:
                with guard:
                    counts["taken"] += 1
                    for name in names:
                        if name in holders:
                            clashes.append(f"{name}: {description} while {holders[name]} held it")
                        holders[name] = description
                held.append((names, description))
            while len(held) > 1 or (held and rng.random() < 0.4):
                release()
        while held:
            release()

    with FakePaddles() as server:
        for name in POOL:
            server.add_node(name, "smithi")
        threads = [threading.Thread(target=run, args=(server.url, i)) for i in range(WORKERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert clashes == []
        assert counts["taken"] > 0 and counts["busy"] > 0
        assert server.locked_nodes() == {}  # every loser rolled back what it took

"""Helpers for the web tests: a lab state made by a real dispatcher, a live `optialloc web`."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import yaml
from conftest import REPO, free_port
from serve_support import Lab, lab_nodes

from optialloc.dispatch.last_tick import TickRecorder

#: Jobs `make_lab` queues: (nodes, run, owner, priority); 4 smithi + 2 mira nodes in the lab.
JOBS = [
    (2, "run-big", "scheduled_alice@lab", 100),
    (2, "run-big", "scheduled_alice@lab", 100),
    (1, "run-small", "scheduled_bob@lab", 50),
    (1, "run-small", "scheduled_bob@lab", 50),
    (3, "run-small", "scheduled_bob@lab", 50),
    (1, "run-low", "scheduled_carol@lab", 900),
    (2, "run-low", "scheduled_carol@lab", 900),
]


def make_lab(state: Path) -> dict[str, Any]:
    """A state dir after one real dispatcher tick: some jobs running (long), the rest queued
    with positions and reasons, a last-tick record; returns what the test needs to know."""
    state.mkdir(parents=True, exist_ok=True)
    lab = Lab(state, "sleep 300", nodes=lab_nodes(4) + lab_nodes(2, "mira"))
    try:
        ids = [
            lab.put(nodes, run=run, owner=owner, priority=priority)
            for nodes, run, owner, priority in JOBS
        ]
        report = lab.tick()
        TickRecorder(str(state)).record(report)
        pids = [h.pid for h in lab.dispatcher.handles()]
        return {"ids": ids, "started": list(report.started), "pids": pids}
    finally:
        lab.close()


def stop_jobs(pids: list[int]) -> None:
    """Kill the process groups of the test's long jobs (serve leaves jobs running)."""
    for pid in pids:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, 9)


def write_config(tmp: Path, state: Path, port: int, **values: object) -> tuple[Path, str]:
    """A config for `state` with an admin token file; (config path, token)."""
    token = secrets.token_urlsafe(24)
    token_file = tmp / "admin.token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    config = {
        "state_dir": str(state),
        "http_port": port,
        "admin_token_file": str(token_file),
        "pulpito_url": "http://pulpito.example.com/",
        "locked_by": "optialloc@test",
        **values,
    }
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, token


def wait_http(url: str, timeout: float = 60.0) -> None:
    """Wait until `url` answers 200 (a hang guard, not a speed check)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} not answering within {timeout} s")


@contextmanager
def web_server(config: Path, log: Path, *extra: str) -> Iterator[str]:
    """`optialloc web` as a real subprocess on the config's port; yields its base URL."""
    port = int(yaml.safe_load(config.read_text())["http_port"])
    with open(log, "wb") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "optialloc", "--config", str(config), "web", *extra],
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/healthz")
        yield base
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def new_port() -> int:
    return free_port()


@contextmanager
def lab_and_web(tmp: Path) -> Iterator[tuple[str, str, Path, dict[str, Any], Path]]:
    """`make_lab` in `tmp`, then `optialloc web --no-estimates` over it:
    yields (base URL, admin token, state dir, the lab's facts, config path)."""
    state = tmp / "state"
    lab = make_lab(state)
    config, token = write_config(tmp, state, new_port())
    try:
        with web_server(config, tmp / "web.log", "--no-estimates") as base:
            yield base, token, state, lab, config
    finally:
        stop_jobs(lab["pids"])

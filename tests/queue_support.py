"""Helpers for the job-queue tests: bodies, raw beanstalkd access, a cuttable loopback proxy."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import beanstalkc
import yaml
from conftest import FIXTURES

from optialloc.queue.beanstalk import BeanstalkQueue
from optialloc.queue.embedded import EmbeddedQueue

COMPAT_BODY = (FIXTURES / "bodies" / "teuthology-compat.yaml").read_text()


def body(
    marker: str,
    *,
    priority: int = 1000,
    machine_type: str = "smithi",
    nodes: int = 1,
    run: str = "run-a",
    owner: str = "scheduled_alice@lab",
) -> str:
    """A teuthology-style body whose description carries `marker`, to find it again."""
    data: dict[str, Any] = {
        "name": run,
        "owner": owner,
        "priority": priority,
        "machine_type": machine_type,
        "tube": machine_type if "," not in machine_type else "multi",
        "description": f"marker={marker}",
        "roles": [[f"osd.{i}"] for i in range(nodes)],
        "tasks": [{"install": None}],
        "first_in_suite": False,
        "last_in_suite": False,
        "verbose": False,
    }
    return yaml.safe_dump(data)


def marker_of(description: str | None) -> str:
    assert description and description.startswith("marker="), description
    return description.removeprefix("marker=")


def raw(port: int) -> beanstalkc.Connection:
    """A plain beanstalkc connection, as teuthology opens it."""
    return beanstalkc.Connection("127.0.0.1", port, parse_yaml=yaml.safe_load)


def raw_put(port: int, tube: str, text: str, priority: int, ttr: int = 86400) -> int:
    """Put one job exactly as teuthology-schedule does; returns its beanstalk id."""
    conn = raw(port)
    try:
        conn.use(tube)
        return int(conn.put(text, priority=priority, ttr=ttr))
    finally:
        conn.close()


def server_counts(port: int) -> dict[str, int]:
    """beanstalkd's own totals: ready, reserved, buried, delayed jobs."""
    conn = raw(port)
    try:
        stats = conn.stats()
    finally:
        conn.close()
    return {k: int(stats[f"current-jobs-{k}"]) for k in ("ready", "reserved", "buried", "delayed")}


def open_embedded(tmp: Path) -> EmbeddedQueue:
    return EmbeddedQueue(str(tmp / "queue.sqlite"))


def open_beanstalk(tmp: Path, port: int, retry_s: float = 5.0) -> BeanstalkQueue:
    return BeanstalkQueue(str(tmp / "bq.sqlite"), "127.0.0.1", port, retry_s=retry_s)


class Proxy:
    """A TCP proxy on 127.0.0.1 to `target_port` whose connections can be cut at will."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._socks += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for s in (src, dst):
            with suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Drop every open connection (new ones are still accepted)."""
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            with suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.cut()


@contextmanager
def proxy_to(port: int) -> Iterator[Proxy]:
    proxy = Proxy(port)
    try:
        yield proxy
    finally:
        proxy.close()

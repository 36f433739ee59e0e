"""Shared test fixtures: a real beanstalkd on a free loopback port, temp state dirs."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "fixtures"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_listening(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"beanstalkd did not listen on 127.0.0.1:{port} within {timeout} s")


@dataclass
class BeanstalkdProcess:
    """A real beanstalkd bound to 127.0.0.1, with a binlog so it survives restarts."""

    port: int
    binlog_dir: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("beanstalkd")
        assert binary, "beanstalkd binary missing"
        self.proc = subprocess.Popen(
            [binary, "-l", "127.0.0.1", "-p", str(self.port), "-b", str(self.binlog_dir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_listening(self.port)

    def stop(self, kill: bool = False) -> None:
        if self.proc and self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self, kill: bool = True) -> None:
        self.stop(kill=kill)
        self.start()


def _require_beanstalkd() -> None:
    if shutil.which("beanstalkd"):
        return
    if os.environ.get("OPTIALLOC_REQUIRE_BEANSTALKD") or os.environ.get("CI"):
        pytest.fail("beanstalkd is required here: install it (apt-get install beanstalkd)")
    pytest.skip("beanstalkd not installed (bash scripts/test.sh installs it)")


@pytest.fixture
def beanstalkd(tmp_path: Path) -> Iterator[BeanstalkdProcess]:
    """A fresh beanstalkd per test, stopped afterwards."""
    _require_beanstalkd()
    binlog = tmp_path / "binlog"
    binlog.mkdir()
    server = BeanstalkdProcess(port=free_port(), binlog_dir=binlog)
    server.start()
    try:
        yield server
    finally:
        server.stop(kill=True)

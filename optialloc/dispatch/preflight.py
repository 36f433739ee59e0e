"""`serve`'s start-up checks: fail loudly at start, not silently per job.

- `check_runner(config)`: the runner's executable must exist and be
  executable: the first word of `runner_command`, or `teuthology-supervisor`
  (in `teuthology_bin_path`, else on PATH). Otherwise `ConfigError` naming the
  key and the fix (the CLI exits 3); without this check every job would be
  launched, fail with exit 127 and be buried, one by one.
- `probe_servers(config)`: which queue, lock and results servers this serve
  uses and whether each answers right now, one `ServerProbe` each. A server
  that does not answer is not an error: the loop waits for it (a tick with the
  queue or lock server away schedules nothing; reports wait in the outbox).
- `announce(config)`: both, said once in the log.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
from dataclasses import dataclass

import httpx

from optialloc.config import Config, short_path
from optialloc.errors import ConfigError
from optialloc.redact import redact_url
from optialloc.runners.command import check_template
from optialloc.runners.teuthology import SUPERVISOR

log = logging.getLogger(__name__)

#: How long a start-up probe waits for a server (seconds).
PROBE_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class ServerProbe:
    """One server serve uses: its role, where it is, and whether it answered."""

    role: str  # queue, locks, results
    where: str
    answers: bool | None  # None: nothing to ask (embedded, or not configured)
    detail: str = ""

    def line(self) -> str:
        if self.answers is None:
            state = ""
        elif self.answers:
            state = " (answers)"
        else:
            state = f" (does NOT answer: {self.detail}; waiting for it)"
        return f"{self.role}: {self.where}{state}"


def _executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def check_runner(config: Config) -> str:
    """The runner's executable, resolved; `ConfigError` if it is missing or not executable."""
    if config.runner == "teuthology":
        where = config.teuthology_bin_path
        if where:
            path = os.path.join(where, SUPERVISOR)
            if not _executable(path):
                raise ConfigError(
                    "teuthology_bin_path",
                    f"{path} is missing or not executable: set teuthology_bin_path to the "
                    f"directory holding {SUPERVISOR} (teuthology's virtualenv/bin)",
                )
            return path
        found = shutil.which(SUPERVISOR)
        if not found:
            raise ConfigError(
                "teuthology_bin_path",
                f"{SUPERVISOR} is not on PATH: install teuthology or set teuthology_bin_path "
                "to the directory holding it",
            )
        return found
    program = check_template(config.runner_command)[0]
    if "{" in program:
        return program  # made per job from its fields: checked when each job starts
    if os.sep in program:
        if not _executable(program):
            raise ConfigError(
                "runner_command",
                f"{program} is missing or not executable: fix the path or chmod +x it",
            )
        return program
    found = shutil.which(program)
    if not found:
        raise ConfigError(
            "runner_command",
            f"{program!r} is not on PATH ({os.environ.get('PATH', '')}): "
            "give its full path or install it",
        )
    return found


def _tcp(host: str, port: int) -> str | None:
    """None if something accepts connections at host:port, else why not."""
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
            return None
    except OSError as exc:
        return str(exc) or type(exc).__name__


def _http(url: str) -> str | None:
    """None if an HTTP server answers at url (any status), else why not."""
    try:
        httpx.get(url.rstrip("/") + "/nodes/machine_types/", timeout=PROBE_TIMEOUT_S)
    except httpx.HTTPError as exc:
        return str(exc) or type(exc).__name__
    return None


def _probe(role: str, where: str, why_not: str | None) -> ServerProbe:
    return ServerProbe(role, where, why_not is None, why_not or "")


def probe_servers(config: Config) -> list[ServerProbe]:
    """The queue, lock and results servers of `config`, each asked once (see the docstring)."""
    embedded = f"embedded in {short_path(config.state_dir)}"
    if config.queue_backend == "beanstalk":
        where = f"beanstalkd {config.queue_host}:{config.queue_port}"
        probes = [_probe("queue", where, _tcp(config.queue_host, config.queue_port))]
    else:
        probes = [ServerProbe("queue", embedded, None)]
    for role, url, otherwise in (
        ("locks", config.lock_server, embedded),
        ("results", config.results_server, "not reported (no results_server)"),
    ):
        if url:
            probes.append(_probe(role, f"paddles {redact_url(url)}", _http(url)))
        else:
            probes.append(ServerProbe(role, otherwise, None))
    return probes


def announce(config: Config) -> list[ServerProbe]:
    """Check the runner (raises `ConfigError`) and log, once, the servers and their state."""
    runner = check_runner(config)
    probes = probe_servers(config)
    log.info(
        "serve: runner %s: %s; %s",
        config.runner,
        runner,
        "; ".join(probe.line() for probe in probes),
    )
    down = [probe.role for probe in probes if probe.answers is False]
    if down:
        log.warning(
            "serve: %s not answering: serving anyway; what needs %s waits until %s "
            "(checked every tick)",
            " and ".join(down),
            "it" if len(down) == 1 else "them",
            "it answers" if len(down) == 1 else "they answer",
        )
    return probes

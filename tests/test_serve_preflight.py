"""`serve` at start-up: a runner that cannot run is a clear error (exit 3) before anything
starts; the queue, lock and results servers are named once with whether each answers,
and a lock server that is down is waited for, not a reason to exit.

Real subprocesses (`python -m optialloc serve`), a real paddles look-alike on loopback.
"""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, free_port
from paddles_server import FakePaddles
from serve_support import env_without_crash, put_bodies, teuthology_schedule_body, wait_for

from optialloc.config import load_config
from optialloc.dispatch.preflight import check_runner, probe_servers
from optialloc.errors import ConfigError

SERVE = [sys.executable, "-m", "optialloc"]


def _config(tmp_path: Path, **settings: object) -> Path:
    path = tmp_path / "config.yaml"
    config = {"state_dir": str(tmp_path / "state"), "tick_seconds": 0.3, **settings}
    path.write_text(yaml.safe_dump(config))
    return path


def _serve(config: Path, *extra: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "optialloc", "--config", str(config), "serve", *extra],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=env_without_crash(),
    )


def test_a_runner_command_that_does_not_exist_stops_serve_at_once_with_exit_3(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path, runner_command="/no/such/program --job {job_id}")
    put_bodies(tmp_path / "state", [teuthology_schedule_body(1, nodes=1)])
    done = _serve(config, "--exit-on-empty-queue")
    assert done.returncode == 3, done.stderr[-2000:]
    assert "runner_command: /no/such/program is missing or not executable" in done.stderr
    assert not (tmp_path / "state" / "journal.sqlite").exists()  # nothing was dispatched


def test_a_command_not_on_path_or_not_executable_is_named(tmp_path: Path) -> None:
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    config = load_config(str(_config(tmp_path, runner_command=f"{script} {{job_id}}")))
    with pytest.raises(ConfigError, match=r"runner_command.*not executable"):
        check_runner(config)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    assert check_runner(config) == str(script)
    on_path = load_config(str(_config(tmp_path, runner_command="no-such-program-xyz {job_id}")))
    with pytest.raises(ConfigError, match="'no-such-program-xyz' is not on PATH"):
        check_runner(on_path)
    # a command chosen per job from its body is checked when the job starts
    per_job = load_config(str(_config(tmp_path, runner_command="{body[prog]} {job_id}")))
    assert check_runner(per_job) == "{body[prog]}"


def test_teuthology_supervisor_missing_stops_serve_with_exit_3(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    config = _config(tmp_path, runner="teuthology", teuthology_bin_path=str(empty))
    done = _serve(config, "--exit-on-empty-queue")
    assert done.returncode == 3, done.stderr[-2000:]
    assert "teuthology_bin_path" in done.stderr and "teuthology-supervisor" in done.stderr
    supervisor = empty / "teuthology-supervisor"
    supervisor.write_text("#!/bin/sh\nexit 0\n")
    supervisor.chmod(0o755)
    assert check_runner(load_config(str(config))) == str(supervisor)


def test_probes_say_which_servers_answer(tmp_path: Path) -> None:
    with FakePaddles() as paddles:
        config = load_config(
            str(
                _config(
                    tmp_path,
                    queue_backend="beanstalk",
                    queue_port=free_port(),  # nothing listens there
                    lock_server=paddles.url,
                    results_server=f"http://127.0.0.1:{free_port()}",
                )
            )
        )
        probes = {probe.role: probe for probe in probe_servers(config)}
    assert probes["queue"].answers is False and "beanstalkd 127.0.0.1" in probes["queue"].where
    assert probes["locks"].answers is True
    assert probes["results"].answers is False
    assert (
        "does NOT answer" in probes["results"].line()
        and "waiting for it" in probes["results"].line()
    )


def test_a_lock_server_that_is_down_at_start_is_waited_for(tmp_path: Path) -> None:
    paddles = FakePaddles().start()
    for i in (1, 2):
        paddles.add_node(f"smithi00{i}", "smithi", os_type="ubuntu", os_version="22.04")
    paddles.stop()  # down when serve starts
    log = tmp_path / "serve.log"
    config = _config(tmp_path, lock_server=paddles.url, runner_command=f"{sys.executable} -c pass")
    put_bodies(tmp_path / "state", [teuthology_schedule_body(1, nodes=1)])
    with open(log, "w") as stderr:
        proc = subprocess.Popen(
            [*SERVE, "--config", str(config), "serve", "--exit-on-empty-queue"],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            cwd=REPO,
            env=env_without_crash(),
        )
    try:
        wait_for(lambda: "no scheduling this tick" in log.read_text(), timeout=60, what="a tick")
        assert proc.poll() is None, log.read_text()[-2000:]  # still serving, not exited
        text = log.read_text()
        assert f"locks: paddles {paddles.url} (does NOT answer" in text
        assert "waiting for it" in text
        paddles.restart()
        assert proc.wait(timeout=90) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
        paddles.stop()
    text = log.read_text()
    assert "start job" in text and paddles.locked_nodes() == {}

"""Runners with real processes: handshake, exit status, kill, adoption, teuthology's supervisor."""

from __future__ import annotations

import os
import stat
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from serve_support import process_gone, wait_for

from optialloc.config import Config
from optialloc.domain import Job, Node
from optialloc.errors import ConfigError
from optialloc.runners import CommandRunner, LaunchFailed, TeuthologyRunner, open_runner
from optialloc.runners.process import read_pid, wrapper_alive
from optialloc.runners.wrap import ATTEMPT_FILE, wrapper_argv

NODES = [Node("smithi001", "smithi", ssh_pub_key="ssh-ed25519 AAA1"), Node("smithi002", "smithi")]


def _job(job_id: str = "42", **body: object) -> Job:
    return Job(
        job_id=job_id,
        run="run-x",
        owner="o",
        priority=100,
        machine_types=("smithi",),
        nodes_needed=2,
        queued_at=datetime.now(UTC),
        body={"name": "run-x", "roles": [["a"], ["b"]], **body},
    )


def test_command_runner_runs_the_template_and_reports_its_exit(tmp_path: Path) -> None:
    runner = CommandRunner(
        "sh -c 'echo {job_id} {run} {nodes} {body[word]}; cat {config_path}; exit 3'"
    )
    archive = str(tmp_path / "run-x" / "42")
    handle = runner.launch(_job(word="hello"), NODES, archive)
    assert handle.pid == handle.pgid
    wait_for(lambda: read_pid(archive) == handle.pid)
    wait_for(lambda: runner.poll(handle) is not None)
    assert runner.poll(handle) == 3
    output = (Path(archive) / "output.log").read_text()
    assert output.startswith("42 run-x smithi001,smithi002 hello\n")
    config = yaml.safe_load((Path(archive) / "orig.config.yaml").read_text())
    assert config["job_id"] == "42" and config["archive_path"] == archive
    assert config["targets"] == {"ubuntu@smithi001": "ssh-ed25519 AAA1", "ubuntu@smithi002": None}
    assert config["roles"] == [["a"], ["b"]]
    assert runner.progress_at(handle) is not None


def test_template_errors_name_the_placeholder_or_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"runner_command: unknown placeholder \{host\}"):
        CommandRunner("echo {host}")
    with pytest.raises(ConfigError, match="runner_command: empty"):
        CommandRunner("  ")
    runner = CommandRunner("sleep {body[duration]}")
    with pytest.raises(LaunchFailed, match="body field 'duration'"):
        runner.launch(_job(), NODES, str(tmp_path / "a"))


def test_missing_command_fails_the_launch_with_the_fix(tmp_path: Path) -> None:
    runner = CommandRunner("no-such-program-xyz {job_id}")
    with pytest.raises(LaunchFailed, match="'no-such-program-xyz' not found"):
        runner.launch(_job(), NODES, str(tmp_path / "a"))
    assert not (tmp_path / "a" / ATTEMPT_FILE).exists()


def test_kill_ends_the_whole_group_even_a_job_that_ignores_sigterm(tmp_path: Path) -> None:
    runner = CommandRunner(
        "sh -c 'trap \"\" TERM; sleep 300 & echo $! > {archive_path}/child; wait'"
    )
    archive = str(tmp_path / "a")
    handle = runner.launch(_job(), NODES, archive)
    child_file = Path(archive) / "child"
    wait_for(lambda: child_file.exists() and child_file.read_text().endswith("\n"))
    child = int(child_file.read_text())
    runner.kill(handle, grace_s=0.5)
    wait_for(lambda: runner.poll(handle) is not None and process_gone(child))
    assert runner.poll(handle) in (137, 143)


def test_a_new_runner_adopts_a_job_started_by_another(tmp_path: Path) -> None:
    archive = str(tmp_path / "a")
    first = CommandRunner("sh -c 'sleep 0.5; exit 4'")
    handle = first.launch(_job(), NODES, archive)
    wait_for(lambda: read_pid(archive) == handle.pid)  # the wrapper has claimed the attempt
    second = CommandRunner("true")  # as after a dispatcher restart
    adopted = second.adopt("42", archive)
    assert adopted is not None and adopted.pid == handle.pid
    assert second.poll(adopted) is None
    wait_for(lambda: second.poll(adopted) is not None)
    assert second.poll(adopted) == 4
    assert second.adopt("43", str(tmp_path / "never-launched")) is None


def test_tombstone_stops_a_wrapper_that_starts_late(tmp_path: Path) -> None:
    archive = tmp_path / "a"
    runner = CommandRunner("true")
    assert runner.abandon(str(archive)) is True  # never launched at all
    archive.mkdir()
    (archive / ATTEMPT_FILE).write_text("a1\n")  # launch recorded, wrapper not started yet
    assert runner.abandon(str(archive)) is True
    assert runner.abandon(str(archive)) is True  # idempotent: our tombstone is there now
    marker = tmp_path / "ran"

    def late_wrapper() -> int:
        argv = wrapper_argv(str(archive), "a1", str(tmp_path / "log"), ["touch", str(marker)])
        return subprocess.run(argv, check=False).returncode

    assert late_wrapper() == 0 and not marker.exists()
    # a later attempt of the same job runs; the old attempt's wrapper still cannot
    runner.prepare(str(archive))
    handle = runner.launch(_job(), NODES, str(archive))
    wait_for(lambda: runner.poll(handle) == 0)
    assert runner.abandon(str(archive)) is False  # this attempt's wrapper won: adopt it
    assert late_wrapper() == 0 and not marker.exists()


def test_a_relaunch_is_never_mistaken_for_the_earlier_attempt(tmp_path: Path) -> None:
    archive = str(tmp_path / "a")
    runner = CommandRunner("true")
    first = runner.launch(_job(), NODES, archive)
    wait_for(lambda: runner.poll(first) == 0)
    assert runner.adopt("42", archive) is not None
    # the job is kicked and dispatched again; the dispatcher dies before launching it
    runner.prepare(archive)
    assert runner.adopt("42", archive) is None
    assert runner.abandon(archive) is True  # reconcile: this attempt never started


def test_prepare_refuses_while_an_earlier_attempt_still_runs(tmp_path: Path) -> None:
    archive = str(tmp_path / "a")
    runner = CommandRunner("sleep 30")
    handle = runner.launch(_job(), NODES, archive)
    wait_for(lambda: read_pid(archive) == handle.pid)
    with pytest.raises(LaunchFailed, match="still running"):
        runner.prepare(archive)
    runner.kill(handle, grace_s=0.5)
    wait_for(lambda: runner.poll(handle) is not None)


def test_a_reused_pid_is_not_taken_for_the_job(tmp_path: Path) -> None:
    # our own pid is alive but its cmdline is not a wrapper of that archive path
    assert wrapper_alive(os.getpid(), str(tmp_path / "a")) is False
    assert wrapper_alive(2**22 + 17, str(tmp_path / "a")) is False


def test_teuthology_runner_starts_the_supervisor_like_teuthology(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    supervisor = bin_dir / "teuthology-supervisor"
    supervisor.write_text(
        '#!/bin/sh\necho "$@" > "$(dirname "$7")/argv"\n'
        'echo progress > "$(dirname "$7")/teuthology.log"\n'
    )
    supervisor.chmod(supervisor.stat().st_mode | stat.S_IXUSR)
    base = str(tmp_path / "archive")
    runner = open_runner(
        Config(
            runner="teuthology",
            archive_base=base,
            teuthology_bin_path=str(bin_dir),
            state_dir=str(tmp_path / "state"),
        )
    )
    assert isinstance(runner, TeuthologyRunner)
    archive = os.path.join(base, "run-x", "42")
    handle = runner.launch(_job(), NODES, archive)
    wait_for(lambda: runner.poll(handle) is not None)
    assert runner.poll(handle) == 0
    argv = (Path(archive) / "argv").read_text().split()
    assert argv == [
        "-v",
        "--bin-path",
        str(bin_dir),
        "--archive-dir",
        base,
        "--job-config",
        os.path.join(archive, "orig.config.yaml"),
    ]
    assert runner.progress_at(handle) is not None  # teuthology.log

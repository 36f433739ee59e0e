"""`optialloc schedule` and `optialloc queue` as real subprocesses, on both queue backends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from conftest import FIXTURES, REPO, free_port
from queue_support import COMPAT_BODY, body, raw, raw_put

from optialloc.errors import ExitCode

Run = Callable[..., subprocess.CompletedProcess[str]]

COMPAT_ARGS = [
    str(FIXTURES / "jobs" / "rados-basic.yaml"),
    "--name",
    "optialloc-compat-test",
    "--machine-type",
    "smithi",
    "--priority",
    "75",
    "--owner",
    "scheduled_optialloc@test",
    "--description",
    "rados/basic/{clusters/fixed-2 tasks/rados_api}",
]


def make_runner(config: Path) -> Run:
    def run(*args: str, expect: int | None = 0) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "OPTIALLOC_CONFIG"}
        result = subprocess.run(
            [sys.executable, "-m", "optialloc", "--config", str(config), *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if expect is not None:
            assert result.returncode == expect, (args, result.stdout, result.stderr)
        return result

    return run


@pytest.fixture(params=["embedded", "beanstalk"])
def cli(request: pytest.FixtureRequest, tmp_path: Path) -> Run:
    config: dict[str, object] = {"state_dir": str(tmp_path / "state")}
    if request.param == "beanstalk":
        config.update(
            queue_backend="beanstalk", queue_port=request.getfixturevalue("beanstalkd").port
        )
    path = tmp_path / "optialloc.yaml"
    path.write_text(yaml.safe_dump(config))
    return make_runner(path)


def listing(cli: Run, *args: str) -> list[dict]:
    return json.loads(cli("queue", "list", "--json", *args).stdout)


def test_schedule_then_list_shows_the_jobs(cli: Run) -> None:
    out = cli("schedule", *COMPAT_ARGS, "-N", "3").stdout
    assert out.count("Job scheduled with name optialloc-compat-test and ID") == 3
    jobs = listing(cli)
    assert len(jobs) == 3
    for job in jobs:
        assert (job["tube"], job["priority"], job["owner"], job["run"], job["nodes"]) == (
            "smithi",
            75,
            "scheduled_optialloc@test",
            "optialloc-compat-test",
            2,
        )
        assert {"job_id", "position", "reason", "age_s"} <= set(job)
    text = cli("queue", "list").stdout
    assert "optialloc-compat-test" in text and "3 job(s) pending" in text and " s " in text


def test_filters_priority_delete_by_run(cli: Run, tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text("roles: [[osd.0]]\n")
    cli(
        "schedule",
        str(job),
        "--name",
        "run-a",
        "--machine-type",
        "smithi",
        "--owner",
        "alice",
        "-N",
        "2",
    )
    cli("schedule", str(job), "--name", "run-b", "--machine-type", "mira", "--owner", "bob")
    cli("schedule", str(job), "--name", "run-c", "--machine-type", "smithi,mira", "--owner", "bob")
    assert [j["run"] for j in listing(cli, "--owner", "bob")] == ["run-b", "run-c"]
    assert [j["tube"] for j in listing(cli, "--run", "run-c")] == ["multi"]
    assert len(listing(cli, "--tube", "smithi")) == 2
    cli("queue", "priority", "--run", "run-c", "10")
    assert listing(cli)[0]["run"] == "run-c" and listing(cli)[0]["priority"] == 10
    one = listing(cli, "--run", "run-b")[0]["job_id"]
    cli("queue", "priority", one, "5")
    assert listing(cli)[0]["job_id"] == one
    cli("queue", "delete", "--run", "run-a")
    assert sorted(j["run"] for j in listing(cli)) == ["run-b", "run-c"]
    cli("queue", "delete", one)
    assert [j["run"] for j in listing(cli)] == ["run-c"]


def test_stats_pause_resume(cli: Run) -> None:
    cli("schedule", *COMPAT_ARGS)
    cli("queue", "pause", "smithi", "--seconds", "120")
    stats = {s["tube"]: s for s in json.loads(cli("queue", "stats", "--json").stdout)}
    assert stats["smithi"]["paused"] and stats["smithi"]["ready"] == 1
    assert "s left" in cli("queue", "stats").stdout
    cli("queue", "resume", "smithi")
    stats = {s["tube"]: s for s in json.loads(cli("queue", "stats", "--json").stdout)}
    assert not stats["smithi"]["paused"]


def test_unknown_job_id_is_not_found(cli: Run) -> None:
    for args in (
        ("queue", "delete", "4242"),
        ("queue", "priority", "4242", "3"),
        ("queue", "kick", "4242"),
    ):
        result = cli(*args, expect=ExitCode.NOT_FOUND)
        assert "4242" in result.stderr
    result = cli("queue", "delete", "--run", "nope", expect=ExitCode.NOT_FOUND)
    assert "nope" in result.stderr


def test_bad_job_files_are_refused_with_the_field(cli: Run, tmp_path: Path) -> None:
    result = cli(
        "schedule",
        str(FIXTURES / "jobs" / "bad-roles.yaml"),
        "--name",
        "r",
        "--machine-type",
        "smithi",
        expect=ExitCode.BAD_INPUT,
    )
    assert "roles" in result.stderr
    result = cli(
        "schedule",
        str(FIXTURES / "jobs" / "rados-basic.yaml"),
        "--machine-type",
        "smithi",
        expect=ExitCode.BAD_INPUT,
    )
    assert "--name" in result.stderr
    result = cli(
        "schedule",
        str(FIXTURES / "jobs" / "rados-basic.yaml"),
        "--name",
        "r",
        expect=ExitCode.BAD_INPUT,
    )
    assert "--machine-type" in result.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("roles: [unclosed\n")
    result = cli(
        "schedule",
        str(broken),
        "--name",
        "r",
        "--machine-type",
        "smithi",
        expect=ExitCode.BAD_INPUT,
    )
    assert "not valid YAML" in result.stderr
    result = cli(
        "schedule",
        str(tmp_path / "missing.yaml"),
        "--name",
        "r",
        "--machine-type",
        "smithi",
        expect=ExitCode.BAD_INPUT,
    )
    assert "missing.yaml" in result.stderr
    assert listing(cli) == []


def test_help_has_examples_everywhere(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"state_dir": str(tmp_path / "s")}))
    cli = make_runner(config)
    for args in (
        ("schedule",),
        ("queue",),
        *(
            ("queue", a)
            for a in ("list", "stats", "pause", "resume", "delete", "priority", "buried", "kick")
        ),
    ):
        assert "examples:" in cli(*args, "--help").stdout, args


@pytest.mark.beanstalkd
def test_schedule_puts_exactly_what_teuthology_schedule_puts(beanstalkd, tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "queue_backend": "beanstalk",
                "queue_port": beanstalkd.port,
                "state_dir": str(tmp_path / "s"),
            }
        )
    )
    make_runner(config)("schedule", *COMPAT_ARGS)
    conn = raw(beanstalkd.port)
    conn.watch("smithi")
    job = conn.reserve(timeout=5)
    assert job is not None
    assert job.body == COMPAT_BODY  # byte for byte the documented teuthology-schedule body
    stats = job.stats()
    assert (stats["tube"], stats["pri"], stats["ttr"]) == ("smithi", 75, 86400)
    job.release(priority=75)
    conn.close()


@pytest.mark.beanstalkd
def test_buried_and_kick_through_the_cli(beanstalkd, tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "queue_backend": "beanstalk",
                "queue_port": beanstalkd.port,
                "state_dir": str(tmp_path / "s"),
            }
        )
    )
    cli = make_runner(config)
    bad = raw_put(beanstalkd.port, "smithi", "roles: [[a]]\npriority: soon\n", priority=10)
    raw_put(beanstalkd.port, "smithi", body("good"), priority=100)
    assert len(listing(cli)) == 1
    buried = json.loads(cli("queue", "buried", "--json").stdout)
    assert [(b["job_id"], b["reason"].split(":")[0]) for b in buried] == [(str(bad), "priority")]
    assert "priority: expected an integer" in cli("queue", "buried").stdout
    result = cli("queue", "kick", str(bad), expect=ExitCode.BAD_INPUT)
    assert "stays buried" in result.stderr


def test_unreachable_beanstalkd_says_how_to_fix_it(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump(
            {"queue_backend": "beanstalk", "queue_port": port, "state_dir": str(tmp_path / "s")}
        )
    )
    result = make_runner(config)("queue", "list", expect=ExitCode.UNAVAILABLE)
    assert (
        f"cannot reach beanstalkd at 127.0.0.1:{port} (connection refused): "
        "start beanstalkd or set queue_host/queue_port" in result.stderr
    )


def test_config_from_environment(tmp_path: Path) -> None:
    config = tmp_path / "env.yaml"
    config.write_text(yaml.safe_dump({"state_dir": str(tmp_path / "envstate")}))
    env = {**os.environ, "OPTIALLOC_CONFIG": str(config)}
    subprocess.run(
        [sys.executable, "-m", "optialloc", "schedule", *COMPAT_ARGS],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert (tmp_path / "envstate" / "queue.sqlite").exists()

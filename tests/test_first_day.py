"""A lab admin's first day (issue 14): each defect found on a fresh install, as a test.

Shipped data and names, where state lives and saying so, config errors that
name the file, readable YAML errors, `schedule` refusing what could never run,
the demo's job count and temporary state, progress without a terminal, closed
pipes and directories where files belong, `queue priority` in the archive.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import FIXTURES, REPO

from optialloc.cli.progress import LineProgress, progress_bar
from optialloc.config import Config, describe_queue, load_config, short_path
from optialloc.errors import ConfigError, ExitCode, PolicyError
from optialloc.policy import default_policy, load_policy
from optialloc.resources import resolve_file, shipped_names, shipped_path
from optialloc.yaml_errors import describe_yaml_error


def cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("OPTIALLOC_")}
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "optialloc", *args],
        cwd=cwd, env=full, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


# -- shipped data ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shipped", "top_level"),
    [
        ("models/default.yaml", "models/default.yaml"),
        ("models/throughput.yaml", "models/throughput.yaml"),
        ("labs/demo.yaml", "fixtures/labs/demo.yaml"),
        ("workloads/demo.jsonl", "fixtures/workloads/demo.jsonl"),
    ],
)
def test_the_checkouts_copies_equal_the_shipped_files(shipped: str, top_level: str) -> None:
    inside = REPO / "optialloc" / "data" / shipped
    assert inside.read_bytes() == (REPO / top_level).read_bytes(), (
        f"{top_level} and optialloc/data/{shipped} differ: the shipped file is what an "
        f"install reads; copy the one you changed over the other"
    )


def test_every_model_in_the_checkout_is_shipped() -> None:
    assert shipped_names("models") == sorted(p.stem for p in (REPO / "models").glob("*.yaml"))


def test_shipped_names_resolve_and_paths_stay_paths(tmp_path: Path) -> None:
    assert shipped_path("models", "default").is_file()
    assert load_policy("throughput").name == "throughput"
    assert default_policy().name == "default"
    assert resolve_file("labs", "demo") == str(shipped_path("labs", "demo"))
    # a path is a path: relative to the base dir if given, never to a checkout
    assert resolve_file("models", "mine.yaml", str(tmp_path)) == str(tmp_path / "mine.yaml")
    assert resolve_file("models", "models/default.yaml") == "models/default.yaml"
    with pytest.raises(PolicyError) as excinfo:
        load_policy("no-such-model")
    assert "default, throughput" in str(excinfo.value)


def test_commands_work_from_a_directory_without_a_checkout(tmp_path: Path) -> None:
    """Was: rc 3 `fixtures/labs/demo.yaml: lab file does not exist` outside the checkout."""
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {"XDG_STATE_HOME": str(tmp_path / "xdg")}
    listed = cli("nodes", "list", cwd=empty, env=env)
    assert listed.returncode == 0, listed.stderr
    assert "smithi001" in listed.stdout
    assert (tmp_path / "xdg" / "optialloc" / "inventory.sqlite").exists()
    snapshot = str(FIXTURES / "snapshots" / "small.yaml")
    planned = cli("plan", "--dry-run", "--snapshot", snapshot, "--policy", "throughput", cwd=empty)
    assert planned.returncode == 0, planned.stderr
    assert planned.stdout.startswith("policy: throughput")


# -- where state lives --------------------------------------------------------------


def test_state_dir_defaults_to_the_xdg_state_location(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPTIALLOC_STATE_DIR", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert Config().state_dir == str(tmp_path / "xdg" / "optialloc")
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert Config().state_dir == str(tmp_path / "home" / ".local" / "state" / "optialloc")
    assert short_path(Config().state_dir) == "~/.local/state/optialloc"


def test_relative_paths_in_a_config_file_are_relative_to_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was: resolved from the current directory, so two directories meant two queues."""
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    (conf_dir / "mine.yaml").write_text("name: mine\n")
    path = conf_dir / "optialloc.yaml"
    path.write_text(
        "state_dir: state\nlab: ../labs/x.yaml\npolicy: mine.yaml\narchive_base: arch\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(str(path))
    assert config.state_dir == str(conf_dir / "state")
    assert config.lab == str(conf_dir / "../labs/x.yaml")
    assert config.policy_path == str(conf_dir / "mine.yaml")
    assert config.archive_dir == str(conf_dir / "arch")
    # shipped names stay names
    path.write_text("policy: throughput\nlab: demo\n")
    config = load_config(str(path))
    assert config.policy_path == str(shipped_path("models", "throughput"))
    assert config.lab_path == str(shipped_path("labs", "demo"))


def test_schedule_and_serve_from_different_directories_share_one_queue(tmp_path: Path) -> None:
    config = tmp_path / "conf" / "optialloc.yaml"
    config.parent.mkdir()
    config.write_text("state_dir: state\n")
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    job = str(FIXTURES / "jobs" / "rados-basic.yaml")
    put = cli(
        "--config", str(config), "schedule", job, "--name", "r", "--machine-type", "smithi",
        cwd=one,
    )  # fmt: skip
    assert put.returncode == 0, put.stderr
    assert f"queued job 1 in {tmp_path / 'conf' / 'state'} (embedded queue)" in put.stderr
    listed = cli("--config", str(config), "queue", "list", "--json", cwd=two)
    assert [r["job_id"] for r in yaml.safe_load(listed.stdout)] == ["1"]
    changed = cli("--config", str(config), "queue", "priority", "1", "50", cwd=two)
    assert changed.returncode == 0, changed.stderr
    assert (
        changed.stderr
        == f"optialloc queue: changed {tmp_path / 'conf' / 'state'} (embedded queue)\n"
    )


def test_describe_queue_names_the_backend(tmp_path: Path) -> None:
    assert describe_queue(Config(state_dir=str(tmp_path))) == f"{tmp_path} (embedded queue)"
    beanstalk = Config(state_dir=str(tmp_path), queue_backend="beanstalk", queue_port=11399)
    assert describe_queue(beanstalk).startswith("beanstalkd 127.0.0.1:11399")


# -- messages ------------------------------------------------------------------------


def test_config_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("tick_seconds: fast\n")
    done = cli("--config", str(path), "queue", "stats", cwd=tmp_path)
    assert done.returncode == ExitCode.BAD_INPUT
    assert done.stderr.strip() == (
        f"optialloc queue: {path}: tick_seconds: expected a number, got 'fast'"
    )
    path.write_text("tick_second: 3\n")
    done = cli("--config", str(path), "queue", "stats", cwd=tmp_path)
    assert done.stderr.strip() == (
        f"optialloc queue: {path}: tick_second: unknown key; did you mean 'tick_seconds'?"
    )


def test_yaml_errors_say_line_and_column_once() -> None:
    """Was: "while parsing a flow sequence; see while parsing a flow sequence ..."."""
    with pytest.raises(yaml.YAMLError) as excinfo:
        yaml.safe_load("a: [1, 2\nb: 3\n")
    text = describe_yaml_error(excinfo.value)
    assert (
        text == "line 2, column 2: expected ',' or ']', but got ':' (while parsing a flow sequence)"
    )
    assert "\n" not in text


def test_broken_yaml_in_a_config_and_a_policy_reads_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("tubes: [smithi\n")
    with pytest.raises(ConfigError) as excinfo:
        load_config(str(path))
    assert "line 2, column 1:" in str(excinfo.value) and "\n" not in str(excinfo.value)
    policy = tmp_path / "p.yaml"
    policy.write_text("aging: {rate_per_hour: 1\n")
    with pytest.raises(PolicyError, match=r"line 2, column 1: expected ',' or '\}'"):
        load_policy(str(policy))


# -- schedule --------------------------------------------------------------------------


def _schedule(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return cli("schedule", *args, cwd=REPO, env={"OPTIALLOC_STATE_DIR": str(tmp_path / "state")})


def test_schedule_refuses_an_empty_job_saying_why(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("os_type: ubuntu\n")
    done = _schedule(tmp_path, str(empty), "--name", "r", "--machine-type", "smithi")
    assert done.returncode == ExitCode.BAD_INPUT
    assert "roles/tasks: the job has neither" in done.stderr
    assert "--last-in-suite" in done.stderr
    # a suite's last job has no roles by design
    done = _schedule(
        tmp_path, str(empty), "--name", "r", "--machine-type", "smithi", "--last-in-suite"
    )
    assert done.returncode == 0, done.stderr


def test_schedule_refuses_a_machine_type_without_nodes_unless_forced(tmp_path: Path) -> None:
    job = "fixtures/jobs/rados-basic.yaml"
    done = _schedule(tmp_path, job, "--name", "r", "--machine-type", "smithy")
    assert done.returncode == ExitCode.BAD_INPUT
    assert "no node of type smithy" in done.stderr and "--force" in done.stderr
    assert "gibba, mira, smithi" in done.stderr
    done = _schedule(tmp_path, job, "--name", "r", "--machine-type", "smithy", "--force")
    assert done.returncode == 0, done.stderr
    assert "queued job 1 in" in done.stderr


def test_schedule_says_where_it_queued_once(tmp_path: Path) -> None:
    done = _schedule(
        tmp_path, "fixtures/jobs/rados-basic.yaml", "--name", "r", "--machine-type", "smithi",
        "-N", "3",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr.count(" in ") == 1
    assert f"queued 3 jobs (1-3) in {tmp_path / 'state'} (embedded queue)" in done.stderr


# -- pipes, directories, progress --------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("--help",),
        ("nodes", "list"),
        ("plan", "--dry-run", "--snapshot", "fixtures/snapshots/sepia.gen.yaml", "--limit", "0"),
        ("schedule", "fixtures/jobs/rados-basic.yaml", "--name", "r", "--machine-type",
         "smithi", "--dry-run"),
    ],
)  # fmt: skip
def test_a_closed_pipe_is_not_a_traceback(tmp_path: Path, args: tuple[str, ...]) -> None:
    """Was: `optialloc demo | head` died with a BrokenPipeError traceback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPTIALLOC_")}
    env["OPTIALLOC_STATE_DIR"] = str(tmp_path / "state")
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before anything is written
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "optialloc", *args],
            cwd=REPO, env=env, stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120,
        )  # fmt: skip
    finally:
        os.close(write_end)
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr, proc.stderr
    assert proc.returncode == ExitCode.OK


@pytest.mark.parametrize(
    ("args", "where"),
    [
        (("plan", "--dry-run", "--snapshot", "fixtures/snapshots"), "fixtures/snapshots"),
        (("whatif", "--lab", "demo", "--workload", "fixtures/workloads"), "fixtures/workloads"),
        (("--config", "fixtures/config", "queue", "stats"), "fixtures/config"),
        (("nodes", "import", "fixtures/labs"), "fixtures/labs"),
        (("schedule", "fixtures/jobs", "--name", "r", "--machine-type", "smithi"), "fixtures/jobs"),
    ],
)
def test_a_directory_where_a_file_belongs_is_one_line_and_exit_3(
    tmp_path: Path, args: tuple[str, ...], where: str
) -> None:
    """Was: `plan --dry-run --snapshot DIR` died with IsADirectoryError."""
    done = cli(*args, cwd=REPO, env={"OPTIALLOC_STATE_DIR": str(tmp_path / "state")})
    assert done.returncode == ExitCode.BAD_INPUT, done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert where in done.stderr


def test_line_progress_prints_at_most_every_ten_seconds() -> None:
    now = [0.0]
    out: list[str] = []

    class Sink:
        def write(self, text: str) -> None:
            out.append(text)

        def flush(self) -> None:
            pass

    bar = LineProgress(100, "sim", "job", Sink(), clock=lambda: now[0])  # type: ignore[arg-type]
    for _ in range(50):
        now[0] += 1.0  # 50 updates over 50 s
        bar.update(1)
    bar.set_postfix_str("simulated 2.0 h")
    bar.close()
    lines = "".join(out).splitlines()
    assert lines == [
        "sim: 10/100 jobs, 10 s",
        "sim: 20/100 jobs, 20 s",
        "sim: 30/100 jobs, 30 s",
        "sim: 40/100 jobs, 40 s",
        "sim: 50/100 jobs, 50 s",
    ]
    assert "\r" not in "".join(out)


def test_progress_bar_is_tqdm_only_on_a_terminal(tmp_path: Path) -> None:
    with open(tmp_path / "log", "w") as log:
        assert isinstance(progress_bar(5, "x", "job", file=log), LineProgress)
    master, slave = os.openpty()
    try:
        with os.fdopen(slave, "w") as tty:
            bar = progress_bar(5, "x", "job", file=tty)
            assert not isinstance(bar, LineProgress)
            bar.close()
    finally:
        os.close(master)


def test_whatif_piped_writes_no_bar_frames(tmp_path: Path) -> None:
    done = cli("whatif", "--lab", "demo", "--workload", "demo", "--baseline", "fcfs", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr
    # the demo's mira jobs all arrive at the end: their 0 % is the measured window's
    assert "utilization mira (warm-up and drain excluded)" in done.stdout


# -- whatif's default policy ---------------------------------------------------------------


def test_whatif_keeps_the_policy_beside_named_baselines(tmp_path: Path) -> None:
    """Was: naming a baseline dropped optialloc's own policy from the table."""
    done = cli(
        "whatif", "--lab", "demo", "--workload", "demo", "--baseline", "fcfs", "--json",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert set(yaml.safe_load(done.stdout)) == {"default", "fcfs"}
    alone = cli(
        "whatif", "--lab", "demo", "--workload", "demo", "--baseline", "fcfs", "--no-policy",
        "--json", cwd=tmp_path,
    )  # fmt: skip
    assert alone.returncode == 0, alone.stderr
    assert set(yaml.safe_load(alone.stdout)) == {"fcfs"}


def test_unknown_policy_name_lists_the_shipped_ones(tmp_path: Path) -> None:
    done = cli("whatif", "--lab", "demo", "--workload", "demo", "--policy", "fast", cwd=tmp_path)
    assert done.returncode == ExitCode.BAD_INPUT
    assert "shipped: default, throughput" in done.stderr


# -- the demo ---------------------------------------------------------------------------------


def test_demo_runs_the_jobs_it_says_and_cleans_up_unless_kept(tmp_path: Path) -> None:
    """Was: `--jobs 36` ran 37; every run left /tmp/optialloc-demo-*; bar frames in logs."""
    env = {"TMPDIR": str(tmp_path)}
    done = cli("demo", "--jobs", "4", cwd=tmp_path, env=env)  # progress on, stderr piped
    assert done.returncode == 0, done.stderr
    assert "demo finished: 4 jobs run (4 passed, 0 failed)" in done.stdout
    assert "\r" not in done.stderr  # no tqdm frames without a terminal
    assert "state removed (pass --keep to keep it)" in done.stdout
    assert not list(tmp_path.glob("optialloc-demo-*"))
    kept = cli("demo", "--jobs", "2", "--keep", "--no-progress", cwd=tmp_path, env=env)
    assert kept.returncode == 0, kept.stderr
    (state,) = tmp_path.glob("optialloc-demo-*")
    assert f"state (journal, queue, archive): {state}" in kept.stdout
    assert (state / "journal.sqlite").exists()


# -- queue priority and the archive ---------------------------------------------------------


def test_queue_priority_is_the_priority_the_archive_records(tmp_path: Path) -> None:
    """Was: after `queue priority`, the job's orig.config.yaml kept the old priority."""
    config = tmp_path / "optialloc.yaml"
    config.write_text("state_dir: state\ntick_seconds: 0.3\nrunner_command: 'true'\n")
    job = str(FIXTURES / "jobs" / "rados-basic.yaml")
    steps = [
        ("schedule", job, "--name", "prio-run", "--machine-type", "smithi", "--priority", "100"),
        ("queue", "priority", "1", "7"),
        ("serve", "--exit-on-empty-queue"),
    ]
    for step in steps:
        done = cli("--config", str(config), *step, cwd=tmp_path)
        assert done.returncode == 0, (step, done.stderr[-2000:])
    (orig,) = (tmp_path / "state" / "archive").glob("prio-run/1/orig.config.yaml")
    recorded = yaml.safe_load(orig.read_text())
    assert recorded["priority"] == 7
    assert recorded["job_id"] == "1"


# -- what-if report labels ---------------------------------------------------------------------

SWF = """; MaxNodes: 16
1 0 -1 600 4 -1 -1 -1 -1 -1 1 -1 -1 -1 0 -1 -1 -1
2 10 -1 300 16 -1 -1 -1 -1 -1 1 -1 -1 -1 0 -1 -1 -1
3 20 -1 100 2 -1 -1 -1 -1 -1 1 -1 -1 -1 0 -1 -1 -1
4 30 -1 50 1 -1 -1 -1 -1 -1 1 -1 -1 -1 0 -1 -1 -1
5 40 -1 600 8 -1 -1 -1 -1 -1 1 -1 -1 -1 0 -1 -1 -1
6 50 -1 300 8 -1 -1 -1 -1 -1 1 -1 -1 -1 0 -1 -1 -1
7 60 -1 100 2 -1 -1 -1 -1 -1 1 -1 -1 -1 0 -1 -1 -1
8 70 -1 50 16 -1 -1 -1 -1 -1 1 -1 -1 -1 0 -1 -1 -1
"""


def test_whatif_labels_jobs_and_wall_time_per_window_and_in_all(tmp_path: Path) -> None:
    """Was: header "10240 jobs" beside a row "1024"; "simulation wall time" a bare mean."""
    trace = tmp_path / "t.swf"
    trace.write_text(SWF)
    done = cli(
        "whatif", "--swf", str(trace), "--window", "0:4", "--window", "4:4", "--swf-priority",
        "1000", "--baseline", "easy", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("8 jobs in all: 2 windows of 4 jobs, 16 nodes")
    rows = {line.split("  ")[0]: line.split()[-2:] for line in lines[2:] if "  " in line}
    assert rows["jobs, per window (mean)"] == ["4", "4"]
    assert rows["jobs, all windows"] == ["8", "8"]
    assert "simulation wall time, per window (mean)" in rows
    assert "simulation wall time, all windows" in rows
    assert "simulation wall time (default): " in done.stdout and "s in all" in done.stdout


def test_owner_share_plot_keeps_schedulers_and_owners_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was: an owner "teuthology" read as the baseline of that name; the y axis went to 120 %."""
    from optialloc.sim import report
    from optialloc.sim import scenario as sc

    scene = sc.load_scenario(lab="demo", workload="demo")
    outcomes = sc.run(scene, [("policy", "default"), ("baseline", "teuthology")])
    saved: dict[str, object] = {}

    def keep(fig: object, target: Path, plt: object) -> Path:
        saved[target.name] = fig
        return target

    monkeypatch.setattr(report, "_save", keep)
    report.plot_all(outcomes, tmp_path)
    (ax,) = saved["owner_share.png"].axes  # type: ignore[attr-defined]
    assert ax.get_ylim() == (0.0, 100.0)
    legend = ax.get_legend()
    assert legend.get_title().get_text() == "scheduler"
    assert [t.get_text() for t in legend.get_texts()] == ["default", "teuthology"]
    assert ax.get_xlabel().startswith("owner")


# -- the tick summary --------------------------------------------------------------------------


def test_tick_summary_counts_deferred_starts_apart_from_failures(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Was: starts moved to the next tick (lock server down mid-batch) counted as "failed"."""
    from test_dispatcher import _dispatcher, _job, _plan

    jobs = [_job("1"), _job("2"), _job("3"), _job("4")]
    d, _queue, inventory, _runner = _dispatcher(
        jobs, _plan(("1", ("n1",)), ("2", ("n2",)), ("3", ("n3",)), ("4", ("n4",)))
    )
    real_lock = inventory.lock

    def lock(names, description, locked_by=None):  # type: ignore[no-untyped-def]
        if names == ["n3"]:
            inventory.unavailable = True  # down while locking job 3: job 4 is deferred
        return real_lock(names, description, locked_by)

    inventory.lock = lock  # type: ignore[method-assign]
    caplog.set_level(logging.INFO, logger="optialloc.dispatch.dispatcher")
    report = d.tick()
    assert report.started == ["1", "2"]
    (summary,) = [r.getMessage() for r in caplog.records if ": 2 started," in r.getMessage()]
    assert "2 started, 0 finished, 1 failed, 1 deferred," in summary


# -- a file that is not a snapshot -------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("fixtures/jobs/rados-basic.yaml", "a job"),
        ("fixtures/labs/demo.yaml", "a lab file"),
        ("models/default.yaml", "a policy model"),
        ("fixtures/config/embedded.yaml", "an optialloc config"),
    ],
)
def test_a_file_that_is_not_a_snapshot_is_named_for_what_it_is(path: str, kind: str) -> None:
    """Was: one warning per key, then "taken_at: missing"."""
    done = cli("plan", "--dry-run", "--snapshot", path, cwd=REPO)
    assert done.returncode == ExitCode.BAD_INPUT
    assert done.stderr.count("\n") == 1, done.stderr  # one line, no warnings before it
    assert (
        f"{path}: (top level): this is {kind}, not a snapshot: it has no taken_at/nodes/queue"
        in (done.stderr)
    )


def test_broken_yaml_in_a_snapshot_reads_once_with_line_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "s.yaml"
    bad.write_text("taken_at: 2026-11-24T18:00:00Z\nnodes: [a\n")
    done = cli("plan", "--dry-run", "--snapshot", str(bad), cwd=tmp_path)
    assert done.returncode == ExitCode.BAD_INPUT
    assert done.stderr.strip() == (
        f"optialloc plan: {bad}: (file): not valid YAML (line 3, column 1: did not find "
        "expected ',' or ']' (while parsing a flow sequence))"
    )

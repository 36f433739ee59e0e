"""`optialloc plan --dry-run`: a real subprocess on the committed fixtures, exit codes 0/2/3/4."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import FIXTURES, REPO

import optialloc.solver
from optialloc.cli import main
from optialloc.cli.plan import dry_run
from optialloc.cli.plan_report import format_solver, format_table, plan_to_dict
from optialloc.domain import Hold, Plan, Snapshot, SolverStats, Start, Waiting, WaitReason
from optialloc.errors import ExitCode
from optialloc.policy import Policy, load_policy
from optialloc.snapshots.io import load_snapshot
from optialloc.solver import solve as real_solve

SMALL = FIXTURES / "snapshots" / "small.yaml"
DEFAULT_POLICY = REPO / "models" / "default.yaml"


def run_cli(
    *args: str, cwd: Path = REPO, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "OPTIALLOC_CONFIG"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "optialloc", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        env=full_env,
        timeout=120,
    )


def test_text_output_has_the_tables_and_units() -> None:
    done = run_cli("plan", "--dry-run", "--snapshot", str(SMALL))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "policy: default" in out
    for title in (
        "starts (",
        "waiting, in dispatch order (",
        "held nodes (",
        "invalid queue entries",
    ):
        assert title in out, title
    header = next(line for line in out.splitlines() if line.strip().startswith("pos "))
    assert header.split() == ["pos", "job", "run", "owner", "priority", "needs", "reason", "detail"]
    assert "601" in out and "roles: expected a list of lists" in out  # the invalid entry is shown
    solver_line = out.strip().splitlines()[-1]
    assert solver_line.startswith("solver: ")
    assert "weight units" in solver_line and " %" in solver_line and " s (" in solver_line
    assert done.stderr == ""


def test_json_output_has_every_field_and_accounts_for_every_job() -> None:
    done = run_cli("plan", "--dry-run", "--snapshot", str(SMALL), "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["valid"] is True and data["violations"] == []
    assert set(data["solver"]) >= {"status", "objective", "bound", "gap", "wall_s"}
    assert data["solver"]["status"] in {"OPTIMAL", "FEASIBLE", "TRIVIAL"}
    assert all(
        set(s) >= {"job_id", "nodes"} and isinstance(s["nodes"], list) for s in data["starts"]
    )
    assert all(set(h) == {"node", "for_job_id"} for h in data["held"])
    assert all(set(w) >= {"job_id", "position", "reason", "detail"} for w in data["waiting"])
    snapshot = load_snapshot(SMALL)
    planned = [s["job_id"] for s in data["starts"]] + [w["job_id"] for w in data["waiting"]]
    assert sorted(planned) == sorted(j.job_id for j in snapshot.queue)
    assert [w["position"] for w in data["waiting"]] == sorted(
        w["position"] for w in data["waiting"]
    )
    assert data["invalid"] == [
        {"job_id": "601", "tube": "smithi", "error": snapshot.invalid[0].error}
    ]
    assert data["lab"]["free"] == 6 and data["lab"]["queued"] == 19


def test_limit_cuts_tables_and_says_how_many_more() -> None:
    done = run_cli("plan", "--dry-run", "--snapshot", str(SMALL), "--limit", "2")
    assert done.returncode == 0, done.stderr
    waiting = len(load_snapshot(SMALL).queue) - int(done.stdout.split("starts (")[1].split(")")[0])
    assert f"... and {waiting - 2} more" in done.stdout
    everything = run_cli("plan", "--dry-run", "--snapshot", str(SMALL), "--limit", "0")
    assert "more (raise --limit" not in everything.stdout


def test_bad_policy_file_exits_3_with_one_line_naming_the_field(tmp_path: Path) -> None:
    policy = tmp_path / "bad.yaml"
    policy.write_text("name: bad\nweights: {scale: -1}\n")
    done = run_cli("plan", "--dry-run", "--snapshot", str(SMALL), "--policy", str(policy))
    assert done.returncode == ExitCode.BAD_INPUT
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "weights.scale" in lines[0] and "bad.yaml" in lines[0], lines
    assert done.stdout == ""


def test_policy_defaults_to_the_configs_policy_key(tmp_path: Path) -> None:
    policy = tmp_path / "typo.yaml"
    policy.write_text("name: typo\nagin: {enabled: false}\n")
    config = tmp_path / "optialloc.yaml"
    config.write_text(f"policy: {policy}\n")
    done = run_cli("--config", str(config), "plan", "--dry-run", "--snapshot", str(SMALL))
    assert done.returncode == ExitCode.BAD_INPUT
    assert "agin" in done.stderr and "typo.yaml" in done.stderr
    fine = run_cli("plan", "--dry-run", "--snapshot", str(SMALL), "--json", cwd=tmp_path)
    assert fine.returncode == 0, fine.stderr  # models/default.yaml found from anywhere
    assert json.loads(fine.stdout)["policy"] == "default"


def test_bad_snapshot_exits_3_naming_the_path_inside_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "snap.yaml"
    bad.write_text(
        SMALL.read_text().replace("queued_at: '2026-11-24T09:00:06Z'", "queued_at: 'soon'", 1)
    )
    done = run_cli("plan", "--dry-run", "--snapshot", str(bad))
    assert done.returncode == ExitCode.BAD_INPUT
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "snap.yaml: queue[0].queued_at:" in lines[0], lines
    missing = run_cli("plan", "--dry-run", "--snapshot", str(tmp_path / "none.yaml"))
    assert missing.returncode == ExitCode.BAD_INPUT and "no such file" in missing.stderr


def test_without_dry_run_or_snapshot_it_explains_what_to_do(tmp_path: Path) -> None:
    no_dry = run_cli("plan", "--snapshot", str(SMALL))
    assert no_dry.returncode == ExitCode.USAGE and "optialloc serve" in no_dry.stderr
    # without --snapshot: the live lab of the config (here the embedded default, empty queue)
    live = run_cli("plan", "--dry-run", env={"OPTIALLOC_STATE_DIR": str(tmp_path / "state")})
    assert live.returncode == ExitCode.OK, live.stderr
    assert live.stdout.startswith("policy: ")


def test_help_has_examples() -> None:
    done = run_cli("plan", "--help")
    assert done.returncode == 0
    assert (
        "examples:" in done.stdout
        and "--dump-snapshot" in done.stdout
        and "exit codes" in done.stdout
    )


def test_dump_snapshot_writes_what_was_planned(tmp_path: Path) -> None:
    out = tmp_path / "dumped.yaml"
    done = run_cli(
        "plan", "--dry-run", "--snapshot", str(SMALL), "--json", "--dump-snapshot", str(out)
    )
    assert done.returncode == 0, done.stderr
    json.loads(done.stdout)  # stdout stays pure JSON; the note goes to stderr
    assert str(out) in done.stderr
    assert load_snapshot(out) == load_snapshot(SMALL)


# ---------------------------------------------------------------- plan rejected (exit 4)


def _bad_solver(snapshot: Snapshot, policy: Policy) -> Plan:
    """A 'solver' that also starts a 1-node smithi job on a node a person has locked."""
    plan = real_solve(snapshot, policy)
    victim = next(
        j for j in snapshot.queue if j.nodes_needed == 1 and j.machine_types == ("smithi",)
    )
    locked = next(n.name for n in snapshot.nodes if n.locked_by and n.locked_by.startswith("adam"))
    kept = [s for s in plan.starts if s.job_id != victim.job_id]
    waiting = tuple(w for w in plan.waiting if w.job_id != victim.job_id)
    return dataclasses.replace(
        plan, starts=(*kept, Start(victim.job_id, (locked,))), waiting=waiting
    )


def test_dry_run_reports_the_validators_violations() -> None:
    snapshot, policy = load_snapshot(SMALL), load_policy(str(DEFAULT_POLICY))
    good = dry_run(snapshot, policy)
    assert good.violations == []
    bad = dry_run(snapshot, policy, solve_fn=_bad_solver)
    assert bad.violations and any("smithi003" in v for v in bad.violations), bad.violations


def test_rejected_plan_exits_4_and_prints_the_violations(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(optialloc.solver, "solve", _bad_solver)
    monkeypatch.delenv("OPTIALLOC_CONFIG", raising=False)
    code = main(["plan", "--dry-run", "--snapshot", str(SMALL), "--json"])
    captured = capsys.readouterr()
    assert code == ExitCode.PLAN_REJECTED
    data = json.loads(captured.out)
    assert data["valid"] is False and data["violations"]
    assert "REJECTED" in captured.err and "smithi003" in captured.err


# ---------------------------------------------------------------- plan_report (pure)


def _tiny_plan() -> Plan:
    taken = datetime(2026, 11, 24, 18, tzinfo=UTC)
    return Plan(
        taken_at=taken,
        starts=(Start("1", ("smithi001", "smithi002")), Start("2", ())),
        held=(Hold("smithi003", "3"),),
        waiting=(Waiting("3", 1, WaitReason.NOT_ENOUGH_NODES, "needs 4 smithi, 1 held"),),
        solver=SolverStats(status="FEASIBLE", objective=9.0, bound=10.0, wall_s=0.25),
    )


def test_plan_to_dict_without_a_snapshot_has_the_documented_keys() -> None:
    data = plan_to_dict(_tiny_plan())
    assert set(data) == {"taken_at", "starts", "held", "waiting", "solver"}
    assert data["taken_at"] == "2026-11-24T18:00:00Z"
    assert data["starts"] == [
        {"job_id": "1", "nodes": ["smithi001", "smithi002"]},
        {"job_id": "2", "nodes": []},
    ]
    assert data["held"] == [{"node": "smithi003", "for_job_id": "3"}]
    assert data["waiting"] == [
        {
            "job_id": "3",
            "position": 1,
            "reason": "not_enough_nodes",
            "detail": "needs 4 smithi, 1 held",
        }
    ]
    assert data["solver"]["gap"] == pytest.approx(0.1)
    json.dumps(data)  # JSON-ready


def test_solver_line_and_tables_have_units_and_cut_long_cells() -> None:
    line = format_solver(_tiny_plan())
    assert "FEASIBLE" in line and "gap 10.00 %" in line and "time 0.250 s" in line
    lines = format_table(["a", "detail"], [["x" * 80, "y" * 80]])
    assert lines[1].startswith("x" * 57 + "...") and lines[1].endswith("y" * 80)


def test_a_reader_that_stops_early_is_not_an_error() -> None:
    env = {k: v for k, v in os.environ.items() if k != "OPTIALLOC_CONFIG"}
    sepia = FIXTURES / "snapshots" / "sepia.gen.yaml"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "optialloc",
            "plan",
            "--dry-run",
            "--snapshot",
            str(sepia),
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
        env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(10).startswith(b"{")
    proc.stdout.close()  # like `| head`: megabytes of JSON are left unread
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, stderr
    assert "Traceback" not in stderr

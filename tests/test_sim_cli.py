"""`optialloc whatif` end to end in a subprocess: --json, --report, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import FIXTURES, REPO

REQUIRED = (
    "utilization",
    "mean_wait_s",
    "p95_wait_s",
    "max_wait_s",
    "mean_bounded_slowdown",
    "priority_weighted_wait_s",
    "jain_owners",
)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "optialloc", "whatif", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_json_and_report_for_the_demo_workload(tmp_path: Path) -> None:
    out = tmp_path / "report"
    proc = _run(
        "--lab",
        str(FIXTURES / "labs" / "demo.yaml"),
        "--workload",
        str(FIXTURES / "workloads" / "demo.jsonl"),
        "--json",
        "--report",
        str(out),
        "--quiet",
        "--workers",
        "2",
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert set(data) == {"default", "fcfs", "teuthology", "easy", "easy-maxtime"}
    for name, metrics in data.items():
        for key in REQUIRED:
            assert isinstance(metrics[key], int | float), (name, key)
        assert metrics["jobs"] == 39 and metrics["never_started"] == 0
    assert data["default"]["solver_ticks"] > 0 and data["fcfs"]["solver_ticks"] == 0
    for name in ("results.md", "results.csv", "results.json"):
        assert (out / name).stat().st_size > 0
    assert "| metric | default | fcfs |" in (out / "results.md").read_text()
    assert json.loads((out / "results.json").read_text())["easy"]["jobs"] == 39
    for png in ("wait_by_band.png", "utilization_queue.png", "owner_share.png", "solver_time.png"):
        data_png = (out / png).read_bytes()
        assert data_png[:8] == b"\x89PNG\r\n\x1a\n" and len(data_png) > 2000, png


def test_text_table_for_an_swf_window_with_baselines() -> None:
    trace = REPO.parent / "shared" / "data" / "traces" / "lublin_256.swf"
    assert trace.is_file(), f"missing {trace}"
    proc = _run(
        "--swf",
        str(trace),
        "--window",
        "1981:200",
        "--baseline",
        "fcfs",
        "--baseline",
        "easy",
        "--quiet",
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("200 jobs, 1 window, 256 nodes")
    assert "mean bounded slowdown (tau 10 s)" in proc.stdout and " h" in proc.stdout


def test_bad_input_exits_3_naming_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"submit": 0, "runtime": 10, "body": {"machine_type": "smithi", "roles": [["a"]]}}\n'
        '{"submit": 5, "runtime": "long", "body": {}}\n'
    )
    proc = _run("--lab", str(FIXTURES / "labs" / "demo.yaml"), "--workload", str(bad), "--quiet")
    assert proc.returncode == 3
    assert f"{bad}:2: runtime" in proc.stderr
    proc = _run("--workload", str(bad), "--quiet")
    assert proc.returncode == 3 and "--lab" in proc.stderr


def test_help_shows_examples() -> None:
    proc = _run("--help")
    assert proc.returncode == 0
    assert "--window START:COUNT" in proc.stdout and "examples:" in proc.stdout

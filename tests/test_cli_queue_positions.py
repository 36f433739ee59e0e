"""`optialloc queue list` shows the dispatcher's position and reason for every waiting job."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import REPO
from serve_support import Lab, lab_nodes


def queue_list(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "OPTIALLOC_CONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "optialloc", "--config", str(config), "queue", "list", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def test_queue_list_shows_positions_and_reasons_from_the_last_tick(tmp_path: Path) -> None:
    lab = Lab(tmp_path, "sleep 0.2", nodes=lab_nodes(2))
    try:
        urgent = lab.put(1, priority=10, run="urgent-run")
        medium = lab.put(1, priority=100, run="pr-run")
        low = lab.put(1, priority=500, run="pr-run")
        nightly = lab.put(1, priority=1000, run="nightly")
        too_big = lab.put(3, priority=50, run="big-run")
        report = lab.tick()
        started = set(report.started)
        assert started == {urgent, medium}
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump({"state_dir": str(tmp_path)}))

        records = json.loads(queue_list(config, "--json").stdout)
        by_id = {r["job_id"]: r for r in records}
        assert set(by_id) == {low, nightly, too_big}
        # Listed in dispatch order, positions 1..n, each with its reason and detail.
        assert [r["position"] for r in records] == [1, 2, 3]
        assert by_id[low]["position"] < by_id[nightly]["position"]
        assert by_id[too_big]["reason"] == "invalid"
        assert by_id[low]["reason"] in {
            "not_enough_nodes",
            "lower_priority",
            "run_over_share",
            "owner_over_share",
        }
        assert all(r["detail"] for r in records)

        text = queue_list(config).stdout
        assert "REASON" in text and "invalid" in text
    finally:
        lab.run_until_idle()
        lab.close()


def test_queue_list_without_a_dispatcher_has_no_positions(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"state_dir": str(tmp_path / "state")}))
    env = {k: v for k, v in os.environ.items() if k != "OPTIALLOC_CONFIG"}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "optialloc",
            "--config",
            str(config),
            "schedule",
            str(REPO / "fixtures" / "jobs" / "rados-basic.yaml"),
            "--name",
            "r1",
            "--machine-type",
            "smithi",
        ],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    records = json.loads(queue_list(config, "--json").stdout)
    assert len(records) == 1
    assert records[0]["position"] is None and records[0]["reason"] is None

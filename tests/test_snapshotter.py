"""The live lab's snapshot (`live_snapshot`) and `optialloc plan --dry-run` on it."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import yaml
from conftest import REPO

from optialloc.config import Config
from optialloc.dispatch.journal import Journal
from optialloc.dispatch.snapshotter import live_snapshot
from optialloc.domain import Job
from optialloc.queue.embedded import EmbeddedQueue
from optialloc.snapshots.io import load_snapshot_document
from optialloc.teuthology import dump_body


def _lab(tmp_path: Path, jobs: int = 3) -> Path:
    state = tmp_path / "state"
    state.mkdir()
    queue = EmbeddedQueue(str(state / "queue.sqlite"))
    for i in range(jobs):
        body = {
            "name": "run",
            "owner": f"o{i}",
            "machine_type": "smithi",
            "priority": 100 + i,
            "roles": [["osd.0"], ["osd.1"]],
        }
        queue.put("smithi", dump_body(body), 100 + i)
    queue.close()
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"state_dir": str(state)}))
    return config


def test_live_snapshot_has_the_queue_the_nodes_and_the_journals_running_jobs(
    tmp_path: Path,
) -> None:
    _lab(tmp_path)
    now = datetime.now(UTC)
    journal = Journal(str(tmp_path / "state" / "journal.sqlite"))
    job = Job("99", "other-run", "carol", 50, ("smithi",), 1, now)
    row = journal.intent(job, ["smithi001"], "/a/other-run/99", 1, now)
    journal.advance(row, "running", now, pid=1, pgid=1, started_at=now)
    journal.close()
    snapshot = live_snapshot(Config(state_dir=str(tmp_path / "state")))
    assert [j.priority for j in snapshot.queue] == [100, 101, 102]
    assert len(snapshot.nodes) == 14  # the demo lab, imported on first use
    assert [(r.job_id, r.nodes) for r in snapshot.running] == [("99", ("smithi001",))]
    assert snapshot.usage["carol"] >= 0.0


def test_plan_dry_run_reads_the_live_lab_and_dumps_it(tmp_path: Path) -> None:
    config = _lab(tmp_path)
    dump = tmp_path / "live.yaml"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "optialloc",
            "--config",
            str(config),
            "plan",
            "--dry-run",
            "--json",
            "--dump-snapshot",
            str(dump),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    out = yaml.safe_load(proc.stdout)
    assert out["valid"] is True
    assert len(out["starts"]) + len(out["waiting"]) == 3
    document = load_snapshot_document(str(dump))
    assert len(document.snapshot.queue) == 3 and len(document.snapshot.nodes) == 14
    # nothing was dispatched: the queue still holds all three
    queue = EmbeddedQueue(str(tmp_path / "state" / "queue.sqlite"))
    assert len(queue.pending()) == 3
    queue.close()

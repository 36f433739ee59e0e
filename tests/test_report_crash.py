"""Crash tests of the reporting path: kill -9 between a report written and its delivery.

`serve` runs with the results server (the paddles look-alike) down, so every
report stays in the outbox, and is killed at a commit step
(`OPTIALLOC_CRASH_AT`): `launch` (launched, `running` not yet written: the
restart's reconcile writes it), `running` (written, not delivered), `settle`
(the final report written, the journal row not yet settled: the restart
settles again and the outbox drops the duplicate). Then the server comes back
and a second `serve` finishes the work: every job ran once and its record
walked queued -> running -> pass/fail, one record per job, and ended exactly
as without the crash.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from paddles_server import FakePaddles
from serve_support import job_body, put_bodies, read_records, record_config, run_serve

pytestmark = pytest.mark.slow

JOBS = 6


def walk(reports: list[tuple[str, str, dict[str, Any]]], job_id: str) -> list[str]:
    seen = [b.get("status") for _, _, b in reports if str(b.get("job_id")) == job_id]
    return [s for k, s in enumerate(seen) if k == 0 or s != seen[k - 1]]


@pytest.mark.parametrize("step", ["launch:2", "running:2", "settle:2"])
def test_kill_9_with_reports_in_the_outbox_then_restart_ends_every_record_right(
    tmp_path: Path, step: str
) -> None:
    results = FakePaddles().start()
    url = results.url
    results.stop()  # down: nothing the first serve writes is delivered before the kill
    config = record_config(
        tmp_path,
        tick_seconds=0.3,
        locked_by="optialloc@crash",
        archive_base=str(tmp_path / "archive"),
        results_server=url,
    )
    state = tmp_path / "state"
    bodies = [
        job_body(1 + i % 2, run=f"run-{i % 2}", priority=100 + i, duration="0.2")
        for i in range(JOBS)
    ]
    ids = put_bodies(state, bodies)
    try:
        crashed = run_serve(config, crash_at=step)
        assert crashed.returncode == -9, crashed.stderr[-2000:]
        results.restart()
        finished = run_serve(config)
        assert finished.returncode == 0, finished.stderr[-3000:]
        ran = sorted(r[0] for r in read_records(tmp_path / "records.txt"))
        assert ran == sorted(ids)  # each once
        runs = {job_id: f"run-{i % 2}" for i, job_id in enumerate(ids)}
        assert set(results.jobs) == {(runs[j], j) for j in ids}  # one record per job
        for job_id in ids:
            record = results.jobs[(runs[job_id], job_id)]
            steps = walk(results.reports, job_id)
            assert steps[0] == "queued" and steps[-2:] == ["running", "pass"], (job_id, steps)
            assert record["status"] == "pass" and record["success"] is True
            assert record["targets"] and record["started"] and record["pid"]
    finally:
        results.stop()

"""Issue 16: a job that fails on its own (archive path, launch, runner signal) fails alone.

Real embedded queue, inventory, journal and command runner around one
Dispatcher (tests/serve_support.py); each test failed before its fix.
"""

from __future__ import annotations

import os
import re
import signal
from datetime import UTC, datetime
from pathlib import Path

import pytest
from serve_support import Lab

from optialloc.dispatch.commit import MAX_RUN_PART, archive_path_for
from optialloc.domain import Job
from optialloc.teuthology import parse_job

NAMES = [
    "teuthology-2026-12-01_20:00:03-rados-main-distro-default-smithi",
    "r" * 4100,
    "é" * 300,
    "a\0b",
    "esc\x1b[31mred\nnew\tline\r\x7f",
    "..",
    ".",
    "../../etc",
    "/abs/path",
    "",
    " ",
]


def a_job(run: str, job_id: str = "42") -> Job:
    mapping = {"name": run, "machine_type": "smithi"}
    return parse_job(mapping, job_id=job_id, tube="smithi", queued_at=datetime.now(UTC))


@pytest.mark.parametrize("run", NAMES, ids=range(len(NAMES)))
def test_archive_dir_names_are_bounded_clean_and_inside_the_base(tmp_path: Path, run: str) -> None:
    base = str(tmp_path / "archive")
    path = archive_path_for(base, a_job(run))
    assert os.path.commonpath([base, os.path.realpath(path)]) == base
    rel = os.path.relpath(path, base).split(os.sep)
    assert len(rel) == 2 and rel[1] == "42"
    assert all(part not in ("", ".", "..") for part in rel)
    assert len(rel[0].encode()) <= MAX_RUN_PART
    assert not re.search(r"[\x00-\x1f\x7f]", path)
    assert archive_path_for(base, a_job(run)) == path  # stable
    os.makedirs(path)  # the file system takes it


def test_teuthology_names_keep_teuthologys_layout(tmp_path: Path) -> None:
    run = NAMES[0]
    assert archive_path_for(str(tmp_path), a_job(run)) == str(tmp_path / run / "42")


def test_sanitized_names_stay_unique() -> None:
    long_a, long_b = "x" * 300 + "a", "x" * 300 + "b"
    paths = {archive_path_for("/a", a_job(n)) for n in (long_a, long_b, "a\nb", "a_b", "a\x1bb")}
    assert len(paths) == 5


def test_a_job_failing_in_prepare_or_launch_fails_alone(tmp_path: Path) -> None:
    lab = Lab(tmp_path, "true")
    try:
        # `<archive>/<run>` is a file: prepare used to raise NotADirectoryError out of the tick
        os.makedirs(lab.archive)
        Path(lab.archive, "blocked").write_text("not a dir")
        good = [lab.put(run=f"good{i}") for i in range(2)]
        blocked = lab.put(run="blocked", priority=1)
        long = lab.put(run="r" * 4100, priority=2)
        nul = lab.put(run="a\0b\x1b[0m\n", priority=3)
        lab.run_until_idle()
        buried = {b.job_id: b.reason for b in lab.queue.buried()}
        assert list(buried) == [blocked], buried
        assert "blocked" in buried[blocked]
        for job_id in (*good, long, nul):
            assert lab.finished_ok(job_id), lab.journal.rows_for(job_id)
        assert not lab.queue.pending() and not lab.journal.open_rows()
        assert all(n.locked_by is None for n in lab.inventory.nodes())
    finally:
        lab.close()


@pytest.mark.parametrize("action", ["bury", "retry"])
def test_a_runner_ended_by_a_signal_is_reported_dead_with_the_signal(
    tmp_path: Path, action: str
) -> None:
    # The job's own command dies of SIGKILL (the OOM killer, an admin): not the monitor.
    once = "test -e {archive_path}/again || (touch {archive_path}/again; kill -KILL $$)"
    lab = Lab(tmp_path, f"sh -c '{once}'", on_runner_signal=action)
    try:
        job_id = lab.put(run="sig")
        lab.run_until_idle()
        rows = lab.journal.rows_for(job_id)
        first = rows[0]
        assert first.state == "failed" and "SIGKILL" in (first.reason or ""), first
        assert "signal" in (first.reason or "")
        if action == "bury":
            (buried,) = lab.queue.buried()
            assert buried.job_id == job_id and "SIGKILL" in buried.reason
            assert len(rows) == 1
        else:
            assert not lab.queue.buried() and lab.finished_ok(job_id) and len(rows) == 2
        assert all(n.locked_by is None for n in lab.inventory.nodes())
    finally:
        lab.close()


def test_signal_names() -> None:
    from optialloc.dispatch.commit import signal_of

    assert signal_of(137) == signal.SIGKILL
    assert signal_of(143) == signal.SIGTERM
    assert signal_of(1) is None and signal_of(0) is None and signal_of(126) is None


def test_on_runner_signal_is_checked_and_reaches_the_dispatcher(tmp_path: Path) -> None:
    from optialloc.config import load_config
    from optialloc.dispatch.serve import settings_from
    from optialloc.errors import ConfigError

    path = tmp_path / "c.yaml"
    path.write_text(f"state_dir: {tmp_path}\non_runner_signal: retry\n")
    assert settings_from(load_config(str(path))).on_runner_signal == "retry"
    path.write_text(f"state_dir: {tmp_path}\non_runner_signal: sometimes\n")
    with pytest.raises(ConfigError, match="on_runner_signal"):
        load_config(str(path))

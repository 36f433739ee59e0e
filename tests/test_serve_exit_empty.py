"""Issue 16 case 4: `serve --exit-on-empty-queue` exits 0 only when nothing is left over.

Left over = a claimed job, a node locked for a job, or an open journal row.
The residue here is what a commit that died mid-batch leaves (case 3: rows
`locked`, jobs claimed, nodes locked); serve used to log "queue empty and
nothing running" and exit 0 with it still there.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from serve_support import job_body, put_bodies, read_records, record_config

from optialloc.config import load_config
from optialloc.dispatch.commit import archive_path_for, lock_owner
from optialloc.dispatch.dispatcher import TickReport
from optialloc.dispatch.serve import Server
from optialloc.errors import Conflict, ExitCode
from optialloc.teuthology import dump_body


def _config(tmp_path: Path) -> Path:
    return record_config(tmp_path, tick_seconds=0.1, locked_by="optialloc@empty")


class _LeaveResidue:
    """At the first tick, claim a queued job, lock a node for it and journal it `locked`."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.done = False
        self.node = ""

    def __call__(self, report: TickReport) -> None:
        if self.done:
            return
        self.done = True
        s = self.server
        job_id = s.queue.put("smithi", dump_body(job_body(1, run="left", duration="0.05")), 100)
        (job,) = [j for j in s.queue.pending() if j.job_id == job_id]
        node = next(
            n.name for n in s.inventory.nodes() if n.machine_type == "smithi" and not n.locked
        )
        path = archive_path_for(s.dispatcher.settings.archive_base, job)
        row = s.journal.intent(job, [node], path, 99, datetime.now(UTC))
        assert s.queue.claim(job.job_id)
        s.inventory.lock([node], path, lock_owner(job, s.inventory))  # as a commit locks
        s.journal.advance(row, "locked", datetime.now(UTC))
        self.node = node


def _serve(config: Path, *, stuck: bool = False) -> tuple[int, _LeaveResidue]:
    server = Server(load_config(str(config)), exit_on_empty_queue=True)
    residue = _LeaveResidue(server)
    server.on_tick = residue
    server.stuck_s = 0.0  # give up after STUCK_TICKS tries, not after 2 minutes
    if stuck:  # a lock server that never gives this lock back: nothing can settle it

        def refuse(names: object, description: str, *rest: object) -> None:
            raise Conflict(f"{description} is held by someone else")

        server.inventory.unlock = refuse  # type: ignore[method-assign]
    try:
        return server.run(), residue
    finally:
        server.close()


def test_residue_is_repaired_and_run_before_exit_zero(tmp_path: Path) -> None:
    config = _config(tmp_path)
    state = tmp_path / "state"
    put_bodies(state, [job_body(1, duration="0.05")])
    code, _ = _serve(config)
    assert code == 0
    ids = [r[0] for r in read_records(tmp_path / "records.txt")]
    assert len(ids) == 2 and len(set(ids)) == 2
    server2 = Server(load_config(str(config)))
    try:
        assert not server2.queue.claimed() and not server2.queue.pending()
        assert not server2.journal.open_rows() and not [
            n for n in server2.inventory.nodes() if n.locked
        ]
    finally:
        server2.close()


def test_residue_that_cannot_be_settled_exits_non_zero_saying_what(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = _config(tmp_path)
    put_bodies(tmp_path / "state", [job_body(1, duration="0.05")])
    with caplog.at_level(logging.INFO):
        code, residue = _serve(config, stuck=True)
    assert code == ExitCode.INTERNAL
    text = caplog.text
    assert "claimed" in text and residue.node in text and "journal" in text
    assert "nothing running: exiting" not in text

"""The read-only shadow: `plan --dry-run`, `queue list/stats/buried` change nothing in beanstalkd.

Real beanstalkd, jobs put exactly as teuthology-schedule puts them (YAML body,
its priority, ttr 86400) into several tubes, plus one buried and one reserved
by another client (a teuthology dispatcher). Before and after each read-only
command, beanstalkd's own `stats-tube` of every tube and `stats-job` of every
job must be identical (counters included: reserves, releases, buries, kicks,
cmd-delete ...), and the listing must still show every ready job.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import beanstalkc
import pytest
import yaml
from conftest import REPO
from serve_support import beanstalk_config

pytestmark = pytest.mark.beanstalkd

# beanstalkd fields that move with time or with our own connection, not with the jobs
_CLOCK = {"age", "time-left", "current-using", "current-watching", "current-waiting"}


def teuthology_body(i: int, tube: str, priority: int) -> dict[str, Any]:
    """A body as `teuthology-schedule --worker <tube>` writes it (teuthology-interfaces.md)."""
    return {
        "description": f"rados/basic/{{clusters/fixed-2 tasks/rados_api}} {i}",
        "email": None,
        "first_in_suite": False,
        "last_in_suite": False,
        "machine_type": tube,
        "name": f"teuthology-2026-12-01_20:00:0{i % 3}-rados-main-distro-default-{tube}",
        "no_nested_subset": False,
        "os_type": "ubuntu",
        "os_version": "22.04",
        "owner": "scheduled_alice@teuth",
        "priority": priority,
        "roles": [["mon.a", "osd.0"], ["client.0"]][: 1 + i % 2],
        "tasks": [{"install": None}, {"ceph": None}],
        "tube": tube,
        "verbose": False,
    }


def counters(port: int, jids: list[int]) -> tuple[dict[str, Any], dict[int, Any]]:
    conn = beanstalkc.Connection("127.0.0.1", port, parse_yaml=yaml.safe_load)
    try:
        tubes = {
            t: {k: v for k, v in conn.stats_tube(t).items() if k not in _CLOCK}
            for t in conn.tubes()
        }
        jobs = {}
        for jid in jids:
            try:
                jobs[jid] = {k: v for k, v in conn.stats_job(jid).items() if k not in _CLOCK}
            except beanstalkc.CommandFailed:
                jobs[jid] = None
        return tubes, jobs
    finally:
        conn.close()


def ready_order(port: int, tube: str) -> int | None:
    """The head of `tube`'s ready queue (peek-ready: no counter moves)."""
    conn = beanstalkc.Connection("127.0.0.1", port, parse_yaml=yaml.safe_load)
    try:
        conn.use(tube)
        job = conn.peek_ready()
        return None if job is None else int(job.jid)
    finally:
        conn.close()


def optialloc(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "optialloc", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert proc.returncode == 0, f"optialloc {' '.join(args)}:\n{proc.stderr[-3000:]}"
    return proc


def test_plan_dry_run_and_queue_listings_leave_beanstalkd_untouched(
    beanstalkd: Any, tmp_path: Path
) -> None:
    conn = beanstalkc.Connection("127.0.0.1", beanstalkd.port, parse_yaml=yaml.safe_load)
    jids: list[int] = []
    ready: dict[int, str] = {}
    runs: dict[int, str] = {}
    for i, (tube, priority) in enumerate(
        [("smithi", 1000), ("smithi", 75), ("mira", 100), ("multi", 1000), ("smithi", 75)] * 3
    ):
        conn.use(tube)
        body = teuthology_body(i, tube, priority)
        jid = int(conn.put(yaml.safe_dump(body), priority=priority, ttr=86400))
        jids.append(jid)
        ready[jid] = tube
        runs[jid] = body["name"]
    # A job a teuthology dispatcher has reserved and one it buried: not ready, not ours.
    conn.use("smithi")
    reserved_jid = int(conn.put(yaml.safe_dump(teuthology_body(90, "smithi", 5)), priority=5))
    buried_jid = int(conn.put(yaml.safe_dump(teuthology_body(91, "smithi", 6)), priority=6))
    jids += [reserved_jid, buried_jid]
    conn.watch("smithi")
    taken = conn.reserve(timeout=0)
    assert taken is not None and int(taken.jid) == reserved_jid
    other = beanstalkc.Connection("127.0.0.1", beanstalkd.port, parse_yaml=yaml.safe_load)
    other.watch("smithi")
    to_bury = other.reserve(timeout=0)
    assert to_bury is not None and int(to_bury.jid) == buried_jid
    to_bury.bury()
    other.close()

    config = beanstalk_config(tmp_path, beanstalkd.port, locked_by="optialloc@shadow")
    heads = {t: ready_order(beanstalkd.port, t) for t in ("smithi", "mira", "multi")}
    before = counters(beanstalkd.port, jids)

    listed = json.loads(optialloc(config, "queue", "list", "--json").stdout)
    stats = json.loads(optialloc(config, "queue", "stats", "--json").stdout)
    plan = json.loads(optialloc(config, "plan", "--dry-run", "--json").stdout)
    optialloc(config, "queue", "buried")
    # twice: the second walk starts from the cursor the first one left
    again = json.loads(optialloc(config, "queue", "list", "--json").stdout)

    after = counters(beanstalkd.port, jids)
    assert after == before  # stats-tube of every tube, stats-job of every job: unchanged
    assert {t: ready_order(beanstalkd.port, t) for t in heads} == heads
    # the listing still shows every ready job, in beanstalkd's order per tube
    assert sorted(int(r["job_id"]) for r in listed) == sorted(ready)
    assert [r["job_id"] for r in again] == [r["job_id"] for r in listed]
    smithi = [r for r in listed if r["tube"] == "smithi"]
    assert [(r["priority"], int(r["job_id"])) for r in smithi] == sorted(
        (r["priority"], int(r["job_id"])) for r in smithi
    )
    assert {int(r["job_id"]): r["run"] for r in listed} == runs
    by_tube = {s["tube"]: s["ready"] for s in stats if s["tube"] != "default"}
    assert by_tube == {"smithi": 9, "mira": 3, "multi": 3}
    # the dry run saw the queued jobs (each either starts or waits with a reason)
    planned = {s["job_id"] for s in plan["starts"]} | {w["job_id"] for w in plan["waiting"]}
    assert planned == {str(j) for j in ready}
    conn.close()


def test_writes_through_the_read_only_view_are_refused(beanstalkd: Any, tmp_path: Path) -> None:
    from optialloc.config import load_config
    from optialloc.errors import InputError
    from optialloc.queue import open_queue

    path = beanstalk_config(tmp_path, beanstalkd.port)
    queue = open_queue(load_config(str(path)), read_only=True)
    try:
        for write in (
            lambda: queue.claim("1"),
            lambda: queue.delete("1"),
            lambda: queue.bury("1", "x"),
            lambda: queue.set_priority("1", 5),
            lambda: queue.kick(["1"]),
            lambda: queue.put("smithi", "name: x\n", 5),
        ):
            with pytest.raises(InputError, match="read-only view of beanstalkd"):
                write()
    finally:
        queue.close()

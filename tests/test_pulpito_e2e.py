"""Every job in pulpito, whatever happens: `serve` end to end against the paddles look-alike.

Real beanstalkd, jobs put with the body teuthology-schedule writes (and, for
half of them, the `queued` record teuthology-schedule POSTs to the results
server), the embedded inventory (3 smithi nodes), a command runner, and the
look-alike paddles as results server, stopped for 20 s while jobs start and
end, then restarted on the same port with its records. Afterwards every
job's record must have walked queued -> (waiting ->) running -> pass/fail
with its targets, pid and start time, `success` set, exactly one record per
job; the job of a machine type the lab lacks and the job whose body does not
parse are `dead` with the reason in `failure_reason`.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import beanstalkc
import httpx
import pytest
import yaml
from conftest import REPO
from paddles_server import FakePaddles
from serve_support import (
    beanstalk_config,
    env_without_crash,
    read_records,
    serve_cmd,
    teuthology_schedule_body,
    wait_for,
)

pytestmark = [pytest.mark.beanstalkd, pytest.mark.slow]

JOBS = 30
OUTAGE_S = 20.0
COMMAND = (
    "sh -c 's=$(date +%s.%N); sleep {body[duration]}; e=$(date +%s.%N); "
    'echo "{job_id} nodes:{nodes} $s $e" >> RECORDS; exit {body[exit_code]}\''
)


def lab(path: Path) -> Path:
    nodes = [
        {
            "name": f"smithi{i:03d}",
            "machine_type": "smithi",
            "os_type": "ubuntu",
            "os_version": "22.04",
            "arch": "x86_64",
            "ssh_pub_key": f"ssh-ed25519 KEY{i}",
        }
        for i in (1, 2, 3)
    ]
    path.write_text(yaml.safe_dump({"name": "e2e", "nodes": nodes}))
    return path


def walk(reports: list[tuple[str, str, dict[str, Any]]], job_id: str) -> list[str]:
    """The statuses a job's record went through (a POST answered 400 + its PUT: one step)."""
    seen = [b.get("status") for _, _, b in reports if str(b.get("job_id")) == job_id]
    return [s for k, s in enumerate(seen) if k == 0 or s != seen[k - 1]]


def test_every_record_walks_queued_running_end_through_a_results_server_outage(
    beanstalkd: Any, tmp_path: Path
) -> None:
    results = FakePaddles().start()
    conn = beanstalkc.Connection("127.0.0.1", beanstalkd.port, parse_yaml=yaml.safe_load)
    conn.use("smithi")
    expected: dict[str, str] = {}  # job_id -> final status
    runs: dict[str, str] = {}
    for i in range(JOBS):
        code = 1 if i % 4 == 3 else 0
        body = teuthology_schedule_body(i, priority=100 + i, duration="3", exit_code=code)
        jid = str(conn.put(yaml.safe_dump(body), priority=body["priority"], ttr=86400))
        expected[jid] = "fail" if code else "pass"
        runs[jid] = body["name"]
        if i % 2 == 0:  # teuthology-schedule with a results server: POST {job_id, status: queued}
            doc = {k: v for k, v in body.items() if k != "tube"}
            doc.update(job_id=jid, status="queued")
            answer = httpx.post(f"{results.url}/runs/{body['name']}/jobs/", json=doc)
            assert answer.status_code == 200
    # the run's last_in_suite job: runs after the rest of its run; teuthology removes its
    # record when it starts (so does optialloc)
    last_body = teuthology_schedule_body(99, nodes=0, last_in_suite=True, duration="0.1")
    last_body["exit_code"] = 0
    last = str(conn.put(yaml.safe_dump(last_body), priority=1000, ttr=86400))
    doc = {k: v for k, v in last_body.items() if k != "tube"}
    doc.update(job_id=last, status="queued")
    assert httpx.post(f"{results.url}/runs/{last_body['name']}/jobs/", json=doc).status_code == 200
    conn.use("mira")  # no mira node in this lab: invalid, reported dead
    mira = teuthology_schedule_body(90, machine_type="mira", duration="1", exit_code=0)
    invalid = str(conn.put(yaml.safe_dump(mira), priority=50, ttr=86400))
    runs[invalid] = mira["name"]
    conn.use("smithi")  # a body that does not parse as a job: buried on entry, reported dead
    malformed = str(conn.put("name: broken-run\nowner: x\nroles: not-a-list\n", priority=60))
    conn.close()

    config = beanstalk_config(
        tmp_path,
        beanstalkd.port,
        tick_seconds=0.5,
        lab=str(lab(tmp_path / "lab.yaml")),
        locked_by="optialloc@e2e",
        runner_command=COMMAND.replace("RECORDS", str(tmp_path / "records.txt")),
        archive_base=str(tmp_path / "archive"),
        results_server=results.url,
    )
    serve = subprocess.Popen(
        serve_cmd(config),
        cwd=REPO,
        env=env_without_crash(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(
            lambda: any(j.get("status") == "running" for j in list(results.jobs.values())),
            90,
            "a job reported running",
        )
        # pulpito's "The Queue" page: the run with jobs still queued is listed
        queue_page = httpx.get(f"{results.url}/runs/queued/").json()
        listed = {r["name"]: r for r in queue_page}
        assert listed[runs[next(iter(expected))]]["results"].get("queued", 0) > 0
        results.stop()  # the results server goes away for 20 s while jobs start and end
        down_at = time.time()
        time.sleep(OUTAGE_S)
        up_at = time.time()
        results.restart()
        _, stderr = serve.communicate(timeout=300)
        assert serve.returncode == 0, stderr[-3000:]
        # serve drained the outbox at exit (15 s at most); anything left would show below
        records = read_records(tmp_path / "records.txt")
        ran = {r[0] for r in records}
        assert ran == {*expected, last} and len(records) == JOBS + 1  # each once
        during = [r[0] for r in records if down_at <= r[2] <= up_at]
        assert during, "some jobs started while the results server was down"

        assert set(results.jobs) == {(runs[j], j) for j in [*expected, invalid]} | {
            ("broken-run", malformed)
        }  # one record per job, teuthology-schedule's ones updated, not duplicated
        for jid, end in expected.items():
            record = results.jobs[(runs[jid], jid)]
            steps = walk(results.reports, jid)
            assert steps[0] == "queued" and steps[-2:] == ["running", end], (jid, steps)
            assert set(steps[1:-2]) <= {"queued", "waiting"}, (jid, steps)
            assert record["status"] == end and record["success"] is (end == "pass")
            assert record["targets"] and all(
                k.startswith("ubuntu@smithi") for k in record["targets"]
            )
            assert record["started"] and record["pid"] and record["posted"] and record["updated"]
        for jid in during:  # started during the outage: the record is complete all the same
            assert results.jobs[(runs[jid], jid)]["started"]
        dead = results.jobs[(runs[invalid], invalid)]
        assert dead["status"] == "dead" and "mira" in dead["failure_reason"]
        assert [m for m, p, _ in results.reports if p.endswith(f"/{last}/")][-1] == "DELETE"
        broken = results.jobs[("broken-run", malformed)]
        assert broken["status"] == "dead" and "roles" in broken["failure_reason"]
        assert dead["success"] is False and broken["success"] is False
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait(timeout=10)
        results.stop()

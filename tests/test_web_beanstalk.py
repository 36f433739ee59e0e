"""`optialloc web` over teuthology's beanstalkd: it lists the tubes' jobs and changes nothing.

A real beanstalkd (tests' fixture) holds jobs as `teuthology-schedule` puts
them; no serve has moved them into optialloc's store yet. The view peeks
(the read-only queue of docs/queue.md): every job is listed with no position
yet, and beanstalkd still holds every job ready afterwards.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from queue_support import body, raw_put, server_counts
from web_support import new_port, web_server, write_config


@pytest.mark.beanstalkd
def test_web_lists_beanstalkd_jobs_without_taking_them(beanstalkd, tmp_path: Path) -> None:
    ids = [
        raw_put(beanstalkd.port, "smithi", body(f"m{i}", priority=100 + i, run="bs-run"), 100 + i)
        for i in range(3)
    ]
    state = tmp_path / "state"
    config, _token = write_config(
        tmp_path,
        state,
        new_port(),
        queue_backend="beanstalk",
        queue_port=beanstalkd.port,
        tubes=["smithi"],
    )
    with web_server(config, tmp_path / "web.log", "--no-estimates") as base:
        answer = httpx.get(base + "/api/queue", timeout=30).json()
        assert sorted(j["job_id"] for j in answer["jobs"]) == sorted(str(i) for i in ids)
        assert all(j["run"] == "bs-run" and j["position"] is None for j in answer["jobs"])
        tubes = {t["tube"]: t for t in httpx.get(base + "/api/tubes").json()["tubes"]}
        assert tubes["smithi"]["ready"] == 3
    assert server_counts(beanstalkd.port) == {"ready": 3, "reserved": 0, "buried": 0, "delayed": 0}

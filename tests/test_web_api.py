"""The JSON API, the page and /metrics of a live `optialloc web` subprocess on loopback.

The state is made by a real dispatcher tick (real SQLite queue, inventory and
journal, real job processes); the server is the real command on a free port.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from conftest import REPO
from web_support import lab_and_web, new_port, web_server, write_config

from optialloc.inventory.embedded import EmbeddedInventory
from optialloc.queue.embedded import EmbeddedQueue

STABLE_PATHS = ("/api/queue", "/api/tubes/{tube}/pause", "/api/tubes/{tube}/resume")


class Live:
    def __init__(self, base: str, token: str, state: Path, lab: dict[str, Any], config: Path):
        self.base, self.token, self.state, self.lab, self.config = base, token, state, lab, config

    def get(self, path: str, **params: Any) -> httpx.Response:
        return httpx.get(self.base + path, params=params, timeout=30.0)

    def admin(
        self, method: str, path: str, token: str | None = "", **kwargs: Any
    ) -> httpx.Response:
        headers = {} if token is None else {"Authorization": f"Bearer {token or self.token}"}
        return httpx.request(method, self.base + path, headers=headers, timeout=30.0, **kwargs)

    def wait_view(self, predicate: Any, what: str) -> None:
        """Wait for the background refresh to show a change (a hang guard)."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.1)
        raise AssertionError(f"{what} not shown within 30 s")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with lab_and_web(tmp_path_factory.mktemp("web")) as (base, token, state, lab, config):
        yield Live(base, token, state, lab, config)


def _queued(live: Live) -> list[str]:
    return [i for i in live.lab["ids"] if i not in live.lab["started"]]


# -- reads ---------------------------------------------------------------------------


def test_queue_lists_every_pending_job_with_position_and_reason(live: Live) -> None:
    assert live.lab["started"], "the dispatcher started nothing: no lab to look at"
    answer = live.get("/api/queue").json()
    assert sorted(j["job_id"] for j in answer["jobs"]) == sorted(_queued(live))
    assert answer["total"] == len(_queued(live))
    positions = [j["position"] for j in answer["jobs"]]
    assert positions == sorted(positions) and all(isinstance(p, int) for p in positions)
    for job in answer["jobs"]:
        assert job["reason"] and isinstance(job["detail"], str)
        assert job["estimated_start"] is None  # --no-estimates
        assert job["pulpito_url"] == f"http://pulpito.example.com/{job['run']}/{job['job_id']}/"
    assert "estimates" in answer["estimates_note"]


def test_queue_filters_and_paging(live: Live) -> None:
    everything = live.get("/api/queue").json()["jobs"]
    carol = live.get("/api/queue", owner="scheduled_carol@lab").json()
    assert carol["jobs"] and all(j["owner"] == "scheduled_carol@lab" for j in carol["jobs"])
    assert carol["total"] == sum(j["owner"] == "scheduled_carol@lab" for j in everything)
    by_run = live.get("/api/queue", run="run-low").json()["jobs"]
    assert {j["run"] for j in by_run} == {"run-low"}
    assert live.get("/api/queue", tube="no-such-tube").json()["total"] == 0
    assert live.get("/api/queue", machine_type="smithi").json()["total"] == len(everything)
    page = live.get("/api/queue", offset=1, limit=1).json()
    assert page["jobs"] == everything[1:2] and page["total"] == len(everything)


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": 100000}, {"offset": -1}, {"limit": "many"}, {"owner": "x" * 600}],
)
def test_bad_query_parameters_are_422(live: Live, params: dict[str, Any]) -> None:
    answer = live.get("/api/queue", **params)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"]


def test_job_run_and_not_found(live: Live) -> None:
    job_id = _queued(live)[0]
    assert live.get(f"/api/jobs/{job_id}").json()["job_id"] == job_id
    missing = live.get("/api/jobs/999999")
    assert missing.status_code == 404 and "999999" in missing.json()["detail"]
    run = live.get("/api/runs/run-low").json()
    assert run["counts"]["queued"] == 2 and run["positions"]
    assert run["pulpito_url"] == "http://pulpito.example.com/run-low/"
    runs = live.get("/api/runs").json()
    names = {r["run"] for r in runs["runs"]}
    assert {"run-big", "run-small", "run-low"} <= names
    running = live.get("/api/runs", status="running").json()["runs"]
    assert running and all(r["counts"].get("running") for r in running)
    assert live.get("/api/runs/nope").status_code == 404


def test_nodes_usage_tick_tubes(live: Live) -> None:
    nodes = live.get("/api/nodes").json()
    assert nodes["total"] == 6 and set(nodes["counts"]) == {"smithi", "mira"}
    locked = [n for n in nodes["nodes"] if n["state"] == "locked"]
    assert locked, "the dispatcher's jobs hold nodes"
    for node in locked:
        assert node["locked_by"] and node["locked_since"]
        assert node["job_id"] in live.lab["started"]
    assert live.get("/api/nodes", machine_type="mira").json()["total"] == 2
    usage = live.get("/api/usage").json()["owners"]
    assert sum(o["locked"] for o in usage) == len(locked)
    tick = live.get("/api/tick").json()
    assert tick["available"] and tick["tick"] >= 1
    assert tick["solver"]["status"] in ("OPTIMAL", "FEASIBLE", "TRIVIAL")
    assert sorted(tick["started"]) == sorted(live.lab["started"])
    tubes = {t["tube"]: t for t in live.get("/api/tubes").json()["tubes"]}
    assert tubes["smithi"]["ready"] + tubes.get("mira", {"ready": 0})["ready"] == len(_queued(live))
    assert live.get("/api/buried").json() == {"total": 0, "jobs": []}


def test_openapi_document_names_the_stable_endpoints(live: Live) -> None:
    doc = live.get("/api/openapi.json").json()
    for path in STABLE_PATHS:
        assert path in doc["paths"], path
    queued = doc["components"]["schemas"]["QueuedJob"]["properties"]
    assert {"job_id", "position", "reason", "detail", "estimated_start"} <= set(queued)


def test_metrics_in_prometheus_text(live: Live) -> None:
    answer = live.get("/metrics")
    assert answer.headers["content-type"].startswith("text/plain")
    text = answer.text
    for name in (
        'optialloc_queued_jobs{priority_band="',
        'optialloc_nodes{machine_type="smithi",state="locked"}',
        "optialloc_running_jobs",
        "optialloc_tick_duration_seconds_bucket",
        "optialloc_solver_wall_seconds_count 1.0",
        "optialloc_jobs_started_total",
        "optialloc_lock_failures_total",
        "optialloc_backend_outages_total",
        "optialloc_solver_gap",
    ):
        assert name in text, name
    started = next(line for line in text.splitlines() if line.startswith("optialloc_jobs_started"))
    assert float(started.split()[-1]) == len(live.lab["started"])


def test_page_shows_the_queue(live: Live) -> None:
    page = live.get("/").text
    for job_id in _queued(live):
        assert f'data-job-id="{job_id}"' in page
    assert "/static/htmx.min.js" in page and "https://" not in page.split("<body")[0]
    assert live.get("/static/htmx.min.js").status_code == 200
    fragment = live.get("/fragments/queue", run="run-low").text
    assert fragment.count('class="job"') == 2


# -- admin ---------------------------------------------------------------------------


def test_admin_token_rules(live: Live) -> None:
    path = "/api/tubes/smithi/resume"
    assert live.admin("POST", path, token=None).status_code == 401
    no_bearer = httpx.post(live.base + path, headers={"Authorization": "Basic eDp5"})
    assert no_bearer.status_code == 401 and no_bearer.headers["www-authenticate"] == "Bearer"
    assert live.admin("POST", path, token="wrong-token").status_code == 403
    assert live.admin("POST", path, token=live.token + "x").status_code == 403
    assert live.admin("POST", path).status_code == 200
    # without a token, bad input is still refused as unauthenticated, not evaluated
    assert live.admin("POST", "/api/jobs/1/priority", token=None, content=b"{").status_code == 401


def test_admin_actions_go_through_the_queue(live: Live) -> None:
    queue = EmbeddedQueue(str(live.state / "queue.sqlite"))
    try:
        answer = live.admin("POST", "/api/tubes/smithi/pause", json={"seconds": 600})
        assert answer.status_code == 200, answer.text
        assert "smithi" in queue.paused_tubes()
        assert live.admin("POST", "/api/tubes/smithi/resume").status_code == 200
        assert "smithi" not in queue.paused_tubes()

        job_id = _queued(live)[-1]
        answer = live.admin("POST", f"/api/jobs/{job_id}/priority", json={"priority": 7})
        assert answer.json()["job_ids"] == [job_id]
        assert queue.store.row(job_id).priority == 7  # type: ignore[union-attr]
        live.wait_view(
            lambda: live.get(f"/api/jobs/{job_id}").json()["priority"] == 7, "new priority"
        )
        answer = live.admin("POST", "/api/runs/run-low/priority", json={"priority": 800})
        low = answer.json()["job_ids"]
        assert len(low) == 2 and all(queue.store.row(i).priority == 800 for i in low)  # type: ignore[union-attr]
    finally:
        queue.close()


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/api/jobs/999999/priority", {"priority": 5}, 404),
        ("POST", "/api/jobs/1/priority", {"priority": -1}, 422),
        ("POST", "/api/jobs/1/priority", {"priority": 2**40}, 422),
        ("POST", "/api/jobs/1/priority", {"priority": "high"}, 422),
        ("POST", "/api/jobs/1/priority", {}, 422),
        ("POST", "/api/jobs/1/priority", b"{not json", 422),
        ("POST", "/api/runs/no-such-run/priority", {"priority": 5}, 404),
        ("DELETE", "/api/runs/no-such-run/jobs", None, 404),
        ("POST", "/api/tubes/smithi/pause", {"seconds": 0}, 422),
        ("POST", "/api/tubes/smithi/pause", {"seconds": "long"}, 422),
        ("POST", "/api/buried/kick", {"job_ids": []}, 422),
        ("POST", "/api/buried/kick", {"job_ids": ["999999"]}, 404),
    ],
)
def test_bad_admin_input_is_4xx_with_a_message(
    live: Live, method: str, path: str, body: Any, status: int
) -> None:
    kwargs: dict[str, Any] = {}
    if isinstance(body, bytes):
        kwargs = {"content": body, "headers": {"Content-Type": "application/json"}}
    elif body is not None:
        kwargs = {"json": body}
    headers = {"Authorization": f"Bearer {live.token}", **kwargs.pop("headers", {})}
    answer = httpx.request(method, live.base + path, headers=headers, timeout=30, **kwargs)
    assert answer.status_code == status, answer.text
    assert answer.json()["detail"]


def test_delete_and_kick_like_the_cli(live: Live, tmp_path: Path) -> None:
    queue = EmbeddedQueue(str(live.state / "queue.sqlite"))
    try:
        bad = queue.put("smithi", "this: [is not a teuthology job", 100)  # buried on entry
        extra = [queue.put("smithi", yaml.safe_dump(_body("run-gone")), 100) for _ in range(2)]
    finally:
        queue.close()
    answer = live.admin("POST", "/api/buried/kick", json={"job_ids": [bad]})
    assert answer.status_code == 200 and answer.json()["ok"] is False
    assert "stays buried" in answer.json()["message"]
    answer = live.admin("DELETE", "/api/runs/run-gone/jobs")
    assert sorted(answer.json()["job_ids"]) == sorted(extra)
    listed = _cli(live.config, "queue", "list", "--json")
    assert not {r["job_id"] for r in json.loads(listed)} & set(extra)
    # the CLI sees the same refusal for the same bad input
    cli = subprocess.run(
        [sys.executable, "-m", "optialloc", "--config", str(live.config), "queue", "kick", bad],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert cli.returncode != 0 and "stays buried" in cli.stderr


def _body(run: str) -> dict[str, Any]:
    return {
        "name": run,
        "owner": "scheduled_dave@lab",
        "machine_type": "smithi",
        "priority": 100,
        "roles": [["osd.0"]],
    }


def _cli(config: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "optialloc", "--config", str(config), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=True,
    )
    return result.stdout


def test_admin_is_off_without_a_token_file(tmp_path: Path) -> None:
    state = tmp_path / "state"
    EmbeddedInventory(str(state / "inventory.sqlite"), "x").close()
    config, token = write_config(tmp_path, state, new_port(), admin_token_file=None)
    with web_server(config, tmp_path / "web.log", "--no-estimates") as base:
        answer = httpx.post(
            base + "/api/tubes/smithi/pause", headers={"Authorization": f"Bearer {token}"}
        )
        assert answer.status_code == 403 and "admin_token_file" in answer.json()["detail"]
        # an empty state (no serve ever ran) is shown, not an error
        assert httpx.get(base + "/api/queue").json()["total"] == 0
        assert httpx.get(base + "/api/tick").json()["available"] is False
        assert "no tick yet" in httpx.get(base + "/").text


def test_estimated_starts_from_the_replay(live: Live, tmp_path: Path) -> None:
    """With the estimator on, waiting jobs get an estimated start after the first replay."""
    config = yaml.safe_load(live.config.read_text())
    config["http_port"] = new_port()
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    with web_server(path, tmp_path / "web.log") as base:
        deadline = time.monotonic() + 120  # the replay runs in a niced child process
        jobs: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            jobs = httpx.get(base + "/api/queue", timeout=30).json()["jobs"]
            if any(j["estimated_start"] for j in jobs):
                break
            time.sleep(0.5)
        estimated = [j for j in jobs if j["estimated_start"]]
        assert estimated, "no estimated start within 120 s"
        tick_at = live.get("/api/tick").json()["taken_at"]
        assert all(j["estimated_start"] >= tick_at[:19] for j in estimated)
        note = httpx.get(base + "/api/queue").json()["estimates_note"]
        assert "docs/whatif.md" in note and "start within" in note

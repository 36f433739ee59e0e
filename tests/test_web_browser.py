"""The status page in a real headless Chromium (Debian's `chromium`, driven by Playwright)
against a real `optialloc serve` that starts its web server beside itself (`http_port`).

Playwright's own browser download is not reachable here: the system binary is
launched through `executable_path` (scripts/test.sh installs `chromium` when it
is missing). The page's screenshot is saved in the test's temporary directory,
and also to `$OPTIALLOC_SCREENSHOT` when set (that is how docs/img/web.png is made).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import REPO
from serve_support import job_body, lab_nodes, put_bodies, wait_for
from web_support import new_port, stop_jobs, wait_http, write_config

from optialloc.dispatch.journal import Journal
from optialloc.inventory.embedded import EmbeddedInventory

CHROMIUM = "/usr/bin/chromium"
playwright = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM) and not os.environ.get("CI"),
    reason="Debian's chromium is not installed (scripts/test.sh installs it)",
)

RUNS = [  # (run, owner, priority, nodes, jobs); machine type: the run name's last word
    ("teuthology-2026-12-04_21:00:02-rados-main-distro-default-smithi", "teuthology", 1000, 2, 14),
    ("alice-2026-12-05_01:10:11-rbd-wip-alice-fix-distro-default-smithi", "alice", 75, 1, 6),
    ("bob-2026-12-05_01:40:45-fs-wip-bob-distro-default-smithi", "bob", 100, 3, 5),
    ("carol-2026-12-05_02:02:02-upgrade-wip-carol-distro-default-mira", "carol", 50, 1, 4),
]


class Served:
    def __init__(self, base: str, token: str, state: Path) -> None:
        self.base, self.token, self.state = base, token, state

    def queue(self, **params: Any) -> dict[str, Any]:
        answer: dict[str, Any] = httpx.get(
            self.base + "/api/queue", params={"limit": 1000, **params}, timeout=30
        ).json()
        return answer


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("browser")
    state = tmp / "state"
    state.mkdir()
    inventory = EmbeddedInventory(str(state / "inventory.sqlite"), "optialloc@test")
    inventory.import_nodes(lab_nodes(8) + lab_nodes(3, "mira"))
    inventory.set_up(["smithi008"], False)
    inventory.close()
    bodies = []
    for run, who, priority, nodes, count in RUNS:
        machine_type, owner = run.rsplit("-", 1)[-1], f"scheduled_{who}@lab"
        bodies += [
            job_body(nodes, run=run, owner=owner, priority=priority, machine_type=machine_type)
            for _ in range(count)
        ]
    put_bodies(state, bodies)
    port = new_port()
    config, token = write_config(tmp, state, port, runner_command="sleep 600", tick_seconds=0.5)
    log = open(tmp / "serve.log", "wb")  # noqa: SIM115 (closed below)
    serve = subprocess.Popen(
        [sys.executable, "-m", "optialloc", "--config", str(config), "serve"],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/healthz", timeout=90)
        served = Served(base, token, state)
        wait_for(
            lambda: any(j["position"] for j in served.queue()["jobs"]),
            timeout=90,
            what="positions from serve's ticks",
        )
        yield served
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(30)
        except subprocess.TimeoutExpired:
            serve.kill()
            serve.wait()
        log.close()
        _stop_jobs(state)
    # the web server serve started beside itself went with it
    wait_for(lambda: not _answers(base + "/healthz"), timeout=30, what="web server stopped")


def _answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return False
    return True


def _stop_jobs(state: Path) -> None:
    """serve leaves running jobs running on SIGTERM: stop the test's `sleep 600`s."""
    journal = Journal(str(state / "journal.sqlite"))
    try:
        stop_jobs([row.pgid for row in journal.all_rows() if row.pgid])
    finally:
        journal.close()


def test_page_in_chromium(served: Served, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.goto(served.base + "/")
            rows = page.locator("#queue tr.job")
            expect(rows.first).to_be_visible()
            api = served.queue()
            assert rows.count() == min(api["total"], 200)

            # queued jobs show with their positions and reasons, as the API has them
            first = api["jobs"][0]
            row = page.locator(f'#queue tr.job[data-job-id="{first["job_id"]}"]')
            assert row.locator("td.position").inner_text() == str(first["position"])
            assert row.locator("td.reason").inner_text() == first["reason"]
            reasons = rows.locator("td.reason").all_inner_texts()
            assert reasons and all(r and r != "-" for r in reasons[: len(api["jobs"])])

            # a filter narrows the list
            owner = "scheduled_carol@lab"
            wanted = served.queue(owner=owner)["total"]
            assert 0 < wanted < api["total"]
            page.fill("#filter-owner", owner)
            page.locator("#filter-owner").dispatch_event("change")
            expect(page.locator("#queue-count")).to_contain_text(f"{wanted} job(s)")
            assert rows.count() == wanted

            # an admin action with the token changes a priority
            target = served.queue(owner=owner)["jobs"][-1]
            page.fill("#admin-token", served.token)
            page.fill("#form-job-priority input[name=job_id]", target["job_id"])
            page.fill("#form-job-priority input[name=priority]", "3")
            page.click("#form-job-priority button")
            expect(page.locator("#admin-result")).to_contain_text("200")
            cell = page.locator(f'#queue tr.job[data-job-id="{target["job_id"]}"] td.priority')
            expect(cell).to_have_text("3", timeout=30_000)
            changed = httpx.get(f"{served.base}/api/jobs/{target['job_id']}").json()
            assert changed["priority"] == 3

            # and a wrong token does not
            page.fill("#admin-token", "not-the-token")
            page.fill("#form-job-priority input[name=priority]", "9")
            page.click("#form-job-priority button")
            expect(page.locator("#admin-result")).to_contain_text("403")

            # the screenshot, unfiltered (for the docs: once the estimated starts are in)
            if os.environ.get("OPTIALLOC_SCREENSHOT"):
                wait_for(
                    lambda: any(j["estimated_start"] for j in served.queue()["jobs"]),
                    timeout=300,
                    what="estimated starts",
                )
            page.fill("#admin-token", "")
            page.fill("#filter-owner", "")
            page.locator("#filter-owner").dispatch_event("change")
            expect(page.locator("#queue-count")).to_contain_text(f"{api['total']} job(s)")
            shot = tmp_path / "web.png"
            page.screenshot(path=str(shot), full_page=False)
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            if os.environ.get("OPTIALLOC_SCREENSHOT"):
                shutil.copy(shot, os.environ["OPTIALLOC_SCREENSHOT"])
        finally:
            browser.close()

"""Job status where pulpito reads it: paddles' `/runs/<run>/jobs/` (the `results_server` key).

Implements `optialloc.ports.Reporter`. The job dict is what teuthology-schedule
and teuthology's own reporting send (`report.try_push_job_info`): the job's
teuthology body plus `job_id`, `name` (the run), `status`, `priority`,
`owner`, `machine_type`, and the extra fields given (`targets`, `pid`,
`started` when running, `failure_reason` when dead). `success` is set with
the final status (true for pass, false for fail and dead), as paddles
derives it. `POST /runs/<run>/jobs/` creates the job (and the run); a 400
"... already exists" means teuthology-schedule (or an earlier report)
created it, and `PUT /runs/<run>/jobs/<job_id>/` updates it: a record is
never duplicated.

`DELETED` is not a status but the removal of the record (`DELETE
/runs/<run>/jobs/<job_id>/`, teuthology's `try_delete_jobs`): for a job
deleted from the queue, and for a first/last_in_suite job when it starts (its
`running`, `pass` and `fail` are not sent), as teuthology does.

`OutboxReporter` (what `serve` uses): `report` only writes the report to
the durable outbox in the state dir; a background thread delivers it
(`optialloc.inventory.outbox`), so a down results server never slows a tick
and no report is lost to an outage or a crash. `PaddlesReporter` sends at
once and only logs a failure (best effort; kept for one-off tools).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from optialloc.domain import Job
from optialloc.errors import BackendUnavailable, OptiallocError
from optialloc.inventory.outbox import Outbox, OutboxSender, Refused, Report
from optialloc.inventory.paddles_client import PaddlesClient, PaddlesError

log = logging.getLogger(__name__)

#: Job statuses paddles accepts (teuthology-interfaces.md section 3).
STATUSES = frozenset({"queued", "waiting", "running", "pass", "fail", "dead", "unknown"})
#: Not a paddles status: the record is removed (`DELETE /runs/<run>/jobs/<job_id>/`), as
#: teuthology does for a job deleted from the queue (`teuthology-queue --delete`) and for a
#: first/last_in_suite job once it starts (its supervisor's `try_delete_jobs`).
DELETED = "deleted"
REPORT_TIMEOUT_S = 5.0
#: `success` as paddles derives it from a final status.
SUCCESS = {"pass": True, "fail": False, "dead": False}


def job_dict(job: Job, status: str, fields: dict[str, object]) -> dict[str, Any]:
    """The JSON document paddles stores for `job` in `status`."""
    data: dict[str, Any] = dict(job.body)
    data.update(
        job_id=job.job_id,
        name=job.run,
        status=status,
        priority=job.priority,
        owner=job.owner,
        machine_type=",".join(job.machine_types),
    )
    for key, value in (
        ("description", job.description),
        ("os_type", job.os_type),
        ("os_version", job.os_version),
    ):
        if value is not None:
            data.setdefault(key, value)
    data.update(fields)
    if status in SUCCESS and "success" not in fields:
        data["success"] = SUCCESS[status]
    return data


def known_status(job: Job, status: str) -> bool:
    """Whether paddles knows `status`; an unknown one is logged (a bug), not sent."""
    if status in STATUSES or status == DELETED:
        return True
    log.error(
        "not reporting job %s: status %r is not one of %s",
        job.job_id,
        status,
        ", ".join(sorted(STATUSES)),
    )
    return False


class NullReporter:
    """Reports nowhere (no `results_server`); logs each status at debug level."""

    def report(self, job: Job, status: str, **fields: object) -> None:
        log.debug("job %s of %s is %s %s", job.job_id, job.run, status, fields or "")


class PaddlesReporter:
    """`Reporter` over paddles' runs/jobs API; see the module docstring."""

    def __init__(self, client: PaddlesClient) -> None:
        self.client = client

    def report(self, job: Job, status: str, **fields: object) -> None:
        if not known_status(job, status):
            return
        data = job_dict(job, status, fields)
        try:
            post_or_put(self.client, job.run, job.job_id, data)
        except OptiallocError as exc:
            log.warning(
                "could not report job %s of %s as %s to %s: %s",
                job.job_id,
                job.run,
                status,
                self.client.shown_url,
                exc,
            )
        except Exception:  # best effort by contract: a reporting bug must not stop dispatching
            log.exception("could not report job %s of %s as %s", job.job_id, job.run, status)
        else:
            log.debug("reported job %s of %s as %s", job.job_id, job.run, status)


def post_or_put(
    client: PaddlesClient, run: str, job_id: str, data: dict[str, Any], *, known: bool = False
) -> None:
    """Create the job record, or update it when it exists (teuthology's `report_job`).

    `known`: the server has the record (an earlier report was delivered), so
    update it at once, one request instead of two; if it is gone after all
    (404), create it.
    """
    path = f"/runs/{quote(run, safe=':')}/jobs/"  # run names hold colons; paddles takes them raw
    put = f"{path}{quote(job_id, safe='')}/"
    if known:
        try:
            client.request("PUT", put, data)
            return
        except PaddlesError as exc:
            if exc.status != 404:
                raise
    try:
        client.request("POST", path, data)
    except PaddlesError as exc:
        if exc.status != 400 or "already exists" not in exc.message:
            raise
        client.request("PUT", put, data)


def delete_record(client: PaddlesClient, run: str, job_id: str) -> None:
    """Remove a job's record (teuthology's `try_delete_jobs`); one already gone is fine."""
    try:
        client.request("DELETE", f"/runs/{quote(run, safe=':')}/jobs/{quote(job_id, safe='')}/")
    except PaddlesError as exc:
        if exc.status != 404:
            raise


class OutboxReporter:
    """`Reporter` through the durable outbox (see the module docstring); `close()` when done."""

    def __init__(self, client: PaddlesClient, outbox_path: str, *, start: bool = True) -> None:
        self.client = client
        self.outbox = Outbox(outbox_path)
        self.sender = OutboxSender(
            self.outbox, self._send, where=f"results server {client.shown_url}"
        )
        if start:
            self.sender.start()

    def _send(self, report: Report) -> None:
        try:
            if report.status == DELETED:
                delete_record(self.client, report.run, report.job_id)
            else:
                post_or_put(self.client, report.run, report.job_id, report.doc, known=report.known)
        except PaddlesError as exc:
            if exc.status >= 500 or exc.status in (404, 408, 429):
                # the server (or a proxy) is not itself: try again later
                raise BackendUnavailable(str(exc)) from exc
            raise Refused(str(exc)) from exc

    def report(self, job: Job, status: str, **fields: object) -> None:
        self.report_many([(job, status, fields)])

    def report_many(self, items: list[tuple[Job, str, dict[str, object]]]) -> int:
        """Write several reports in one transaction (the queue's announcements); how many."""
        rows = []
        for job, status, fields in items:
            if not known_status(job, status):
                continue
            if job.first_in_suite or job.last_in_suite:
                # bookkeeping jobs: teuthology removes their record when they start
                if status == "running":
                    status, fields = DELETED, {}
                elif status in ("pass", "fail") or self.last_status(job.job_id) == DELETED:
                    continue
            if not job.run:
                log.warning("not reporting job %s as %s: it has no run `name`", job.job_id, status)
                continue
            doc = (
                {"job_id": job.job_id, "name": job.run}
                if status == DELETED
                else job_dict(job, status, dict(fields))
            )
            rows.append((job.job_id, job.run, status, doc))
        try:
            written = self.outbox.add_many(rows)
        except Exception:  # best effort by contract: a full disk must not stop dispatching
            log.exception("could not write %d report(s) to the outbox", len(rows))
            return 0
        if written:
            self.sender.wake()
        return written

    def last_status(self, job_id: str) -> str | None:
        """The last status reported for `job_id` (written to the outbox; maybe not yet sent)."""
        return self.outbox.last_status(job_id)

    def pending(self) -> int:
        """Reports written and not yet delivered."""
        return self.outbox.size()

    def close(self, drain_s: float = 10.0) -> int:
        """Deliver what is pending for up to `drain_s`, stop; returns how many are left."""
        left = self.sender.close(drain_s)
        self.outbox.close()
        self.client.close()
        return left

"""Job status where pulpito reads it: paddles' `/runs/<run>/jobs/` (the `results_server` key).

Implements `optialloc.ports.Reporter`. The job dict is the job's teuthology
body plus `job_id`, `name` (the run), `status` and the extra fields given
(e.g. `targets` when running, `failure_reason` when dead), as teuthology's
own reporting does. `POST /runs/<run>/jobs/` creates the job (and the run);
a 400 means it exists, then `PUT /runs/<run>/jobs/<job_id>/` updates it.
Reporting is best effort: a failure is logged and never raised, and the
client tries only twice with a short timeout so a down results server costs
a dispatcher tick little time.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from optialloc.domain import Job
from optialloc.errors import OptiallocError
from optialloc.inventory.paddles_client import PaddlesClient, PaddlesError

log = logging.getLogger(__name__)

#: Job statuses paddles accepts (teuthology-interfaces.md section 3).
STATUSES = frozenset({"queued", "waiting", "running", "pass", "fail", "dead", "unknown"})
REPORT_TIMEOUT_S = 5.0


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
    return data


class NullReporter:
    """Reports nowhere (no `results_server`); logs each status at debug level."""

    def report(self, job: Job, status: str, **fields: object) -> None:
        log.debug("job %s of %s is %s %s", job.job_id, job.run, status, fields or "")


class PaddlesReporter:
    """`Reporter` over paddles' runs/jobs API; see the module docstring."""

    def __init__(self, client: PaddlesClient) -> None:
        self.client = client

    def report(self, job: Job, status: str, **fields: object) -> None:
        if status not in STATUSES:
            log.error(
                "not reporting job %s: status %r is not one of %s",
                job.job_id,
                status,
                ", ".join(sorted(STATUSES)),
            )
            return
        data = job_dict(job, status, fields)
        run = quote(job.run, safe=":")  # teuthology run names hold colons; paddles takes them raw
        try:
            try:
                self.client.request("POST", f"/runs/{run}/jobs/", data)
            except PaddlesError as exc:
                if exc.status != 400:
                    raise
                self.client.request("PUT", f"/runs/{run}/jobs/{quote(job.job_id, safe='')}/", data)
        except OptiallocError as exc:
            log.warning(
                "could not report job %s of %s as %s to %s: %s",
                job.job_id,
                job.run,
                status,
                self.client.base_url,
                exc,
            )
        except Exception:  # best effort by contract: a reporting bug must not stop dispatching
            log.exception("could not report job %s of %s as %s", job.job_id, job.run, status)
        else:
            log.debug("reported job %s of %s as %s", job.job_id, job.run, status)

"""Admin actions over HTTP, behind a bearer token: the `queue` CLI's verbs, same code.

The token is the content of the file named by the config's `admin_token_file`
(surrounding whitespace ignored), read when the server starts. A request
without `Authorization: Bearer ...` gets 401, one with another token 403
(compared with `hmac.compare_digest`, in constant time). Without a usable
token file every admin request gets 403: admin actions are off.

Each action opens the configured queue and calls `optialloc.queue.admin`, as
`optialloc queue pause|resume|priority|delete|kick` do, and is logged
(WARNING, logger `optialloc.web.admin`) with what was done and the client's
address. Bad input is a 4xx with a message naming the field (400 from
`InputError`, 404 `NotFound`, 409 `Conflict`, 422 a malformed body), never a 500.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Body, Depends, HTTPException, Request

from optialloc.config import Config
from optialloc.ports import JobQueue
from optialloc.queue import admin, open_queue
from optialloc.web.models import (
    ActionResult,
    KickRequest,
    PauseRequest,
    PriorityRequest,
    Problem,
)

log = logging.getLogger(__name__)

#: How long an admin request retries an unreachable beanstalkd (seconds), as the CLI.
RETRY_S = 3.0
DEFAULT_PAUSE_S = 3600
T = TypeVar("T")


def read_token(config: Config) -> bytes | None:
    """The admin token from `admin_token_file`, or None (admin actions off) with a log line."""
    path = config.admin_token_file
    if not path:
        return None
    try:
        with open(path, "rb") as handle:
            token = handle.read().strip()
    except OSError as exc:
        log.error("admin_token_file %s unreadable (%s): admin actions are off", path, exc)
        return None
    if len(token) < 16:
        log.error("admin_token_file %s holds under 16 bytes: admin actions are off", path)
        return None
    if os.stat(path).st_mode & 0o077:
        log.warning("admin_token_file %s is readable by others: chmod 600 it", path)
    return token


def require_admin(request: Request) -> str:
    """The dependency of every admin route: 401 without a bearer token, 403 with a wrong one."""
    expected: bytes | None = request.app.state.admin_token
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise HTTPException(
            401,
            "admin action: send Authorization: Bearer <token from admin_token_file>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if expected is None:
        raise HTTPException(403, "admin actions are off: set admin_token_file in the config")
    if not hmac.compare_digest(given.strip().encode("utf-8", "replace"), expected):
        raise HTTPException(403, "wrong admin token")
    return request.client.host if request.client else "unknown"


Admin = Annotated[str, Depends(require_admin)]
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem} for code in (400, 401, 403, 404, 409)
}
router = APIRouter(prefix="/api", tags=["admin"], responses=ERRORS)


def _act(request: Request, what: str, client: str, action: Callable[[JobQueue], T]) -> T:
    queue = open_queue(request.app.state.config, retry_s=RETRY_S)
    try:
        result = action(queue)
    finally:
        queue.close()
    log.warning("web admin: %s (from %s)", what, client)
    request.app.state.refresher_poke()
    return result


@router.post("/tubes/{tube}/pause", response_model=ActionResult)
def pause(
    request: Request,
    tube: str,
    client: Admin,
    body: Annotated[PauseRequest | None, Body()] = None,
) -> ActionResult:
    """Stop dispatching the tube's jobs for `seconds` (default one hour)."""
    seconds = body.seconds if body else DEFAULT_PAUSE_S
    _act(
        request,
        f"pause tube {tube} {seconds} s",
        client,
        lambda q: admin.pause_tube(q, tube, seconds),
    )
    return ActionResult(action="pause", message=f"tube {tube} paused for {seconds} s")


@router.post("/tubes/{tube}/resume", response_model=ActionResult)
def resume(request: Request, tube: str, client: Admin) -> ActionResult:
    """End the tube's pause now."""
    _act(request, f"resume tube {tube}", client, lambda q: admin.resume_tube(q, tube))
    return ActionResult(action="resume", message=f"tube {tube} resumed")


@router.post("/jobs/{job_id}/priority", response_model=ActionResult)
def job_priority(
    request: Request, job_id: str, body: PriorityRequest, client: Admin
) -> ActionResult:
    """Give one queued job a new priority (lower is more urgent)."""
    ids = _act(
        request,
        f"priority {body.priority} on job {job_id}",
        client,
        lambda q: admin.set_priority(q, body.priority, job_id=job_id),
    )
    return ActionResult(action="priority", job_ids=ids, message=f"priority {body.priority} set")


@router.post("/runs/{run}/priority", response_model=ActionResult)
def run_priority(request: Request, run: str, body: PriorityRequest, client: Admin) -> ActionResult:
    """Give every pending job of the run a new priority."""
    ids = _act(
        request,
        f"priority {body.priority} on run {run}",
        client,
        lambda q: admin.set_priority(q, body.priority, run=run),
    )
    return ActionResult(
        action="priority", job_ids=ids, message=f"priority {body.priority} set on {len(ids)} job(s)"
    )


@router.delete("/runs/{run}/jobs", response_model=ActionResult)
def delete_run(request: Request, run: str, client: Admin) -> ActionResult:
    """Delete every pending and buried job of the run (running jobs are not touched)."""
    ids = _act(request, f"delete run {run}", client, lambda q: admin.delete_jobs(q, run=run))
    return ActionResult(action="delete", job_ids=ids, message=f"deleted {len(ids)} job(s)")


@router.post("/buried/kick", response_model=ActionResult)
def kick(request: Request, body: KickRequest, client: Admin) -> ActionResult:
    """Return buried jobs to the queue; a body that still does not parse stays buried."""
    kicked, still = _act(
        request,
        f"kick {' '.join(body.job_ids[:20])}",
        client,
        lambda q: admin.kick_jobs(q, body.job_ids),
    )
    message = f"kicked {len(kicked)} job(s)" + "".join(
        f"; {job_id} stays buried: {reason}" for job_id, reason in still.items()
    )
    return ActionResult(ok=not still, action="kick", job_ids=kicked, message=message)

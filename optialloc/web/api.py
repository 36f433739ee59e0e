"""The read-only JSON API (`/api/...`): queue, runs, nodes, usage, last tick, tubes, buried.

Every handler answers from the refresher's current `LabView` (memory only, see
`optialloc.web.state`): filters and paging are list comprehensions over at
most the whole queue, and a page is at most `MAX_LIMIT` items, so 20,000
queued jobs never make one 20 MB answer.
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response

from optialloc.web.models import (
    BuriedAnswer,
    LastTick,
    NodesPage,
    Problem,
    QueuedJob,
    QueuePage,
    RunsPage,
    RunSummary,
    TubesAnswer,
    UsageAnswer,
)
from optialloc.web.state import LabView

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
#: Positions listed per run at most.
RUN_POSITIONS = 100

router = APIRouter(prefix="/api", tags=["view"])

Offset = Annotated[int, Query(ge=0, le=10_000_000, description="items to skip")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="items per page")]
Text = Annotated[str | None, Query(max_length=500)]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": Problem}}


def view_of(request: Request) -> LabView:
    view: LabView = request.app.state.refresher.view
    return view


def pulpito_run(request: Request, run: str) -> str | None:
    base = request.app.state.config.pulpito_url
    return f"{base.rstrip('/')}/{quote(run, safe='')}/" if base and run else None


def pulpito_job(request: Request, run: str, job_id: str) -> str | None:
    page = pulpito_run(request, run)
    return f"{page}{quote(job_id, safe='')}/" if page else None


def filter_jobs(
    view: LabView,
    tube: str | None = None,
    owner: str | None = None,
    run: str | None = None,
    reason: str | None = None,
    machine_type: str | None = None,
) -> list[dict[str, Any]]:
    """The queued jobs matching every filter given (exact match), in dispatch order."""
    jobs: list[dict[str, Any]] | tuple[dict[str, Any], ...] = view.jobs
    if tube:
        jobs = [j for j in jobs if j["tube"] == tube]
    if owner:
        jobs = [j for j in jobs if j["owner"] == owner]
    if run:
        jobs = [j for j in jobs if j["run"] == run]
    if reason:
        jobs = [j for j in jobs if j["reason"] == reason]
    if machine_type:
        jobs = [j for j in jobs if machine_type in j["machine_types"]]
    return list(jobs)


def job_json(request: Request, record: dict[str, Any]) -> dict[str, Any]:
    """A `QueuedJob` as JSON-ready data (the view's records already have its fields)."""
    return {**record, "pulpito_url": pulpito_job(request, record["run"], record["job_id"])}


@router.get("/queue", response_model=QueuePage, summary="pending jobs in dispatch order")
async def get_queue(
    request: Request,
    tube: Text = None,
    owner: Text = None,
    run: Text = None,
    reason: Text = None,
    machine_type: Text = None,
    offset: Offset = 0,
    limit: Limit = DEFAULT_LIMIT,
) -> Response:
    """Every pending job with its position, reason, detail and estimated start (paged).

    Answered as pre-built JSON (the view's records are the documented shape): a
    page of 20,000 queued jobs costs the same as one of 20.
    """
    view = view_of(request)

    def answer() -> bytes:
        jobs = filter_jobs(view, tube, owner, run, reason, machine_type)
        page = {
            "total": len(jobs),
            "offset": offset,
            "limit": limit,
            "jobs": [job_json(request, j) for j in jobs[offset : offset + limit]],
            "estimates_note": view.estimates_note,
            "estimates_at": view.estimates_at.isoformat() if view.estimates_at else None,
            "view_built_at": view.built_at.isoformat(),
        }
        return bytes(JSONResponse(page).body)

    body = request.app.state.cache.get(view, f"queue?{request.url.query}", answer)
    return Response(body, media_type="application/json")


@router.get("/jobs/{job_id}", response_model=QueuedJob, responses=NOT_FOUND)
async def get_job(request: Request, job_id: str) -> JSONResponse:
    """One pending job; 404 when it is not queued (started, deleted or unknown)."""
    record = view_of(request).by_id.get(job_id)
    if record is None:
        raise HTTPException(404, f"no queued job {job_id}: see GET /api/queue")
    return JSONResponse(job_json(request, record))


def _run_model(request: Request, record: dict[str, Any]) -> RunSummary:
    return RunSummary(
        run=record["run"],
        owner=record["owner"],
        counts=record["counts"],
        positions=record["positions"][:RUN_POSITIONS],
        first_position=record["first_position"],
        pulpito_url=pulpito_run(request, record["run"]),
    )


@router.get("/runs", response_model=RunsPage, summary="runs with per-status counts")
async def get_runs(
    request: Request,
    owner: Text = None,
    status: Annotated[
        str | None, Query(max_length=20, description="only runs with jobs in this status")
    ] = None,
    offset: Offset = 0,
    limit: Limit = DEFAULT_LIMIT,
) -> RunsPage:
    """Runs with queued or journaled jobs: counts per status and their jobs' queue positions."""
    runs = list(view_of(request).runs)
    if owner:
        runs = [r for r in runs if r["owner"] == owner]
    if status:
        runs = [r for r in runs if r["counts"].get(status)]
    return RunsPage(
        total=len(runs),
        offset=offset,
        limit=limit,
        runs=[_run_model(request, r) for r in runs[offset : offset + limit]],
    )


@router.get("/runs/{run}", response_model=RunSummary, responses=NOT_FOUND)
async def get_run(request: Request, run: str) -> RunSummary:
    """One run: counts per status and its queued jobs' positions; 404 when unknown."""
    for record in view_of(request).runs:
        if record["run"] == run:
            return _run_model(request, record)
    raise HTTPException(404, f"no run {run!r} queued or journaled: see GET /api/runs")


@router.get("/nodes", response_model=NodesPage, summary="nodes: free, locked (by whom), down")
async def get_nodes(
    request: Request,
    machine_type: Text = None,
    state: Annotated[str | None, Query(max_length=20, description="free, locked or down")] = None,
) -> NodesPage:
    """Every node: free, locked (by whom, since when, the job on it) or down; counts per type."""
    nodes = list(view_of(request).nodes)
    counts: dict[str, Counter[str]] = {}
    for node in nodes:
        counts.setdefault(node["machine_type"], Counter())[node["state"]] += 1
    if machine_type:
        nodes = [n for n in nodes if n["machine_type"] == machine_type]
    if state:
        nodes = [n for n in nodes if n["state"] == state]
    return NodesPage(
        total=len(nodes),
        counts={t: dict(c) for t, c in sorted(counts.items())},
        nodes=nodes,  # type: ignore[arg-type]  # validated into NodeInfo by pydantic
    )


@router.get("/usage", response_model=UsageAnswer, summary="locked nodes and fair share per owner")
async def get_usage(request: Request) -> UsageAnswer:
    """Locked nodes per owner per machine type (as `nodes usage`) with fair-share standing."""
    return UsageAnswer(owners=list(view_of(request).usage))  # type: ignore[arg-type]


@router.get("/tick", response_model=LastTick, summary="the last tick's starts and solver figures")
async def get_tick(request: Request) -> LastTick:
    """The last tick: starts, held nodes, solver status, objective, gap and phase times."""
    last = view_of(request).last_tick
    if not last:
        return LastTick(available=False)
    fields = set(LastTick.model_fields) - {"available"}
    return LastTick(available=True, **{k: v for k, v in last.items() if k in fields})


@router.get("/tubes", response_model=TubesAnswer, summary="tubes: depth and pause")
async def get_tubes(request: Request) -> TubesAnswer:
    """Per tube: ready (queued), claimed, buried, paused and the seconds left."""
    return TubesAnswer(tubes=list(view_of(request).tubes))  # type: ignore[arg-type]


@router.get("/buried", response_model=BuriedAnswer, summary="jobs set aside, with the reason")
async def get_buried(
    request: Request, tube: Text = None, offset: Offset = 0, limit: Limit = DEFAULT_LIMIT
) -> BuriedAnswer:
    jobs = list(view_of(request).buried)
    if tube:
        jobs = [j for j in jobs if j["tube"] == tube]
    return BuriedAnswer(total=len(jobs), jobs=jobs[offset : offset + limit])  # type: ignore[arg-type]

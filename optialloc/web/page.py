"""The status page (`/`) and the fragments it refreshes itself with (htmx, shipped in `static/`).

Rendered server side with Jinja2 from the refresher's current `LabView`: the
first `PAGE_ROWS` queued jobs matching the filters (tube, owner, run), the
runs, the nodes coloured like pulpito's, usage per owner, tubes and the last
tick's solver figures. htmx re-fetches the fragments every few seconds; the
admin forms post to the JSON API (`static/optialloc.js`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from optialloc.queue.admin import format_age
from optialloc.web.api import filter_jobs, view_of

PAGE_ROWS = 200
TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
router = APIRouter(include_in_schema=False)
Text = Annotated[str | None, Query(max_length=500)]


def _context(
    request: Request, tube: str | None, owner: str | None, run: str | None, offset: int
) -> dict[str, Any]:
    view = view_of(request)
    jobs = filter_jobs(view, tube=tube, owner=owner, run=run)
    offset = max(0, min(offset, max(0, len(jobs) - 1)))
    filters = {"tube": tube or "", "owner": owner or "", "run": run or ""}

    def query(**changes: object) -> str:
        return urlencode({**{k: v for k, v in filters.items() if v}, **changes})

    pulpito = request.app.state.config.pulpito_url
    return {
        "view": view,
        "jobs": jobs[offset : offset + PAGE_ROWS],
        "total": len(jobs),
        "offset": offset,
        "limit": PAGE_ROWS,
        "filters": filters,
        "owners": sorted({j["owner"] for j in view.jobs})[:500],
        "pulpito": pulpito.rstrip("/") if pulpito else None,
        "static": "/static",
        "age": format_age,
        "query": query,
    }


def _render(request: Request, name: str, context: dict[str, Any]) -> HTMLResponse:
    """The template rendered once per view and query (`optialloc.web.cache`)."""
    key = f"{request.url.path}?{request.url.query}"

    def make() -> bytes:
        return bytes(TEMPLATES.TemplateResponse(request, name, context).body)

    return HTMLResponse(request.app.state.cache.get(context["view"], key, make))


@router.get("/", response_class=HTMLResponse)
def index(
    request: Request, tube: Text = None, owner: Text = None, run: Text = None, offset: int = 0
) -> HTMLResponse:
    return _render(request, "index.html", _context(request, tube, owner, run, offset))


@router.get("/fragments/queue", response_class=HTMLResponse)
def queue_fragment(
    request: Request, tube: Text = None, owner: Text = None, run: Text = None, offset: int = 0
) -> HTMLResponse:
    return _render(request, "_queue.html", _context(request, tube, owner, run, offset))


@router.get("/fragments/tick", response_class=HTMLResponse)
def tick_fragment(request: Request) -> HTMLResponse:
    return _render(request, "_tick.html", _context(request, None, None, None, 0))


@router.get("/fragments/overview", response_class=HTMLResponse)
def overview_fragment(request: Request) -> HTMLResponse:
    return _render(request, "_overview.html", _context(request, None, None, None, 0))

"""The web application: `create_app(config)` builds the FastAPI app `optialloc web` serves.

Routes: the JSON API under `/api` (`optialloc.web.api`, admin actions in
`optialloc.web.admin`), its OpenAPI document at `/api/openapi.json`,
Prometheus metrics at `/metrics`, the status page at `/` with its fragments
(`optialloc.web.page`) and the files in `static/`. Nothing loads from the
network (no CDN; the interactive docs pages, which would, are off).

Errors: an `OptiallocError` from an action becomes a 4xx JSON `{"detail": ...}`
(400 bad input, 404 not found, 409 conflict) or 503 when a backend is down;
anything unexpected is logged and becomes a 500 with a short message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from optialloc import __version__
from optialloc.config import Config
from optialloc.errors import BackendUnavailable, Conflict, InputError, NotFound, OptiallocError
from optialloc.web import admin, api, page
from optialloc.web.cache import ViewCache
from optialloc.web.metrics import CONTENT_TYPE, make_registry, render
from optialloc.web.refresher import Refresher

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"


def _status(exc: OptiallocError) -> int:
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Conflict):
        return 409
    if isinstance(exc, InputError):
        return 400
    if isinstance(exc, BackendUnavailable):
        return 503
    return 400


def create_app(config: Config, refresher: Refresher | None = None) -> FastAPI:
    """The app over `config`'s state; `refresher` defaults to a new one (started on startup)."""
    refresher = refresher or Refresher(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not refresher.is_alive():
            refresher.start()
        await asyncio.to_thread(refresher.ready.wait, 60.0)
        yield
        refresher.stop()

    app = FastAPI(
        title="optialloc",
        lifespan=lifespan,
        version=__version__,
        summary="The lab's scheduling view: queue positions, reasons, estimated starts",
        openapi_url="/api/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.state.config = config
    app.state.refresher = refresher
    app.state.admin_token = admin.read_token(config)
    app.state.refresher_poke = refresher.wake  # after an admin action: refresh now
    registry = make_registry(lambda: refresher.view)

    @app.exception_handler(OptiallocError)
    def _optialloc_error(request: Request, exc: OptiallocError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=_status(exc))

    app.state.cache = ViewCache()

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        key = f"/metrics?{request.url.query}"
        body = app.state.cache.get(refresher.view, key, lambda: render(registry))
        return Response(body, media_type=CONTENT_TYPE)

    @app.get("/healthz", include_in_schema=False)
    def health() -> dict[str, object]:
        view = refresher.view
        return {"ok": view.error is None, "view_built_at": view.built_at.isoformat()}

    app.include_router(api.router)
    app.include_router(admin.router)
    app.include_router(page.router)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    return app

"""The FastAPI application: ``create_app(settings)``."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from prometheus_client import CollectorRegistry, Counter

from store.db import Store

from . import errors
from .deps import State
from .jobs import Jobs
from .routes import runs, system, tarballs
from .routes.system import StoreCollector
from .settings import Settings

DESCRIPTION = """\
minicon's daemon: start traces, inspect runs, download minimized filesystems.

Every endpoint but `/healthz` needs `Authorization: Bearer TOKEN`. Every error has one shape:
`{"error": {"code": "...", "message": "...", "details": ...}}`.
"""


def create_app(settings: Settings, store: Store | None = None) -> FastAPI:
    store = store or Store(settings.db_url)
    registry = CollectorRegistry()
    registry.register(StoreCollector(store))
    state = State(
        settings=settings,
        store=store,
        jobs=Jobs(store, settings.python or sys.executable, settings.workers),
        registry=registry,
        tar_bytes=Counter(
            "minicon_tarball_bytes_served", "Bytes of tarballs sent", registry=registry
        ),
        runs_started=Counter("minicon_runs_started", "Trace jobs accepted", registry=registry),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        state.jobs.shutdown()

    app = FastAPI(
        title="minicon",
        description=DESCRIPTION,
        version="1",
        lifespan=lifespan,
        responses={422: {"description": "Invalid request (the common error shape)"}},
    )
    app.state.minicon = state
    errors.install(app)

    @app.middleware("http")
    async def limit_body(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > settings.max_body):
            return errors.respond(413, f"the body is larger than {settings.max_body} bytes")
        return await call_next(request)

    app.include_router(system.router)
    app.include_router(runs.router)
    app.include_router(tarballs.router)
    return app

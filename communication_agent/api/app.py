"""The application factory: wires settings, database, schema check, routes and error handling.

Start-up fails loudly, before serving a single request, when the configuration is unusable or
the database schema is not the one this code expects.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from communication_agent import __version__
from communication_agent.adapters.factory import provider_opener
from communication_agent.adapters.reasoning_factory import reasoning_model
from communication_agent.adapters.webhook_http import webhook_poster
from communication_agent.api import openapi as openapi_document
from communication_agent.api.console import UI_DIR
from communication_agent.api.deps import CurrentActor, bind_log_context, get_current_actor
from communication_agent.api.errors import install_error_handlers
from communication_agent.api.middleware import (
    RejectNulInQueryMiddleware,
    RequestIdMiddleware,
    RequestMetricsMiddleware,
)
from communication_agent.api.pages import auth as auth_pages
from communication_agent.api.pages import board as board_pages
from communication_agent.api.pages import mailboxes as mailbox_pages
from communication_agent.api.pages import reports as report_pages
from communication_agent.api.pages import tickets as ticket_pages
from communication_agent.api.routes import (
    activity,
    assistant,
    drafts,
    health,
    mailboxes,
    me,
    messages,
    metrics,
    oauth,
    reports,
    tickets,
    webhooks,
)
from communication_agent.core.config import Settings, load_secret_key
from communication_agent.core.db import create_engine, create_sessionmaker
from communication_agent.core.logging import configure_logging, get_logger, scrubber
from communication_agent.core.migrations import ensure_schema
from communication_agent.models.enums import TicketState
from communication_agent.services import reasoning_tasks, sending, webhook_delivery
from communication_agent.services.assistant import AssistantConfig
from communication_agent.services.background import run_sync_loop

log = get_logger(__name__)

API_PREFIX = "/api/v1"


def create_app(settings: Settings | None = None, *, freeze_startup_heap: bool = False) -> FastAPI:
    """The application. `freeze_startup_heap` is for a server process: see `_freeze_heap`."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        secret_key = load_secret_key(settings)
        scrubber.register(settings.database.password)
        if settings.metrics_token is not None:
            scrubber.register(settings.metrics_token.get_secret_value())
        engine = create_engine(settings.database, pool_size=settings.db_pool_size)
        try:
            status = await ensure_schema(engine, auto_migrate=settings.should_auto_migrate)
            app.state.settings = settings
            app.state.secret_key = secret_key
            app.state.engine = engine
            app.state.sessionmaker = create_sessionmaker(engine)
            app.state.provider_opener = provider_opener(settings, secret_key.get_secret_value())
            app.state.reasoning_model = reasoning_model(settings)
            app.state.assistant_config = AssistantConfig.from_settings(
                settings, (secret_key.get_secret_value(),)
            )
            log.info("started", database=settings.database_display, schema=status.head)
            if freeze_startup_heap:
                _freeze_heap()
            async with contextlib.AsyncExitStack() as loops:
                for loop in _background_loops(app, settings):
                    await loops.enter_async_context(_in_background(loop))
                yield
        finally:
            if hasattr(app.state, "reasoning_model"):
                await app.state.reasoning_model.aclose()
            await engine.dispose()

    app = FastAPI(
        title="Communication Agent",
        version=__version__,
        summary="Support email from ingestion to an approved, sent reply.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.add_middleware(RejectNulInQueryMiddleware)
    app.add_middleware(RequestMetricsMiddleware)  # inside the request id: its log line has it
    app.add_middleware(RequestIdMiddleware)
    install_error_handlers(app)
    openapi_document.install(app)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(_api_router())
    app.include_router(oauth.router)
    app.include_router(_docs_router(app))
    for pages in (auth_pages, board_pages, ticket_pages, mailbox_pages, report_pages):
        app.include_router(pages.router, dependencies=[Depends(bind_log_context)])
    # Our own script, styles and vendored htmx: public (the sign-in page needs them), and
    # nothing in them is about anyone's mail.
    app.mount("/static", StaticFiles(directory=UI_DIR / "static"), name="static")
    return app


def _api_router() -> APIRouter:
    # The router-level dependency is a safety net: a route added without its own auth
    # dependency still refuses anonymous calls (and the route-enumerating test checks both).
    router = APIRouter(
        prefix=API_PREFIX, dependencies=[Depends(bind_log_context), Depends(get_current_actor)]
    )
    for module in (
        me,
        tickets,
        assistant,
        drafts,
        messages,
        activity,
        mailboxes,
        reports,
        webhooks,
    ):
        router.include_router(module.router)
    return router


def _docs_router(app: FastAPI) -> APIRouter:
    """The OpenAPI document and Swagger UI, behind authentication like everything else."""
    router = APIRouter(include_in_schema=False)

    @router.get("/openapi.json")
    async def openapi(_actor: CurrentActor) -> dict[str, Any]:
        return app.openapi()

    @router.get("/docs")
    async def docs(_actor: CurrentActor) -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="Communication Agent API")

    return router


def create_app_for_server() -> FastAPI:
    """The factory `commagent serve` hands to uvicorn: each worker process configures logging."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings, freeze_startup_heap=True)


def _freeze_heap() -> None:
    """Move everything alive after start-up out of the garbage collector's reach.

    The modules, routes, templates and ORM mappings loaded at start-up are hundreds of thousands
    of objects that live as long as the process. Without this, every full collection walks them
    all again: about 100 ms, roughly every 60 board pages, which was the whole p99 tail of the
    board (bench/board.py). Frozen, a full collection only walks what requests created.
    Not for tests, which build many apps in one process: a frozen app is never freed.
    """
    gc.collect()
    gc.freeze()


Loop = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


@asynccontextmanager
async def _in_background(loop: Loop | None) -> AsyncIterator[None]:
    """Run `loop(stop)` while the app serves; on shutdown set `stop` and wait for it."""
    if loop is None:
        yield
        return
    stop = asyncio.Event()
    task = asyncio.create_task(loop(stop))
    try:
        yield
    finally:
        stop.set()
        await task


def _owner() -> str:
    return f"serve:{socket.gethostname()}:{os.getpid()}"


def _background_loops(app: FastAPI, settings: Settings) -> list[Loop | None]:
    """Mailbox polling (when COMMAGENT_SYNC_INTERVAL_SECONDS is set), triage and drafting
    (COMMAGENT_REASONING_ENABLED), and sending and webhook delivery (always: leases keep each
    entry to one process)."""
    state = app.state
    sync_loop: Loop | None = None
    if settings.sync_interval_seconds is not None:
        interval = settings.sync_interval_seconds

        def sync_loop(stop: asyncio.Event) -> Coroutine[Any, Any, None]:
            return run_sync_loop(
                state.sessionmaker,
                state.provider_opener,
                owner=_owner(),
                interval=interval,
                stop=stop,
                lease=settings.sync_lease,
            )

    reasoning_loop: Loop | None = None
    if settings.reasoning_enabled:

        def reasoning_loop(stop: asyncio.Event) -> Coroutine[Any, Any, None]:
            return reasoning_tasks.run_loop(
                state.sessionmaker,
                state.reasoning_model,
                state.assistant_config,
                owner=_owner(),
                interval=settings.reasoning_interval_seconds,
                lease=timedelta(seconds=settings.reasoning_lease_seconds),
                stop=stop,
            )

    def sending_loop(stop: asyncio.Event) -> Coroutine[Any, Any, None]:
        return sending.run_loop(
            state.sessionmaker,
            state.provider_opener,
            owner=_owner(),
            interval=settings.sender_interval_seconds,
            lease=timedelta(seconds=settings.sender_lease_seconds),
            state_after_send=TicketState(settings.state_after_send),
            stop=stop,
        )

    def webhook_loop(stop: asyncio.Event) -> Coroutine[Any, Any, None]:
        return webhook_delivery.run_loop(
            state.sessionmaker,
            webhook_poster(settings),
            state.secret_key.get_secret_value(),
            webhook_delivery.DeliveryPolicy.from_settings(settings),
            owner=_owner(),
            interval=settings.webhook_interval_seconds,
            stop=stop,
        )

    return [sync_loop, reasoning_loop, sending_loop, webhook_loop]

"""The FastAPI application factory."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import structlog
from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from order_engine import __version__
from order_engine.api import market_routes, routes, ws
from order_engine.api.auth import Authenticator
from order_engine.api.docs import install_docs
from order_engine.api.gate import Gate
from order_engine.api.problems import ProblemError, install_problem_handlers
from order_engine.api.rate_limits import Policies, RateLimiter, SocketSlots
from order_engine.api.revocation import KeyRevocations
from order_engine.api.security import PAGE_HEADERS, Headers, adding_headers, headers_for
from order_engine.config import Settings, get_settings
from order_engine.events import EventHub, publish_revoked
from order_engine.services import EXECUTE_ORDER_JOB, Services, open_services, queue_name
from order_engine.store.submissions import SubmissionBatcher

log = structlog.get_logger(__name__)
STATIC_DIR = Path(__file__).with_name("static")


class OrderEngineApp(FastAPI):
    """FastAPI, except that a plain order submission is answered before FastAPI's
    middleware and routing (routes.submit_fast); whatever it does not answer, FastAPI
    does, exactly as before. Every HTTP response carries the security headers
    (api/security.py)."""

    # Paths whose security headers are their own (/: the dashboard; /docs).
    page_headers: dict[str, Headers] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            security = headers_for(scope, self.page_headers)
            gate: Gate | None = getattr(self.state, "gate", None)
            if gate is not None:  # the lifespan has started
                gated = await gate(scope, receive, send, security)
                if gated is None:
                    return
                receive, limit_headers = gated
                if limit_headers:  # the RateLimit-Policy of the request's limit
                    send = adding_headers(send, limit_headers)
            if scope["method"] == "POST" and scope["path"] in routes.SUBMIT_PATHS:
                # Its answers carry the security headers themselves (cheaper than
                # adding_headers).
                rest = await routes.submit_fast(self.state, scope, receive, send)
                if rest is None:
                    return
                receive = rest
            send = adding_headers(send, security)
        await super().__call__(scope, receive, send)


async def _use_bootstrap_key(services: Services, settings: Settings) -> None:
    """BOOTSTRAP_API_KEY is the bootstrap key; the ones before it are revoked, here and
    (over Redis) on the API processes already running."""
    outcome = await services.api_keys.use_bootstrap(settings.bootstrap_api_key or None)
    if outcome.already_revoked:
        log.error("BOOTSTRAP_API_KEY names a key that was revoked: it stays revoked and "
                  "opens nothing; set a new one", key_id=str(outcome.key_id))
    if outcome.revoked:
        log.warning("previous bootstrap API keys revoked (BOOTSTRAP_API_KEY changed)",
                    keys=[f"{k.id} ({k.prefix}...)" for k in outcome.revoked])
        try:
            await publish_revoked(services.redis, settings.redis_prefix,
                                  [k.id for k in outcome.revoked])
        except Exception as exc:  # noqa: BLE001 - the other processes' caches expire anyway
            log.warning("could not announce the revocation on Redis; other API processes "
                        "refuse the old key within the cache's lifetime", error=str(exc))


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = await open_services(settings)
        await _use_bootstrap_key(services, settings)
        hub = EventHub(services.redis, settings.redis_prefix)
        authenticator = Authenticator(services.api_keys)
        hub.key_listener = KeyRevocations(authenticator, hub, services.api_keys)
        await hub.start()
        batcher = SubmissionBatcher(services.pg, services.redis, settings.redis_prefix,
                                    queue_name(settings), EXECUTE_ORDER_JOB,
                                    settings.max_key_exposure)
        batcher.start()
        app.state.batcher = batcher
        app.state.services = services
        app.state.authenticator = authenticator
        limiter = RateLimiter(settings.redis_url, settings.redis_prefix)
        app.state.socket_slots = socket_slots = {
            "order": SocketSlots(services.redis, settings.redis_prefix, "ws",
                                 settings.max_websockets_per_key, "MAX_WEBSOCKETS_PER_KEY"),
            "firehose": SocketSlots(services.redis, settings.redis_prefix, "firehose",
                                    settings.max_firehoses_per_key, "MAX_FIREHOSES_PER_KEY")}
        app.state.gate = Gate(authenticator, limiter, Policies.from_settings(settings),
                              settings.max_body_bytes, settings.refusal_delay_s)
        app.state.hub = hub
        app.state.settings = settings
        # What exists now (modules, the app, its routes and models) lives as long as the
        # process: keep it out of the collector's full passes, which traversed it all
        # again and again under load (~3% of the API's CPU).
        gc.freeze()
        log.info("api ready", port=settings.port)
        try:
            yield
        finally:
            await batcher.stop()
            await hub.stop()
            await limiter.close()
            for slots in socket_slots.values():
                await slots.close()
            await services.close()

    app = OrderEngineApp(
        title="Order execution engine",
        version=__version__,
        description="Market orders for Solana swaps: routed across Raydium and Meteora, "
        "executed exactly once, streamed live over WebSocket.",
        lifespan=lifespan,
        # Served by install_docs, from this service rather than a CDN; no ReDoc.
        docs_url=None,
        redoc_url=None,
    )
    install_problem_handlers(app)
    app.include_router(routes.router)
    app.include_router(market_routes.router)
    app.include_router(ws.router)
    # The dashboard: static files, no build step (src/order_engine/api/static).
    app.mount("/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="static")
    app.page_headers = {"/": PAGE_HEADERS, **install_docs(app)}

    @app.get("/", include_in_schema=False)
    async def dashboard() -> FileResponse:
        index = STATIC_DIR / "index.html"
        if not index.is_file():
            raise ProblemError(404, "Not found", "the dashboard is not installed",
                               type_="not-found")
        return FileResponse(index)

    return app

"""The service shell: one FastAPI app per service running its API, outbox relay and consumers."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import httpx
from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from partnerhub import tracing
from partnerhub.config import Settings, get_settings
from partnerhub.consumer import ConsumerRunner, Subscription
from partnerhub.db import Database
from partnerhub.gcpolicy import ScheduledCollection
from partnerhub.http import prune_idempotency_keys
from partnerhub.kafka import all_topics, bootstrap, ensure_topics, make_producer
from partnerhub.logs import configure_logging, current_traceparent, new_traceparent, set_traceparent
from partnerhub.metrics import HTTP_LATENCY
from partnerhub.openapi import install_docs, package_version
from partnerhub.problems import JsonBodies, ProblemCORSMiddleware, install_problem_handlers
from partnerhub.relay import OutboxRelay
from partnerhub.sweeps import periodic

log = logging.getLogger(__name__)
UNJOINED_GRACE_SECONDS = 15.0
IDEMPOTENCY_SWEEP = "idempotency-keys"


@dataclass
class ServiceContext:
    service: str
    settings: Settings
    db: Database
    producer: AIOKafkaProducer
    http: httpx.AsyncClient
    relay: OutboxRelay | None = None
    consumers: list[ConsumerRunner] = field(default_factory=list)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    backlog: Callable[[ServiceContext], Awaitable[int]] | None = None

    async def busy(self) -> bool:
        if self.relay is not None and self.relay.is_leader and self.relay.backlog > 0:
            return True
        if self.backlog is not None and self.tasks and await self.backlog(self) > 0:
            return True
        for runner in self.consumers:
            lag = await runner.lag()
            if lag:
                return True
            # Not joined or fetched yet: give it a moment to catch up before calling it idle (it may stay
            # unassigned for good when a group has more members than partitions).
            if lag is None and time.monotonic() - runner.created < UNJOINED_GRACE_SECONDS:
                return True
        return False

    async def drain(self) -> None:
        """Before stopping: relays flush and consumers catch up until everything stays quiet."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.drain_timeout_seconds
        quiet_since: float | None = None
        while loop.time() < deadline:
            if await self.busy():
                quiet_since = None
            elif quiet_since is None:
                quiet_since = loop.time()
            elif loop.time() - quiet_since >= self.settings.drain_quiet_seconds:
                return
            await asyncio.sleep(0.1)
        log.warning("drain timed out; stopping with work left for the next start")


async def context(request: Request) -> ServiceContext:
    ctx: ServiceContext = request.app.state.ctx
    return ctx


Ctx = Annotated[ServiceContext, Depends(context)]


class TraceAndMeasure:
    """Every request runs under its traceparent (the caller's, or a new one), answers it in a `traceparent`
    header, and is timed by route template and status. Plain ASGI: Starlette's BaseHTTPMiddleware would run each
    request through a task and memory streams of its own."""

    def __init__(self, app: ASGIApp, service: str, full_paths: dict[int, str]) -> None:
        self.app = app
        self.service = service
        self.full_paths = full_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((value.decode("latin-1") for name, value in scope["headers"] if name == b"traceparent"), None)
        if tracing.enabled():
            server = tracing.current_span()
            if server is not None:
                # FastAPI's own telemetry made the server span (the caller's traceparent its parent) and names it.
                server.set_attribute("partnerhub.service", self.service)
                set_traceparent(tracing.traceparent_of(server))
                await self._measured(scope, receive, send, None)
                return
            with tracing.span(f"{scope['method']}", self.service, tracing.SERVER, given,
                              {"http.request.method": scope["method"], "url.path": scope.get("path", "")}) as span:
                await self._measured(scope, receive, send, span)
            return
        set_traceparent(given or new_traceparent())
        await self._measured(scope, receive, send, None)

    async def _measured(self, scope: Scope, receive: Receive, send: Send, span: Any) -> None:
        traceparent = current_traceparent() or ""
        started = time.perf_counter()
        status = 500

        async def answer(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"traceparent", traceparent.encode("latin-1"))]
            await send(message)

        try:
            await self.app(scope, receive, answer)
        finally:
            route = scope.get("route")
            template = self.full_paths.get(id(route)) or getattr(route, "path", "unmatched")
            HTTP_LATENCY.labels(self.service, scope["method"], template, str(status)).observe(
                time.perf_counter() - started)
            if span is not None:
                span.update_name(f"{scope['method']} {template}")
                span.set_attributes({"http.route": template, "http.response.status_code": status})
                if status >= 500:
                    span.set_status(tracing.StatusCode.ERROR)


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    title: str
    description: str
    routers: Sequence[APIRouter]
    subscriptions: Callable[[ServiceContext], list[Subscription]] = lambda _ctx: []
    background: Callable[[ServiceContext], list[Coroutine[Any, Any, None]]] = lambda _ctx: []
    # Work the service's own background jobs still have to do; stopping drains it too.
    backlog: Callable[[ServiceContext], Awaitable[int]] | None = None


async def _retry(start: Callable[[], Awaitable[None]], what: str, wait_seconds: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_seconds
    while True:
        try:
            await start()
            return
        except Exception as exc:
            if loop.time() > deadline:
                raise RuntimeError(f"{what} did not answer within {wait_seconds:.0f}s: {exc}") from exc
            await asyncio.sleep(0.5)


def create_service_app(spec: ServiceSpec, settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    if not settings.run_api and not settings.run_workers:
        raise RuntimeError("PARTNERHUB_RUN_API and PARTNERHUB_RUN_WORKERS are both false: nothing would run")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(spec.name, settings.log_level)
        tracing.configure_tracing(spec.name)
        db = Database(settings.database_url(spec.name), spec.name)
        producer = make_producer(settings)
        ctx = ServiceContext(spec.name, settings, db, producer, httpx.AsyncClient(), backlog=spec.backlog)
        tracing.instrument_client(ctx.http)
        app.state.ctx = ctx
        await _retry(lambda: ensure_topics(bootstrap(settings), all_topics()), "the Kafka broker", 60)
        await _retry(producer.start, "the Kafka producer", 60)
        background: list[asyncio.Task[Any]] = []
        if settings.run_workers:
            ctx.relay = OutboxRelay(spec.name, settings.database_url(spec.name), producer, settings)
            ctx.consumers = [
                ConsumerRunner(spec.name, sub.topic, db, settings, [sub])
                for sub in spec.subscriptions(ctx)
            ]
            ctx.tasks = [asyncio.create_task(ctx.relay.run(), name=f"{spec.name}-relay")]
            ctx.tasks += [asyncio.create_task(r.run(), name=r.group_id) for r in ctx.consumers]
            jobs = [*spec.background(ctx), periodic(db, IDEMPOTENCY_SWEEP, settings.sweep_interval_seconds,
                                                    prune_idempotency_keys)]
            background = [asyncio.create_task(job) for job in jobs]
            ctx.tasks += background
        # Everything loaded so far (modules, models, metadata) lives as long as the process: keep the cyclic
        # collector from scanning it again and again, and run it on a clock (partnerhub.gcpolicy).
        gc.freeze()
        collection = ScheduledCollection()
        collection.start()
        log.info(
            "service started",
            extra={"fields": {"service": spec.name, "api": settings.run_api, "workers": settings.run_workers}},
        )
        try:
            yield
        finally:
            try:
                await ctx.drain()
                # Periodic sweeps loop until cancelled; a sweep cut short rolls back and runs again next start.
                for task in background:
                    task.cancel()
                for runner in ctx.consumers:
                    runner.stop()
                if ctx.relay is not None:
                    ctx.relay.stop()
                if ctx.tasks:
                    _done, pending = await asyncio.wait(ctx.tasks, timeout=10)
                    for task in pending:
                        task.cancel()
                    await asyncio.gather(*pending, return_exceptions=True)
                await producer.stop()
                await ctx.http.aclose()
                await db.dispose()
            finally:
                await collection.stop()
            log.info("service stopped", extra={"fields": {"service": spec.name}})

    app = FastAPI(
        title=f"Partner Hub — {spec.title}",
        description=spec.description,
        version=package_version(),
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    install_problem_handlers(app)
    install_docs(app)
    app.add_middleware(JsonBodies)
    if settings.cors_origin_list:
        app.add_middleware(
            ProblemCORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["ETag", "traceparent"],
        )

    # Newer FastAPI hands the middleware the router's own route, whose path lacks the /v1 it is included under.
    full_paths = {id(route): f"/v1{path}" for router in spec.routers for route in router.routes
                  if isinstance(path := getattr(route, "path", None), str)}

    app.add_middleware(TraceAndMeasure, service=spec.name, full_paths=full_paths)

    @app.get("/healthz", tags=["health"], summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": spec.name}

    @app.get("/readyz", tags=["health"],
             summary="Readiness: the database and the broker answer, and every consumer has joined its group")
    async def readyz(ctx: Ctx) -> JSONResponse:
        checks: dict[str, str] = {}
        try:
            await asyncio.wait_for(ctx.db.ping(), 2)
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"unavailable: {type(exc).__name__}"
        try:
            await asyncio.wait_for(ctx.producer.client.fetch_all_metadata(), 2)
            checks["broker"] = "ok"
        except Exception as exc:
            checks["broker"] = f"unavailable: {type(exc).__name__}"
        if ctx.consumers:
            # Ready means consuming: an event published now will be taken in, not wait out a group join.
            joining = sorted(runner.group_id for runner in ctx.consumers if not runner.consuming())
            checks["consumers"] = f"joining: {', '.join(joining)}" if joining else "ok"
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "unavailable", "service": spec.name, "checks": checks},
            status_code=200 if ready else 503,
        )

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics", response_class=Response,
             responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}},
                              "description": "The Prometheus text exposition format"}})
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    if settings.run_api:
        for router in spec.routers:
            app.include_router(router, prefix="/v1")
    return app

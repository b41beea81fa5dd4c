"""The embedded gateway: one origin serving the Partner Center page (web/dist) and routing `/v1/…` to the services.

`partnerhub up` runs it on PARTNERHUB_GATEWAY_PORT (8000). The compose and cluster gateway is nginx
(deploy/gateway/default.conf.template); both route with partnerhub.routing and send the same page headers.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from partnerhub import SERVICES
from partnerhub.config import Settings
from partnerhub.routing import service_for

log = logging.getLogger("partnerhub.gateway")

SOURCE_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_WEB_DIR = SOURCE_ROOT / "web" / "dist"

# The page's policy: every script, style, font and request from this origin (no inline script, no CDN); images
# and fonts may also be data: URIs (the build inlines small ones), downloads blob: URLs. nginx sends the same.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "font-src 'self' data:; connect-src 'self'; frame-src 'self' blob:; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)
# Every answer of the gateway carries these; pages add the policy above.
COMMON_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
PAGE_HEADERS = {**COMMON_HEADERS, "Content-Security-Policy": CONTENT_SECURITY_POLICY}
# index.html names the current hashed assets: asked again every time. The assets never change under their name.
INDEX_CACHE = "no-cache"
ASSET_CACHE = "public, max-age=31536000, immutable"

# Headers that describe one connection, not the message (RFC 9110 §7.6.1): never forwarded either way.
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te",
    "trailer", "trailers", "transfer-encoding", "upgrade",
})
CONNECT_TIMEOUT_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 60.0
# Below uvicorn's 5 s keep-alive: the gateway drops an idle connection before the service does, never sends on one
# the service is closing.
KEEPALIVE_EXPIRY_SECONDS = 4.0
RETRIED_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def problem(status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"type": "about:blank", "title": title, "status": status, "detail": detail},
        status_code=status,
        media_type="application/problem+json",
        headers={**COMMON_HEADERS, **(headers or {})},
    )


def _probe_host(host: str) -> str:
    return "127.0.0.1" if host in {"0.0.0.0", "::", ""} else host


def upstreams_from(settings: Settings) -> dict[str, str]:
    """Each service's base URL on this machine, as `partnerhub up` starts them."""
    return {service: f"http://{_probe_host(settings.host)}:{settings.port(service)}" for service in SERVICES}


def _connection_tokens(values: Iterable[str]) -> set[str]:
    return {token.strip().lower() for value in values for token in value.split(",") if token.strip()}


NOT_BUILT_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Partner Center is not built</title></head>
<body><main><h1>The Partner Center page is not built yet</h1>
<p>The gateway serves the page from <code>{web_dir}</code>, which holds no <code>index.html</code>.</p>
<p>Build it: <code>./run up</code> does (it needs Node.js 20.19 or newer and npm), or by hand
<code>cd web &amp;&amp; npm ci &amp;&amp; npm run build</code>. The APIs answer meanwhile under <code>/v1/…</code>.</p>
</main></body></html>
"""


class Gateway:
    """The page's files and the proxy to the services, with one shared keep-alive pool."""

    def __init__(self, web_dir: Path, upstreams: dict[str, str]) -> None:
        self.web_dir = web_dir.resolve()
        self.upstreams = upstreams
        self.client: httpx.AsyncClient | None = None

    @asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(READ_TIMEOUT_SECONDS, connect=CONNECT_TIMEOUT_SECONDS),
            limits=httpx.Limits(max_connections=512, max_keepalive_connections=64,
                                keepalive_expiry=KEEPALIVE_EXPIRY_SECONDS),
            follow_redirects=False,
            trust_env=False,
        )
        try:
            yield
        finally:
            await self.client.aclose()
            self.client = None

    # --- the page ---------------------------------------------------------------------------------------------
    def _file(self, relative: str) -> Path | None:
        """A file of the built page under web_dir (nothing outside it, whatever the path says)."""
        candidate = (self.web_dir / relative.lstrip("/")).resolve()
        if candidate.is_relative_to(self.web_dir) and candidate.is_file():
            return candidate
        return None

    def _not_built(self, request: Request) -> Response:
        detail = (f"The Partner Center page is not built: {self.web_dir} holds no index.html. Build it with "
                  "./run up, or cd web && npm ci && npm run build")
        if "text/html" in request.headers.get("accept", ""):
            return HTMLResponse(NOT_BUILT_HTML.format(web_dir=self.web_dir), status_code=503,
                                headers={**PAGE_HEADERS, "Cache-Control": "no-store"})
        return problem(503, "Service Unavailable", detail, {"Cache-Control": "no-store"})

    async def page(self, request: Request) -> Response:
        if request.method not in {"GET", "HEAD"}:
            return problem(405, "Method Not Allowed", f"{request.url.path} is a page of the Partner Center: "
                           "only GET and HEAD", {"Allow": "GET, HEAD"})
        path = request.url.path
        if path.startswith("/assets/"):
            asset = self._file(path)
            if asset is None:
                return problem(404, "Not Found", f"The Partner Center has no asset {path}")
            return FileResponse(asset, headers={**PAGE_HEADERS, "Cache-Control": ASSET_CACHE})
        found = self._file(path) if path != "/" else None
        if found is not None and found.name != "index.html":
            return FileResponse(found, headers={**PAGE_HEADERS, "Cache-Control": INDEX_CACHE})
        # The single-page application's own paths (deep links) are all index.html.
        index = self._file("index.html")
        if index is None:
            return self._not_built(request)
        return FileResponse(index, media_type="text/html; charset=utf-8",
                            headers={**PAGE_HEADERS, "Cache-Control": INDEX_CACHE})

    # --- the services -----------------------------------------------------------------------------------------
    async def api(self, request: Request) -> Response:
        path = request.url.path
        service = service_for(path)
        if service is None:
            return problem(404, "Not Found", f"No Partner Hub service serves {path}")
        return await self.proxy(request, service)

    def _request_headers(self, request: Request) -> list[tuple[bytes, bytes]]:
        dropped = HOP_BY_HOP | _connection_tokens(request.headers.getlist("connection"))
        headers = [(name, value) for name, value in request.headers.raw
                   if name.decode("latin-1").lower() not in dropped
                   and name.lower() not in {b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"}]
        client = request.client.host if request.client else ""
        forwarded_for = ", ".join(v for v in [request.headers.get("x-forwarded-for", ""), client] if v)
        headers.append((b"x-forwarded-for", forwarded_for.encode("latin-1")))
        headers.append((b"x-forwarded-proto", request.url.scheme.encode("latin-1")))
        if "host" in request.headers:
            headers.append((b"x-forwarded-host", request.headers["host"].encode("latin-1")))
        if "x-request-id" not in request.headers:
            headers.append((b"x-request-id", uuid.uuid4().hex.encode()))
        return headers

    async def proxy(self, request: Request, service: str) -> Response:
        assert self.client is not None, "the gateway's lifespan has not started"
        base = self.upstreams[service]
        raw_path: bytes = request.scope.get("raw_path") or request.url.path.encode()
        query: bytes = request.scope.get("query_string", b"")
        url = httpx.URL(base).copy_with(raw_path=raw_path + (b"?" + query if query else b""))
        has_body = "content-length" in request.headers or "transfer-encoding" in request.headers
        started = time.perf_counter()
        attempts = 2 if request.method in RETRIED_METHODS and not has_body else 1
        upstream: httpx.Response | None = None
        for attempt in range(attempts):
            outgoing = self.client.build_request(
                request.method, url, headers=self._request_headers(request),
                content=request.stream() if has_body else None,
            )
            try:
                upstream = await self.client.send(outgoing, stream=True)
                break
            except httpx.RemoteProtocolError as exc:
                # A kept-alive connection the service closed as it was reused: once more on a fresh one.
                if attempt + 1 < attempts:
                    continue
                return self._failed(service, base, exc, started, request)
            except httpx.HTTPError as exc:
                return self._failed(service, base, exc, started, request)
        assert upstream is not None
        # The gateway's own Date and Server stand, as nginx's do.
        dropped = HOP_BY_HOP | {"date", "server"} | _connection_tokens(upstream.headers.get_list("connection"))
        headers = [(name.lower(), value) for name, value in upstream.headers.raw
                   if name.decode("latin-1").lower() not in dropped]
        present = {name for name, _ in headers}
        headers += [(k.lower().encode(), v.encode()) for k, v in COMMON_HEADERS.items()
                    if k.lower().encode() not in present]
        log.info("request", extra={"fields": {
            "method": request.method, "path": request.url.path, "status": upstream.status_code,
            "upstream": service, "upstream_seconds": round(time.perf_counter() - started, 6)}})
        response = StreamingResponse(upstream.aiter_raw(), status_code=upstream.status_code,
                                     background=BackgroundTask(upstream.aclose))
        response.raw_headers = headers
        return response

    def _failed(self, service: str, base: str, exc: httpx.HTTPError, started: float, request: Request) -> Response:
        log.warning("upstream failed", extra={"fields": {
            "method": request.method, "path": request.url.path, "upstream": service, "error": repr(exc),
            "upstream_seconds": round(time.perf_counter() - started, 6)}})
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            return problem(503, "Service Unavailable",
                           f"The {service} service cannot be reached at {base} right now; retry shortly "
                           "(is it running?)", {"Retry-After": "1"})
        if isinstance(exc, httpx.TimeoutException):
            return problem(504, "Gateway Timeout",
                           f"The {service} service did not answer within {READ_TIMEOUT_SECONDS:.0f} s")
        return problem(502, "Bad Gateway", f"The {service} service closed the connection without an answer "
                       f"({type(exc).__name__}); retry shortly")

    async def healthz(self, _request: Request) -> Response:
        return JSONResponse({"status": "ok", "service": "gateway"}, headers=COMMON_HEADERS)


METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def create_app(settings: Settings, web_dir: Path | None = None, upstreams: dict[str, str] | None = None) -> Starlette:
    gateway = Gateway(web_dir or settings.web_dir or DEFAULT_WEB_DIR, upstreams or upstreams_from(settings))
    routes = [
        Route("/healthz", gateway.healthz, methods=["GET", "HEAD"]),
        Route("/v1", gateway.api, methods=METHODS),
        Route("/v1{rest:path}", gateway.api, methods=METHODS),
        Route("/{rest:path}", gateway.page, methods=METHODS),
    ]
    app = Starlette(routes=routes, lifespan=gateway.lifespan)
    app.state.gateway = gateway
    return app


def serve(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    import uvicorn

    from partnerhub.logs import configure_logging

    configure_logging("gateway", settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=host or settings.host,
        port=port or settings.gateway_port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )


def describe(settings: Settings) -> dict[str, Any]:
    """What the gateway serves, for the banner of `partnerhub up`."""
    web_dir = (settings.web_dir or DEFAULT_WEB_DIR).resolve()
    return {"web_dir": web_dir, "built": (web_dir / "index.html").is_file()}

"""RFC 9457 problem+json errors: never a stack trace, never a 500 for bad input."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://partnerhub.dev/problems/"
# For OpenAPI `responses=`: an error answer documented as problem+json.
PROBLEM: dict[str, Any] = {"content": {PROBLEM_JSON: {}}}
Responses = dict[int | str, dict[str, Any]]
# An If-Match that is no longer the resource's version, as every service documents it.
STALE: Responses = {412: {"description": "If-Match names a version that is no longer current", **PROBLEM}}

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    412: "Precondition Failed",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class Problem(Exception):
    def __init__(
        self,
        status: int,
        title: str | None = None,
        detail: str = "",
        *,
        type_: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title or _TITLES.get(status, "Error")
        self.detail = detail
        self.type = type_ or TYPE_BASE + self.title.lower().replace(" ", "-")
        self.headers = headers or {}
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"type": self.type, "title": self.title, "status": self.status, "detail": self.detail, **self.extra}


def not_found(what: str) -> Problem:
    return Problem(404, detail=f"{what} was not found")


def conflict(detail: str, **extra: Any) -> Problem:
    return Problem(409, detail=detail, **extra)


def unprocessable(detail: str, loc: list[str | int] | None = None) -> Problem:
    return Problem(422, detail=detail, errors=[{"loc": loc or ["body"], "msg": detail}])


def illegal_move(current: str, wanted: str, allowed: list[str] | frozenset[str]) -> Problem:
    moves = ", ".join(sorted(allowed)) or "none (final)"
    return Problem(
        409,
        "Illegal State Transition",
        f"cannot move from {current!r} to {wanted!r}; allowed moves from {current!r}: {moves}",
        allowed=sorted(allowed),
    )


def problem_response(problem: Problem) -> JSONResponse:
    return JSONResponse(problem.body(), status_code=problem.status, headers=problem.headers, media_type=PROBLEM_JSON)


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


class JsonBodies:
    """CONTRACT §1: a request body not sent as application/json is refused with 415 before any route reads it
    (without this, a form or text body would be reported as a confusing validation error)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH"):
            headers = Headers(scope=scope)
            has_body = headers.get("content-length", "0").strip() not in ("", "0") or "transfer-encoding" in headers
            if has_body and not _is_json(headers.get("content-type", "")):
                given = headers.get("content-type") or "no Content-Type"
                problem = Problem(415, detail=f"the request body must be sent as application/json (got {given})")
                await problem_response(problem)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class ProblemCORSMiddleware(CORSMiddleware):
    """Starlette's CORS handling whose refused preflight answers problem+json like every other error."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        reason = bytes(response.body).decode(errors="replace") or "Disallowed CORS request"
        problem = Problem(400, detail=f"{reason} (allowed origins come from PARTNERHUB_CORS_ORIGINS)")
        headers = {k: v for k, v in response.headers.items() if k.lower() not in ("content-type", "content-length")}
        return JSONResponse(problem.body(), status_code=400, headers=headers, media_type=PROBLEM_JSON)


def _validation_detail(errors: list[dict[str, Any]], raw: list[Any]) -> str:
    for err in raw:
        if err.get("type") == "json_invalid":
            loc = err.get("loc", ())
            where = f" (at character {loc[1]})" if len(loc) > 1 else ""
            reason = (err.get("ctx") or {}).get("error", "")
            return f"the request body is not valid JSON{': ' + str(reason) if reason else ''}{where}"
    return "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors) or "the request is invalid"


# What FastAPI answers when a body cannot even be decoded (e.g. bytes that are not UTF-8).
UNREADABLE_BODY = "There was an error parsing the body"
HTTP_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def _allowed_methods(request: Request) -> str:
    """Every method some route of this path takes (Starlette's own 405 names only the first route's): the path
    is matched again under each method, through the routes' public `matches`."""
    routes = request.app.router.routes
    allowed = []
    for method in HTTP_METHODS:
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] is Match.FULL for route in routes):
            allowed.append(method)
    return ", ".join(allowed)


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(_: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        raw = list(exc.errors())
        errors = [{"loc": [str(p) for p in err.get("loc", ())], "msg": str(err.get("msg", "invalid"))} for err in raw]
        return problem_response(Problem(422, detail=_validation_detail(errors, raw), errors=errors))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        headers = dict(exc.headers or {})
        if exc.status_code == 400 and detail == UNREADABLE_BODY:
            detail = "the request body could not be read: JSON must be sent as UTF-8 text"
        if exc.status_code == 405:
            headers["Allow"] = _allowed_methods(request) or headers.get("Allow", "")
            detail = f"{request.method} is not allowed here; allowed: {headers['Allow']}"
        return problem_response(Problem(exc.status_code, detail=detail, headers=headers))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"fields": {"path": request.url.path}})
        return problem_response(Problem(500, detail="an unexpected error occurred; it has been logged"))

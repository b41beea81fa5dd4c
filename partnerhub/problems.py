"""RFC 9457 problem+json errors: never a stack trace, never a 500 for bad input."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://partnerhub.dev/problems/"
# For OpenAPI `responses=`: an error answer documented as problem+json.
PROBLEM: dict[str, Any] = {"content": {PROBLEM_JSON: {}}}
Responses = dict[int | str, dict[str, Any]]

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


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(_: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": [str(p) for p in err.get("loc", ())], "msg": str(err.get("msg", "invalid"))}
            for err in exc.errors()
        ]
        detail = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors) or "the request is invalid"
        return problem_response(Problem(422, detail=detail, errors=errors))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return problem_response(Problem(exc.status_code, detail=detail, headers=dict(exc.headers or {})))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"fields": {"path": request.url.path}})
        return problem_response(Problem(500, detail="an unexpected error occurred; it has been logged"))

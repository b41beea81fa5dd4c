"""Each service's OpenAPI document as the service really answers, and its docs pages served offline.

FastAPI's generated document knows the routes, their parameters and bodies. What it cannot know is written here
once for every service: the bearer-token security scheme on every `/v1` operation, the one `Problem` schema
(problem+json) for every error answer, and the errors each operation can give — 401 and 403 from the token,
404 where the path names a resource, 409 for changes, 412 where `If-Match` is taken, 400 and 415 where a body is
sent, 422 for invalid input.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from partnerhub.problems import PROBLEM_JSON

BEARER = "bearer"
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Problem",
    "description": "RFC 9457 problem details; validation problems add `errors`, illegal moves `allowed`.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["loc", "msg"],
                "properties": {
                    "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
                    "msg": {"type": "string"},
                },
            },
        },
        "allowed": {"type": "array", "items": {"type": "string"}},
    },
    "additionalProperties": True,
}
PROBLEM_CONTENT = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
ERRORS = {
    "400": "The body could not be read at all (it is not UTF-8 text)",
    "401": "No valid bearer token (missing, malformed, expired, or signed with another key)",
    "403": "The token's role may not make this call, or a partner token names another partner",
    "404": "Not found (or another partner's)",
    "409": "Conflicts with the current state (names the allowed moves), or an Idempotency-Key reused "
           "with another body",
    "412": "If-Match is stale: the resource changed since it was read",
    "415": "The body is not sent as application/json",
    "422": "Invalid input; `errors` lists each field",
}
CHANGES = frozenset({"post", "put", "patch", "delete"})
# The docs pages' scripts and styles, from the fastapi-offline wheel: served by the service itself.
DOCS_ASSETS = "/docs-assets"


def package_version() -> str:
    try:
        return version("partnerhub")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0"


def _errors_of(path: str, method: str, operation: dict[str, Any]) -> list[str]:
    parameters = operation.get("parameters", [])
    wanted = ["401", "403", "422"]
    if any(p.get("in") == "path" for p in parameters):
        wanted.append("404")
    if method in CHANGES:
        wanted.append("409")
    if any(p.get("in") == "header" and p.get("name", "").lower() == "if-match" for p in parameters):
        wanted.append("412")
    if "requestBody" in operation:
        wanted += ["400", "415"]
    return wanted


def _parameter_schema(parameter: dict[str, Any]) -> None:
    """An optional header or query parameter is absent or a value: never the JSON `null` FastAPI's `str | None`
    would declare (there is no way to send one)."""
    schema = parameter.get("schema", {})
    choices = schema.get("anyOf")
    if parameter.get("in") in ("header", "query") and choices:
        strings = [c for c in choices if c.get("type") != "null"]
        if len(strings) == 1:
            parameter["schema"] = {**strings[0], **{k: v for k, v in schema.items() if k != "anyOf"}}


def describe(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document of the app's routes, completed as the module docstring says."""
    document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Problem"] = PROBLEM_SCHEMA
    components["securitySchemes"] = {BEARER: {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": "A JWT with claims sub, role (admin, partner, system), partner_id for a partner; "
                       "`partnerhub token --role admin` prints one for the embedded system.",
    }}
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses: dict[str, Any] = operation["responses"]
            for parameter in operation.get("parameters", []):
                _parameter_schema(parameter)
            if path.startswith("/v1/"):
                operation["security"] = [{BEARER: []}]
                for status in _errors_of(path, method, operation):
                    responses.setdefault(status, {"description": ERRORS[status]})
                if "422" in responses and responses["422"].get("description") == "Validation Error":
                    responses["422"]["description"] = ERRORS["422"]
            for status, response in responses.items():
                if status[0] in "45":
                    response["content"] = PROBLEM_CONTENT
            if "401" in responses:
                responses["401"]["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"},
                                                                     "description": "Bearer"}}
    return document


def install_docs(app: FastAPI) -> None:
    """Serves the completed document at /openapi.json and Swagger UI at /docs and ReDoc at /redoc, with every
    script and style from this service (nothing from a CDN)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = describe(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    assets = Path(fastapi_offline.__file__).parent / "static"
    app.mount(DOCS_ASSETS, StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}/openapi.json", title=f"{app.title} — API",
            swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
            swagger_ui_parameters={"persistAuthorization": True},
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}/openapi.json", title=f"{app.title} — API",
            redoc_js_url=f"{root}{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png", with_google_fonts=False,
        )

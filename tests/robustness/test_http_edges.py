"""The edges of every service's HTTP API (CONTRACT §1): what a client sends wrong gets one clear problem+json.

Wrong content types, broken JSON, bad tokens, methods a path does not take, refused CORS preflights and expired
Idempotency-Keys, on every service where the behaviour is shared.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI

from partnerhub.config import Settings
from partnerhub.problems import PROBLEM_JSON, ProblemCORSMiddleware, install_problem_handlers
from tests.registry.support import PARTNER, run_sql

Tokens = Callable[..., dict[str, str]]
SERVICES = ["registry", "accounts", "incentives", "funds", "webhooks"]
# One write per service whose body is checked (the body need not be valid: the content type is refused first).
WRITES = {
    "registry": "/v1/partners",
    "accounts": "/v1/accounts",
    "incentives": "/v1/programs",
    "funds": "/v1/funds",
    "webhooks": "/v1/webhooks",
}


@pytest.fixture(params=SERVICES)
def service(request: pytest.FixtureRequest) -> tuple[str, httpx.AsyncClient]:
    name = str(request.param)
    return name, request.getfixturevalue(name)


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["detail"], body
    return body


async def test_a_body_not_sent_as_json_is_415(service: tuple[str, httpx.AsyncClient], tokens: Tokens) -> None:
    name, client = service
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {**tokens(), **({"Content-Type": content_type} if content_type else {})}
        response = await client.post(WRITES[name], content=b'{"name": "x"}', headers=headers)
        body = problem(response, 415)
        assert "application/json" in body["detail"] and (content_type or "no Content-Type") in body["detail"]
    # JSON with a charset, and the +json media types, are JSON.
    sent = await client.post(WRITES[name], content=b"{}", headers={**tokens(), "Content-Type":
                                                                 "application/json; charset=utf-8"})
    assert sent.status_code == 422, sent.text


async def test_broken_json_says_where(service: tuple[str, httpx.AsyncClient], tokens: Tokens) -> None:
    name, client = service
    response = await client.post(WRITES[name], content=b'{"name": "a",, }',
                                 headers={**tokens(), "Content-Type": "application/json"})
    detail = problem(response, 422)["detail"]
    assert detail.startswith("the request body is not valid JSON") and "at character 13" in detail, detail
    assert "body." not in detail and "JSON decode error" not in detail


async def test_bad_tokens_are_refused_in_our_words(service: tuple[str, httpx.AsyncClient],
                                                   settings: Settings) -> None:
    name, client = service
    claims = {"sub": "someone", "role": "admin"}
    cases = {
        "garbage": ("the token is not a well-formed JWT", "not-a-token"),
        "other secret": ("PARTNERHUB_JWT_SECRET", jwt.encode(claims, "another-secret-" + "y" * 32, "HS256")),
        "expired": ("the token has expired", jwt.encode({**claims, "exp": 1}, settings.signing_secret, "HS256")),
        "no subject": ("'sub' claim", jwt.encode({"role": "admin"}, settings.signing_secret, "HS256")),
        "unsigned": ("must be signed with HS256", jwt.encode(claims, None, "none")),
    }
    for case, (expected, token) in cases.items():
        response = await client.get(WRITES[name], headers={"Authorization": f"Bearer {token}"})
        body = problem(response, 401)
        assert expected in body["detail"], (case, body["detail"])
        assert response.headers["www-authenticate"] == "Bearer"
        for internal in ("Signature verification failed", "Not enough segments", "Invalid header", "decode"):
            assert internal not in body["detail"], (case, body["detail"])


async def test_405_names_every_method_of_the_path(incentives: httpx.AsyncClient, tokens: Tokens) -> None:
    response = await incentives.request("OPTIONS", "/v1/programs/anything", headers=tokens())
    problem(response, 405)
    assert response.headers["allow"] == "GET, PATCH"
    deleted = await incentives.delete("/v1/programs", headers=tokens())
    problem(deleted, 405)
    assert deleted.headers["allow"] == "GET, POST"


async def test_a_refused_cors_preflight_is_a_problem() -> None:
    app = FastAPI()
    install_problem_handlers(app)
    app.add_middleware(ProblemCORSMiddleware, allow_origins=["https://center.example"], allow_methods=["*"],
                       allow_headers=["*"])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        preflight = {"Access-Control-Request-Method": "POST"}
        refused = await client.options("/v1/x", headers={**preflight, "Origin": "https://evil.example"})
        body = problem(refused, 400)
        assert "PARTNERHUB_CORS_ORIGINS" in body["detail"] and "origin" in body["detail"].lower()
        allowed = await client.options("/v1/x", headers={**preflight, "Origin": "https://center.example"})
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://center.example"


async def test_an_idempotency_key_is_forgotten_after_its_lifetime(registry: httpx.AsyncClient,
                                                                  tokens: Tokens) -> None:
    from partnerhub.http import prune_idempotency_keys
    from tests.registry.support import sweep

    key = str(uuid.uuid4())
    headers = {**tokens(), "Idempotency-Key": key}
    first = await registry.post("/v1/partners", json=PARTNER, headers=headers)
    replayed = await registry.post("/v1/partners", json=PARTNER, headers=headers)
    assert replayed.json()["id"] == first.json()["id"] and replayed.headers["idempotent-replayed"] == "true"

    # 25 hours later (the default lifetime is 24) the key is unknown: the same request is a new one.
    await run_sql(registry, "UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE key = :k",
                  k=key)
    anew = await registry.post("/v1/partners", json=PARTNER, headers=headers)
    assert anew.status_code == 201 and anew.json()["id"] != first.json()["id"]
    assert "idempotent-replayed" not in anew.headers

    # The sweep deletes expired keys and keeps live ones.
    old = str(uuid.uuid4())
    await registry.post("/v1/partners", json=PARTNER, headers={**tokens(), "Idempotency-Key": old})
    await run_sql(registry, "UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE key = :k",
                  k=old)
    # The service's own sweep may get there first (it runs on a clock): either way the expired key is gone.
    await sweep(registry, "idempotency-keys", prune_idempotency_keys)
    kept = await run_sql(registry, "SELECT key FROM idempotency_keys WHERE key IN (:a, :b)", a=key, b=old)
    assert [row.key for row in kept] == [key]


async def test_a_body_that_is_not_utf8_is_400_in_our_words(service: tuple[str, httpx.AsyncClient],
                                                          tokens: Tokens) -> None:
    name, client = service
    response = await client.post(WRITES[name], content=b'{"name": "\xff\xfe"}',
                                 headers={**tokens(), "Content-Type": "application/json"})
    assert "UTF-8" in problem(response, 400)["detail"]


HOSTILE_BODIES = {
    "10 MB string": b'{"name": "' + b"x" * 10_000_000 + b'"}',
    "deep nesting": b'{"name": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "10,000-item array": b'{"types": [' + b",".join([b'"sales"'] * 10_000) + b"]}",
    "huge number": b'{"amount": 1' + b"0" * 5000 + b"}",
    "NUL key": b'{"na\\u0000me": "x"}',
    "lone surrogate": b'{"name": "\\ud800"}',
}


@pytest.mark.parametrize("case", list(HOSTILE_BODIES))
async def test_hostile_bodies_are_4xx_problems(service: tuple[str, httpx.AsyncClient], tokens: Tokens,
                                               case: str) -> None:
    name, client = service
    response = await client.post(WRITES[name], content=HOSTILE_BODIES[case],
                                 headers={**tokens(), "Content-Type": "application/json"})
    assert 400 <= response.status_code < 500, (case, response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    assert len(response.content) < 20_000, "the problem does not echo the hostile input back"


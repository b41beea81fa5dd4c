"""Every service's OpenAPI document describes the service as it answers (CONTRACT §1 v2, "OpenAPI")."""

from __future__ import annotations

import re

import httpx
import pytest

from partnerhub.openapi import package_version
from partnerhub.problems import PROBLEM_JSON

SERVICES = ["registry", "accounts", "incentives", "funds", "webhooks"]


@pytest.fixture(params=SERVICES)
def client(request: pytest.FixtureRequest) -> httpx.AsyncClient:
    service: httpx.AsyncClient = request.getfixturevalue(str(request.param))
    return service


async def test_the_document_names_its_security_errors_and_version(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    assert document["info"]["version"] == package_version() != "0.0.0"
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    assert schemas["Problem"]["required"] == ["type", "title", "status", "detail"]
    assert document["components"]["securitySchemes"]["bearer"] == {
        **document["components"]["securitySchemes"]["bearer"], "type": "http", "scheme": "bearer"}
    operations = [(path, method, op) for path, item in document["paths"].items() for method, op in item.items()
                  if path.startswith("/v1/")]
    assert len(operations) >= 5
    for path, method, operation in operations:
        where = f"{method.upper()} {path}"
        assert operation["security"] == [{"bearer": []}], where
        responses = operation["responses"]
        assert {"401", "403", "422"} <= set(responses), where
        if "{" in path:
            assert "404" in responses, where
        if "requestBody" in operation:
            assert {"400", "415"} <= set(responses), where
        if any(p["in"] == "header" and p["name"] == "If-Match" for p in operation.get("parameters", [])):
            assert "412" in responses, where
        for status, response in responses.items():
            if status[0] in "45":
                assert list(response["content"]) == [PROBLEM_JSON], (where, status)
                assert response["content"][PROBLEM_JSON]["schema"] == {"$ref": "#/components/schemas/Problem"}
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "header":
                assert "null" not in str(parameter["schema"]), (where, parameter)


async def test_docs_and_redoc_are_served_offline(client: httpx.AsyncClient) -> None:
    for page in ("/docs", "/redoc"):
        response = await client.get(page)
        assert response.status_code == 200 and "text/html" in response.headers["content-type"], page
        # No script, style or font from anywhere but the service itself.
        external = re.findall(r"""(?:src|href)=["']?(https?://[^"' >]+)""", response.text)
        assert external == [], (page, external)
        assets = re.findall(r"""["'](/docs-assets/[^"']+)["']""", response.text)
        assert assets, page
        for asset in assets:
            served = await client.get(asset)
            assert served.status_code == 200 and len(served.content) > 1000, asset
    assert "persistAuthorization" in (await client.get("/docs")).text

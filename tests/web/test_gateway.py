"""The embedded gateway through a real `partnerhub up`: one origin for the page and every service's `/v1` paths,
the sign-in links `up` prints, `partnerhub token --link`; and a gateway whose services are down or whose page is not
built answering what happened instead of a 500."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from partnerhub.embedded import free_ports, port_is_open
from partnerhub.gateway import ASSET_CACHE, CONTENT_SECURITY_POLICY, INDEX_CACHE
from tests.e2e.conftest import ROOT
from tests.web.conftest import Workspace

LISTS = {
    "registry": "/v1/partners",
    "accounts": "/v1/accounts",
    "incentives": "/v1/programs",
    "funds": "/v1/fund-requests",
    "webhooks": "/v1/webhooks",
}
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def claims(token: str) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return decoded


def direct(workspace: Workspace, service: str) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{workspace.hub.ports[service]}", timeout=30, trust_env=False)


def test_each_service_answers_through_the_gateway(workspace: Workspace) -> None:
    with workspace.api("admin") as api:
        for service, path in LISTS.items():
            response = api.get(path, params={"limit": 2})
            assert response.status_code == 200, (service, response.text)
            assert set(response.json()) >= {"items", "next_cursor"}, service
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["referrer-policy"] == "no-referrer"


def test_a_services_own_problem_passes_through_unchanged(workspace: Workspace) -> None:
    with httpx.Client(base_url=workspace.url, timeout=30, trust_env=False) as anonymous:
        for service, path in LISTS.items():
            through = anonymous.get(path)
            with direct(workspace, service) as client:
                straight = client.get(path)
            assert through.status_code == straight.status_code == 401, service
            assert through.headers["content-type"] == straight.headers["content-type"] == "application/problem+json"
            assert through.headers["www-authenticate"] == "Bearer"
            assert through.json() == straight.json(), service
    with workspace.api("admin") as api, direct(workspace, "incentives") as client:
        admin = {"Authorization": api.headers["Authorization"]}
        path = "/v1/partners/not-a-uuid/accruals?limit=9999"
        through, straight = api.get(path), client.get(path, headers=admin)
        assert through.status_code == straight.status_code == 422
        assert through.content == straight.content


def test_a_create_goes_through_with_its_body_and_idempotency_key(workspace: Workspace) -> None:
    body = {"name": "Gateway Check GmbH", "country": "DE", "region": "EMEA", "types": ["sales"]}
    key = {"Idempotency-Key": f"gateway-{uuid.uuid4()}"}
    with workspace.api("admin") as api:
        first = api.post("/v1/partners", json=body, headers=key)
        again = api.post("/v1/partners", json=body, headers=key)
        other = api.post("/v1/partners", json={**body, "name": "Someone Else"}, headers=key)
        head = api.head(f"/v1/partners/{first.json()['id']}")
    assert first.status_code == 201, first.text
    assert again.status_code == 201 and again.json()["id"] == first.json()["id"]
    assert other.status_code == 409 and other.headers["content-type"] == "application/problem+json"
    assert head.status_code in {200, 405}


def test_the_page_is_served_at_the_root_and_at_deep_links(workspace: Workspace) -> None:
    with httpx.Client(base_url=workspace.url, timeout=30, trust_env=False) as client:
        root = client.get("/")
        assert root.status_code == 200, root.text
        assert root.headers["content-type"].startswith("text/html")
        assert root.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert "default-src 'self'" in CONTENT_SECURITY_POLICY and "unsafe-inline" not in CONTENT_SECURITY_POLICY
        assert root.headers["x-content-type-options"] == "nosniff"
        assert root.headers["referrer-policy"] == "no-referrer"
        assert root.headers["cache-control"] == INDEX_CACHE
        for deep in ("/partners/3f2b6c1e-0000-4000-8000-000000000000", "/staff/queues", "/earnings?period=2026-01"):
            page = client.get(deep)
            assert page.status_code == 200 and page.content == root.content, deep
        assets = sorted(set(re.findall(r"""(?:src|href)="(/assets/[^"]+)\"""", root.text)))
        assert assets, f"index.html names no /assets/ file:\n{root.text}"
        for asset in assets:
            answer = client.get(asset)
            assert answer.status_code == 200, asset
            assert answer.headers["cache-control"] == ASSET_CACHE
            assert answer.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
            assert not answer.headers["content-type"].startswith("text/html"), asset
        missing = client.get("/assets/no-such-file.js")
        assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
        unknown = client.get("/v1/no-such-thing")
        assert unknown.status_code == 404 and "No Partner Hub service serves" in unknown.json()["detail"]
        assert client.post("/", json={}).status_code == 405
        assert client.get("/healthz").json() == {"status": "ok", "service": "gateway"}


def test_up_prints_sign_in_links_for_an_admin_and_a_named_partner(workspace: Workspace) -> None:
    text = workspace.text()
    origin = re.escape(workspace.url)
    admin = re.search(rf"as staff \(admin\):\s+{origin}/#token=(\S+)", text)
    partner = re.search(rf"as partner (.+) \(({UUID}), [^)]*\):\s+{origin}/#token=(\S+)", text)
    assert admin and partner, text
    assert claims(admin.group(1))["role"] == "admin"
    name, partner_id, token = partner.groups()
    assert name == "Demo Partner"  # the session's registry was empty: `up` created one
    assert claims(token) | {"role": "partner", "partner_id": partner_id} == claims(token)
    assert 11 * 3600 < claims(token)["exp"] - claims(token)["iat"] <= 12 * 3600
    with httpx.Client(base_url=workspace.url, timeout=30, trust_env=False,
                      headers={"Authorization": f"Bearer {token}"}) as as_partner:
        own = as_partner.get(f"/v1/partners/{partner_id}")
        assert own.status_code == 200 and own.json()["name"] == name and own.json()["status"] == "active"
    with httpx.Client(base_url=workspace.url, timeout=30, trust_env=False,
                      headers={"Authorization": f"Bearer {admin.group(1)}"}) as as_admin:
        assert as_admin.get("/v1/partners").status_code == 200


def test_partnerhub_token_link_prints_a_link_the_registry_accepts(workspace: Workspace) -> None:
    with workspace.api("admin") as api:
        partner_id = api.get("/v1/partners", params={"limit": 1}).json()["items"][0]["id"]
    env = {**workspace.env, "PARTNERHUB_GATEWAY_PORT": str(workspace.hub.ports["gateway"])}
    done = subprocess.run(
        [sys.executable, "-m", "partnerhub.cli", "token", "--role", "partner", "--partner-id", partner_id, "--link"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    link = done.stdout.strip()
    assert link.startswith(f"{workspace.url}/#token="), link
    token = link.split("#token=", 1)[1]
    with direct(workspace, "registry") as registry:
        answer = registry.get(f"/v1/partners/{partner_id}", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text


@pytest.mark.browser
def test_the_page_loads_in_a_browser_without_refusals(workspace: Workspace, page: Any) -> None:
    """The real page under its real policy: nothing it loads is refused, no script error."""
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("requestfailed", lambda r: problems.append(f"{r.url}: {r.failure}"))
    page.goto(workspace.link("admin"), wait_until="networkidle")
    assert page.evaluate("document.scripts.length") >= 1
    assert problems == []


# --- a gateway of its own: no services behind it, a page built or not --------------------------------------------
@contextlib.contextmanager
def lone_gateway(web_dir: Path, ports: dict[str, int] | None = None) -> Iterator[str]:
    """`partnerhub gateway` with nothing listening on the services' ports (but those given)."""
    gateway, *services = free_ports(6)
    env = {"PATH": "/usr/bin:/bin", "PARTNERHUB_WEB_DIR": str(web_dir), "PARTNERHUB_GATEWAY_PORT": str(gateway),
           "PARTNERHUB_JWT_SECRET": "x" * 40}
    for name, port in zip(LISTS, services, strict=True):
        env[f"PARTNERHUB_{name.upper()}_PORT"] = str((ports or {}).get(name, port))
    process = subprocess.Popen([sys.executable, "-m", "partnerhub.cli", "gateway"], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not port_is_open("127.0.0.1", gateway):
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            assert time.monotonic() < deadline, "the gateway did not listen within 30 s"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{gateway}"
    finally:
        process.terminate()
        process.wait(15)


def test_a_gateway_without_its_services_or_page_says_what_is_missing(tmp_path: Path) -> None:
    with lone_gateway(tmp_path) as url, httpx.Client(base_url=url, timeout=30) as client:
        down = client.get("/v1/partners", headers={"Authorization": "Bearer x"})
        assert down.status_code == 503
        assert down.headers["content-type"] == "application/problem+json"
        assert "registry service cannot be reached" in down.json()["detail"]
        assert client.post("/v1/fund-requests", json={"x": 1}).json()["detail"].startswith("The funds service")

        html = client.get("/", headers={"Accept": "text/html"})
        assert html.status_code == 503 and "./run up" in html.text and str(tmp_path) in html.text
        problem = client.get("/partners/x")
        assert problem.status_code == 503 and "npm run build" in problem.json()["detail"]

        (tmp_path / "index.html").write_text("<!doctype html><title>Partner Center</title>")
        secret = tmp_path.parent / "outside.txt"
        secret.write_text("not served")
        assert "Partner Center" in client.get("/").text
        for sneaky in ("/%2e%2e/outside.txt", "/assets/%2e%2e/%2e%2e/outside.txt", "/..%2foutside.txt"):
            answer = client.get(sneaky)
            assert "not served" not in answer.text, sneaky


class Recorder(BaseHTTPRequestHandler):
    """A stand-in service: answers 418 with what reached it (headers, path, body digest) and two cookies."""

    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while (size := int(self.rfile.readline().strip(), 16)) > 0:
                body += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
        else:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
        seen = json.dumps({
            "method": self.command, "path": self.path, "headers": [[k.lower(), v] for k, v in self.headers.items()],
            "body_sha256": hashlib.sha256(body).hexdigest(), "body_length": len(body),
        }).encode()
        self.send_response(418)
        self.send_header("Content-Type", "application/problem+json")
        self.send_header("Content-Length", str(len(seen)))
        self.send_header("Set-Cookie", "a=1")
        self.send_header("Set-Cookie", "b=2")
        self.send_header("Keep-Alive", "timeout=5")
        self.send_header("X-Service", "recorder")
        self.end_headers()
        self.wfile.write(seen)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_the_gateway_passes_requests_and_answers_through_unchanged(tmp_path: Path) -> None:
    recorder = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=recorder.serve_forever, daemon=True).start()
    try:
        with lone_gateway(tmp_path, {"registry": recorder.server_address[1]}) as url, \
                httpx.Client(base_url=url, timeout=30) as client:
            body = bytes(range(256)) * 8192  # 2 MiB, sent in chunks of unknown total length
            answer = client.post(
                "/v1/partners/p%2F1/status?b=%20x&a=1&a=2", content=iter([body[:1000], body[1000:]]),
                headers={"Content-Type": "application/json", "X-Custom": "kept",
                         "Connection": "keep-alive, X-Hop", "X-Hop": "dropped", "TE": "trailers",
                         "Traceparent": f"00-{'1' * 32}-{'2' * 16}-01"})
            seen = answer.json()
            headers = dict(seen["headers"])
            assert answer.status_code == 418
            assert answer.headers["content-type"] == "application/problem+json"
            assert answer.headers.get_list("set-cookie") == ["a=1", "b=2"]
            assert answer.headers["x-service"] == "recorder" and "keep-alive" not in answer.headers
            assert seen["method"] == "POST" and seen["path"] == "/v1/partners/p%2F1/status?b=%20x&a=1&a=2"
            assert (seen["body_length"], seen["body_sha256"]) == (len(body), hashlib.sha256(body).hexdigest())
            assert headers["x-custom"] == "kept" and headers["traceparent"].startswith("00-111")
            assert "x-hop" not in headers and "te" not in headers
            assert headers["x-forwarded-for"] == "127.0.0.1" and headers["x-request-id"]
            assert headers["host"] == url.removeprefix("http://")

            fixed = client.put("/v1/partners/p1/tier", json={"tier": "gold"})
            assert fixed.json()["body_length"] == len(b'{"tier":"gold"}')
            got = client.get("/v1/partners", params={"limit": 5})
            assert got.json()["method"] == "GET" and got.json()["body_length"] == 0
            assert "transfer-encoding" not in dict(got.json()["headers"]), "a GET is sent without a body"
    finally:
        recorder.shutdown()
        recorder.server_close()


def test_up_refuses_a_busy_gateway_port_before_anything_starts() -> None:
    from partnerhub.cli import check_service_ports
    from partnerhub.config import Settings

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        others = dict(zip(LISTS, free_ports(5), strict=True))
        settings = Settings(gateway_port=busy, **{f"{name}_port": port for name, port in others.items()})
        with pytest.raises(RuntimeError, match=rf"gateway 127\.0\.0\.1:{busy} \(PARTNERHUB_GATEWAY_PORT\)"):
            check_service_ports(settings)
    with pytest.raises(RuntimeError, match="both set to port"):
        check_service_ports(Settings(gateway_port=others["funds"], **{f"{n}_port": p for n, p in others.items()}))

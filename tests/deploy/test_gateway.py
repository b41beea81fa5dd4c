"""The gateway sends every path of the five services' OpenAPI documents to the service that serves it, and serves
the Partner Center page at every other path: nginx (compose, the cluster) and the embedded gateway of `partnerhub up`
alike, both from partnerhub.routing's one table."""

from __future__ import annotations

import contextlib
import importlib
import json
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from partnerhub import SERVICES
from partnerhub.gateway import ASSET_CACHE, CONTENT_SECURITY_POLICY, INDEX_CACHE
from partnerhub.routing import RULES, service_for
from tests.deploy.support import (
    GATEWAY_TEMPLATE,
    Directive,
    compose_config,
    concrete_path,
    environment,
    http_server,
    match_location,
    nginx_binary,
    parse_nginx,
    proxy_target,
    render_template,
)

# CONTRACT §1 "routing", path by path, including paths whose routes are still being written.
CONTRACT_ROUTES = {
    "/v1/partners": "registry",
    "/v1/partners/p1": "registry",
    "/v1/partners/p1/status": "registry",
    "/v1/partners/p1/tier": "registry",
    "/v1/partners/p1/certifications": "registry",
    "/v1/partners/p1/certifications/CERT-1": "registry",
    "/v1/partners/p1/parent": "registry",
    "/v1/partners/p1/accruals": "incentives",
    "/v1/partners/p1/ledger": "incentives",
    "/v1/partners/p1/statements/2026-01": "incentives",
    "/v1/partners/p1/bip": "incentives",
    "/v1/partners/p1/fund-balances": "funds",
    "/v1/partners/p1/fund-ledger": "funds",
    "/v1/accounts": "accounts",
    "/v1/accounts/a1/classification": "accounts",
    "/v1/accounts/a1/owner": "accounts",
    "/v1/accounts/a1/history": "accounts",
    "/v1/registrations": "accounts",
    "/v1/registrations/r1/decision": "accounts",
    "/v1/products": "incentives",
    "/v1/products/SKU-1": "incentives",
    "/v1/programs": "incentives",
    "/v1/programs/BASE-2026": "incentives",
    "/v1/sales": "incentives",
    "/v1/sales/S-1/cancel": "incentives",
    "/v1/periods/2026-01/close": "incentives",
    "/v1/recalculations": "incentives",
    "/v1/disputes": "incentives",
    "/v1/disputes/d1/decision": "incentives",
    "/v1/fx-rates": "incentives",
    "/v1/fx-rates/THB/USD": "incentives",
    "/v1/partners/p1/statements/2026-01/lines": "incentives",
    "/v1/funds": "funds",
    "/v1/funds/MDF-2026": "funds",
    "/v1/funds/MDF-2026/requests": "funds",
    "/v1/fund-requests": "funds",
    "/v1/fund-requests/f1/decision": "funds",
    "/v1/fund-requests/f1/claims": "funds",
    "/v1/fund-requests/f1/complete": "funds",
    "/v1/fund-claims/c1/decision": "funds",
}
NOT_ROUTED = ["/", "/v1", "/v1/unknown", "/v1/partnersX", "/v1/fundsy", "/v1/webhooksy", "/metrics", "/healthz/x"]
# The Partner Center's own paths: the page (index.html), never a service.
PAGE_PATHS = ["/", "/index.html", "/partners/p1", "/staff/queues", "/metrics", "/healthz/x", "/registry"]


@pytest.fixture(scope="module")
def gateway_env() -> dict[str, str]:
    env = environment(compose_config()["services"]["gateway"])
    # What the image's 15-local-resolvers.envsh exports when NGINX_ENTRYPOINT_LOCAL_RESOLVERS is set.
    assert env.get("NGINX_ENTRYPOINT_LOCAL_RESOLVERS")
    return {**env, "NGINX_LOCAL_RESOLVERS": "127.0.0.11"}


@pytest.fixture(scope="module")
def rendered(gateway_env: dict[str, str]) -> str:
    return render_template(GATEWAY_TEMPLATE.read_text(), gateway_env)


@pytest.fixture(scope="module")
def server(rendered: str) -> Directive:
    return http_server(parse_nginx(rendered))


@pytest.fixture(scope="module")
def upstreams(gateway_env: dict[str, str]) -> dict[str, str]:
    """host:port → service, as the compose file wires the gateway."""
    return {gateway_env[f"GATEWAY_{name.upper()}_UPSTREAM"]: name for name in SERVICES}


@pytest.fixture(scope="module")
def openapi_paths() -> dict[str, list[str]]:
    paths = {}
    for name in SERVICES:
        app = importlib.import_module(f"services.{name}.app").create_app()
        paths[name] = [path for path in app.openapi()["paths"] if path.startswith("/v1/")]
    return paths


def routed_to(server: Directive, upstreams: dict[str, str], uri: str) -> str | None:
    location = match_location(server, uri)
    assert location is not None, f"no location matches {uri}"
    target = proxy_target(server, location)
    if target is None:
        return None
    host, _path = target
    return upstreams[host]


def test_template_renders_completely(rendered: str) -> None:
    assert "${" not in rendered, "a variable the template uses is not set for the gateway"


def test_every_openapi_path_reaches_the_service_that_serves_it(
    server: Directive, upstreams: dict[str, str], openapi_paths: dict[str, list[str]]
) -> None:
    assert all(openapi_paths.values()), "every service has /v1 routes"
    wrong = {
        template: (service, routed_to(server, upstreams, concrete_path(template)))
        for service, templates in openapi_paths.items()
        for template in templates
        if routed_to(server, upstreams, concrete_path(template)) != service
    }
    assert wrong == {}, "path template: (served by, routed to)"


def test_no_path_template_is_served_by_two_services(openapi_paths: dict[str, list[str]]) -> None:
    owners: dict[str, list[str]] = {}
    for service, templates in openapi_paths.items():
        for template in templates:
            owners.setdefault(template, []).append(service)
    assert {t: s for t, s in owners.items() if len(s) > 1} == {}


def test_contract_routing_table(server: Directive, upstreams: dict[str, str]) -> None:
    got = {path: routed_to(server, upstreams, path) for path in CONTRACT_ROUTES}
    assert got == CONTRACT_ROUTES


def test_unknown_paths_are_not_proxied(server: Directive, upstreams: dict[str, str]) -> None:
    for path in NOT_ROUTED:
        assert routed_to(server, upstreams, path) is None, path


def expected_routes(openapi_paths: dict[str, list[str]]) -> dict[str, str]:
    expected = dict(CONTRACT_ROUTES)
    for service, templates in openapi_paths.items():
        expected.update({concrete_path(t): service for t in templates})
    return expected


def test_the_shared_routing_table_agrees_with_the_contract_and_every_service(
    openapi_paths: dict[str, list[str]]
) -> None:
    """The embedded gateway routes with partnerhub.routing: every contract path and every OpenAPI path."""
    expected = expected_routes(openapi_paths)
    assert {path: service_for(path) for path in expected} == expected
    assert {path: service_for(path) for path in NOT_ROUTED} == dict.fromkeys(NOT_ROUTED)


def test_nginx_holds_the_shared_routing_table_rule_for_rule(server: Directive, upstreams: dict[str, str]) -> None:
    """One source of truth: nginx's /v1 regular-expression locations are partnerhub.routing.RULES, in order."""
    in_nginx = []
    for location in server.find("location"):
        if location.args[0] in {"~", "~*"}:
            target = proxy_target(server, location)
            assert target is not None, location.args
            in_nginx.append((location.args[1], upstreams[target[0]]))
    assert in_nginx == [(rule.pattern, rule.service) for rule in RULES]


def _page_headers(location: Directive) -> dict[str, str]:
    return {d.args[0]: d.args[1] for d in location.find("add_header")}


def test_nginx_serves_the_page_with_the_embedded_gateways_headers(server: Directive) -> None:
    assert server.first("root") is not None and server.first("root").args == ["/usr/share/nginx/html"]
    for path in PAGE_PATHS:
        location = match_location(server, path)
        assert location is not None and location.args == ["/"], path
    page = _page_headers(match_location(server, "/"))  # type: ignore[arg-type]
    asset = _page_headers(match_location(server, "/assets/index-3f2b6c1e.js"))  # type: ignore[arg-type]
    for headers in (page, asset):
        assert headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "no-referrer"
    assert page["Cache-Control"] == INDEX_CACHE
    assert asset["Cache-Control"] == ASSET_CACHE


def test_each_services_docs_are_served_under_its_name(server: Directive, upstreams: dict[str, str]) -> None:
    for name in SERVICES:
        for public, upstream_path in ((f"/{name}/openapi.json", "/openapi.json"), (f"/{name}/docs", "/docs")):
            location = match_location(server, public)
            assert location is not None
            target = proxy_target(server, location)
            assert target is not None and upstreams[target[0]] == name and target[1] == upstream_path


def test_nginx_accepts_the_rendered_configuration(tmp_path: Path, rendered: str, nginx_cache: Path) -> None:
    nginx = nginx_binary(nginx_cache)
    conf = _main_config(tmp_path, rendered)
    result = subprocess.run(
        [str(nginx), "-t", "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "error.log")],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr


def test_a_real_nginx_routes_every_path(tmp_path: Path, nginx_cache: Path, openapi_paths: dict[str, list[str]]) -> None:
    """The rendered template in a real nginx, with a stand-in server per service recording what reaches it."""
    nginx = nginx_binary(nginx_cache)
    with contextlib.ExitStack() as stack:
        stubs = {name: stack.enter_context(_stub_service(name)) for name in SERVICES}
        env = {f"GATEWAY_{name.upper()}_UPSTREAM": f"127.0.0.1:{port}" for name, (port, _) in stubs.items()}
        env["NGINX_LOCAL_RESOLVERS"] = "127.0.0.1"
        port = _free_port()
        # nginx's workers may run as another user (nobody, under root): a folder they can read.
        web = _built_page(Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="phweb", dir="/tmp"))))
        rendered = render_template(GATEWAY_TEMPLATE.read_text(), env).replace(
            "listen 8080;", f"listen 127.0.0.1:{port};"
        ).replace("root /usr/share/nginx/html;", f"root {web};")
        base = stack.enter_context(_running_nginx(nginx, tmp_path, rendered, port))
        client = stack.enter_context(httpx.Client(base_url=base, timeout=10))

        expected = expected_routes(openapi_paths)
        traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        for path, service in expected.items():
            response = client.get(f"{path}?limit=5", headers={"traceparent": traceparent})
            assert response.status_code == 200, (path, response.text)
            seen = response.json()
            assert seen["service"] == service, path
            assert seen["path"] == f"{path}?limit=5"
            assert seen["traceparent"] == traceparent
            assert seen["request_id"], "the gateway adds X-Request-Id"
        posted = client.post("/v1/partners", json={"name": "Acme"})
        assert posted.json()["method"] == "POST" and posted.json()["service"] == "registry"

        docs = client.get("/incentives/docs")
        assert "url: '/incentives/openapi.json'" in docs.text
        assert client.get("/funds/openapi.json").json()["path"] == "/openapi.json"

        missing = client.get("/v1/unknown")
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("application/problem+json")
        assert missing.json()["status"] == 404
        assert client.get("/healthz").json() == {"status": "ok", "service": "gateway"}

        index = (web / "index.html").read_bytes()
        for path in PAGE_PATHS:
            page = client.get(path)
            assert page.status_code == 200 and page.content == index, path
            assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
            assert page.headers["cache-control"] == INDEX_CACHE
            assert page.headers["x-content-type-options"] == "nosniff"
            assert page.headers["referrer-policy"] == "no-referrer"
        asset = client.get("/assets/index-3f2b6c1e.js")
        assert asset.status_code == 200 and asset.text == (web / "assets" / "index-3f2b6c1e.js").read_text()
        assert asset.headers["cache-control"] == ASSET_CACHE
        assert asset.headers["content-type"].startswith("application/javascript")
        no_asset = client.get("/assets/index-00000000.js")
        assert no_asset.status_code == 404
        assert no_asset.headers["content-type"].startswith("application/problem+json")
        api = client.get("/v1/partners")
        assert api.headers["x-content-type-options"] == "nosniff" and "content-security-policy" not in api.headers

        stubs["funds"][1].shutdown()
        stubs["funds"][1].server_close()
        down = client.get("/v1/fund-requests")
        assert down.status_code == 503
        assert down.headers["content-type"].startswith("application/problem+json")


def test_the_cluster_gateway_points_at_the_cluster_services() -> None:
    import yaml

    from tests.deploy.support import K8S

    documents = [d for d in yaml.safe_load_all((K8S / "gateway.yaml").read_text()) if d]
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value", "") for e in container["env"]}
    services = {}
    for path in K8S.glob("*.yaml"):
        for document in yaml.safe_load_all(path.read_text()):
            if document and document["kind"] == "Service":
                services[document["metadata"]["name"]] = document["spec"]["ports"][0]["port"]
    for name in SERVICES:
        upstream = env[f"GATEWAY_{name.upper()}_UPSTREAM"]
        host, port = upstream.rsplit(":", 1)
        assert host == f"{name}.$(POD_NAMESPACE).svc.$(CLUSTER_DOMAIN)", "nginx's resolver needs full names"
        assert int(port) == services[name]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/etc/nginx/templates/default.conf.template"]["subPath"] == GATEWAY_TEMPLATE.name


@pytest.fixture(scope="module")
def nginx_cache(request: pytest.FixtureRequest) -> Path:
    cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    if cache is None:
        return Path(tempfile.gettempdir()) / "partnerhub-test-nginx"
    return Path(cache.mkdir("nginx"))


def _built_page(directory: Path) -> Path:
    """What web/dist holds after a build, in miniature: index.html naming a hashed asset."""
    directory.chmod(0o755)
    (directory / "assets").mkdir(parents=True)
    (directory / "index.html").write_text(
        '<!doctype html><html><head><script type="module" src="/assets/index-3f2b6c1e.js"></script></head>'
        '<body><div id="root"></div></body></html>\n')
    (directory / "assets" / "index-3f2b6c1e.js").write_text('document.getElementById("root").textContent = "hi";\n')
    return directory


def _main_config(directory: Path, rendered: str, daemon: bool = True) -> Path:
    site = directory / "gateway.conf"
    site.write_text(rendered)
    conf = directory / "nginx.conf"
    temp = {name: directory / name for name in ("client", "proxy", "fastcgi", "uwsgi", "scgi")}
    conf.write_text(
        f"pid {directory / 'nginx.pid'};\n"
        f"error_log {directory / 'error.log'};\n"
        "worker_processes 1;\n"
        "events { worker_connections 256; }\n"
        "http {\n"
        f"  client_body_temp_path {temp['client']};\n  proxy_temp_path {temp['proxy']};\n"
        f"  fastcgi_temp_path {temp['fastcgi']};\n  uwsgi_temp_path {temp['uwsgi']};\n"
        f"  scgi_temp_path {temp['scgi']};\n"
        f"  access_log {directory / 'access.log'};\n"
        "  types { text/html html; text/css css; application/javascript js; image/svg+xml svg; }\n"
        f"  include {site};\n"
        "}\n"
    )
    return conf


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _stub_service(name: str) -> Iterator[tuple[int, ThreadingHTTPServer]]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length:
                self.rfile.read(length)
            if self.path.startswith("/docs"):
                body = b"<script>const ui = SwaggerUIBundle({url: '/openapi.json', dom_id: '#swagger-ui'})</script>"
                content_type = "text/html; charset=utf-8"
            else:
                body = json.dumps({
                    "service": name, "method": self.command, "path": self.path,
                    "traceparent": self.headers.get("traceparent"), "request_id": self.headers.get("x-request-id"),
                }).encode()
                content_type = "application/json"
            self.send_response(200)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], server
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def _running_nginx(nginx: Path, directory: Path, rendered: str, port: int) -> Iterator[str]:
    conf = _main_config(directory, rendered)
    process = subprocess.Popen(
        [str(nginx), "-p", str(directory), "-c", str(conf), "-e", str(directory / "error.log"), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                stderr = process.stderr.read().decode() if process.stderr else ""
                pytest.fail(f"nginx did not start: {stderr}")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

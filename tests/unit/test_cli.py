"""The `partnerhub` command's pure parts: tokens, the sale event it publishes, port choices."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest

from partnerhub.cli import (
    DEFAULT_BROKER_PORT,
    check_service_ports,
    choose_broker_port,
    main,
    publish_bootstrap_servers,
)
from partnerhub.config import DEV_JWT_SECRET, Settings, get_settings
from partnerhub.events import parse_event

SECRET = "unit-test-secret-" + "y" * 32


@pytest.fixture
def fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    get_settings.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    get_settings.cache_clear()


def test_token_carries_role_partner_and_expiry(
    fresh_settings: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fresh_settings.setenv("PARTNERHUB_JWT_SECRET", SECRET)
    partner_id = str(uuid.uuid4())
    before = int(time.time())

    assert main(["token", "--role", "partner", "--partner-id", partner_id, "--ttl", "600"]) == 0

    out = capsys.readouterr()
    claims = jwt.decode(out.out.strip(), SECRET, algorithms=["HS256"])
    assert claims["role"] == "partner"
    assert claims["partner_id"] == partner_id
    assert before + 600 <= claims["exp"] <= int(time.time()) + 600
    assert claims["sub"]
    assert "warning" not in out.err


def test_admin_token_has_no_partner_id_and_a_twelve_hour_default(
    fresh_settings: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fresh_settings.setenv("PARTNERHUB_JWT_SECRET", SECRET)
    assert main(["token", "--role", "admin"]) == 0
    claims = jwt.decode(capsys.readouterr().out.strip(), SECRET, algorithms=["HS256"])
    assert claims["role"] == "admin" and "partner_id" not in claims
    assert claims["exp"] - claims["iat"] == 12 * 3600


def test_token_without_secret_warns_and_uses_the_dev_secret(
    fresh_settings: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fresh_settings.delenv("PARTNERHUB_JWT_SECRET", raising=False)
    assert main(["token", "--role", "system"]) == 0
    out = capsys.readouterr()
    assert "PARTNERHUB_JWT_SECRET is not set" in out.err
    assert jwt.decode(out.out.strip(), DEV_JWT_SECRET, algorithms=["HS256"])["role"] == "system"


def test_partner_token_needs_a_partner_id(
    fresh_settings: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fresh_settings.setenv("PARTNERHUB_JWT_SECRET", SECRET)
    assert main(["token", "--role", "partner"]) == 2
    assert "--partner-id" in capsys.readouterr().err


def test_token_from_python_dash_m(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PARTNERHUB_JWT_SECRET": SECRET}
    done = subprocess.run(
        [sys.executable, "-m", "partnerhub.cli", "token", "--role", "admin"],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )
    assert jwt.decode(done.stdout.strip(), SECRET, algorithms=["HS256"])["role"] == "admin"


def test_published_sale_is_a_valid_cloudevent(
    fresh_settings: pytest.MonkeyPatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    from partnerhub import cli

    sent: list[tuple[str, str, str, bytes, bool]] = []

    async def fake_publish(bootstrap: str, topic: str, key: str, value: bytes, idempotence: bool) -> None:
        sent.append((bootstrap, topic, key, value, idempotence))

    monkeypatch.setattr(cli, "_publish", fake_publish)
    fresh_settings.delenv("PARTNERHUB_KAFKA_IDEMPOTENCE", raising=False)
    args = [
        "publish-sale", "--sale-id", "S-1", "--partner-id", "p-1", "--account-id", "a-1", "--sku", "SKU-1",
        "--amount", "1000.00", "--currency", "USD", "--booked-at", "2026-03-05T10:00:00Z",
        "--bootstrap-servers", "127.0.0.1:1",
    ]
    assert main(args) == 0

    [(bootstrap, topic, key, value, idempotence)] = sent
    assert (bootstrap, topic, key, idempotence) == ("127.0.0.1:1", "sales.recorded", "a-1", False)
    event = parse_event(value)
    assert event.type == "sale.recorded" and event.subject == "S-1" and event.specversion == "1.0"
    assert event.datacontenttype == "application/json"
    assert json.loads(value)["data"] == {
        "sale_id": "S-1", "partner_id": "p-1", "account_id": "a-1", "sku": "SKU-1",
        "amount": "1000.00", "currency": "USD", "booked_at": "2026-03-05T10:00:00Z",
    }


def test_publish_finds_the_broker_of_a_running_up(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, kafka_bootstrap_servers=None)
    assert publish_bootstrap_servers(None, settings) == f"127.0.0.1:{DEFAULT_BROKER_PORT}"
    (tmp_path / "broker.address").write_text("127.0.0.1:40000\n")
    assert publish_bootstrap_servers(None, settings) == "127.0.0.1:40000"
    assert publish_bootstrap_servers("h:1", settings) == "h:1"
    with_env = Settings(data_dir=tmp_path, kafka_bootstrap_servers="k:9")
    assert publish_bootstrap_servers(None, with_env) == "k:9"


def _listen() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def test_a_busy_configured_broker_port_is_an_error() -> None:
    with _listen() as busy:
        port = busy.getsockname()[1]
        with pytest.raises(RuntimeError, match="PARTNERHUB_BROKER_PORT"):
            choose_broker_port("127.0.0.1", str(port))


def test_a_free_configured_broker_port_is_used() -> None:
    with _listen() as probe:
        port = probe.getsockname()[1]
    assert choose_broker_port("127.0.0.1", str(port)) == (port, None)


def test_busy_default_broker_port_picks_another_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    from partnerhub import embedded

    monkeypatch.setattr(embedded, "port_is_free", lambda host, port: port != DEFAULT_BROKER_PORT)
    port, note = choose_broker_port("127.0.0.1", None)
    assert port != DEFAULT_BROKER_PORT
    assert note is not None and str(DEFAULT_BROKER_PORT) in note and str(port) in note


def test_a_busy_service_port_is_named_before_anything_starts() -> None:
    with _listen() as busy:
        port = busy.getsockname()[1]
        settings = Settings(accounts_port=port)
        with pytest.raises(RuntimeError, match=f"accounts 127.0.0.1:{port} \\(PARTNERHUB_ACCOUNTS_PORT\\)"):
            check_service_ports(settings)


def test_two_services_on_one_port_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="both set to port"):
        check_service_ports(Settings(registry_port=18001, funds_port=18001))

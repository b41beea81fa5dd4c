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
    partner, account = str(uuid.uuid4()), str(uuid.uuid4())
    args = [
        "publish-sale", "--sale-id", "S-1", "--partner-id", partner, "--account-id", account, "--sku", "SKU-1",
        "--amount", "1000.00", "--currency", "USD", "--booked-at", "2026-03-05T10:00:00Z",
        "--bootstrap-servers", "127.0.0.1:1",
    ]
    assert main(args) == 0

    [(bootstrap, topic, key, value, idempotence)] = sent
    assert (bootstrap, topic, key, idempotence) == ("127.0.0.1:1", "sales.recorded", account, False)
    event = parse_event(value)
    assert event.type == "sale.recorded" and event.subject == "S-1" and event.specversion == "1.0"
    assert event.datacontenttype == "application/json"
    assert json.loads(value)["data"] == {
        "sale_id": "S-1", "partner_id": partner, "account_id": account, "sku": "SKU-1",
        "amount": "1000.00", "currency": "USD", "booked_at": "2026-03-05T10:00:00Z",
    }


@pytest.mark.parametrize(("option", "value", "reason"), [
    ("--booked-at", "2026-03-05T10:00:00", "with a time zone"),
    ("--amount", "1e27", "at most 12 digits"),
    ("--currency", "XYZ", "ISO 4217"),
    ("--partner-id", "p-1", "valid UUID"),
])
def test_a_sale_incentives_would_refuse_is_not_published(
    option: str, value: str, reason: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    from partnerhub import cli

    sent: list[bytes] = []

    async def fake_publish(bootstrap: str, topic: str, key: str, value: bytes, idempotence: bool) -> None:
        sent.append(value)

    monkeypatch.setattr(cli, "_publish", fake_publish)
    options = {"--sale-id": "S-1", "--partner-id": str(uuid.uuid4()), "--account-id": str(uuid.uuid4()),
               "--sku": "SKU-1", "--amount": "10.00", "--currency": "USD", "--booked-at": "2026-03-05T10:00:00Z",
               "--bootstrap-servers": "127.0.0.1:1"} | {option: value}
    assert main(["publish-sale", *(part for pair in options.items() for part in pair)]) == 2
    assert sent == []
    error = capsys.readouterr().err
    assert "not published" in error and reason in error


def test_the_up_banner_gives_a_second_terminal_its_exports(tmp_path: Path) -> None:
    from partnerhub.cli import second_terminal_exports

    line = second_terminal_exports(Settings(incentives_port=9103), tmp_path / "my data", "127.0.0.1:19092")
    assert line.startswith("export PARTNERHUB_DATA_DIR=")
    assert f"'{tmp_path / 'my data'}'" in line and "KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:19092" in line
    assert "PARTNERHUB_INCENTIVES_PORT=9103" in line and "PARTNERHUB_REGISTRY_PORT=8001" in line


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

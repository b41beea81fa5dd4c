"""The `partnerhub` command: up (embedded runtime), serve, migrate, token."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from partnerhub import SERVICES
from partnerhub.config import Settings, get_settings


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
    from partnerhub.auth import issue_token

    settings = get_settings()
    if args.role == "partner" and not args.partner_id:
        print("partnerhub token: --partner-id is required for --role partner", file=sys.stderr)
        return 2
    if not settings.jwt_secret:
        print("warning: PARTNERHUB_JWT_SECRET is not set; signing with the development secret", file=sys.stderr)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        print(issue_token(settings, args.role, args.sub, args.partner_id, args.ttl))
    return 0


class EmbeddedRuntime:
    """Tansu + embedded PostgreSQL + the four services as processes; stops everything in order."""

    def __init__(self, settings: Settings, data_dir: Path, broker_port: int) -> None:
        from partnerhub.embedded import EmbeddedPostgres, TansuBroker

        self.settings = settings
        self.data_dir = data_dir
        self.logs = data_dir / "logs"
        self.postgres: EmbeddedPostgres | None = None
        self.broker: TansuBroker | None = None
        self.broker_port = broker_port
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._stop = False

    def start(self) -> None:
        from partnerhub.embedded import EmbeddedPostgres, TansuBroker, create_databases
        from partnerhub.kafka import all_topics, ensure_topics
        from partnerhub.migrations import upgrade

        self.logs.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        urls = {s: getattr(self.settings, f"{s}_database_url") for s in SERVICES}
        if not all(urls.values()):
            print(f"starting PostgreSQL (embedded) in {self.data_dir / 'pg'}", flush=True)
            self.postgres = EmbeddedPostgres(self.data_dir / "pg").start()
            asyncio.run(create_databases(self.postgres.url("postgres", "postgresql"), list(SERVICES)))
            for service in SERVICES:
                urls[service] = urls[service] or self.postgres.url(service)
        for service, url in urls.items():
            env[f"PARTNERHUB_{service.upper()}_DATABASE_URL"] = str(url)

        bootstrap = self.settings.kafka_bootstrap_servers
        if bootstrap is None:
            self.broker = TansuBroker(self.broker_port, self.logs / "broker.log")
            bootstrap = self.broker.start()
            print(f"started Tansu (memory-only Kafka-compatible broker) on {bootstrap}", flush=True)
            env["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
            env["PARTNERHUB_KAFKA_IDEMPOTENCE"] = "false"
            # A fresh broker remembers nothing: every service republishes its kept outbox once.
            env["PARTNERHUB_OUTBOX_REPLAY"] = "true"
        asyncio.run(ensure_topics(bootstrap, all_topics()))

        for service in SERVICES:
            upgrade(service, str(urls[service]))
        env.setdefault("PARTNERHUB_REGISTRY_URL", self.settings.service_url("registry"))
        for service in SERVICES:
            log = open(self.logs / f"{service}.log", "ab")  # noqa: SIM115
            self.processes[service] = subprocess.Popen(
                [sys.executable, "-m", "partnerhub.cli", "serve", service],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready(timeout=120)
        print("\nPartner Hub is up:", flush=True)
        for service in SERVICES:
            print(f"  {service:<11} {self.settings.service_url(service)}   (docs: /docs)")
        print(f"  broker      {bootstrap}")
        print(f"  logs        {self.logs}")
        print("Stop with Ctrl-C.", flush=True)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = set(SERVICES)
        while pending:
            for service in sorted(pending):
                process = self.processes[service]
                if process.poll() is not None:
                    raise RuntimeError(
                        f"{service} exited with code {process.returncode}; see {self.logs / (service + '.log')}"
                    )
                try:
                    url = f"{self.settings.service_url(service)}/readyz"
                    with urllib.request.urlopen(url, timeout=2) as response:
                        if response.status == 200:
                            pending.discard(service)
                except OSError:
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"not ready within {timeout:.0f}s: {', '.join(sorted(pending))}")
            time.sleep(0.2)

    def wait(self) -> int:
        def request_stop(signum: int, _frame: object) -> None:
            self._stop = True

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        while not self._stop:
            for service, process in self.processes.items():
                if process.poll() is not None:
                    print(f"{service} exited unexpectedly (code {process.returncode}); stopping", file=sys.stderr)
                    return 1
            time.sleep(0.2)
        return 0

    def stop(self) -> None:
        """Services drain first (APIs stop, relays flush, consumers catch up); then the broker; then PostgreSQL."""
        print("stopping: draining the services…", flush=True)
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.drain_timeout_seconds + 20
        for process in self.processes.values():
            try:
                process.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if self.broker is not None:
            self.broker.stop()
        if self.postgres is not None:
            self.postgres.stop()
        print("stopped.", flush=True)


def cmd_up(args: argparse.Namespace) -> int:
    settings = get_settings()
    data_dir = Path(args.data_dir or settings.data_dir).expanduser().resolve()
    runtime = EmbeddedRuntime(settings, data_dir, int(os.environ.get("PARTNERHUB_BROKER_PORT", "9092")))
    try:
        runtime.start()
        code = runtime.wait()
    except KeyboardInterrupt:
        code = 130
    except RuntimeError as exc:
        print(f"partnerhub up: {exc}", file=sys.stderr)
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        runtime.stop()
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="partnerhub", description="Partner Hub: partner ecosystem backend")
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="run everything on one machine: Tansu, PostgreSQL and the four services")
    up.add_argument("--data-dir", help="where PostgreSQL data and logs live (default $PARTNERHUB_DATA_DIR)")
    up.set_defaults(func=cmd_up)

    serve = commands.add_parser("serve", help="run one service: its API, outbox relay and consumers")
    serve.add_argument("service", choices=SERVICES)
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(func=cmd_serve)

    migrate = commands.add_parser("migrate", help="apply each service's Alembic migrations")
    migrate.add_argument("services", nargs="*", metavar="SERVICE", help=f"any of {', '.join(SERVICES)} (default: all)")
    migrate.set_defaults(func=cmd_migrate)

    token = commands.add_parser("token", help="print a JWT signed with PARTNERHUB_JWT_SECRET")
    token.add_argument("--role", required=True, choices=["admin", "system", "partner"])
    token.add_argument("--partner-id")
    token.add_argument("--sub")
    token.add_argument("--ttl", type=int, default=12 * 3600, help="lifetime in seconds")
    token.set_defaults(func=cmd_token)

    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())

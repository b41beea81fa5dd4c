"""Developer helper: a throwaway embedded PostgreSQL for generating migrations (`python -m partnerhub.devdb`)."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from alembic import command

from partnerhub.embedded import EmbeddedPostgres, create_databases
from partnerhub.migrations import alembic_config


def main() -> int:
    service, message = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory(prefix="ph", dir="/tmp") as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg").start()
        try:
            asyncio.run(create_databases(pg.url("postgres", "postgresql"), [service]))
            config = alembic_config(service, pg.url(service))
            command.upgrade(config, "head")
            command.revision(config, message=message, autogenerate=True)
        finally:
            pg.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

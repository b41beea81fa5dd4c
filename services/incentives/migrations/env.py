"""Alembic environment for the incentives database."""

from alembic import context

from partnerhub.migrations import run_env
from services.incentives.models import metadata

run_env(context, metadata)

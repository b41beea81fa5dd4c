"""Alembic environment for the registry database."""

from alembic import context

from partnerhub.migrations import run_env
from services.registry.models import metadata

run_env(context, metadata)

"""Alembic environment for the accounts database."""

from alembic import context

from partnerhub.migrations import run_env
from services.accounts.models import metadata

run_env(context, metadata)

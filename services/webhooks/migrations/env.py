"""Alembic environment for the webhooks database."""

from alembic import context

from partnerhub.migrations import run_env
from services.webhooks.models import metadata

run_env(context, metadata)

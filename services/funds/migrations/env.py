"""Alembic environment for the funds database."""

from alembic import context

from partnerhub.migrations import run_env
from services.funds.models import metadata

run_env(context, metadata)

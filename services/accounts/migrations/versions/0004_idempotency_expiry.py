"""Idempotency-Keys expire: an index on their creation time for the sweep that forgets them

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 08:00:00
"""

from collections.abc import Sequence

from alembic import op

from partnerhub.migrations import idempotency_expiry_downgrade, idempotency_expiry_upgrade

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    idempotency_expiry_upgrade(op)


def downgrade() -> None:
    idempotency_expiry_downgrade(op)

"""outbox v2: payload as json text, no unique index on event_id

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 04:00:00
"""

from collections.abc import Sequence

from alembic import op

from partnerhub.migrations import lean_outbox_downgrade, lean_outbox_upgrade

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    lean_outbox_upgrade(op)


def downgrade() -> None:
    lean_outbox_downgrade(op)

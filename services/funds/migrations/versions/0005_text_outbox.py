"""outbox v3: the payload stored as the text the relay sends

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 19:30:00
"""

from collections.abc import Sequence

from alembic import op

from partnerhub.migrations import text_outbox_downgrade, text_outbox_upgrade

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    text_outbox_upgrade(op)


def downgrade() -> None:
    text_outbox_downgrade(op)

"""dead letters through the outbox, recorded by position in dead_letters

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 07:00:00
"""

from collections.abc import Sequence

from alembic import op

from partnerhub.migrations import dead_letters_downgrade, dead_letters_upgrade

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    dead_letters_upgrade(op)


def downgrade() -> None:
    dead_letters_downgrade(op)

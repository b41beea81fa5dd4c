"""outbox bundles: many events of one transaction in one row

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 10:00:00
"""

from collections.abc import Sequence

from alembic import op

from partnerhub.migrations import bundled_outbox_downgrade, bundled_outbox_upgrade

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    bundled_outbox_upgrade(op)


def downgrade() -> None:
    bundled_outbox_downgrade(op)

"""deliveries in flight: a partial index for the count every claim makes

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07 12:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("deliveries_leased", "deliveries", ["subscription_id", "lease_until"],
                    postgresql_where=sa.text("status = 'pending' AND lease_until IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("deliveries_leased", table_name="deliveries")

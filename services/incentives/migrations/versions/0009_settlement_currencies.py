"""settlement currencies and effective-dated FX rates (CONTRACT §5 v2)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
TS = sa.DateTime(timezone=True)
FX_RATE = sa.Numeric(18, 10)


def upgrade() -> None:
    op.add_column("programs", sa.Column("settlement_currency", sa.String(3)))
    op.create_table(
        "fx_rates",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("base", sa.String(3), nullable=False),
        sa.Column("quote", sa.String(3), nullable=False),
        sa.Column("effective_from", TS, nullable=False),
        sa.Column("rate", FX_RATE, nullable=False),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("recorded_by", sa.Text, nullable=False),
        sa.Column("recorded_at", TS, nullable=False, server_default=sa.func.now()),
    )
    op.create_index("fx_rates_pair", "fx_rates", ["base", "quote", "effective_from", "id"])
    # Every item written so far paid in its sale's currency.
    op.add_column("accrual_items", sa.Column("base_currency", sa.String(3)))
    op.execute("UPDATE accrual_items SET base_currency = currency")
    op.alter_column("accrual_items", "base_currency", nullable=False)
    op.add_column("accrual_items", sa.Column("fx_rate", FX_RATE))
    op.alter_column("bip_contributions", "revenue", type_=sa.Numeric(30, 12))
    op.add_column("recalculation_runs", sa.Column("fx_pair", sa.Text))


def downgrade() -> None:
    op.drop_column("recalculation_runs", "fx_pair")
    op.alter_column("bip_contributions", "revenue", type_=sa.Numeric(18, 2))
    op.drop_column("accrual_items", "fx_rate")
    op.drop_column("accrual_items", "base_currency")
    op.drop_index("fx_rates_pair", "fx_rates")
    op.drop_table("fx_rates")
    op.drop_column("programs", "settlement_currency")

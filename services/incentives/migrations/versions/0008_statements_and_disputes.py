"""statement lines, confirmations and disputes (CONTRACT §5 v2)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 11:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
TS = sa.DateTime(timezone=True)
MONEY = sa.Numeric(18, 2)


def upgrade() -> None:
    op.create_index("ledger_statement", "ledger", ["partner_id", "period", "id"])
    op.create_table(
        "statement_confirmations",
        sa.Column("partner_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("period", sa.String(7), primary_key=True),
        sa.Column("confirmed_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("confirmed_by", sa.Text, nullable=False),
    )
    op.create_table(
        "disputes",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("partner_id", UUID(as_uuid=True), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("sale_id", sa.Text),
        sa.Column("program_code", sa.Text),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("claimed_amount", MONEY, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("opened_by", sa.Text, nullable=False),
        sa.Column("decision_reason", sa.Text),
        sa.Column("decided_by", sa.Text),
        sa.Column("decided_at", TS),
        sa.Column("settled_amount", MONEY),
        sa.Column("settlement_entry_id", UUID(as_uuid=True)),
        sa.Column("settlement_period", sa.String(7)),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    )
    op.create_index("disputes_partner", "disputes", ["partner_id", "created_at", "id"])
    op.create_index("disputes_one_open", "disputes",
                    ["partner_id", "period", sa.text("coalesce(sale_id, '')"), sa.text("coalesce(program_code, '')")],
                    unique=True, postgresql_where=sa.text("status = 'open'"))


def downgrade() -> None:
    op.drop_table("disputes")
    op.drop_table("statement_confirmations")
    op.drop_index("ledger_statement", table_name="ledger")

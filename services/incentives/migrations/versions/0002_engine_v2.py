"""engine v2: items carry their revision and the facts their explanation is rendered from; sales can be set
aside with a pricing error; BIP outcomes carry their revision

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("sales", sa.Column("pricing_error", sa.Text(), nullable=True))
    op.alter_column("sales", "fingerprint", existing_type=sa.Text(), nullable=True)
    op.drop_index("sales_received", table_name="sales")
    op.create_index("sales_received", "sales", ["recorded_at", "sale_id"], unique=False,
                    postgresql_where=sa.text("status = 'received' AND pricing_error IS NULL"))
    op.drop_constraint("accrual_items_sale_id_fkey", "accrual_items", type_="foreignkey")
    op.drop_constraint("bip_contributions_sale_id_fkey", "bip_contributions", type_="foreignkey")
    op.add_column("accrual_items", sa.Column("category", sa.Text(), nullable=True))
    op.add_column("accrual_items", sa.Column("detail", sa.Text(), nullable=True))
    op.add_column("accrual_items", sa.Column("revision", sa.Integer(), server_default="0", nullable=False))
    op.execute(
        "UPDATE accrual_items a SET revision = l.entries FROM (SELECT sale_id, coalesce(program_code, '') AS code, "
        "count(*) AS entries FROM ledger WHERE sale_id IS NOT NULL GROUP BY 1, 2) l "
        "WHERE a.sale_id = l.sale_id AND a.program_code = l.code"
    )
    op.execute(
        "UPDATE accrual_items a SET category = p.category FROM sales s JOIN products p ON p.sku = s.sku "
        "WHERE s.sale_id = a.sale_id"
    )
    op.drop_column("accrual_items", "explanation")
    # Room on each page, so repricing rewrites an item or a sale's status in place (a heap-only update).
    op.execute("ALTER TABLE accrual_items SET (fillfactor = 75)")
    op.execute("ALTER TABLE sales SET (fillfactor = 90)")
    op.add_column("bip_totals", sa.Column("revision", sa.Integer(), server_default="0", nullable=False))
    op.execute(
        "UPDATE bip_totals b SET revision = l.entries FROM (SELECT partner_id, program_code, sale_period, currency, "
        "count(*) AS entries FROM ledger WHERE sale_id IS NULL GROUP BY 1, 2, 3, 4) l "
        "WHERE (b.partner_id, b.program_code, b.period, b.currency) = (l.partner_id, l.program_code, l.sale_period, "
        "l.currency)"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE sales RESET (fillfactor)")
    op.execute("ALTER TABLE accrual_items RESET (fillfactor)")
    op.create_foreign_key("bip_contributions_sale_id_fkey", "bip_contributions", "sales", ["sale_id"], ["sale_id"])
    op.create_foreign_key("accrual_items_sale_id_fkey", "accrual_items", "sales", ["sale_id"], ["sale_id"])
    op.drop_column("bip_totals", "revision")
    op.add_column("accrual_items", sa.Column("explanation", sa.Text(), server_default="", nullable=False))
    op.drop_column("accrual_items", "revision")
    op.drop_column("accrual_items", "detail")
    op.drop_column("accrual_items", "category")
    op.drop_index("sales_received", table_name="sales")
    op.create_index("sales_received", "sales", ["recorded_at", "sale_id"], unique=False,
                    postgresql_where=sa.text("status = 'received'"))
    op.drop_column("sales", "pricing_error")
    op.execute("UPDATE sales SET fingerprint = '' WHERE fingerprint IS NULL")
    op.alter_column("sales", "fingerprint", existing_type=sa.Text(), nullable=False)

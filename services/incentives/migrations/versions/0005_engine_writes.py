"""engine writes v3: items updated in place, ledger entry ids without a unique index, text outbox

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
    # Room on every page to reprice each item in place: a repricing rewrites every item of its sales, and with
    # half of each page free nearly all of those are heap-only updates (no index entries). New pages only; a
    # VACUUM FULL accrual_items (exclusive lock) repacks the existing ones.
    op.execute("ALTER TABLE accrual_items SET (fillfactor = 50)")
    # entry_id is gen_random_uuid() and never looked up: its unique index was one random B-tree insertion per
    # entry (0.27 s of a 100,000-sale recalculation).
    op.drop_constraint("ledger_entry_id_key", "ledger", type_="unique")


def downgrade() -> None:
    op.create_unique_constraint("ledger_entry_id_key", "ledger", ["entry_id"])
    op.execute("ALTER TABLE accrual_items SET (fillfactor = 75)")
    text_outbox_downgrade(op)

"""Incentives tables: catalogue, replicas of upstream state over time, sales, the ledger and runs."""

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, UUID

from partnerhub.db import add_shared_tables

metadata = sa.MetaData()
add_shared_tables(metadata)
MONEY = sa.Numeric(18, 2)
RATE = sa.Numeric(12, 6)
TS = sa.DateTime(timezone=True)
FX_RATE = sa.Numeric(18, 10)



def _timeline(name: str, key: str, value: sa.Column) -> sa.Table:  # type: ignore[type-arg]
    """An effective-dated replica: the entry with the latest effective_from <= t is in force at t."""
    return sa.Table(
        name,
        metadata,
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column(key, UUID(as_uuid=True), nullable=False),
        sa.Column("effective_from", TS, nullable=False),
        value,
        sa.Column("event_id", sa.Text),
        sa.Column("recorded_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Index(f"{name}_lookup", key, "effective_from", "id"),
    )


account_classifications = _timeline(
    "account_classifications", "account_id", sa.Column("classification", sa.Text, nullable=False)
)
account_owners = _timeline("account_owners", "account_id", sa.Column("owner_partner_id", UUID(as_uuid=True)))
partner_tiers = _timeline("partner_tiers", "partner_id", sa.Column("tier", sa.Text, nullable=False))
partner_statuses = _timeline("partner_statuses", "partner_id", sa.Column("status", sa.Text, nullable=False))

partner_certifications = sa.Table(
    "partner_certifications",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("partner_id", UUID(as_uuid=True), nullable=False),
    sa.Column("code", sa.Text, nullable=False),
    sa.Column("valid_from", TS, nullable=False),
    sa.Column("valid_to", TS),
    sa.Column("event_id", sa.Text),
    sa.Index("partner_certifications_lookup", "partner_id", "code"),
)

products = sa.Table(
    "products",
    metadata,
    sa.Column("sku", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("category", sa.Text, nullable=False),
    sa.Column("rebate_eligible", sa.Boolean, nullable=False),
    sa.Column("standalone_software", sa.Boolean, nullable=False),
    sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
)

product_eligibility = sa.Table(
    "product_eligibility",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("sku", sa.Text, sa.ForeignKey("products.sku"), nullable=False),
    sa.Column("effective_from", TS, nullable=False),
    sa.Column("rebate_eligible", sa.Boolean, nullable=False),
    sa.Column("recorded_at", TS, nullable=False, server_default=sa.func.now()),
    sa.Index("product_eligibility_lookup", "sku", "effective_from", "id"),
)

programs = sa.Table(
    "programs",
    metadata,
    sa.Column("code", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("valid_from", TS, nullable=False),
    sa.Column("valid_to", TS),
    sa.Column("required_certification", sa.Text),
    sa.Column("target", MONEY),
    # What its items and BIP months pay in; NULL: each sale's own currency. Fixed at creation.
    sa.Column("settlement_currency", sa.String(3)),
    sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
)

# Effective-dated exchange rates, append-only: 1 base = rate quote from effective_from on. A correction is a
# later row for the same (base, quote, effective_from); the latest row of each is the rate that holds.
fx_rates = sa.Table(
    "fx_rates",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("base", sa.String(3), nullable=False),
    sa.Column("quote", sa.String(3), nullable=False),
    sa.Column("effective_from", TS, nullable=False),
    sa.Column("rate", FX_RATE, nullable=False),
    sa.Column("event_id", sa.Text, nullable=False),  # the recalculation run's trigger_event_id
    sa.Column("recorded_by", sa.Text, nullable=False),
    sa.Column("recorded_at", TS, nullable=False, server_default=sa.func.now()),
    sa.Index("fx_rates_pair", "base", "quote", "effective_from", "id"),
)

program_rules = sa.Table(
    "program_rules",
    metadata,
    sa.Column("program_code", sa.Text, sa.ForeignKey("programs.code"), primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("classification", sa.Text, nullable=False),
    sa.Column("tier", sa.Text, nullable=False),
    sa.Column("category", sa.Text, nullable=False),
    sa.Column("rate", RATE, nullable=False),
)

sales = sa.Table(
    "sales",
    metadata,
    sa.Column("sale_id", sa.Text, primary_key=True),
    sa.Column("partner_id", UUID(as_uuid=True), nullable=False),
    sa.Column("account_id", UUID(as_uuid=True), nullable=False),
    sa.Column("sku", sa.Text, nullable=False),
    sa.Column("amount", MONEY, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("booked_at", TS, nullable=False),
    sa.Column("sale_period", sa.String(7), nullable=False),
    # No longer written: a sale recorded again is compared fact by fact. Kept for rows written before.
    sa.Column("fingerprint", sa.Text),
    # 'received' until the pricer prices it, then the sale's status (domain.SaleStatus)
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("recorded_event_id", sa.Text, nullable=False),
    sa.Column("cancelled_at", TS),
    sa.Column("cancel_event_id", sa.Text),
    # Why the sale could not be priced; it is set aside (never blocking another) until a change touches it.
    sa.Column("pricing_error", sa.Text),
    sa.Column("recorded_at", TS, nullable=False, server_default=sa.func.now()),
    sa.Index("sales_account", "account_id", "booked_at"),
    sa.Index("sales_partner", "partner_id", "booked_at"),
    sa.Index("sales_sku", "sku", "booked_at"),
    sa.Index("sales_booked", "booked_at"),
    sa.Index("sales_received", "recorded_at", "sale_id",
             postgresql_where=sa.text("status = 'received' AND pricing_error IS NULL")),
    postgresql_with={"fillfactor": 90},
)

# A cancellation that arrives before its sale waits here.
pending_cancellations = sa.Table(
    "pending_cancellations",
    metadata,
    sa.Column("sale_id", sa.Text, primary_key=True),
    sa.Column("cancelled_at", TS, nullable=False),
    sa.Column("event_id", sa.Text, nullable=False),
    sa.Column("received_at", TS, nullable=False, server_default=sa.func.now()),
)

# Current value of every (sale, program): derived state, always equal to the sum of the ledger, with the
# facts its explanation is rendered from when read. program_code is '' for the single no-program / unpriced
# item of a sale; status 'withdrawn' keeps a (sale, program) that no longer applies but has ledger entries.
accrual_items = sa.Table(
    "accrual_items",
    metadata,
    # No foreign key to sales: an item is written in the transaction that wrote or locked its sale, and a key
    # check per item (which also locks the sale row) was a large share of recording a sale.
    sa.Column("sale_id", sa.Text, primary_key=True),
    sa.Column("program_code", sa.Text, primary_key=True),
    sa.Column("partner_id", UUID(as_uuid=True), nullable=False),
    sa.Column("base_amount", MONEY, nullable=False),
    sa.Column("rate", RATE),
    sa.Column("amount", MONEY, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),  # what amount is in: the settlement currency
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("classification", sa.Text),
    sa.Column("tier", sa.Text),
    sa.Column("category", sa.Text),
    sa.Column("detail", sa.Text),
    sa.Column("sale_period", sa.String(7), nullable=False),
    # How many ledger entries this (sale, program) has: the next one's revision is this + 1.
    sa.Column("revision", sa.Integer, nullable=False, server_default="0"),
    sa.Column("base_currency", sa.String(3), nullable=False),  # the sale's, base_amount's
    sa.Column("fx_rate", FX_RATE),  # base_amount was converted at; NULL: not converted (the same currency)
    sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
    sa.Index("accrual_items_partner", "partner_id", "sale_period", "sale_id"),
    postgresql_with={"fillfactor": 50},  # room to reprice every item in place (heap-only updates)
)

ledger = sa.Table(
    "ledger",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    # Random (gen_random_uuid), never looked up: no unique index to maintain per entry.
    sa.Column("entry_id", UUID(as_uuid=True), nullable=False, server_default=sa.func.gen_random_uuid()),
    sa.Column("partner_id", UUID(as_uuid=True), nullable=False),
    sa.Column("account_id", UUID(as_uuid=True)),
    # account and sale are null for a BIP entry: it belongs to (partner, program, month, currency)
    sa.Column("sale_id", sa.Text),
    sa.Column("program_code", sa.Text),
    sa.Column("amount", MONEY, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    # 1 for the first entry of a (sale, program) or of a BIP (partner, program, month, currency), then +1
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("cause", sa.Text, nullable=False),
    sa.Column("period", sa.String(7), nullable=False),
    sa.Column("sale_period", sa.String(7), nullable=False),
    sa.Column("run_id", UUID(as_uuid=True)),
    sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
    sa.Index("ledger_partner", "partner_id", "id"),
    sa.Index("ledger_sale", "sale_id", "id"),
    # A statement's lines: every entry posted into a period, in posting order.
    sa.Index("ledger_statement", "partner_id", "period", "id"),
)

# Periods up to and including closed_through are closed; closing is a prefix, never reopened.
period_close = sa.Table(
    "period_close",
    metadata,
    sa.Column("singleton", sa.Boolean, primary_key=True, server_default=sa.true()),
    sa.Column("closed_through", sa.String(7), nullable=False),
    sa.Column("closed_at", TS, nullable=False, server_default=sa.func.now()),
    sa.CheckConstraint("singleton", name="period_close_single_row"),
)

recalculation_runs = sa.Table(
    "recalculation_runs",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("trigger_type", sa.Text, nullable=False),
    sa.Column("trigger_event_id", sa.Text, nullable=False),
    sa.Column("account_id", UUID(as_uuid=True)),
    sa.Column("partner_id", UUID(as_uuid=True)),
    sa.Column("sku", sa.Text),
    sa.Column("program_code", sa.Text),
    sa.Column("effective_from", TS),
    sa.Column("fx_pair", sa.Text),  # BASE/QUOTE of an fx_rate.changed run
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("sales_recomputed", sa.Integer, nullable=False, server_default="0"),
    sa.Column("sales_changed", sa.Integer, nullable=False, server_default="0"),
    sa.Column("delta", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
    sa.Column("started_at", TS, nullable=False),
    sa.Column("finished_at", TS),
    sa.Index("recalculation_runs_account", "account_id", "started_at"),
    sa.Index("recalculation_runs_partner", "partner_id", "started_at"),
)

# What each eligible sale brings to each BIP program whose rules it matches (rate of the matching rule).
bip_contributions = sa.Table(
    "bip_contributions",
    metadata,
    sa.Column("sale_id", sa.Text, primary_key=True),  # written with its sale's items, as they are
    sa.Column("program_code", sa.Text, sa.ForeignKey("programs.code"), primary_key=True),
    sa.Column("partner_id", UUID(as_uuid=True), nullable=False),
    sa.Column("period", sa.String(7), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    # In the BIP month's currency: converted at the pair's rate as of booked_at, exact (rounded once, as the bonus).
    sa.Column("revenue", sa.Numeric(30, 12), nullable=False),
    sa.Column("rate", RATE, nullable=False),
    sa.Index("bip_contributions_group", "partner_id", "period", "currency", "program_code"),
)

# Current BIP outcome per (partner, program, month, currency); its ledger entries sum to `bonus`.
bip_totals = sa.Table(
    "bip_totals",
    metadata,
    sa.Column("partner_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("program_code", sa.Text, primary_key=True),
    sa.Column("period", sa.String(7), primary_key=True),
    sa.Column("currency", sa.String(3), primary_key=True),
    sa.Column("revenue", MONEY, nullable=False),
    sa.Column("target", MONEY, nullable=False),
    sa.Column("bonus", MONEY, nullable=False),
    sa.Column("reached", sa.Boolean, nullable=False),
    sa.Column("revision", sa.Integer, nullable=False, server_default="0"),
    sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
)

# A closed period's statement, frozen at close.
statements = sa.Table(
    "statements",
    metadata,
    sa.Column("partner_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("period", sa.String(7), primary_key=True),
    sa.Column("currency", sa.String(3), primary_key=True),
    sa.Column("eligible_revenue", MONEY, nullable=False),
    sa.Column("rebate", MONEY, nullable=False),
    sa.Column("bip_bonus", MONEY, nullable=False),
    sa.Column("adjustments", MONEY, nullable=False),
    sa.Column("total", MONEY, nullable=False),
    sa.Column("closed_at", TS, nullable=False, server_default=sa.func.now()),
)

# A partner's confirmation of a closed statement (CONTRACT §5 v2): once, never undone.
statement_confirmations = sa.Table(
    "statement_confirmations",
    metadata,
    sa.Column("partner_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("period", sa.String(7), primary_key=True),
    sa.Column("confirmed_at", TS, nullable=False, server_default=sa.func.now()),
    sa.Column("confirmed_by", sa.Text, nullable=False),
)

disputes = sa.Table(
    "disputes",
    metadata,
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
    # An accepted dispute's settlement: its amount and the ledger entry that posted it, with its period.
    sa.Column("settled_amount", MONEY),
    sa.Column("settlement_entry_id", UUID(as_uuid=True)),
    sa.Column("settlement_period", sa.String(7)),
    sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    sa.Index("disputes_partner", "partner_id", "created_at", "id"),
    # One open dispute per (partner, period, sale, program): a second is a conflict.
    sa.Index("disputes_one_open", "partner_id", "period", sa.text("coalesce(sale_id, '')"),
             sa.text("coalesce(program_code, '')"), unique=True, postgresql_where=sa.text("status = 'open'")),
)

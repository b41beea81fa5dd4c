"""Funds tables: funds, partner balances, per-sale revenue and credits, requests, claims, the ledger."""

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import UUID

from partnerhub.db import add_shared_tables

metadata = sa.MetaData()
add_shared_tables(metadata)
MONEY = sa.Numeric(18, 2)
RATE = sa.Numeric(12, 6)
TS = sa.DateTime(timezone=True)


def _money(name: str) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, MONEY, nullable=False, server_default="0")


funds = sa.Table(
    "funds",
    metadata,
    sa.Column("code", sa.Text, primary_key=True),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("budget", MONEY, nullable=False),
    sa.Column("valid_from", TS, nullable=False),
    sa.Column("valid_to", TS, nullable=False),
    sa.Column("accrual_rate", RATE),
    sa.Column("per_partner_limit", MONEY),
    sa.Column("request_lead_working_days", sa.Integer, nullable=False),
    sa.Column("claim_window_days", sa.Integer, nullable=False),
    sa.Column("resubmission_window_days", sa.Integer, nullable=False),
    sa.Column("lapse_unused", sa.Boolean, nullable=False),
    _money("committed"),
    _money("paid"),
    sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    # The budget invariant holds in the database itself, whatever the code above it does.
    sa.CheckConstraint("committed >= 0 AND paid >= 0 AND committed + paid <= budget", name="funds_within_budget"),
    sa.CheckConstraint("valid_from < valid_to", name="funds_window"),
)

# One partner's figures in one fund. The limit is copied from the fund so the database enforces it too.
partner_balances = sa.Table(
    "partner_balances",
    metadata,
    sa.Column("partner_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("fund_code", sa.Text, sa.ForeignKey("funds.code"), primary_key=True),
    _money("earned"),
    _money("committed"),
    _money("paid"),
    _money("lapsed"),
    sa.Column("per_partner_limit", MONEY),
    sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
    sa.CheckConstraint("committed >= 0 AND paid >= 0", name="partner_balances_non_negative"),
    sa.CheckConstraint(
        "per_partner_limit IS NULL OR committed + paid <= per_partner_limit", name="partner_balances_within_limit"
    ),
    sa.Index("partner_balances_fund", "fund_code", "partner_id"),
)

# The latest eligible revenue of every sale incentives has priced: amount while accrued, else 0.
sale_revenue = sa.Table(
    "sale_revenue",
    metadata,
    sa.Column("sale_id", sa.Text, primary_key=True),
    sa.Column("partner_id", UUID(as_uuid=True), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("booked_at", TS, nullable=False),
    sa.Column("amount", MONEY, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("eligible_revenue", MONEY, nullable=False),
    sa.Column("event_id", sa.Text, nullable=False),
    sa.Column("event_time", TS),
    sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
    sa.Index("sale_revenue_window", "currency", "booked_at"),
)

# What each sale currently earns in each accrual fund, rounded once per sale.
fund_credits = sa.Table(
    "fund_credits",
    metadata,
    sa.Column("fund_code", sa.Text, sa.ForeignKey("funds.code"), primary_key=True),
    sa.Column("sale_id", sa.Text, primary_key=True),
    sa.Column("partner_id", UUID(as_uuid=True), nullable=False),
    sa.Column("amount", MONEY, nullable=False),
    sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
    sa.Index("fund_credits_sale", "sale_id"),
)

fund_requests = sa.Table(
    "fund_requests",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("fund_code", sa.Text, sa.ForeignKey("funds.code"), nullable=False),
    sa.Column("partner_id", UUID(as_uuid=True), nullable=False),
    sa.Column("amount", MONEY, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("activity", sa.Text, nullable=False),
    sa.Column("planned_start", TS, nullable=False),
    sa.Column("planned_end", TS, nullable=False),
    sa.Column("claim_deadline", TS, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("resubmission_of", UUID(as_uuid=True), sa.ForeignKey("fund_requests.id"), unique=True),
    sa.Column("review_reason", sa.Text),
    sa.Column("decision_reason", sa.Text),
    sa.Column("decided_by", sa.Text),
    sa.Column("decided_at", TS),
    _money("claimed"),
    _money("paid"),
    _money("released"),
    sa.Column("completed_by", sa.Text),
    sa.Column("completed_at", TS),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    sa.CheckConstraint("amount > 0", name="fund_requests_positive"),
    sa.CheckConstraint("paid <= claimed AND claimed <= amount", name="fund_requests_claims_within_amount"),
    sa.Index("fund_requests_partner", "partner_id", "created_at", "id"),
    sa.Index("fund_requests_queue", "status", "created_at", "id"),
    sa.Index("fund_requests_deadline", "claim_deadline", postgresql_where=sa.text("status = 'approved'")),
)

fund_claims = sa.Table(
    "fund_claims",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("request_id", UUID(as_uuid=True), sa.ForeignKey("fund_requests.id"), nullable=False),
    sa.Column("fund_code", sa.Text, nullable=False),
    sa.Column("partner_id", UUID(as_uuid=True), nullable=False),
    sa.Column("amount", MONEY, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("proof_uri", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("decision_reason", sa.Text),
    sa.Column("decided_by", sa.Text),
    sa.Column("decided_at", TS),
    sa.Column("paid_at", TS),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    sa.CheckConstraint("amount > 0", name="fund_claims_positive"),
    sa.Index("fund_claims_request", "request_id", "created_at"),
    sa.Index("fund_claims_queue", "status", "created_at", "id"),
    sa.Index("fund_claims_partner", "partner_id", "created_at", "id"),
)

# Append-only: every credit, debit, commitment, release, payout and lapse, with what caused it.
fund_ledger = sa.Table(
    "fund_ledger",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("partner_id", UUID(as_uuid=True), nullable=False),
    sa.Column("fund_code", sa.Text, sa.ForeignKey("funds.code"), nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("amount", MONEY, nullable=False),
    sa.Column("sale_id", sa.Text),
    sa.Column("request_id", UUID(as_uuid=True)),
    sa.Column("claim_id", UUID(as_uuid=True)),
    sa.Column("cause", sa.Text, nullable=False),
    sa.Column("cause_type", sa.Text, nullable=False),
    sa.Column("at", TS, nullable=False, server_default=sa.func.now()),
    sa.Index("fund_ledger_partner", "partner_id", "id"),
)

# The registry's partners as far as funds needs them: who may request.
partners = sa.Table(
    "partners",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("event_id", sa.Text, nullable=False),
    sa.Column("changed_at", TS),
    sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
)

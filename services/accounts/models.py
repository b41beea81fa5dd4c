"""Accounts tables."""

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import UUID

from partnerhub.db import add_shared_tables

metadata = sa.MetaData()
add_shared_tables(metadata)

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("country", sa.String(2), nullable=False),
    sa.Column("industry", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    sa.Index("accounts_created", "created_at", "id"),
)

# Two effective-dated timelines per account; the account's classification and owner are the entries in
# force now. Entries are only ever appended: a late-entered change with an earlier effective_from takes its
# place in effective order, and of two entries effective at the same moment the later-recorded (id) wins.
account_classifications = sa.Table(
    "account_classifications",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("account_id", UUID(as_uuid=True), sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("classification", sa.Text, nullable=False),
    sa.Column("effective_from", sa.DateTime(timezone=True), nullable=False),
    sa.Column("cause", sa.Text, nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("event_id", sa.Text, nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Index("account_classifications_lookup", "account_id", "effective_from", "id"),
)

account_owners = sa.Table(
    "account_owners",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("account_id", UUID(as_uuid=True), sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("partner_id", UUID(as_uuid=True)),
    sa.Column("effective_from", sa.DateTime(timezone=True), nullable=False),
    sa.Column("cause", sa.Text, nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("event_id", sa.Text, nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Index("account_owners_lookup", "account_id", "effective_from", "id"),
    sa.Index("account_owners_partner", "partner_id", "account_id"),
)

# Replica of the registry's partners (from `registry.partners`, or read through once over HTTP), kept only
# to validate owners. `updated_at` is the registry's, so an older state never overwrites a newer one.
partners = sa.Table(
    "partners",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("replicated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

# Customer preregistrations: a partner's claim on an account, pending an admin's decision for 15 days.
# At most one pending per account, enforced here (not only in code): two partners racing for one account
# cannot both hold a pending claim. A pending one past expires_at reads as expired until the sweep marks it.
registrations = sa.Table(
    "registrations",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("partner_id", UUID(as_uuid=True), nullable=False),
    sa.Column("account_id", UUID(as_uuid=True), sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("prospect", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("decided_at", sa.DateTime(timezone=True)),
    sa.Column("decided_by", sa.Text),
    sa.Column("reason", sa.Text),
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    sa.CheckConstraint(
        "status IN ('pending', 'approved', 'rejected', 'expired')", name="registrations_status_known"
    ),
    sa.Index(
        "registrations_one_pending_per_account",
        "account_id",
        unique=True,
        postgresql_where=sa.text("status = 'pending'"),
    ),
    sa.Index("registrations_partner", "partner_id", "status"),
    sa.Index("registrations_created", "created_at", "id"),
    sa.Index("registrations_pending_expiry", "expires_at", postgresql_where=sa.text("status = 'pending'")),
)

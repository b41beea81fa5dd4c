"""Registry tables."""

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

from partnerhub.db import add_shared_tables

metadata = sa.MetaData()
add_shared_tables(metadata)

partners = sa.Table(
    "partners",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("country", sa.String(2), nullable=False),
    sa.Column("region", sa.Text, nullable=False),
    sa.Column("types", ARRAY(sa.Text), nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("parent_partner_id", UUID(as_uuid=True), sa.ForeignKey("partners.id")),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    sa.Index("partners_created", "created_at", "id"),
    sa.Index("partners_parent", "parent_partner_id"),
)

# Effective-dated tier timeline; the partner's tier is the entry in force now.
partner_tiers = sa.Table(
    "partner_tiers",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("partner_id", UUID(as_uuid=True), sa.ForeignKey("partners.id"), nullable=False),
    sa.Column("tier", sa.Text, nullable=False),
    sa.Column("effective_from", sa.DateTime(timezone=True), nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Index("partner_tiers_lookup", "partner_id", "effective_from", "id"),
)

# One row per (partner, code): a re-grant replaces the window; the partner's history keeps every grant.
certifications = sa.Table(
    "certifications",
    metadata,
    sa.Column("partner_id", UUID(as_uuid=True), sa.ForeignKey("partners.id"), primary_key=True),
    sa.Column("code", sa.Text, primary_key=True),
    sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True)),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
    # Set when the expiry sweep publishes partner.certification_expired, so it is published once.
    sa.Column("expiry_announced_at", sa.DateTime(timezone=True)),
    sa.Index(
        "certifications_expiry_due",
        "expires_at",
        postgresql_where=sa.text("revoked_at IS NULL AND expiry_announced_at IS NULL AND expires_at IS NOT NULL"),
    ),
)

partner_history = sa.Table(
    "partner_history",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("partner_id", UUID(as_uuid=True), sa.ForeignKey("partners.id"), nullable=False),
    sa.Column("change", sa.Text, nullable=False),
    sa.Column("detail", JSONB, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("event_id", sa.Text),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Index("partner_history_partner", "partner_id", "id"),
)

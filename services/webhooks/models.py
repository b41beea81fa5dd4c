"""Webhooks tables: subscriptions, the events kept for delivery and replay, the delivery queue and its attempts."""

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, UUID

from partnerhub.db import add_shared_tables

metadata = sa.MetaData()
add_shared_tables(metadata)

# The secrets are kept as issued (signing needs the raw key): this database is the service's own, no API answer
# carries them after creation or rotation, and nothing logs them. `previous_secret` signs alongside the current
# one until `previous_secret_until` (a rotation's overlap).
subscriptions = sa.Table(
    "subscriptions",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("event_types", ARRAY(sa.Text), nullable=False),
    sa.Column("partner_id", UUID(as_uuid=True)),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("secret", sa.Text, nullable=False),
    sa.Column("previous_secret", sa.Text),
    sa.Column("previous_secret_until", sa.DateTime(timezone=True)),
    # Since when every delivery has failed: the oldest failing delivery's schedule start since the last delivered
    # one (cleared by a delivery).
    sa.Column("failing_since", sa.DateTime(timezone=True)),
    sa.Column("disabled_at", sa.DateTime(timezone=True)),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    sa.CheckConstraint("status IN ('active', 'paused', 'disabled')", name="subscriptions_status_known"),
    sa.Index("subscriptions_created", "created_at", "id"),
    sa.Index("subscriptions_partner", "partner_id", "created_at", "id"),
)

# Every public event taken in, kept 30 days for replay: `payload` is the CloudEvent as delivered (the body that
# is signed), `partners` the partners it is about (domain.event_partners), `occurred_at` its time.
events = sa.Table(
    "events",
    metadata,
    sa.Column("event_id", sa.Text, primary_key=True),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("partners", ARRAY(UUID(as_uuid=True)), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Index("events_occurred", "occurred_at"),
    sa.Index("events_received", "received_at"),
)

# The durable delivery queue: a row per (subscription, event) owed, and one more per replay. A worker leases a due
# row (`lease_until`) while its POST is in flight; a worker that dies leaves the lease to run out, and the row is
# taken again. `attempts` counts the tries of the current schedule, which started at `schedule_started_at` (the
# delivery's creation, or a manual retry).
deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("subscription_id", UUID(as_uuid=True), sa.ForeignKey("subscriptions.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("event_id", sa.Text, sa.ForeignKey("events.event_id", ondelete="CASCADE"), nullable=False),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("schedule_started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True)),
    sa.Column("lease_until", sa.DateTime(timezone=True)),
    sa.Column("delivered_at", sa.DateTime(timezone=True)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('pending', 'delivered', 'failed')", name="deliveries_status_known"),
    sa.Index("deliveries_due", "subscription_id", "next_attempt_at", postgresql_where=sa.text("status = 'pending'")),
    sa.Index("deliveries_log", "subscription_id", "created_at", "id"),
    sa.Index("deliveries_event", "event_id"),
    sa.Index("deliveries_created", "created_at"),
    # The few in flight, counted at every claim.
    sa.Index("deliveries_leased", "subscription_id", "lease_until",
             postgresql_where=sa.text("status = 'pending' AND lease_until IS NOT NULL")),
)

delivery_attempts = sa.Table(
    "delivery_attempts",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("delivery_id", UUID(as_uuid=True), sa.ForeignKey("deliveries.id", ondelete="CASCADE"), nullable=False),
    sa.Column("attempted_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("response_status", sa.Integer),
    sa.Column("error", sa.Text),
    sa.Column("latency_ms", sa.Integer, nullable=False),
    sa.Index("delivery_attempts_delivery", "delivery_id", "id"),
)

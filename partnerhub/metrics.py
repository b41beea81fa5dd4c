"""Prometheus metrics shared by the services."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_LATENCY = Histogram(
    "partnerhub_http_request_duration_seconds",
    "HTTP request latency",
    ["service", "method", "route", "status"],
)
OUTBOX_BACKLOG = Gauge("partnerhub_outbox_backlog", "Outbox rows not yet published", ["service"])
OUTBOX_OLDEST_AGE = Gauge(
    "partnerhub_outbox_oldest_age_seconds", "Age of the oldest unpublished outbox row", ["service"]
)
EVENTS_PUBLISHED = Counter("partnerhub_events_published_total", "Events published", ["service", "topic"])
EVENTS_CONSUMED = Counter(
    "partnerhub_events_consumed_total", "Events consumed, by outcome", ["service", "topic", "outcome"]
)
EVENTS_DEAD_LETTERED = Counter(
    "partnerhub_events_dead_lettered_total", "Messages sent to a dead-letter topic", ["service", "topic"]
)
CONSUMER_LAG = Gauge("partnerhub_consumer_lag", "Messages behind the end of the partition", ["service", "topic"])
RECALCULATION_SECONDS = Histogram(
    "partnerhub_recalculation_duration_seconds", "Recalculation run duration", ["service", "trigger"]
)
SALES_SET_ASIDE = Counter(
    "partnerhub_sales_set_aside_total", "Sales that could not be priced and were set aside with their reason",
    ["service"],
)
WEBHOOK_ATTEMPTS = Counter(
    "partnerhub_webhook_attempts_total",
    "Webhook delivery attempts, by what came of them: delivered, retrying (due again later), failed (given up)",
    ["outcome"],
)
WEBHOOK_ATTEMPT_SECONDS = Histogram(
    "partnerhub_webhook_attempt_duration_seconds", "Webhook delivery attempt duration, to the receiver's answer",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15),
)
WEBHOOK_IN_FLIGHT = Gauge("partnerhub_webhook_in_flight", "Webhook deliveries claimed by this process and not yet "
                          "recorded")

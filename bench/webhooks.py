"""Benchmark: webhook deliveries per second one process makes to a local receiver, against raw httpx POSTs to the
same receiver in the same run, and what one slow (10 s) receiver does to the other subscriptions' latency.

    .venv/bin/python bench/webhooks.py [--deliveries 5000] [--subscriptions 20]

Starts Tansu and an embedded PostgreSQL (or uses KAFKA_BOOTSTRAP_SERVERS / --database-url), migrates a webhooks
database (dropped at the end, Ctrl-C included), starts a receiver on loopback (tests/webhooks/receiver.py, one
asyncio HTTP/1.1 server answering 204 at once) and the webhooks service in this process, and measures:
- raw limit: httpx POSTing N bodies of the deliveries' size to the receiver, 64 at a time (the service's
  concurrency) over 8 clients as the service spreads them, each awaited to its answer;
- throughput: S subscriptions of one partner, N/S `accrual.recorded` events published at once to
  incentives.accruals, timed from the first publish until the receiver holds all N deliveries (consumed, kept,
  queued, claimed, signed, POSTed, recorded) and again until the log records them all;
- a slow receiver: events published at a steady rate to the S subscriptions, the publish-to-arrival latency of
  their deliveries measured without, then with, one more subscription whose receiver answers after 10 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.support import Publisher, add_database_url, environment, percentile, run, service_app, wait_until
from services.webhooks.usecases import LANE_SIZE
from tests.webhooks.receiver import Receiver, answer, slow

TOPIC = "incentives.accruals"
RAW_CONCURRENCY = 64
RATE = 10  # events per second in the latency phases (x the subscriptions: well below the throughput)
SLOW_SECONDS = 10.0


def accrual(partner: uuid.UUID) -> dict[str, Any]:
    sale_id = f"S-{uuid.uuid4()}"
    return {"sale_id": sale_id, "partner_id": str(partner), "account_id": str(uuid.uuid4()), "sku": "SKU-BENCH",
            "booked_at": "2026-11-02T10:00:00Z", "currency": "USD", "amount": "1000.00", "status": "accrued",
            "eligible": True, "items": [{"program_code": "BASE-REBATE-2026", "amount": "50.00", "currency": "USD",
                                         "status": "accrued"}]}


async def raw_posts(receiver: Receiver, count: int, body: bytes) -> float:
    """N POSTs from one process, at the concurrency the service uses and spread over clients the way it does
    (httpx slows down as one client's pool grows)."""
    path = f"/raw/{uuid.uuid4()}"
    lanes = [httpx.AsyncClient(timeout=30, follow_redirects=False) for _ in range(RAW_CONCURRENCY // LANE_SIZE)]
    per_worker = -(-count // RAW_CONCURRENCY)
    headers = {"content-type": "application/cloudevents+json"}

    async def worker(index: int) -> None:
        client = lanes[index % len(lanes)]
        for _ in range(per_worker):
            (await client.post(receiver.url(path), content=body, headers=headers)).raise_for_status()

    try:
        started = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(RAW_CONCURRENCY)))
        return (time.perf_counter() - started) * count / (per_worker * RAW_CONCURRENCY)
    finally:
        for lane in lanes:
            await lane.aclose()


async def subscribe(client: httpx.AsyncClient, headers: dict[str, str], url: str, partner: uuid.UUID) -> str:
    created = await client.post("/v1/webhooks", headers=headers, json={
        "url": url, "event_types": ["accrual.recorded"], "partner_id": str(partner)})
    created.raise_for_status()
    return str(created.json()["id"])


async def delivered_count(env: Any, subscriptions: Sequence[str]) -> int:
    async with env.connect("webhooks") as connection:
        return int(await connection.fetchval(
            "SELECT count(*) FROM deliveries WHERE status = 'delivered' AND subscription_id = ANY($1::uuid[])",
            [uuid.UUID(s) for s in subscriptions]))


async def paced(publisher: Publisher, partner: uuid.UUID, events: int) -> dict[str, float]:
    """Publishes `events` at RATE per second; returns each event id with the moment it was acknowledged."""
    sent: dict[str, float] = {}
    started = time.monotonic()
    for index in range(events):
        await asyncio.sleep(max(0.0, started + index / RATE - time.monotonic()))
        event_id = await publisher.send(TOPIC, "accrual.recorded", str(partner), accrual(partner), None)
        sent[event_id] = time.monotonic()
    return sent


def latencies(receiver: Receiver, paths: Sequence[str], sent: dict[str, float]) -> list[float]:
    wanted = set(paths)
    return [r.at - sent[r.headers["webhook-id"]] for r in receiver.received
            if r.path in wanted and r.headers.get("webhook-id") in sent]


async def main(count: int, subscriptions: int, database_url: str | None) -> None:
    per_event = max(1, count // subscriptions)
    count = per_event * subscriptions
    settings = {"PARTNERHUB_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1", "PARTNERHUB_SWEEP_INTERVAL_SECONDS": "3600"}
    async with environment("webhooks", ["webhooks"], database_url, settings) as env:
        receiver = await Receiver().start()
        try:
            async with Publisher(env.bootstrap_servers, source="incentives") as publisher, \
                    service_app("webhooks") as client:
                headers = env.admin_headers()

                async def ready() -> bool:  # consumers joined: what follows measures delivering, not joining
                    return (await client.get("/readyz")).status_code == 200

                await wait_until(ready, 120, 0.1, "the webhooks service to be ready")
                partner = uuid.uuid4()
                _, body = publisher.envelope(TOPIC, "accrual.recorded", str(partner), accrual(partner))
                raw = await raw_posts(receiver, count, body)

                paths = [f"/fast/{i}" for i in range(subscriptions)]
                ids = [await subscribe(client, headers, receiver.url(p), partner) for p in paths]
                messages = [publisher.envelope(TOPIC, "accrual.recorded", str(partner), accrual(partner))[1]
                            for _ in range(per_event)]
                started = time.perf_counter()
                await publisher.send_many(TOPIC, ((str(partner), m) for m in messages))

                async def all_arrived() -> bool:
                    return sum(len(receiver.at(p)) for p in paths) >= count

                arrived = await wait_until(all_arrived, 600, 0.01, f"{count} deliveries at the receiver") - started

                async def all_recorded() -> bool:
                    return await delivered_count(env, ids) >= count

                recorded = await wait_until(all_recorded, 600, 0.05, f"{count} deliveries recorded") - started

                events = RATE * 10
                calm = await paced(publisher, partner, events)
                await wait_until(lambda: all_arrived_of(receiver, paths, calm), 300, 0.05, "the calm phase")
                without = latencies(receiver, paths, calm)

                slow_path = "/slow"
                receiver.behaviours[slow_path] = slow(SLOW_SECONDS)
                await subscribe(client, headers, receiver.url(slow_path), partner)
                busy = await paced(publisher, partner, events)
                await wait_until(lambda: all_arrived_of(receiver, paths, busy), 300, 0.05, "the slow phase")
                with_slow = latencies(receiver, paths, busy)
                slow_seen = len(receiver.at(slow_path))
                receiver.behaviours[slow_path] = answer(204)
        finally:
            await receiver.stop()

    print(f"deliveries:                               {count:>8,}  ({subscriptions} subscriptions x {per_event:,} "
          f"events, body {len(body)} bytes, receiver on loopback)")
    print(f"raw httpx POSTs ({RAW_CONCURRENCY} in flight):              {raw:8.2f} s  {count / raw:10,.0f} /s")
    print(f"Partner Hub, publish -> all at the receiver: {arrived:8.2f} s  {count / arrived:10,.0f} /s")
    print(f"Partner Hub, publish -> all recorded:        {recorded:8.2f} s  {count / recorded:10,.0f} /s")
    print(f"delivered / raw throughput: {raw / arrived:.2f}   (load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores: receiver, service, broker and database share the machine)")
    print(f"latency publish -> receiver at {RATE} events/s x {subscriptions} subscriptions "
          f"({len(without):,} and {len(with_slow):,} deliveries):")
    for label, values in (("without a slow receiver", without), (f"with one {SLOW_SECONDS:g} s receiver", with_slow)):
        print(f"  {label:<28} p50 {percentile(values, 0.5) * 1000:7.0f} ms   p99 "
              f"{percentile(values, 0.99) * 1000:7.0f} ms   max {max(values) * 1000:7.0f} ms")
    print(f"  p99 with / without: {percentile(with_slow, 0.99) / percentile(without, 0.99):.2f}   "
          f"(the slow receiver was sent {slow_seen} of its {events} meanwhile: at most its per-subscription share "
          "in flight)")


def all_arrived_of(receiver: Receiver, paths: Sequence[str], sent: dict[str, float]) -> Any:
    async def check() -> bool:
        return len(latencies(receiver, paths, sent)) >= len(sent) * len(paths)

    return check()


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deliveries", type=int, default=5000)
    parser.add_argument("--subscriptions", type=int, default=20)
    add_database_url(parser)
    return parser


if __name__ == "__main__":
    arguments = parser().parse_args()
    run(main(arguments.deliveries, arguments.subscriptions, arguments.database_url))

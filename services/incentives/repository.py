"""Incentives SQL: replicas, catalogue, sales, and the set-based pricing writes."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from operator import itemgetter
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from partnerhub.db import LostRace, advisory_lock, copy_rows, driver, try_advisory_lock
from partnerhub.timeutil import BEGINNING
from services.incentives import models as m
from services.incentives.domain import (
    ITEM_FIELDS,
    BipFigures,
    BipGroup,
    BipKey,
    BipOutcome,
    Entry,
    FxRates,
    Grant,
    ItemRow,
    ItemView,
    Position,
    Posting,
    Product,
    Program,
    ProgramKind,
    Replicas,
    Rule,
    Sale,
    Timeline,
)

LOCK_PROGRAMS = "incentives:programs"
SALE_COLUMNS = ("sale_id", "partner_id", "account_id", "sku", "amount", "currency", "booked_at", "sale_period",
                "status", "recorded_event_id", "cancelled_at", "cancel_event_id", "pricing_error")
SALE_FIELDS = ("s.sale_id, s.partner_id, s.account_id, s.sku, s.amount, s.currency, s.booked_at, s.sale_period, "
               "s.recorded_event_id, s.cancelled_at, s.cancel_event_id, s.status")
ITEM_COLUMNS = ("sale_id", "program_code", "partner_id", "base_amount", "rate", "amount", "currency", "status",
                "classification", "tier", "category", "detail", "sale_period", "revision", "base_currency", "fx_rate")
LEDGER_COLUMNS = ("partner_id", "account_id", "sale_id", "program_code", "amount", "currency", "kind", "revision",
                  "cause", "period", "sale_period", "run_id")
CONTRIBUTION_COLUMNS = ("sale_id", "program_code", "partner_id", "period", "currency", "revenue", "rate")


ITEM_VIEW = (
    "SELECT a.sale_id, a.program_code, a.base_amount, a.rate, a.amount, a.currency, a.status, s.status AS sale_status, "
    "a.classification, a.tier, a.category, a.detail, a.sale_period, s.sku, s.account_id, s.booked_at, "
    "a.base_currency, a.fx_rate FROM accrual_items a JOIN sales s ON s.sale_id = a.sale_id"
)


def _item_view(row: Any) -> ItemView:
    return ItemView(row.sale_id, row.program_code or None, row.base_amount, row.rate, row.amount, row.currency,
                    row.status, row.sale_status, row.classification, row.tier, row.category, row.detail, row.sku,
                    row.account_id, row.booked_at, row.sale_period, row.base_currency, row.fx_rate)


# Every timeline of some accounts, partners and skus as (kind, key, from, until, value) text rows, each
# timeline in effective order.
REPLICAS = """
SELECT 'classification', account_id::text, effective_from, NULL::timestamptz, classification, id
  FROM account_classifications WHERE account_id = ANY($1::uuid[])
UNION ALL SELECT 'owner', account_id::text, effective_from, NULL, owner_partner_id::text, id
  FROM account_owners WHERE account_id = ANY($1::uuid[])
UNION ALL SELECT 'tier', partner_id::text, effective_from, NULL, tier, id
  FROM partner_tiers WHERE partner_id = ANY($2::uuid[])
UNION ALL SELECT 'status', partner_id::text, effective_from, NULL, status, id
  FROM partner_statuses WHERE partner_id = ANY($2::uuid[])
UNION ALL SELECT 'certification', partner_id::text, valid_from, valid_to, code, id
  FROM partner_certifications WHERE partner_id = ANY($2::uuid[])
UNION ALL SELECT 'eligibility', sku, effective_from, NULL, rebate_eligible::text, id
  FROM product_eligibility WHERE sku = ANY($3::text[])
UNION ALL SELECT 'category', sku, NULL, NULL, category, 0 FROM products WHERE sku = ANY($3::text[])
ORDER BY 1, 2, 3, 6
"""
REPLICA_VALUES: dict[str, Any] = {
    "classification": str, "tier": str, "status": str,
    "owner": lambda value: uuid.UUID(value) if value is not None else None,
    "eligibility": lambda value: value == "true",
}
# An existing item's key and what repricing can move in it (domain.ITEM_FIELDS), as the moves are written.
MOVING_COLUMNS = ("sale_id", "program_code", *ITEM_FIELDS)
ITEM_CHANGES_TABLE = (
    "CREATE TEMP TABLE IF NOT EXISTS item_moves (sale_id text, program_code text, amount numeric(18,2), "
    "status text, revision int, rate numeric(12,6), classification text, tier text, category text, detail text, "
    "fx_rate numeric(18,10)) ON COMMIT DELETE ROWS"
)
FEW = 100
UPDATE_FEW_ITEMS = (
    "UPDATE accrual_items a SET " + ", ".join(f"{c} = u.{c}" for c in ITEM_FIELDS) + ", updated_at = now() "
    "FROM unnest($1::text[], $2::text[], $3::numeric[], $4::text[], $5::int[], $6::numeric[], $7::text[], "
    f"$8::text[], $9::text[], $10::text[], $11::numeric[]) AS u({', '.join(MOVING_COLUMNS)}) "
    "WHERE a.sale_id = u.sale_id AND a.program_code = u.program_code"
)


def _update_items(fields: Sequence[str]) -> str:
    """The join that moves these fields of the items in item_moves (and only these: a recalculation usually
    moves a few, and each column left out is one less to encode, send and write per item)."""
    return (f"UPDATE accrual_items a SET {', '.join(f'{c} = u.{c}' for c in fields)}, updated_at = now() "
            "FROM item_moves u WHERE a.sale_id = u.sale_id AND a.program_code = u.program_code")


def _item_records(items: Sequence[ItemRow]) -> list[tuple[Any, ...]]:
    return [(i.sale_id, i.program_code, i.partner_id, i.base_amount, i.rate, i.amount, i.currency, i.status,
             i.classification, i.tier, i.category, i.detail, i.sale_period, i.revision, i.base_currency, i.fx_rate)
            for i in items]


def _move_records(items: Sequence[ItemRow]) -> list[tuple[Any, ...]]:
    return [(i.sale_id, i.program_code, i.amount, i.status, i.revision, i.rate, i.classification, i.tier,
             i.category, i.detail, i.fx_rate) for i in items]


def _entry_records(entries: Sequence[Entry], run_id: uuid.UUID | None) -> list[tuple[Any, ...]]:
    return [(e.partner_id, e.account_id, e.sale_id, e.program_code, e.amount, e.currency, e.kind.value, e.revision,
             e.cause, e.period, e.sale_period, run_id) for e in entries]


@dataclass
class PostingRows:
    """A posting as the rows its save writes: encoded in Python ahead of the write, so a pass can prepare one
    chunk while the database writes the one before."""

    items: list[tuple[Any, ...]] = field(default_factory=list)
    moves: list[tuple[Any, ...]] = field(default_factory=list)
    moved: set[str] = field(default_factory=set)  # the fields any of the moves moved
    entries: list[tuple[Any, ...]] = field(default_factory=list)
    removed: list[tuple[str, str]] = field(default_factory=list)
    statuses: dict[str, str] = field(default_factory=dict)
    contributions: list[tuple[Any, ...]] = field(default_factory=list)

    def add(self, posting: Posting, run_id: uuid.UUID | None) -> None:
        self.items += _item_records(posting.items)
        self.moves += _move_records(posting.updated)
        self.moved |= posting.moved
        self.entries += _entry_records(posting.entries, run_id)
        self.removed += posting.removed
        self.statuses.update(posting.statuses)
        self.contributions += posting.contributions


def _sale(row: Any) -> Sale:
    return Sale(row["sale_id"], row["partner_id"], row["account_id"], row["sku"], row["amount"], row["currency"],
                row["booked_at"], row["sale_period"], row["recorded_event_id"], row["cancelled_at"],
                row["cancel_event_id"], row["status"], row["set_aside"])


@dataclass(frozen=True)
class SaleScope:
    """Which sales a pricing pass covers; every given condition must hold."""

    sale_ids: Sequence[str] | None = None
    account_id: uuid.UUID | None = None
    partner_id: uuid.UUID | None = None
    sku: str | None = None
    currency: str | None = None
    booked_from: datetime | None = None
    booked_before: datetime | None = None

    def where(self) -> tuple[str, dict[str, Any]]:
        clauses: list[str] = []
        params: dict[str, Any] = {}
        if self.sale_ids is not None:
            clauses.append("s.sale_id = ANY(:sale_ids)")
            params["sale_ids"] = list(self.sale_ids)
        for name in ("account_id", "partner_id", "sku", "currency"):
            value = getattr(self, name)
            if value is not None:
                clauses.append(f"s.{name} = :{name}")
                params[name] = value
        if self.booked_from is not None:
            clauses.append("s.booked_at >= :booked_from")
            params["booked_from"] = self.booked_from
        if self.booked_before is not None:
            clauses.append("s.booked_at < :booked_before")
            params["booked_before"] = self.booked_before
        return " AND ".join(clauses) or "true", params


class IncentivesRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.item_moves_ready = False

    async def execute(self, statement: Any, params: Any = None) -> sa.Result[Any]:
        return await self.session.execute(statement, params)

    async def lock(self, keys: Iterable[str], *, shared: bool = False) -> None:
        await advisory_lock(self.session, keys, shared=shared)

    async def try_lock(self, keys: Iterable[str], *, shared: bool = False) -> set[str]:
        """Takes what it can without waiting; returns the keys held by someone else."""
        return await try_advisory_lock(self.session, keys, shared=shared)

    async def received_sales(self, limit: int) -> list[str]:
        """Sales waiting for pricing (not set aside), oldest first."""
        rows = await self.session.execute(sa.text(
            "SELECT sale_id FROM sales WHERE status = 'received' AND pricing_error IS NULL "
            "ORDER BY recorded_at, sale_id LIMIT :limit"
        ), {"limit": limit})
        return [row.sale_id for row in rows]

    async def count_received(self) -> int:
        found = await self.session.execute(sa.text(
            "SELECT count(*) FROM sales WHERE status = 'received' AND pricing_error IS NULL"
        ))
        return int(found.scalar() or 0)

    # --- replicas -------------------------------------------------------------------------
    async def knows(self, table: sa.Table, key: str, value: uuid.UUID) -> bool:
        found = await self.session.execute(sa.select(sa.literal(1)).where(table.c[key] == value).limit(1))
        return found.scalar() is not None

    async def add_timeline(self, table: sa.Table, rows: list[dict[str, Any]]) -> None:
        if rows:
            await self.session.execute(table.insert(), rows)

    async def grant_certification(
        self, partner_id: uuid.UUID, code: str, valid_from: datetime, valid_to: datetime | None, event_id: str
    ) -> None:
        # Held at t when any granted interval covers t: grants are a union, whatever order they arrive in.
        await self.session.execute(
            m.partner_certifications.insert().values(
                partner_id=partner_id, code=code, valid_from=valid_from, valid_to=valid_to, event_id=event_id
            )
        )

    async def close_certification(self, partner_id: uuid.UUID, code: str, at: datetime) -> None:
        c = m.partner_certifications.c
        await self.session.execute(
            m.partner_certifications.update()
            .where(c.partner_id == partner_id, c.code == code, sa.or_(c.valid_to.is_(None), c.valid_to > at))
            .values(valid_to=sa.func.greatest(c.valid_from, at))
        )

    # --- catalogue ------------------------------------------------------------------------
    async def get_product(self, sku: str, lock: bool = False) -> sa.Row[Any] | None:
        query = sa.select(m.products).where(m.products.c.sku == sku)
        return (await self.session.execute(query.with_for_update() if lock else query)).one_or_none()

    async def save_product(self, values: dict[str, Any], exists: bool) -> None:
        if exists:
            await self.session.execute(
                m.products.update()
                .where(m.products.c.sku == values["sku"])
                .values(**values, updated_at=sa.func.now(), version=m.products.c.version + 1)
            )
        else:
            await self.session.execute(m.products.insert().values(**values))

    async def set_eligibility(self, sku: str, eligible: bool, effective_from: datetime | None) -> None:
        if effective_from is None:
            # No date: the eligibility holds for all of the sku's sales.
            await self.session.execute(m.product_eligibility.delete().where(m.product_eligibility.c.sku == sku))
            effective_from = BEGINNING
        await self.session.execute(
            m.product_eligibility.insert().values(sku=sku, rebate_eligible=eligible, effective_from=effective_from)
        )

    async def list_products(self, rebate_eligible: bool | None, after: str | None, limit: int) -> list[sa.Row[Any]]:
        query = sa.select(m.products).order_by(m.products.c.sku).limit(limit)
        if rebate_eligible is not None:
            query = query.where(m.products.c.rebate_eligible == rebate_eligible)
        if after is not None:
            query = query.where(m.products.c.sku > after)
        return list((await self.session.execute(query)).all())

    async def get_program_row(self, code: str) -> sa.Row[Any] | None:
        return (await self.session.execute(sa.select(m.programs).where(m.programs.c.code == code))).one_or_none()

    async def add_program(self, values: dict[str, Any], rules: list[dict[str, Any]]) -> None:
        await self.session.execute(m.programs.insert().values(**values))
        await self.session.execute(m.program_rules.insert(), rules)

    async def end_program(self, code: str, valid_to: datetime) -> None:
        await self.session.execute(
            m.programs.update()
            .where(m.programs.c.code == code)
            .values(valid_to=valid_to, version=m.programs.c.version + 1)
        )

    async def program_rows(self, codes: Iterable[str] | None = None) -> list[tuple[sa.Row[Any], list[sa.Row[Any]]]]:
        query = sa.select(m.programs).order_by(m.programs.c.code)
        if codes is not None:
            query = query.where(m.programs.c.code.in_(list(codes)))
        rows = list((await self.session.execute(query)).all())
        rules = (
            await self.session.execute(
                sa.select(m.program_rules)
                .where(m.program_rules.c.program_code.in_([r.code for r in rows]))
                .order_by(m.program_rules.c.program_code, m.program_rules.c.position)
            )
        ).all()
        by_code: dict[str, list[sa.Row[Any]]] = {}
        for rule in rules:
            by_code.setdefault(rule.program_code, []).append(rule)
        return [(row, by_code.get(row.code, [])) for row in rows]

    async def programs(self) -> list[Program]:
        return [
            Program(
                code=row.code,
                name=row.name,
                kind=ProgramKind(row.kind),
                valid_from=row.valid_from,
                valid_to=row.valid_to,
                required_certification=row.required_certification,
                rules=tuple(Rule(r.classification, r.tier, r.category, r.rate) for r in rules),
                target=row.target,
                settlement_currency=row.settlement_currency,
            )
            for row, rules in await self.program_rows()
        ]

    # --- exchange rates -------------------------------------------------------------------
    async def fx_rates(self) -> FxRates:
        """Every pair's timeline as it holds now (a correction replaces the rate it corrects)."""
        timelines: dict[tuple[str, str], list[tuple[datetime, Decimal]]] = {}
        for row in await self.fx_history(None, None, current=True):
            timelines.setdefault((row.base, row.quote), []).append((row.effective_from, row.rate))
        return FxRates({pair: Timeline(entries) for pair, entries in timelines.items()})

    async def fx_history(self, base: str | None, quote: str | None, *, current: bool) -> list[sa.Row[Any]]:
        """The rates of the pairs asked for, in (base, quote, effective_from) order: only those that hold now, or
        every rate ever entered (corrections after what they corrected), with the rate each replaced."""
        where = " AND ".join(
            clause for clause, value in (("base = :base", base), ("quote = :quote", quote)) if value is not None
        ) or "true"
        rows = await self.session.execute(sa.text(f"""
            SELECT * FROM (
                SELECT id, base, quote, effective_from, rate, event_id, recorded_by, recorded_at,
                       lag(rate) OVER same AS replaced,
                       row_number() OVER (PARTITION BY base, quote, effective_from ORDER BY id DESC) AS newest
                  FROM fx_rates WHERE {where}
                WINDOW same AS (PARTITION BY base, quote, effective_from ORDER BY id)
            ) r {"WHERE newest = 1" if current else ""}
            ORDER BY base, quote, effective_from, id
        """), {"base": base, "quote": quote})
        return list(rows.all())

    async def add_fx_rate(self, values: dict[str, Any]) -> None:
        await self.session.execute(m.fx_rates.insert().values(**values))


    # --- sales ----------------------------------------------------------------------------
    async def get_sale(self, sale_id: str) -> sa.Row[Any] | None:
        return (await self.session.execute(sa.select(m.sales).where(m.sales.c.sale_id == sale_id))).one_or_none()

    async def cancel_sales(self, cancellations: Sequence[Any]) -> dict[str, sa.Row[Any]]:
        """Cancels the sales not cancelled yet; returns those it cancelled, with their lock keys."""
        if not cancellations:
            return {}
        rows = await self.session.execute(sa.text(
            "UPDATE sales s SET cancelled_at = c.cancelled_at, cancel_event_id = c.event_id "
            "FROM unnest(CAST(:ids AS text[]), CAST(:ats AS timestamptz[]), CAST(:events AS text[])) "
            "AS c(sale_id, cancelled_at, event_id) WHERE s.sale_id = c.sale_id AND s.cancelled_at IS NULL "
            "RETURNING s.sale_id, s.account_id, s.partner_id, s.sku"
        ), {"ids": [c.sale_id for c in cancellations], "ats": [c.cancelled_at for c in cancellations],
            "events": [c.event_id for c in cancellations]})
        return {row.sale_id: row for row in rows}

    async def mark_received(self, sale_ids: Sequence[str]) -> None:
        """Leaves these sales to the pricer: they are priced again as soon as their locks are free."""
        if sale_ids:
            await self.session.execute(sa.text("UPDATE sales SET status = 'received' WHERE sale_id = ANY(:ids)"),
                                       {"ids": list(sale_ids)})

    async def sale_lock_keys(self, sale_ids: Sequence[str]) -> dict[str, tuple[str, str, str]]:
        rows = await self.session.execute(sa.text(
            "SELECT sale_id, account_id, partner_id, sku FROM sales WHERE sale_id = ANY(:ids)"
        ), {"ids": list(sale_ids)})
        return {r.sale_id: (f"account:{r.account_id}", f"partner:{r.partner_id}", f"sku:{r.sku}") for r in rows}

    async def keep_cancellation(self, sale_id: str, cancelled_at: datetime, event_id: str) -> None:
        await self.session.execute(
            insert(m.pending_cancellations)
            .values(sale_id=sale_id, cancelled_at=cancelled_at, event_id=event_id)
            .on_conflict_do_nothing()
        )

    async def take_pending_cancellations(self, sale_ids: list[str]) -> list[Any]:
        if not sale_ids:
            return []
        return list((await self.session.execute(sa.text(
            "DELETE FROM pending_cancellations WHERE sale_id = ANY(:ids) RETURNING sale_id, cancelled_at, event_id"
        ), {"ids": list(sale_ids)})).all())

    async def known_sales(self, sale_ids: Sequence[str]) -> dict[str, sa.Row[Any]]:
        """The sales already recorded among these ids, with what dedupes them and the keys that lock them."""
        if not sale_ids:
            return {}
        rows = await self.session.execute(sa.text(
            "SELECT sale_id, account_id, partner_id, sku, amount, currency, booked_at, recorded_event_id, cancelled_at "
            "FROM sales WHERE sale_id = ANY(:ids)"
        ), {"ids": list(sale_ids)})
        return {row.sale_id: row for row in rows}

    async def add_sales(self, sales: Sequence[Sale], statuses: Mapping[str, str], errors: Mapping[str, str]) -> None:
        """Inserts new sales with the status their pricing gave them (or 'received' with the error that set
        them aside). A sale a concurrent transaction recorded first (the same sale_id posted twice at once, or
        sent again under another account) makes this one lose the race: LostRace, and the recording runs again."""
        try:
            await copy_rows(self.session, "sales", SALE_COLUMNS, [
                (s.sale_id, s.partner_id, s.account_id, s.sku, s.amount, s.currency, s.booked_at, s.sale_period,
                 statuses.get(s.sale_id, s.status), s.recorded_event_id, s.cancelled_at,
                 s.cancel_event_id, errors.get(s.sale_id))
                for s in sales
            ])
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name != "sales_pkey":
                raise
            raise LostRace(f"a sale was recorded by a concurrent transaction first: {exc.detail}") from exc

    # --- pricing: bulk load ---------------------------------------------------------------
    async def open_scope(self, scope: SaleScope) -> None:
        """Row-locks the sales in scope as they are fetched, in sale_id order (the one order every pass takes),
        so a concurrent pass over the same sales waits and then sees this one's result."""
        where, params = scope.where()
        await self.session.execute(sa.text(
            f"DECLARE pricing_scope NO SCROLL CURSOR FOR SELECT {SALE_FIELDS}, s.pricing_error IS NOT NULL AS "
            f"set_aside FROM sales s WHERE {where} ORDER BY s.sale_id FOR UPDATE"
        ), params)

    async def fetch_scope(self, size: int) -> list[tuple[Sale, dict[str, Position]]]:
        """The next sales in scope, each with what the ledger holds for it."""
        conn = await driver(self.session)
        sales = [_sale(row) for row in await conn.fetch(f"FETCH FORWARD {int(size)} FROM pricing_scope")]
        held: dict[str, dict[str, Position]] = {}
        if sales:
            for row in await conn.fetch(
                "SELECT sale_id, program_code, amount, status, revision, currency, rate, classification, tier, "
                "category, detail, fx_rate FROM accrual_items WHERE sale_id = ANY($1::text[])",
                [s.sale_id for s in sales]
            ):
                held.setdefault(row[0], {})[row[1]] = Position(row[2], row[3], row[4], tuple(row[6:]), row[5])
        return [(sale, held.get(sale.sale_id, {})) for sale in sales]

    async def close_scope(self) -> None:
        await self.session.execute(sa.text("CLOSE pricing_scope"))

    async def load_replicas(self, replicas: Replicas, sales: Iterable[Sale]) -> None:
        """Adds the timelines of the accounts, partners and products of these sales not loaded yet, in one
        round trip (a small recalculation is mostly round trips)."""
        accounts, partners, skus = replicas.missing(sales)
        if not (accounts or partners or skus):
            return
        rows = await (await driver(self.session)).fetch(
            REPLICAS, list(accounts), list(partners), list(skus))
        timelines: dict[str, dict[Any, list[tuple[datetime, Any]]]] = {
            kind: {} for kind in ("classification", "owner", "tier", "status", "eligibility")}
        categories: dict[str, str] = {}
        for kind, key, start, until, value, _ in rows:
            if kind == "certification":
                replicas.certifications.setdefault(uuid.UUID(key), []).append(Grant(value, start, until))
            elif kind == "category":
                categories[key] = value
            else:
                timelines[kind].setdefault(key, []).append((start, REPLICA_VALUES[kind](value)))
        for kind, target in (("classification", replicas.classifications), ("owner", replicas.owners),
                             ("tier", replicas.tiers), ("status", replicas.statuses)):
            for key, entries in timelines[kind].items():
                target[uuid.UUID(key)] = Timeline(entries)  # type: ignore[index]
        for sku, category in categories.items():
            eligibility = timelines["eligibility"].get(sku) or [(BEGINNING, False)]
            replicas.products[sku] = Product(category, Timeline(eligibility))

    async def closed_through(self) -> str | None:
        return (await self.session.execute(sa.select(m.period_close.c.closed_through))).scalar()

    # --- pricing: bulk save ---------------------------------------------------------------
    async def save_posting(self, rows: PostingRows, sales: Sequence[Sale], replace: bool, bip: bool) -> None:
        """Writes what a posting changed: items (new ones by COPY, moved ones updated), the ledger entries,
        the sales' statuses and BIP contributions; a few statements whatever the number of sales, and no
        Python work between them (the rows were encoded ahead, while the previous chunk was being written)."""
        conn = await driver(self.session)
        if replace and rows.removed:
            await conn.execute(
                "DELETE FROM accrual_items a USING unnest($1::text[], $2::text[]) AS r(sale_id, code) "
                "WHERE a.sale_id = r.sale_id AND a.program_code = r.code",
                [r[0] for r in rows.removed], [r[1] for r in rows.removed])
        # Items new to their (sale, program) go in with COPY: the sales' row locks keep any other pass out.
        await copy_rows(self.session, "accrual_items", ITEM_COLUMNS, rows.items)
        if 0 < len(rows.moves) <= FEW:
            # A few items (one account's small recalculation): one statement.
            await conn.execute(UPDATE_FEW_ITEMS, *[list(column) for column in zip(*rows.moves, strict=True)])
        elif rows.moves:
            # COPY in, then one join: binary COPY encodes rows far cheaper than arrays of parameters. Only the
            # fields that moved go in.
            fields = [name for name in ITEM_FIELDS if name in rows.moved]
            columns = ["sale_id", "program_code", *fields]
            records = rows.moves
            if len(fields) < len(ITEM_FIELDS):
                records = list(map(itemgetter(0, 1, *(2 + ITEM_FIELDS.index(name) for name in fields)), records))
            if not self.item_moves_ready:
                # Without statistics the planner would scan every item per chunk instead of looking each one
                # up; the first chunk's serve the others (the table is refilled with as many rows each time).
                await conn.execute(ITEM_CHANGES_TABLE)
                await conn.copy_records_to_table("item_moves", records=records, columns=columns)
                await conn.execute("ANALYZE item_moves")
                self.item_moves_ready = True
            else:
                await conn.copy_records_to_table("item_moves", records=records, columns=columns)
            await conn.execute(f"{_update_items(fields)}; TRUNCATE item_moves")  # one round trip
        await copy_rows(self.session, "ledger", LEDGER_COLUMNS, rows.entries)
        if replace and rows.statuses:
            await conn.execute(
                "UPDATE sales s SET status = u.status FROM unnest($1::text[], $2::text[]) AS u(sale_id, status) "
                "WHERE s.sale_id = u.sale_id", list(rows.statuses), list(rows.statuses.values()))
        cleared = [s.sale_id for s in sales if s.set_aside]
        if cleared:
            # Priced now: whatever set them aside before no longer holds.
            await conn.execute("UPDATE sales SET pricing_error = NULL WHERE sale_id = ANY($1::text[])", cleared)
        if bip:
            if replace:
                await conn.execute("DELETE FROM bip_contributions WHERE sale_id = ANY($1::text[])",
                                   [s.sale_id for s in sales])
            await copy_rows(self.session, "bip_contributions", CONTRIBUTION_COLUMNS, rows.contributions)

    async def append_entries(self, entries: Sequence[Entry], run_id: uuid.UUID | None) -> None:
        await copy_rows(self.session, "ledger", LEDGER_COLUMNS, _entry_records(entries, run_id))

    async def set_aside(self, errors: Mapping[str, str]) -> None:
        """Keeps why each sale could not be priced; its items stay as they were."""
        if errors:
            await self.session.execute(sa.text(
                "UPDATE sales s SET pricing_error = u.error FROM unnest(CAST(:ids AS text[]), "
                "CAST(:errors AS text[])) AS u(sale_id, error) WHERE s.sale_id = u.sale_id"
            ), {"ids": list(errors), "errors": list(errors.values())})

    # --- business incentive programs ------------------------------------------------------
    async def bip_figures(self, groups: Iterable[BipGroup]) -> dict[BipKey, BipFigures]:
        """Per (partner, program, month, currency) of the groups: the month's revenue and rate-weighted revenue
        from its contributions now, and the bonus and revision booked so far."""
        groups = list(groups)
        if not groups:
            return {}
        params = {"partners": [g[0] for g in groups], "periods": [g[1] for g in groups],
                  "currencies": [g[2] for g in groups]}
        in_groups = (
            "(partner_id, period, currency) IN (SELECT * FROM unnest(CAST(:partners AS uuid[]), "
            "CAST(:periods AS text[]), CAST(:currencies AS text[])))"
        )
        rows = await self.session.execute(sa.text(f"""
            WITH now AS (
                SELECT partner_id, program_code, period, currency, sum(revenue) AS revenue,
                       sum(rate * revenue) AS weighted
                FROM bip_contributions WHERE {in_groups} GROUP BY 1, 2, 3, 4
            ), booked AS (
                SELECT partner_id, program_code, period, currency, bonus, revision FROM bip_totals WHERE {in_groups}
            )
            SELECT coalesce(n.partner_id, b.partner_id) AS partner_id,
                   coalesce(n.program_code, b.program_code) AS program_code,
                   coalesce(n.period, b.period) AS period, coalesce(n.currency, b.currency) AS currency,
                   coalesce(n.revenue, 0) AS revenue, coalesce(n.weighted, 0) AS weighted, b.bonus,
                   coalesce(b.revision, 0) AS revision
            FROM now n FULL JOIN booked b USING (partner_id, program_code, period, currency)
        """), params)
        return {
            (r.partner_id, r.program_code, r.period, r.currency): BipFigures(r.revenue, r.weighted, r.bonus, r.revision)
            for r in rows
        }

    async def save_bip(self, outcomes: Sequence[BipOutcome], entries: Sequence[Entry],
                       run_id: uuid.UUID | None) -> None:
        if outcomes:
            revisions = {(e.partner_id, e.program_code, e.sale_period, e.currency): e.revision for e in entries}
            statement = insert(m.bip_totals)
            await self.session.execute(
                statement.on_conflict_do_update(
                    index_elements=["partner_id", "program_code", "period", "currency"],
                    set_={"revenue": statement.excluded.revenue, "target": statement.excluded.target,
                          "bonus": statement.excluded.bonus, "reached": statement.excluded.reached,
                          "revision": sa.func.greatest(m.bip_totals.c.revision, statement.excluded.revision),
                          "updated_at": sa.func.now()},
                ),
                [{"partner_id": o.key[0], "program_code": o.key[1], "period": o.key[2], "currency": o.key[3],
                  "revenue": o.revenue, "target": o.target, "bonus": o.bonus, "reached": o.reached,
                  "revision": revisions.get(o.key, 0)} for o in outcomes],
            )
        await self.append_entries(entries, run_id)


    async def bip_progress(self, partner_id: uuid.UUID, period: str | None) -> list[sa.Row[Any]]:
        b = m.bip_totals.c
        query = sa.select(m.bip_totals).where(b.partner_id == partner_id)
        if period is not None:
            query = query.where(b.period == period)
        return list((await self.session.execute(query.order_by(b.period, b.program_code, b.currency))).all())

    # --- statements and periods -----------------------------------------------------------
    async def live_statements(self, first: str, last: str, partner_id: uuid.UUID | None) -> list[sa.Row[Any]]:
        """The statements of still-open periods `first`..`last` as their sales bring them now, per period,
        partner and currency, in one pass (closing many months at once must not cost a query per month)."""
        only = "AND partner_id = :partner_id" if partner_id is not None else ""
        return list((await self.session.execute(sa.text(f"""
            WITH figures AS (
                SELECT sale_period AS period, partner_id, currency, amount AS eligible_revenue, 0 AS rebate,
                       0 AS bip_bonus, 0 AS adjustments
                  FROM sales WHERE sale_period BETWEEN :first AND :last AND status = 'accrued' {only}
                UNION ALL
                SELECT sale_period, partner_id, currency, 0, amount, 0, 0
                  FROM accrual_items WHERE sale_period BETWEEN :first AND :last {only}
                UNION ALL
                SELECT period, partner_id, currency, 0, 0, bonus, 0
                  FROM bip_totals WHERE period BETWEEN :first AND :last {only}
                UNION ALL
                SELECT period, partner_id, currency, 0, 0, 0, amount
                  FROM ledger WHERE period BETWEEN :first AND :last
                   AND (sale_period <> period OR kind = 'dispute_settlement') {only}
            )
            SELECT period, partner_id, currency, sum(eligible_revenue) AS eligible_revenue, sum(rebate) AS rebate,
                   sum(bip_bonus) AS bip_bonus, sum(adjustments) AS adjustments,
                   sum(rebate) + sum(bip_bonus) + sum(adjustments) AS total
              FROM figures GROUP BY period, partner_id, currency ORDER BY period, partner_id, currency
        """), {"first": first, "last": last, "partner_id": partner_id})).all())

    async def frozen_statement(self, partner_id: uuid.UUID, period: str) -> list[sa.Row[Any]]:
        s = m.statements.c
        return list((await self.session.execute(
            sa.select(m.statements).where(s.partner_id == partner_id, s.period == period).order_by(s.currency)
        )).all())

    async def freeze_statements(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            await self.session.execute(insert(m.statements).on_conflict_do_nothing(), rows)

    async def earliest_period(self) -> str | None:
        return (await self.session.execute(sa.text(
            "SELECT least((SELECT min(sale_period) FROM sales), (SELECT min(period) FROM ledger))"
        ))).scalar()

    async def set_closed_through(self, period: str) -> None:
        statement = insert(m.period_close).values(singleton=True, closed_through=period)
        await self.session.execute(statement.on_conflict_do_update(
            index_elements=["singleton"], set_={"closed_through": period, "closed_at": sa.func.now()}
        ))

    # --- runs -----------------------------------------------------------------------------
    async def record_run(self, values: dict[str, Any]) -> None:
        await self.session.execute(m.recalculation_runs.insert().values(**values))

    async def list_runs(
        self, account_id: uuid.UUID | None, partner_id: uuid.UUID | None, after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[sa.Row[Any]]:
        r = m.recalculation_runs.c
        query = sa.select(m.recalculation_runs).order_by(r.started_at.desc(), r.id.desc()).limit(limit)
        if account_id is not None:
            query = query.where(r.account_id == account_id)
        if partner_id is not None:
            query = query.where(r.partner_id == partner_id)
        if after is not None:
            query = query.where(sa.tuple_(r.started_at, r.id) < sa.tuple_(*after))
        return list((await self.session.execute(query)).all())

    # --- reads ----------------------------------------------------------------------------
    async def accruals(
        self, partner_id: uuid.UUID, period: str | None, sale_id: str | None, after: tuple[str, str] | None,
        limit: int,
    ) -> list[ItemView]:
        where = ["a.partner_id = :partner_id", "a.status <> 'withdrawn'"]
        params: dict[str, Any] = {"partner_id": partner_id, "limit": limit}
        if period is not None:
            where.append("a.sale_period = :period")
            params["period"] = period
        if sale_id is not None:
            where.append("a.sale_id = :sale_id")
            params["sale_id"] = sale_id
        if after is not None:
            where.append("(a.sale_id, a.program_code) > (:after_sale, :after_program)")
            params |= {"after_sale": after[0], "after_program": after[1]}
        rows = await self.session.execute(sa.text(
            f"{ITEM_VIEW} WHERE {' AND '.join(where)} ORDER BY a.sale_id, a.program_code LIMIT :limit"
        ), params)
        return [_item_view(row) for row in rows]

    async def sale_items(self, sale_id: str) -> list[ItemView]:
        rows = await self.session.execute(sa.text(
            f"{ITEM_VIEW} WHERE a.sale_id = :sale_id AND a.status <> 'withdrawn' ORDER BY a.program_code"
        ), {"sale_id": sale_id})
        return [_item_view(row) for row in rows]

    async def ledger(
        self, partner_id: uuid.UUID, period: str | None, sale_id: str | None, after: int | None, limit: int
    ) -> list[sa.Row[Any]]:
        entry = m.ledger.c
        query = sa.select(m.ledger).where(entry.partner_id == partner_id).order_by(entry.id)
        if period is not None:
            query = query.where(entry.period == period)
        if sale_id is not None:
            query = query.where(entry.sale_id == sale_id)
        if after is not None:
            query = query.where(entry.id > after)
        return list((await self.session.execute(query.limit(limit))).all())


class StatementsRepository:
    """Statement lines, confirmations and disputes."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lines(self, partner_id: uuid.UUID, period: str, currency: str | None, after: int | None,
                    limit: int | None) -> list[sa.Row[Any]]:
        """Every entry posted into the period, in posting order (after the cursor's id; all when no limit)."""
        entry = m.ledger.c
        query: sa.Select[Any] = (
            sa.select(entry.id, entry.entry_id, entry.kind, entry.sale_id, entry.program_code, entry.amount,
                      entry.currency, entry.period, entry.sale_period, entry.cause, entry.created_at)
            .where(entry.partner_id == partner_id, entry.period == period).order_by(entry.id))
        if currency is not None:
            query = query.where(entry.currency == currency)
        if after is not None:
            query = query.where(entry.id > after)
        if limit is not None:
            query = query.limit(limit)
        return list((await self.session.execute(query)).all())

    async def confirmation(self, partner_id: uuid.UUID, period: str) -> sa.Row[Any] | None:
        c = m.statement_confirmations.c
        return (await self.session.execute(
            sa.select(m.statement_confirmations).where(c.partner_id == partner_id, c.period == period)
        )).one_or_none()

    async def confirm(self, partner_id: uuid.UUID, period: str, by: str) -> bool:
        """Records the confirmation unless there is one; whether this call made it."""
        made = await self.session.execute(
            insert(m.statement_confirmations).values(partner_id=partner_id, period=period, confirmed_by=by)
            .on_conflict_do_nothing().returning(m.statement_confirmations.c.partner_id))
        return made.first() is not None

    async def partners_with_entries(self, first: str, last: str) -> list[uuid.UUID]:
        rows = await self.session.execute(sa.text(
            "SELECT DISTINCT partner_id FROM ledger WHERE period BETWEEN :first AND :last "
            "UNION SELECT DISTINCT partner_id FROM statements WHERE period BETWEEN :first AND :last"
        ), {"first": first, "last": last})
        return [row.partner_id for row in rows]

    async def frozen(self, first: str, last: str) -> list[sa.Row[Any]]:
        s = m.statements.c
        return list((await self.session.execute(
            sa.select(m.statements).where(s.period.between(first, last)).order_by(s.partner_id, s.period, s.currency)
        )).all())

    # --- disputes -------------------------------------------------------------------------
    async def add_dispute(self, values: dict[str, Any]) -> bool:
        """Inserts an open dispute; False when the same (partner, period, sale, program) already has one."""
        made = await self.session.execute(
            insert(m.disputes).values(**values).on_conflict_do_nothing().returning(m.disputes.c.id))
        return made.first() is not None

    async def dispute(self, dispute_id: uuid.UUID, lock: bool = False) -> sa.Row[Any] | None:
        query = sa.select(m.disputes).where(m.disputes.c.id == dispute_id)
        return (await self.session.execute(query.with_for_update() if lock else query)).one_or_none()

    async def open_dispute_like(self, partner_id: uuid.UUID, period: str, sale_id: str | None,
                                program_code: str | None) -> sa.Row[Any] | None:
        d = m.disputes.c
        return (await self.session.execute(sa.select(m.disputes).where(
            d.partner_id == partner_id, d.period == period, d.status == "open",
            sa.func.coalesce(d.sale_id, "") == (sale_id or ""),
            sa.func.coalesce(d.program_code, "") == (program_code or "")))).one_or_none()

    async def list_disputes(self, partner_id: uuid.UUID | None, status: str | None, period: str | None,
                            after: tuple[datetime, uuid.UUID] | None, limit: int) -> list[sa.Row[Any]]:
        d = m.disputes.c
        query = sa.select(m.disputes).order_by(d.created_at.desc(), d.id.desc()).limit(limit)
        if partner_id is not None:
            query = query.where(d.partner_id == partner_id)
        if status is not None:
            query = query.where(d.status == status)
        if period is not None:
            query = query.where(d.period == period)
        if after is not None:
            query = query.where(sa.tuple_(d.created_at, d.id) < sa.tuple_(*after))
        return list((await self.session.execute(query)).all())

    async def resolve_dispute(self, dispute_id: uuid.UUID, values: dict[str, Any]) -> None:
        await self.session.execute(m.disputes.update().where(m.disputes.c.id == dispute_id).values(
            **values, version=m.disputes.c.version + 1))

    async def post_entry(self, entry: Entry) -> uuid.UUID:
        """Appends one entry; its entry id."""
        made = await self.session.execute(m.ledger.insert().values(
            partner_id=entry.partner_id, account_id=entry.account_id, sale_id=entry.sale_id,
            program_code=entry.program_code, amount=entry.amount, currency=entry.currency, kind=entry.kind.value,
            revision=entry.revision, cause=entry.cause, period=entry.period, sale_period=entry.sale_period,
        ).returning(m.ledger.c.entry_id))
        return made.scalar_one()  # type: ignore[no-any-return]

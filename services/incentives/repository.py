"""Incentives SQL: replicas, catalogue, sales, and the set-based pricing writes."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from partnerhub.timeutil import BEGINNING
from services.incentives import models as m
from services.incentives.domain import Pricing, Program, ProgramKind, Rule, SaleFacts

LOCK_PROGRAMS = "incentives:programs"


@dataclass(frozen=True)
class SaleScope:
    """Which sales a pricing pass covers; every given condition must hold."""

    sale_ids: Sequence[str] | None = None
    account_id: uuid.UUID | None = None
    partner_id: uuid.UUID | None = None
    sku: str | None = None
    booked_from: datetime | None = None
    booked_before: datetime | None = None

    def where(self) -> tuple[str, dict[str, Any]]:
        clauses: list[str] = []
        params: dict[str, Any] = {}
        if self.sale_ids is not None:
            clauses.append("s.sale_id = ANY(:sale_ids)")
            params["sale_ids"] = list(self.sale_ids)
        for name in ("account_id", "partner_id", "sku"):
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


def _as_of(table: str, key: str, value: str, sale_key: str) -> str:
    return (
        f"LEFT JOIN LATERAL (SELECT {value} FROM {table} t WHERE t.{key} = s.{sale_key} "
        f"AND t.effective_from <= s.booked_at ORDER BY t.effective_from DESC, t.id DESC LIMIT 1) AS {table} ON true"
    )


PRICING_INPUTS = f"""
SELECT s.sale_id, s.partner_id, s.account_id, s.sku, s.amount, s.currency, s.booked_at,
       s.cancelled_at IS NOT NULL AS cancelled,
       p.sku IS NOT NULL AS product_known, product_eligibility.rebate_eligible, p.category,
       account_classifications.classification, account_owners.owner_partner_id,
       partner_tiers.tier, partner_statuses.status AS partner_status,
       coalesce((SELECT array_agg(c.code) FROM partner_certifications c
                 WHERE c.partner_id = s.partner_id AND c.valid_from <= s.booked_at
                   AND (c.valid_to IS NULL OR s.booked_at < c.valid_to)), '{{}}') AS certifications
FROM sales s
LEFT JOIN products p ON p.sku = s.sku
{_as_of("product_eligibility", "sku", "rebate_eligible", "sku")}
{_as_of("account_classifications", "account_id", "classification", "account_id")}
{_as_of("account_owners", "account_id", "owner_partner_id", "account_id")}
{_as_of("partner_tiers", "partner_id", "tier", "partner_id")}
{_as_of("partner_statuses", "partner_id", "status", "partner_id")}
WHERE {{where}}
ORDER BY s.sale_id
"""

NEW_ITEMS_COLUMNS = (
    "sale_id", "program_code", "partner_id", "base_amount", "rate", "amount", "currency", "status",
    "sale_status", "classification", "tier", "explanation", "sale_period",
)


class IncentivesRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def execute(self, statement: Any, params: Any = None) -> sa.Result[Any]:
        return await self.session.execute(statement, params)

    async def try_lock(self, key: str) -> bool:
        found = await self.session.execute(
            sa.text("SELECT pg_try_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": key}
        )
        return bool(found.scalar())

    async def wake_pricer(self) -> None:
        await self.session.execute(sa.text("SELECT pg_notify('incentives_pricing', '')"))

    async def received_sales(self, limit: int) -> list[Any]:
        s = m.sales.c
        return list((await self.session.execute(
            sa.select(s.sale_id, s.account_id, s.partner_id, s.sku)
            .where(s.status == "received").order_by(s.recorded_at, s.sale_id).limit(limit)
        )).all())

    async def count_received(self) -> int:
        found = await self.session.execute(sa.text("SELECT count(*) FROM sales WHERE status = 'received'"))
        return int(found.scalar() or 0)

    async def recorded_causes(self, sale_ids: list[str]) -> dict[str, str]:
        if not sale_ids:
            return {}
        rows = await self.session.execute(
            sa.select(m.sales.c.sale_id, m.sales.c.recorded_event_id).where(m.sales.c.sale_id.in_(sale_ids))
        )
        return {row.sale_id: row.recorded_event_id for row in rows}

    async def lock(self, *keys: str, shared: bool = False) -> None:
        """Transaction-scoped advisory locks, always taken in the caller's order (programs, account, partner, sku)."""
        function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
        for key in keys:
            await self.session.execute(sa.text(f"SELECT {function}(hashtextextended(:key, 0))"), {"key": key})

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
            )
            for row, rules in await self.program_rows()
        ]

    # --- sales ----------------------------------------------------------------------------
    async def get_sale(self, sale_id: str) -> sa.Row[Any] | None:
        return (await self.session.execute(sa.select(m.sales).where(m.sales.c.sale_id == sale_id))).one_or_none()

    async def cancel_sale(self, sale_id: str, cancelled_at: datetime, event_id: str) -> bool:
        updated = await self.session.execute(
            m.sales.update()
            .where(m.sales.c.sale_id == sale_id, m.sales.c.cancelled_at.is_(None))
            .values(cancelled_at=cancelled_at, cancel_event_id=event_id)
            .returning(m.sales.c.sale_id)
        )
        return updated.scalar() is not None

    async def keep_cancellation(self, sale_id: str, cancelled_at: datetime, event_id: str) -> None:
        await self.session.execute(
            insert(m.pending_cancellations)
            .values(sale_id=sale_id, cancelled_at=cancelled_at, event_id=event_id)
            .on_conflict_do_nothing()
        )

    async def take_pending_cancellations(self, sale_ids: list[str]) -> list[Any]:
        if not sale_ids:
            return []
        return list((
            await self.session.execute(
                m.pending_cancellations.delete()
                .where(m.pending_cancellations.c.sale_id.in_(sale_ids))
                .returning(m.pending_cancellations)
            )
        ).all())

    async def add_sales(self, rows: list[dict[str, Any]]) -> set[str]:
        """Inserts the sales not recorded yet, in one statement; returns the ids it inserted."""
        columns = ("sale_id", "partner_id", "account_id", "sku", "amount", "currency", "booked_at", "sale_period",
                   "fingerprint", "status", "recorded_event_id")
        types = ("text", "uuid", "uuid", "text", "numeric", "text", "timestamptz", "text", "text", "text", "text")
        arrays = ", ".join(f"CAST(:{c} AS {t}[])" for c, t in zip(columns, types, strict=True))
        result = await self.session.execute(
            sa.text(f"INSERT INTO sales ({', '.join(columns)}) SELECT * FROM unnest({arrays}) "
                    "ON CONFLICT (sale_id) DO NOTHING RETURNING sale_id"),
            {c: [row[c] for row in rows] for c in columns},
        )
        return {row.sale_id for row in result}

    async def fingerprints(self, sale_ids: list[str]) -> dict[str, tuple[str, str]]:
        rows = await self.session.execute(
            sa.select(m.sales.c.sale_id, m.sales.c.recorded_event_id, m.sales.c.fingerprint)
            .where(m.sales.c.sale_id.in_(sale_ids))
        )
        return {row.sale_id: (row.recorded_event_id, row.fingerprint) for row in rows}

    # --- pricing --------------------------------------------------------------------------
    async def lock_and_load_facts(self, scope: SaleScope) -> list[SaleFacts]:
        """Row-locks the sales first, so a concurrent pass over the same sales waits and then sees its result."""
        where, params = scope.where()
        await self.session.execute(
            sa.text(f"SELECT s.sale_id FROM sales s WHERE {where} ORDER BY s.sale_id FOR UPDATE"), params
        )
        rows = (await self.session.execute(sa.text(PRICING_INPUTS.replace("{where}", where)), params)).all()
        return [
            SaleFacts(
                sale_id=r.sale_id,
                partner_id=r.partner_id,
                account_id=r.account_id,
                sku=r.sku,
                amount=r.amount,
                currency=r.currency,
                booked_at=r.booked_at,
                cancelled=r.cancelled,
                product_known=r.product_known,
                rebate_eligible=r.rebate_eligible,
                category=r.category,
                account_known=r.classification is not None,
                classification=r.classification,
                owner_partner_id=r.owner_partner_id,
                partner_known=r.tier is not None,
                tier=r.tier,
                partner_status=r.partner_status,
                certifications=frozenset(r.certifications),
            )
            for r in rows
        ]

    async def closed_through(self) -> str | None:
        return (await self.session.execute(sa.select(m.period_close.c.closed_through))).scalar()

    async def write_pricings(
        self, pricings: list[Pricing], cause: str | None, run_id: uuid.UUID | None, closed_through: str | None,
        first_open: str | None,
    ) -> tuple[set[str], set[str], list[dict[str, Any]]]:
        """Appends one ledger entry per changed (sale, program) and replaces the current items, set-based.

        Returns the sales whose money or status changed, the sales priced for the first time, and the
        delta per currency.
        """
        if not pricings:
            return set(), set(), []
        await self.session.execute(sa.text(
            "CREATE TEMP TABLE IF NOT EXISTS new_items (sale_id text, program_code text, partner_id uuid, "
            "base_amount numeric(18,2), rate numeric(12,6), amount numeric(18,2), currency text, status text, "
            "sale_status text, classification text, tier text, explanation text, sale_period text) "
            "ON COMMIT DELETE ROWS"
        ))
        await self.session.execute(sa.text("TRUNCATE new_items"))
        records = [
            (
                p.facts.sale_id, item.program_code or "", p.facts.partner_id, item.base_amount, item.rate,
                item.amount, p.facts.currency, item.status, p.status.value, p.facts.classification,
                p.facts.tier, item.explanation, p.facts.booked_at.strftime("%Y-%m"),
            )
            for p in pricings
            for item in p.items
        ]
        connection = await self.session.connection()
        raw = await connection.get_raw_connection()
        await raw.driver_connection.copy_records_to_table(  # type: ignore[union-attr]
            "new_items", records=records, columns=NEW_ITEMS_COLUMNS
        )
        if len(records) > 1000:
            # Planner statistics matter for large recalculations, not for one sale's pricing.
            await self.session.execute(sa.text("ANALYZE new_items"))
        params = {"cause": cause, "run_id": run_id, "closed": closed_through or "", "first_open": first_open or ""}
        first_time = {
            row.sale_id
            for row in await self.session.execute(sa.text(
                "SELECT DISTINCT n.sale_id FROM new_items n "
                "WHERE NOT EXISTS (SELECT 1 FROM accrual_items c WHERE c.sale_id = n.sale_id)"
            ))
        }
        changed = {
            row.sale_id
            for row in await self.session.execute(sa.text(
                "SELECT DISTINCT coalesce(n.sale_id, c.sale_id) AS sale_id "
                "FROM new_items n FULL JOIN (SELECT * FROM accrual_items "
                "  WHERE sale_id IN (SELECT sale_id FROM new_items)) c "
                "  ON c.sale_id = n.sale_id AND c.program_code = n.program_code "
                "WHERE n.sale_id IS NULL OR c.sale_id IS NULL OR n.amount <> c.amount OR n.status <> c.status"
            ))
        }
        delta = [
            {"currency": row.currency, "amount": row.amount}
            for row in await self.session.execute(sa.text(
                """
                WITH current_items AS (
                    SELECT sale_id, program_code, amount FROM accrual_items
                    WHERE sale_id IN (SELECT sale_id FROM new_items)
                ), diff AS (
                    SELECT coalesce(n.sale_id, c.sale_id) AS sale_id,
                           coalesce(n.program_code, c.program_code) AS program_code,
                           coalesce(n.amount, 0) - coalesce(c.amount, 0) AS amount
                    FROM new_items n FULL JOIN current_items c
                      ON c.sale_id = n.sale_id AND c.program_code = n.program_code
                ), entries AS (
                    INSERT INTO ledger (partner_id, account_id, sale_id, program_code, amount, currency, kind,
                                        revision, cause, period, sale_period, run_id)
                    SELECT s.partner_id, s.account_id, d.sale_id, nullif(d.program_code, ''), d.amount, s.currency,
                           CASE WHEN EXISTS (SELECT 1 FROM ledger l WHERE l.sale_id = d.sale_id)
                                THEN 'adjustment' ELSE 'original' END,
                           1 + (SELECT count(*) FROM ledger l WHERE l.sale_id = d.sale_id
                                AND coalesce(l.program_code, '') = d.program_code),
                           coalesce(CAST(:cause AS text), s.recorded_event_id),
                           CASE WHEN s.sale_period > :closed THEN s.sale_period ELSE :first_open END,
                           s.sale_period, :run_id
                    FROM diff d JOIN sales s ON s.sale_id = d.sale_id
                    WHERE d.amount <> 0
                    ORDER BY d.sale_id, d.program_code
                    RETURNING currency, amount
                )
                SELECT currency, sum(amount) AS amount FROM entries GROUP BY currency ORDER BY currency
                """
            ), params)
        ]
        await self.session.execute(sa.text(
            "DELETE FROM accrual_items WHERE sale_id IN (SELECT sale_id FROM new_items)"
        ))
        await self.session.execute(sa.text(
            "INSERT INTO accrual_items (sale_id, program_code, partner_id, base_amount, rate, amount, currency, "
            "status, classification, tier, explanation, sale_period) "
            "SELECT sale_id, program_code, partner_id, base_amount, rate, amount, currency, status, "
            "classification, tier, explanation, sale_period FROM new_items"
        ))
        await self.session.execute(sa.text(
            "UPDATE sales s SET status = n.sale_status "
            "FROM (SELECT DISTINCT sale_id, sale_status FROM new_items) n "
            "WHERE s.sale_id = n.sale_id AND s.status IS DISTINCT FROM n.sale_status"
        ))
        return changed, first_time, delta

    # --- business incentive programs ------------------------------------------------------
    async def replace_bip_contributions(self, rows: list[tuple[Any, ...]]) -> None:
        """Replaces the BIP contributions of the sales just priced (those in new_items)."""
        await self.session.execute(sa.text(
            "DELETE FROM bip_contributions WHERE sale_id IN (SELECT sale_id FROM new_items)"
        ))
        if rows:
            raw = await (await self.session.connection()).get_raw_connection()
            await raw.driver_connection.copy_records_to_table(  # type: ignore[union-attr]
                "bip_contributions", records=rows,
                columns=["sale_id", "program_code", "partner_id", "period", "currency", "revenue", "rate"],
            )

    async def bip_figures(self, groups: set[tuple[uuid.UUID, str, str]]) -> tuple[list[Any], list[Any]]:
        """Per (partner, program, month, currency) in the groups: revenue and rate-weighted revenue now, and
        the outcome currently booked."""
        params = {
            "partners": [g[0] for g in groups], "periods": [g[1] for g in groups], "currencies": [g[2] for g in groups],
        }
        in_groups = (
            "(partner_id, period, currency) IN (SELECT * FROM unnest(CAST(:partners AS uuid[]), "
            "CAST(:periods AS text[]), CAST(:currencies AS text[])))"
        )
        figures = (await self.session.execute(sa.text(
            "SELECT partner_id, program_code, period, currency, sum(revenue) AS revenue, "
            f"sum(rate * revenue) AS weighted FROM bip_contributions WHERE {in_groups} GROUP BY 1, 2, 3, 4"
        ), params)).all()
        booked = (await self.session.execute(sa.text(
            f"SELECT partner_id, program_code, period, currency, bonus FROM bip_totals WHERE {in_groups}"
        ), params)).all()
        return list(figures), list(booked)

    async def bip_revisions(self, keys: list[tuple[uuid.UUID, str, str, str]]) -> dict[tuple[Any, ...], int]:
        """How many ledger entries each BIP outcome (partner, program, month, currency) has so far."""
        if not keys:
            return {}
        rows = await self.session.execute(sa.text(
            "SELECT partner_id, program_code, sale_period, currency, count(*) AS entries FROM ledger "
            "WHERE sale_id IS NULL AND (partner_id, program_code, sale_period, currency) IN (SELECT * FROM unnest("
            "CAST(:partners AS uuid[]), CAST(:programs AS text[]), CAST(:periods AS text[]), "
            "CAST(:currencies AS text[]))) GROUP BY 1, 2, 3, 4"
        ), {"partners": [k[0] for k in keys], "programs": [k[1] for k in keys], "periods": [k[2] for k in keys],
            "currencies": [k[3] for k in keys]})
        return {(r.partner_id, r.program_code, r.sale_period, r.currency): r.entries for r in rows}

    async def save_bip(self, outcomes: list[dict[str, Any]], entries: list[dict[str, Any]]) -> None:
        if outcomes:
            statement = insert(m.bip_totals)
            await self.session.execute(
                statement.on_conflict_do_update(
                    index_elements=["partner_id", "program_code", "period", "currency"],
                    set_={c: statement.excluded[c] for c in ("revenue", "target", "bonus", "reached")}
                    | {"updated_at": sa.func.now()},
                ),
                outcomes,
            )
        if entries:
            await self.session.execute(m.ledger.insert(), entries)

    async def bip_progress(self, partner_id: uuid.UUID, period: str | None) -> list[sa.Row[Any]]:
        b = m.bip_totals.c
        query = sa.select(m.bip_totals).where(b.partner_id == partner_id)
        if period is not None:
            query = query.where(b.period == period)
        return list((await self.session.execute(query.order_by(b.period, b.program_code, b.currency))).all())

    # --- statements and periods -----------------------------------------------------------
    async def live_statements(self, period: str, partner_id: uuid.UUID | None) -> list[sa.Row[Any]]:
        """The statement of a still-open period as its sales bring it now, per partner and currency."""
        only = "AND partner_id = :partner_id" if partner_id is not None else ""
        return list((await self.session.execute(sa.text(f"""
            WITH figures AS (
                SELECT partner_id, currency, amount AS eligible_revenue, 0 AS rebate, 0 AS bip_bonus,
                       0 AS adjustments
                  FROM sales WHERE sale_period = :period AND status = 'accrued' {only}
                UNION ALL
                SELECT partner_id, currency, 0, amount, 0, 0
                  FROM accrual_items WHERE sale_period = :period {only}
                UNION ALL
                SELECT partner_id, currency, 0, 0, bonus, 0 FROM bip_totals WHERE period = :period {only}
                UNION ALL
                SELECT partner_id, currency, 0, 0, 0, amount
                  FROM ledger WHERE period = :period AND sale_period <> :period {only}
            )
            SELECT partner_id, currency, sum(eligible_revenue) AS eligible_revenue, sum(rebate) AS rebate,
                   sum(bip_bonus) AS bip_bonus, sum(adjustments) AS adjustments,
                   sum(rebate) + sum(bip_bonus) + sum(adjustments) AS total
              FROM figures GROUP BY partner_id, currency ORDER BY partner_id, currency
        """), {"period": period, "partner_id": partner_id})).all())

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
    async def start_run(self, values: dict[str, Any]) -> None:
        await self.session.execute(m.recalculation_runs.insert().values(**values))

    async def finish_run(self, run_id: uuid.UUID, **values: Any) -> None:
        await self.session.execute(
            m.recalculation_runs.update().where(m.recalculation_runs.c.id == run_id).values(**values)
        )

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
    ) -> list[sa.Row[Any]]:
        a = m.accrual_items.c
        query = sa.select(m.accrual_items).where(a.partner_id == partner_id).order_by(a.sale_id, a.program_code)
        if period is not None:
            query = query.where(a.sale_period == period)
        if sale_id is not None:
            query = query.where(a.sale_id == sale_id)
        if after is not None:
            query = query.where(sa.tuple_(a.sale_id, a.program_code) > sa.tuple_(*after))
        return list((await self.session.execute(query.limit(limit))).all())

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

    async def current_items(self, sale_ids: Sequence[str]) -> dict[str, list[sa.Row[Any]]]:
        rows = await self.session.execute(
            sa.select(m.accrual_items)
            .where(m.accrual_items.c.sale_id.in_(list(sale_ids)))
            .order_by(m.accrual_items.c.sale_id, m.accrual_items.c.program_code)
        )
        items: dict[str, list[sa.Row[Any]]] = {}
        for row in rows:
            items.setdefault(row.sale_id, []).append(row)
        return items


def money_sum(values: Iterable[Decimal]) -> Decimal:
    return sum(values, Decimal("0.00"))

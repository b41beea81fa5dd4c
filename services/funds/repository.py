"""Funds SQL. Locks are always taken in one order: request, then its claim, then fund, then partner
balances by (partner_id, fund_code); accrual events take their sales by sale_id, then balances. So
approvals, claims, sweeps and earned credits never deadlock each other. Fund rows are locked FOR NO KEY
UPDATE, which lets the foreign-key checks of balance, credit and ledger inserts (FOR KEY SHARE) pass
beside a held fund lock. Text in a lock order compares byte by byte (COLLATE "C"), as Python sorts it,
whatever the database's collation."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.funds.domain import (
    AccrualFund,
    AccrualPosting,
    ClaimDecision,
    Credit,
    EarnedMove,
    LedgerEntry,
    SaleAccrual,
    SaleFacts,
)
from services.funds.models import (
    fund_claims,
    fund_credits,
    fund_ledger,
    fund_requests,
    funds,
    partner_balances,
    partners,
    sale_revenue,
)

# Creating a fund reads every known sale while accrual events write them: the two must not interleave.
LOCK_CATALOGUE = "funds:catalogue"

Row = sa.Row[*tuple[Any, ...]]


@dataclass(frozen=True)
class Rows:
    """Rows of named tuples passed to one multi-row statement as one array per column, read back by unnest()."""

    prefix: str
    fields: tuple[str, ...]
    columns: tuple[str, ...]
    types: tuple[str, ...]

    def unnest(self, *, ordinality: bool = False) -> str:
        arrays = ", ".join(f"CAST(:{self.prefix}{c} AS {t}[])" for c, t in zip(self.columns, self.types, strict=True))
        if ordinality:
            return f"unnest({arrays}) WITH ORDINALITY AS u({', '.join(self.columns)}, n)"
        return f"unnest({arrays}) AS u({', '.join(self.columns)})"

    def values(self) -> str:
        return ", ".join(f"u.{c}" for c in self.columns)

    def arrays(self, rows: Sequence[tuple[Any, ...]]) -> dict[str, list[Any]]:
        by_field: list[tuple[Any, ...]] = list(zip(*rows, strict=True)) if rows else [()] * len(self.fields)
        return {self.prefix + c: list(by_field[self.fields.index(c)]) for c in self.columns}


SALE_COLUMNS = ("sale_id", "partner_id", "currency", "booked_at", "amount", "status", "eligible_revenue",
                "event_id", "event_time")
SALE_TYPES = ("text", "uuid", "text", "timestamptz", "numeric", "text", "numeric", "text", "timestamptz")
NEW_SALES = Rows("new_", SaleAccrual._fields, SALE_COLUMNS, SALE_TYPES)
KNOWN_SALES = Rows("old_", SaleAccrual._fields, SALE_COLUMNS, SALE_TYPES)
CREDITS = Rows("credit_", Credit._fields, Credit._fields, ("text", "text", "uuid", "numeric"))
EARNED = Rows("earned_", EarnedMove._fields, EarnedMove._fields, ("uuid", "text", "numeric"))
ENTRIES = Rows("entry_", LedgerEntry._fields, LedgerEntry._fields,
               ("uuid", "text", "text", "numeric", "text", "text", "text", "uuid", "uuid"))

LOCK_SALES = sa.text(
    "SELECT s.sale_id, s.partner_id, s.currency, s.booked_at, c.fund_code, c.amount "
    "FROM sale_revenue s LEFT JOIN fund_credits c ON c.sale_id = s.sale_id "
    'WHERE s.sale_id = ANY(CAST(:ids AS text[])) ORDER BY s.sale_id COLLATE "C" FOR UPDATE OF s'
)
# Data-modifying CTEs all run, whether read or not: five multi-row writes in one round trip.
SAVE_ACCRUALS = sa.text(f"""
    WITH new_sales AS (
        INSERT INTO sale_revenue ({", ".join(SALE_COLUMNS)})
        SELECT {NEW_SALES.values()} FROM {NEW_SALES.unnest()} ORDER BY u.sale_id COLLATE "C"
    ), known_sales AS (
        UPDATE sale_revenue s SET {", ".join(f"{c} = u.{c}" for c in SALE_COLUMNS[1:])}, updated_at = now()
        FROM {KNOWN_SALES.unnest()} WHERE s.sale_id = u.sale_id
    ), credits AS (
        INSERT INTO fund_credits ({", ".join(CREDITS.columns)})
        SELECT {CREDITS.values()} FROM {CREDITS.unnest()}
        ON CONFLICT (fund_code, sale_id) DO UPDATE SET amount = EXCLUDED.amount, updated_at = now()
    ), balances AS (
        INSERT INTO partner_balances (partner_id, fund_code, earned, per_partner_limit)
        SELECT u.partner_id, u.fund_code, u.delta, f.per_partner_limit
        FROM {EARNED.unnest()} JOIN funds f ON f.code = u.fund_code
        ORDER BY u.partner_id, u.fund_code COLLATE "C"
        ON CONFLICT (partner_id, fund_code) DO UPDATE
        SET earned = partner_balances.earned + EXCLUDED.earned, updated_at = now()
    )
    INSERT INTO fund_ledger ({", ".join(ENTRIES.columns)})
    SELECT {ENTRIES.values()} FROM {ENTRIES.unnest(ordinality=True)} ORDER BY u.n
""")


class FundsRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lock(self, name: str, *, shared: bool = False) -> None:
        function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
        await self.session.execute(sa.text(f"SELECT {function}(hashtextextended(:name, 0))"), {"name": name})

    # --- funds ----------------------------------------------------------------------------------
    async def add_fund(self, values: dict[str, Any]) -> bool:
        result = await self.session.execute(
            insert(funds).values(**values).on_conflict_do_nothing(index_elements=["code"]).returning(funds.c.code)
        )
        return result.scalar() is not None

    def _fund_view(self) -> sa.Select[Any]:
        totals = (
            sa.select(
                partner_balances.c.fund_code,
                sa.func.sum(partner_balances.c.earned).label("earned"),
                sa.func.sum(partner_balances.c.lapsed).label("lapsed"),
            )
            .group_by(partner_balances.c.fund_code)
            .subquery()
        )
        return sa.select(
            funds,
            sa.func.coalesce(totals.c.earned, 0).label("earned"),
            sa.func.coalesce(totals.c.lapsed, 0).label("lapsed"),
        ).select_from(funds.outerjoin(totals, totals.c.fund_code == funds.c.code))

    async def get_fund(self, code: str) -> Row | None:
        return (await self.session.execute(self._fund_view().where(funds.c.code == code))).one_or_none()

    async def list_funds(self, *, open_at: datetime | None, after: str | None, limit: int) -> list[Row]:
        query = self._fund_view()
        if open_at is not None:
            query = query.where(funds.c.valid_from <= open_at, funds.c.valid_to > open_at)
        if after is not None:
            query = query.where(funds.c.code > after)
        return list((await self.session.execute(query.order_by(funds.c.code).limit(limit))).all())

    async def lock_fund(self, code: str) -> Row | None:
        return (
            await self.session.execute(sa.select(funds).where(funds.c.code == code).with_for_update(key_share=True))
        ).one_or_none()

    async def lock_funds(self, codes: Sequence[str]) -> None:
        await self.session.execute(
            sa.select(funds.c.code)
            .where(funds.c.code.in_(sorted(set(codes))))
            .order_by(funds.c.code)
            .with_for_update(key_share=True)
        )

    async def move_fund(self, code: str, *, committed: Decimal = Decimal(0), paid: Decimal = Decimal(0)) -> None:
        """Adds to the fund's committed and paid; the CHECK constraint refuses any over-commitment."""
        await self.session.execute(
            funds.update()
            .where(funds.c.code == code)
            .values(
                committed=funds.c.committed + committed,
                paid=funds.c.paid + paid,
                updated_at=sa.func.now(),
                version=funds.c.version + 1,
            )
        )

    async def commit_to_fund(self, code: str, amount: Decimal) -> bool:
        """Commits `amount` only if it fits the budget: a conditional update, safe under any concurrency."""
        result = await self.session.execute(
            funds.update()
            .where(funds.c.code == code, funds.c.committed + funds.c.paid + amount <= funds.c.budget)
            .values(committed=funds.c.committed + amount, updated_at=sa.func.now(), version=funds.c.version + 1)
            .returning(funds.c.code)
        )
        return result.scalar() is not None

    async def accrual_funds_due_to_lapse(self, now: datetime) -> list[str]:
        return list(
            (
                await self.session.execute(
                    sa.select(funds.c.code)
                    .where(funds.c.accrual_rate.is_not(None), funds.c.lapse_unused, funds.c.valid_to <= now)
                    .order_by(funds.c.code)
                )
            ).scalars()
        )

    # --- partner balances -----------------------------------------------------------------------
    async def lock_balance(self, partner_id: uuid.UUID, fund_code: str, limit: Decimal | None) -> Row:
        await self.session.execute(
            insert(partner_balances)
            .values(partner_id=partner_id, fund_code=fund_code, per_partner_limit=limit)
            .on_conflict_do_nothing(index_elements=["partner_id", "fund_code"])
        )
        return (
            await self.session.execute(
                sa.select(partner_balances)
                .where(partner_balances.c.partner_id == partner_id, partner_balances.c.fund_code == fund_code)
                .with_for_update()
            )
        ).one()

    async def lock_balances(self, keys: Sequence[tuple[uuid.UUID, str]]) -> None:
        for partner_id, fund_code in sorted(set(keys), key=lambda k: (str(k[0]), k[1])):
            await self.session.execute(
                sa.select(partner_balances.c.partner_id)
                .where(partner_balances.c.partner_id == partner_id, partner_balances.c.fund_code == fund_code)
                .with_for_update()
            )

    async def commit_to_balance(self, partner_id: uuid.UUID, fund_code: str, amount: Decimal, accrual: bool) -> bool:
        """Commits `amount` only if it fits the partner's earned balance (accrual funds) and limit."""
        b = partner_balances.c
        conditions = [b.partner_id == partner_id, b.fund_code == fund_code]
        conditions.append(sa.or_(b.per_partner_limit.is_(None), b.committed + b.paid + amount <= b.per_partner_limit))
        if accrual:
            conditions.append(b.committed + b.paid + b.lapsed + amount <= b.earned)
        result = await self.session.execute(
            partner_balances.update()
            .where(*conditions)
            .values(committed=b.committed + amount, updated_at=sa.func.now())
            .returning(b.partner_id)
        )
        return result.scalar() is not None

    async def move_balance(
        self,
        partner_id: uuid.UUID,
        fund_code: str,
        *,
        earned: Decimal = Decimal(0),
        committed: Decimal = Decimal(0),
        paid: Decimal = Decimal(0),
        lapsed: Decimal = Decimal(0),
    ) -> None:
        b = partner_balances.c
        await self.session.execute(
            partner_balances.update()
            .where(b.partner_id == partner_id, b.fund_code == fund_code)
            .values(
                earned=b.earned + earned,
                committed=b.committed + committed,
                paid=b.paid + paid,
                lapsed=b.lapsed + lapsed,
                updated_at=sa.func.now(),
            )
        )

    async def balances(self, partner_id: uuid.UUID, *, open_at: datetime, after: str | None, limit: int) -> list[Row]:
        """The partner's figures in every fund it has a balance in, and zeros in the other open funds."""
        b = sa.select(partner_balances).where(partner_balances.c.partner_id == partner_id).subquery()
        query = (
            sa.select(
                funds.c.code.label("fund_code"),
                funds.c.kind,
                funds.c.currency,
                funds.c.accrual_rate,
                funds.c.per_partner_limit,
                funds.c.budget,
                funds.c.committed.label("fund_committed"),
                funds.c.paid.label("fund_paid"),
                sa.func.coalesce(b.c.earned, 0).label("earned"),
                sa.func.coalesce(b.c.committed, 0).label("committed"),
                sa.func.coalesce(b.c.paid, 0).label("paid"),
                sa.func.coalesce(b.c.lapsed, 0).label("lapsed"),
            )
            .select_from(funds.outerjoin(b, b.c.fund_code == funds.c.code))
            .where(
                sa.or_(
                    b.c.fund_code.is_not(None),
                    sa.and_(funds.c.valid_from <= open_at, funds.c.valid_to > open_at),
                )
            )
        )
        if after is not None:
            query = query.where(funds.c.code > after)
        return list((await self.session.execute(query.order_by(funds.c.code).limit(limit))).all())

    async def balances_to_lapse(self, codes: Sequence[str]) -> list[Row]:
        """Balances of closed accrual funds whose lapsed amount is not yet what is unused; locked in order."""
        b = partner_balances.c
        target = sa.func.greatest(b.earned - b.committed - b.paid, 0)
        return list(
            (
                await self.session.execute(
                    sa.select(partner_balances)
                    .where(b.fund_code.in_(list(codes)), b.lapsed != target)
                    .order_by(b.partner_id, b.fund_code.collate("C"))
                    .with_for_update()
                )
            ).all()
        )

    # --- sales and credits ----------------------------------------------------------------------
    async def lock_sales(self, sale_ids: Sequence[str]) -> tuple[dict[str, SaleFacts], dict[str, dict[str, Decimal]]]:
        """Row-locks the sales already replicated, in sale_id order; returns their facts and what each of them
        earns now per fund. Their credits are written only under these locks."""
        rows = await self.session.execute(LOCK_SALES, {"ids": list(sale_ids)})
        known: dict[str, SaleFacts] = {}
        credited: dict[str, dict[str, Decimal]] = {}
        for r in rows:
            known[r.sale_id] = SaleFacts(r.partner_id, r.currency, r.booked_at)
            if r.fund_code is not None:
                credited.setdefault(r.sale_id, {})[r.fund_code] = r.amount
        return known, credited

    async def accrual_funds(self, currencies: Sequence[str]) -> list[AccrualFund]:
        rows = await self.session.execute(
            sa.select(funds.c.code, funds.c.currency, funds.c.valid_from, funds.c.valid_to, funds.c.accrual_rate)
            .where(funds.c.accrual_rate.is_not(None), funds.c.currency.in_(list(currencies)))
            .order_by(funds.c.code)
        )
        return [AccrualFund(r.code, r.currency, r.valid_from, r.valid_to, r.accrual_rate) for r in rows]

    async def save_accruals(self, posting: AccrualPosting, known: Collection[str]) -> None:
        """Writes what a run of accrual events changed in one statement: the new sales (inserted in sale_id
        order; a sale another transaction inserted meanwhile fails the run, which is then retried), the known
        sales' latest state, the credits, the earned balances (upserted in their lock order, each new one with
        its fund's per-partner limit) and the ledger entries, in the order given."""
        new = [s for s in posting.sales if s.sale_id not in known]
        old = [s for s in posting.sales if s.sale_id in known]
        await self.session.execute(
            SAVE_ACCRUALS,
            {
                **NEW_SALES.arrays(new),
                **KNOWN_SALES.arrays(old),
                **CREDITS.arrays(posting.credits),
                **EARNED.arrays(posting.earned),
                **ENTRIES.arrays(posting.entries),
            },
        )

    async def eligible_sales(self, currency: str, valid_from: datetime, valid_to: datetime) -> list[Row]:
        s = sale_revenue.c
        return list(
            (
                await self.session.execute(
                    sa.select(s.sale_id, s.partner_id, s.eligible_revenue, s.event_id)
                    .where(
                        s.currency == currency,
                        s.booked_at >= valid_from,
                        s.booked_at < valid_to,
                        s.eligible_revenue > 0,
                    )
                    .order_by(s.sale_id)
                )
            ).all()
        )

    async def add_credits(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            await self.session.execute(fund_credits.insert(), rows)

    async def open_balances_from_credits(self, fund_code: str, limit: Decimal | None) -> None:
        """A new accrual fund: one balance per partner, earned = the sum of its sales' credits."""
        await self.session.execute(
            sa.text(
                "INSERT INTO partner_balances (partner_id, fund_code, earned, per_partner_limit) "
                "SELECT partner_id, fund_code, sum(amount), :limit FROM fund_credits "
                "WHERE fund_code = :code GROUP BY partner_id, fund_code"
            ),
            {"code": fund_code, "limit": limit},
        )

    async def ledger_from_credits(self, fund_code: str, cause: str) -> None:
        await self.session.execute(
            sa.text(
                "INSERT INTO fund_ledger (partner_id, fund_code, kind, amount, sale_id, cause, cause_type) "
                "SELECT partner_id, fund_code, 'credit', amount, sale_id, :cause, 'fund.created' "
                "FROM fund_credits WHERE fund_code = :code AND amount <> 0 ORDER BY partner_id, sale_id"
            ),
            {"code": fund_code, "cause": cause},
        )

    # --- requests and claims --------------------------------------------------------------------
    async def add_request(self, values: dict[str, Any]) -> None:
        await self.session.execute(fund_requests.insert().values(**values))

    async def get_request(self, request_id: uuid.UUID, *, lock: bool = False) -> Row | None:
        query = sa.select(fund_requests).where(fund_requests.c.id == request_id)
        if lock:
            query = query.with_for_update()
        return (await self.session.execute(query)).one_or_none()

    async def update_request(self, request_id: uuid.UUID, **values: Any) -> None:
        await self.session.execute(
            fund_requests.update()
            .where(fund_requests.c.id == request_id)
            .values(**values, updated_at=sa.func.now(), version=fund_requests.c.version + 1)
        )

    async def resubmission_exists(self, request_id: uuid.UUID) -> bool:
        found = await self.session.execute(
            sa.select(fund_requests.c.id).where(fund_requests.c.resubmission_of == request_id)
        )
        return found.scalar() is not None

    async def search_requests(
        self,
        *,
        partner_id: uuid.UUID | None,
        status: str | None,
        fund_code: str | None,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[Row]:
        r = fund_requests.c
        query = sa.select(fund_requests)
        if partner_id is not None:
            query = query.where(r.partner_id == partner_id)
        if status is not None:
            query = query.where(r.status == status)
        if fund_code is not None:
            query = query.where(r.fund_code == fund_code)
        if after is not None:
            query = query.where(sa.tuple_(r.created_at, r.id) > sa.tuple_(*after))
        return list((await self.session.execute(query.order_by(r.created_at, r.id).limit(limit))).all())

    async def overdue_requests(self, now: datetime, limit: int) -> list[Row]:
        """Approved requests past their claim deadline, locked; those another transaction holds wait a tick."""
        r = fund_requests.c
        return list(
            (
                await self.session.execute(
                    sa.select(fund_requests)
                    .where(r.status == "approved", r.claim_deadline < now)
                    .order_by(r.id)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            ).all()
        )

    async def lock_claim_and_request(self, claim_id: uuid.UUID) -> tuple[Row, Row] | None:
        """The claim and the request it draws on, locked in the lock order: the request, then the claim."""
        request = (
            await self.session.execute(
                sa.select(fund_requests)
                .where(fund_requests.c.id == sa.select(fund_claims.c.request_id)
                       .where(fund_claims.c.id == claim_id).scalar_subquery())
                .with_for_update()
            )
        ).one_or_none()
        if request is None:
            return None
        claim = await self.get_claim(claim_id, lock=True)
        assert claim is not None
        return request, claim

    async def save_claim_decision(
        self, request: Row, claim_id: uuid.UUID, decision: ClaimDecision, *, decided_by: str, reason: str | None,
        decided_at: datetime,
    ) -> tuple[Row, Row]:
        """Writes a decided claim: the fund, then the partner's balance (the lock order), the request, the claim
        and the ledger; returns the claim and the request as saved."""
        money = decision.money
        if money.moves:
            await self.move_fund(request.fund_code, committed=money.committed, paid=money.paid)
            await self.move_balance(request.partner_id, request.fund_code, committed=money.committed, paid=money.paid)
        saved_request = (
            await self.session.execute(
                fund_requests.update()
                .where(fund_requests.c.id == request.id)
                .values(claimed=decision.claimed, paid=decision.paid, released=decision.released,
                        updated_at=sa.func.now(), version=fund_requests.c.version + 1)
                .returning(fund_requests)
            )
        ).one()
        saved_claim = (
            await self.session.execute(
                fund_claims.update()
                .where(fund_claims.c.id == claim_id)
                .values(status=decision.status.value, decision_reason=reason, decided_by=decided_by,
                        decided_at=decided_at, paid_at=decision.paid_at, updated_at=sa.func.now(),
                        version=fund_claims.c.version + 1)
                .returning(fund_claims)
            )
        ).one()
        await self.post(decision.entries)
        return saved_claim, saved_request

    async def add_claim(self, values: dict[str, Any]) -> None:
        await self.session.execute(fund_claims.insert().values(**values))

    async def get_claim(self, claim_id: uuid.UUID, *, lock: bool = False) -> Row | None:
        query = sa.select(fund_claims).where(fund_claims.c.id == claim_id)
        if lock:
            query = query.with_for_update()
        return (await self.session.execute(query)).one_or_none()

    async def update_claim(self, claim_id: uuid.UUID, **values: Any) -> None:
        await self.session.execute(
            fund_claims.update()
            .where(fund_claims.c.id == claim_id)
            .values(**values, updated_at=sa.func.now(), version=fund_claims.c.version + 1)
        )

    async def claims_of(self, request_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[Row]]:
        if not request_ids:
            return {}
        rows = await self.session.execute(
            sa.select(fund_claims)
            .where(fund_claims.c.request_id.in_(list(request_ids)))
            .order_by(fund_claims.c.created_at, fund_claims.c.id)
        )
        grouped: dict[uuid.UUID, list[Row]] = {}
        for row in rows.all():
            grouped.setdefault(row.request_id, []).append(row)
        return grouped

    async def search_claims(
        self,
        *,
        partner_id: uuid.UUID | None,
        status: str | None,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[Row]:
        c = fund_claims.c
        query = sa.select(fund_claims)
        if partner_id is not None:
            query = query.where(c.partner_id == partner_id)
        if status is not None:
            query = query.where(c.status == status)
        if after is not None:
            query = query.where(sa.tuple_(c.created_at, c.id) > sa.tuple_(*after))
        return list((await self.session.execute(query.order_by(c.created_at, c.id).limit(limit))).all())

    # --- ledger ---------------------------------------------------------------------------------
    async def post(self, entries: Sequence[LedgerEntry]) -> None:
        """Appends to the ledger in the given order, in one COPY (runs in the transaction the session began)."""
        if not entries:
            return
        raw = await (await self.session.connection()).get_raw_connection()
        await raw.driver_connection.copy_records_to_table(  # type: ignore[union-attr]
            "fund_ledger", records=list(entries), columns=list(LedgerEntry._fields)
        )

    async def ledger(
        self, partner_id: uuid.UUID, *, fund_code: str | None, after: int | None, limit: int
    ) -> list[Row]:
        query = (
            sa.select(fund_ledger, funds.c.currency)
            .select_from(fund_ledger.join(funds, funds.c.code == fund_ledger.c.fund_code))
            .where(fund_ledger.c.partner_id == partner_id)
        )
        if fund_code is not None:
            query = query.where(fund_ledger.c.fund_code == fund_code)
        if after is not None:
            query = query.where(fund_ledger.c.id > after)
        return list((await self.session.execute(query.order_by(fund_ledger.c.id).limit(limit))).all())

    # --- partner replica ------------------------------------------------------------------------
    async def partner_status(self, partner_id: uuid.UUID) -> str | None:
        return (
            await self.session.execute(sa.select(partners.c.status).where(partners.c.id == partner_id))
        ).scalar()

    async def replicate_partner(
        self, partner_id: uuid.UUID, status: str, event_id: str, changed_at: datetime | None
    ) -> None:
        """Events about one partner arrive in order (one key, one partition): the latest one wins."""
        statement = insert(partners).values(id=partner_id, status=status, event_id=event_id, changed_at=changed_at)
        await self.session.execute(
            statement.on_conflict_do_update(
                index_elements=["id"],
                set_={
                    "status": status,
                    "event_id": event_id,
                    "changed_at": sa.func.coalesce(statement.excluded.changed_at, partners.c.changed_at),
                    "updated_at": sa.func.now(),
                },
            )
        )

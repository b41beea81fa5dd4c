"""Incentives routes (CONTRACT §5)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from partnerhub.auth import Admin, AdminOrPartner, Anyone, PartnerOnly, System, ensure_partner_scope
from partnerhub.exports import CSV, JSON, PDF, Table, csv_bytes, pdf_bytes, preferred
from partnerhub.http import (
    Cursor,
    IdempotencyKey,
    IfMatch,
    Limit,
    Page,
    decode_cursor,
    encode_cursor,
    idempotent,
    json_response,
    time_and_id,
)
from partnerhub.money import format_money
from partnerhub.problems import Problem
from partnerhub.service import Ctx
from partnerhub.types import Code, Currency
from services.incentives import usecases
from services.incentives.domain import ONE, ItemView, explain
from services.incentives.domain import Program as DomainProgram
from services.incentives.repository import IncentivesRepository
from services.incentives.schemas import (
    PERIOD_PATTERN,
    AcceptDispute,
    Accrual,
    BipProgress,
    CancelIn,
    Dispute,
    DisputeDecisionIn,
    DisputeIn,
    FxRateChanged,
    FxRateIn,
    FxTimeline,
    FxTimelines,
    LedgerEntry,
    PeriodClosed,
    Product,
    ProductIn,
    Program,
    ProgramEnd,
    ProgramIn,
    RecalculationRun,
    SaleAccepted,
    SaleIn,
    SaleView,
    Statement,
    StatementLine,
)

router = APIRouter()
Period = Annotated[str | None, Query(pattern=PERIOD_PATTERN, description="calendar month YYYY-MM")]
Sku = Annotated[Code, Path()]


def _cursor_values(cursor: str | None, size: int) -> list[Any] | None:
    values = decode_cursor(cursor)
    if values is not None and len(values) != size:
        raise Problem(422, detail="the cursor is not one this service issued")
    return values


# --- products -----------------------------------------------------------------------------------
@router.put("/products/{sku}", response_model=Product, tags=["products"], summary="Create or change a product",
            responses={201: {"model": Product, "description": "The product was created"}})
async def put_product(sku: Sku, body: ProductIn, ctx: Ctx, principal: Admin, if_match: IfMatch = None) -> JSONResponse:
    async with ctx.db.transaction() as tx:
        product, created = await usecases.put_product(tx, sku, body, if_match)
    return json_response(Product.model_validate(product), 201 if created else 200, product["version"])


@router.get("/products", response_model=Page[Product], tags=["products"], summary="The published product list")
async def list_products(
    ctx: Ctx, principal: Anyone, rebate_eligible: bool | None = None, limit: Limit = 50, cursor: Cursor = None
) -> Page[Product]:
    after = _cursor_values(cursor, 1)
    async with ctx.db.transaction() as tx:
        rows = await IncentivesRepository(tx.session).list_products(
            rebate_eligible, str(after[0]) if after else None, limit + 1
        )
    page = [Product.model_validate(dict(r._mapping)) for r in rows[:limit]]
    return Page[Product](items=page, next_cursor=encode_cursor(page[-1].sku) if len(rows) > limit else None)


@router.get("/products/{sku}", response_model=Product, tags=["products"], summary="One product")
async def get_product(sku: Sku, ctx: Ctx, principal: Anyone) -> JSONResponse:
    async with ctx.db.transaction() as tx:
        row = await IncentivesRepository(tx.session).get_product(sku)
    if row is None:
        raise Problem(404, detail=f"product {sku!r} was not found")
    return json_response(Product.model_validate(dict(row._mapping)), etag_version=row.version)


# --- programs -----------------------------------------------------------------------------------
@router.post("/programs", status_code=201, response_model=Program, tags=["programs"],
             summary="Create a program; prices the sales already recorded in its window")
async def create_program(
    body: ProgramIn, request: Request, ctx: Ctx, principal: Admin, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    async def operation(tx):  # type: ignore[no-untyped-def]
        program = await usecases.create_program(tx, body)
        return Program.model_validate(program), program["version"]

    return await idempotent(ctx.db, request, idempotency_key, body, operation)


@router.get("/programs", response_model=Page[Program], tags=["programs"], summary="Programs partners can earn")
async def list_programs(ctx: Ctx, principal: Anyone, limit: Limit = 50, cursor: Cursor = None) -> Page[Program]:
    after = _cursor_values(cursor, 1)
    async with ctx.db.transaction() as tx:
        rows = await IncentivesRepository(tx.session).program_rows()
    programs = [
        Program.model_validate({**row._mapping, "rules": [dict(r._mapping) for r in rules]})
        for row, rules in rows
        if after is None or row.code > str(after[0])
    ]
    page = programs[:limit]
    return Page[Program](items=page, next_cursor=encode_cursor(page[-1].code) if len(programs) > limit else None)


@router.get("/programs/{code}", response_model=Program, tags=["programs"], summary="One program")
async def get_program(code: Code, ctx: Ctx, principal: Anyone) -> JSONResponse:
    async with ctx.db.transaction() as tx:
        program = await usecases.get_program(tx, code)
    return json_response(Program.model_validate(program), etag_version=program["version"])


@router.patch("/programs/{code}", response_model=Program, tags=["programs"], summary="End a program earlier")
async def end_program(
    code: Code, body: ProgramEnd, ctx: Ctx, principal: Admin, if_match: IfMatch = None
) -> JSONResponse:
    async with ctx.db.transaction() as tx:
        program = await usecases.end_program(tx, code, body.valid_to, if_match)
    return json_response(Program.model_validate(program), etag_version=program["version"])


# --- exchange rates -----------------------------------------------------------------------------
CurrencyPath = Annotated[Currency, Path(description="ISO 4217")]


@router.put("/fx-rates/{base}/{quote}", response_model=FxRateChanged, tags=["fx-rates"],
            summary="Enter or correct the rate of a pair from a moment on; reprices the sales it governs")
async def put_fx_rate(base: CurrencyPath, quote: CurrencyPath, body: FxRateIn, ctx: Ctx, principal: Admin
                      ) -> FxRateChanged:
    async with ctx.db.transaction() as tx:
        changed = await usecases.put_fx_rate(tx, base, quote, body.rate, body.effective_from, principal.sub)
    return FxRateChanged.model_validate(changed)


@router.get("/fx-rates", response_model=FxTimelines, tags=["fx-rates"],
            summary="Exchange-rate timelines: the rates that hold, or with history=true every rate entered")
async def list_fx_rates(ctx: Ctx, principal: Anyone, base: Currency | None = None, quote: Currency | None = None,
                        history: bool = False) -> FxTimelines:
    async with ctx.db.transaction() as tx:
        return FxTimelines(items=[FxTimeline.model_validate(t)
                                  for t in await usecases.fx_timelines(tx, base, quote, history)])


# --- sales --------------------------------------------------------------------------------------
@router.post("/sales", status_code=202, response_model=SaleAccepted, tags=["sales"],
             summary="Record a sale (same as a sale.recorded event); idempotent by sale_id; priced moments later")
async def record_sale(
    body: SaleIn, request: Request, ctx: Ctx, principal: System, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    async def operation(tx):  # type: ignore[no-untyped-def]
        try:
            outcome = await usecases.receive_sale(tx, body, str(uuid.uuid4()))
        except usecases.SaleConflict as exc:
            raise usecases.sale_problem(exc) from exc
        sale = await IncentivesRepository(tx.session).get_sale(body.sale_id)
        status = sale.status if sale is not None else None
        return SaleAccepted(sale_id=body.sale_id, outcome=outcome, status=status), None

    return await idempotent(ctx.db, request, idempotency_key, body, operation, status_code=202)


@router.post("/sales/{sale_id}/cancel", status_code=202, tags=["sales"],
             summary="Cancel a sale (same as a sale.cancelled event): its accruals are reversed")
async def cancel_sale(sale_id: Code, body: CancelIn, ctx: Ctx, principal: System) -> JSONResponse:
    async with ctx.db.transaction() as tx:
        outcome = await usecases.cancel_sale(tx, sale_id, body.cancelled_at, str(uuid.uuid4()))
    return json_response({"sale_id": sale_id, "outcome": outcome}, 202)


@router.get("/sales/{sale_id}", response_model=SaleView, tags=["sales"],
            summary="One sale: its status, its items, and why it could not be priced if it could not")
async def get_sale(sale_id: Code, ctx: Ctx, principal: Anyone) -> SaleView:
    async with ctx.db.transaction() as tx:
        repo = IncentivesRepository(tx.session)
        sale = await repo.get_sale(sale_id)
        if sale is None or not principal.may_see_partner(sale.partner_id):
            raise Problem(404, detail=f"sale {sale_id!r} was not found")
        views = await repo.sale_items(sale_id)
        programs = {p.code: p for p in await repo.programs()} if views else {}
    return SaleView.model_validate({
        **sale._mapping,
        "status": "cancelled" if sale.cancelled_at is not None else sale.status,
        "items": [accrual_view(view, programs) for view in views],
    })


def accrual_view(view: ItemView, programs: dict[str, DomainProgram]) -> Accrual:
    base_currency = view.base_currency or view.currency
    converted = base_currency != view.currency
    return Accrual(
        sale_id=view.sale_id, program_code=view.program_code, base_amount=view.base_amount,
        base_currency=base_currency, fx_rate=view.fx_rate if converted else ONE, rate=view.rate,
        amount=view.amount, currency=view.currency, status=view.status, classification=view.classification,
        tier=view.tier, explanation=explain(view, programs.get(view.program_code or "")), period=view.sale_period,
    )


# --- accruals and ledger ------------------------------------------------------------------------
@router.get("/partners/{partner_id}/accruals", response_model=Page[Accrual], tags=["accruals"],
            summary="Current value of every (sale, program) of a partner")
async def list_accruals(
    partner_id: uuid.UUID, ctx: Ctx, principal: AdminOrPartner, period: Period = None, sale_id: Code | None = None,
    limit: Limit = 50, cursor: Cursor = None,
) -> Page[Accrual]:
    ensure_partner_scope(principal, partner_id)
    after = _cursor_values(cursor, 2)
    async with ctx.db.transaction() as tx:
        rows = await IncentivesRepository(tx.session).accruals(
            partner_id, period, sale_id, (str(after[0]), str(after[1])) if after else None, limit + 1
        )
        programs = {p.code: p for p in await IncentivesRepository(tx.session).programs()}
    items = [accrual_view(view, programs) for view in rows[:limit]]
    last = rows[limit - 1] if len(rows) > limit else None
    return Page[Accrual](
        items=items, next_cursor=encode_cursor(last.sale_id, last.program_code or "") if last else None
    )


@router.get("/partners/{partner_id}/ledger", response_model=Page[LedgerEntry], tags=["accruals"],
            summary="Append-only ledger entries: originals and adjustments, each with its cause")
async def list_ledger(
    partner_id: uuid.UUID, ctx: Ctx, principal: AdminOrPartner, period: Period = None, sale_id: Code | None = None,
    limit: Limit = 50, cursor: Cursor = None,
) -> Page[LedgerEntry]:
    ensure_partner_scope(principal, partner_id)
    after = _cursor_values(cursor, 1)
    async with ctx.db.transaction() as tx:
        rows = await IncentivesRepository(tx.session).ledger(
            partner_id, period, sale_id, int(after[0]) if after else None, limit + 1
        )
    items = [LedgerEntry.model_validate({**r._mapping, "id": r.entry_id}) for r in rows[:limit]]
    return Page[LedgerEntry](
        items=items, next_cursor=encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
    )


@router.get("/recalculations", response_model=Page[RecalculationRun], tags=["recalculations"],
            summary="Recalculation runs: trigger, sales recomputed, delta, status")
async def list_recalculations(
    ctx: Ctx, principal: Admin, account_id: uuid.UUID | None = None, partner_id: uuid.UUID | None = None,
    limit: Limit = 50, cursor: Cursor = None,
) -> Page[RecalculationRun]:
    after = _cursor_values(cursor, 2)
    async with ctx.db.transaction() as tx:
        rows = await IncentivesRepository(tx.session).list_runs(
            account_id, partner_id, time_and_id(after),
            limit + 1,
        )
    items = [RecalculationRun.model_validate(dict(r._mapping)) for r in rows[:limit]]
    last = rows[limit - 1] if len(rows) > limit else None
    return Page[RecalculationRun](
        items=items, next_cursor=encode_cursor(last.started_at.isoformat(), str(last.id)) if last else None
    )


# --- BIP, statements and periods ----------------------------------------------------------------
PeriodPath = Annotated[str, Path(pattern=PERIOD_PATTERN, description="calendar month YYYY-MM")]


@router.get("/partners/{partner_id}/bip", response_model=list[BipProgress], tags=["accruals"],
            summary="Progress towards each business incentive program's monthly target")
async def bip_progress(
    partner_id: uuid.UUID, ctx: Ctx, principal: AdminOrPartner, period: Period = None
) -> list[BipProgress]:
    ensure_partner_scope(principal, partner_id)
    async with ctx.db.transaction() as tx:
        rows = await IncentivesRepository(tx.session).bip_progress(partner_id, period)
    return [BipProgress.model_validate({**r._mapping, "explanation": usecases.bip_explanation(r)}) for r in rows]


LINE_COLUMNS = ("entry_id", "posted_at", "kind", "sale_id", "program_code", "sale_period", "amount", "currency",
                "cause", "explanation")


@router.get("/partners/{partner_id}/statements/{period}", response_model=Statement, tags=["statements"],
            summary="A partner's statement for a month: open (live) or closed (frozen); also as CSV or PDF",
            description="`Accept: text/csv` answers the statement's lines as CSV, `Accept: application/pdf` a "
                        "printable statement (totals per currency and every line); otherwise JSON.",
            responses={200: {"content": {CSV: {"schema": {"type": "string"}},
                                         PDF: {"schema": {"type": "string", "format": "binary"}}}}})
async def get_statement(partner_id: uuid.UUID, period: PeriodPath, request: Request, ctx: Ctx,
                        principal: AdminOrPartner) -> Response:
    ensure_partner_scope(principal, partner_id)
    wanted = preferred(request.headers.get("accept"), (JSON, CSV, PDF))
    async with ctx.db.transaction() as tx:
        statement = Statement.model_validate(await usecases.statement(tx, partner_id, period))
        lines = [] if wanted == JSON else [
            StatementLine.model_validate(line) for _, line in
            await usecases.statement_lines(tx, partner_id, period, None, None, None)]
    if wanted == JSON:
        return json_response(statement, derived_etag=True)
    filename = f"statement-{partner_id}-{period}"
    dumped = [line.model_dump(mode="json") for line in lines]
    rows = [[row[column] for column in LINE_COLUMNS] for row in dumped]
    if wanted == CSV:
        return Response(csv_bytes(LINE_COLUMNS, rows), media_type=f"{CSV}; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{filename}.csv"'})
    return Response(_statement_pdf(statement, lines), media_type=PDF,
                    headers={"Content-Disposition": f'attachment; filename="{filename}.pdf"'})


def _statement_pdf(statement: Statement, lines: list[StatementLine]) -> bytes:
    confirmed = (f"{statement.confirmed_at.isoformat()} by {statement.confirmed_by}"
                 if statement.confirmed_at else "not confirmed")
    totals = Table(["currency", "eligible revenue", "rebate", "BIP bonus", "adjustments", "total"],
                   [[t.currency, *(format_money(v) for v in (t.eligible_revenue, t.rebate, t.bip_bonus,
                                                             t.adjustments, t.total))] for t in statement.totals],
                   [1, 2, 2, 2, 2, 2], frozenset({1, 2, 3, 4, 5}))
    table = Table(["posted", "kind", "sale", "program", "sale period", "amount", "currency"],
                  [[line.posted_at.strftime("%Y-%m-%d %H:%M"), line.kind, line.sale_id or "", line.program_code or "",
                    line.sale_period, format_money(line.amount), line.currency] for line in lines],
                  [2.2, 2.2, 2.6, 2.2, 1.4, 1.8, 1.1], frozenset({5}))
    return pdf_bytes(f"Partner Hub statement {statement.period}", [
        ("Partner", str(statement.partner_id)), ("Period", statement.period), ("Status", statement.status),
        ("Confirmation", confirmed), ("Lines", str(len(lines))),
    ], [("Totals", totals), ("Lines", table)])


@router.get("/partners/{partner_id}/statements/{period}/lines", response_model=Page[StatementLine],
            tags=["statements"], summary="Every ledger entry posted into the period: per currency they sum to the "
                                         "statement's total")
async def list_statement_lines(
    partner_id: uuid.UUID, period: PeriodPath, ctx: Ctx, principal: AdminOrPartner, currency: Currency | None = None,
    limit: Limit = 50, cursor: Cursor = None,
) -> Page[StatementLine]:
    ensure_partner_scope(principal, partner_id)
    after = _cursor_values(cursor, 1)
    position = after[0] if after else None
    if position is not None and not isinstance(position, int):
        raise Problem(422, detail="the cursor is not one this service issued")
    async with ctx.db.transaction() as tx:
        lines = await usecases.statement_lines(tx, partner_id, period, currency, position, limit + 1)
    return Page[StatementLine](
        items=[StatementLine.model_validate(line) for _, line in lines[:limit]],
        next_cursor=encode_cursor(lines[limit - 1][0]) if len(lines) > limit else None,
    )


@router.post("/partners/{partner_id}/statements/{period}/confirmation", response_model=Statement,
             tags=["statements"], summary="The partner confirms a closed statement (once; again changes nothing)")
async def confirm_statement(partner_id: uuid.UUID, period: PeriodPath, ctx: Ctx, principal: PartnerOnly
                            ) -> JSONResponse:
    ensure_partner_scope(principal, partner_id)
    async with ctx.db.transaction() as tx:
        statement = Statement.model_validate(await usecases.confirm_statement(tx, partner_id, period, principal.sub))
    return json_response(statement)


# --- disputes -----------------------------------------------------------------------------------
def _dispute_data(view: dict[str, Any]) -> dict[str, Any]:
    return Dispute.model_validate(view).model_dump(mode="json")


@router.post("/disputes", status_code=201, response_model=Dispute, tags=["disputes"],
             summary="Dispute a statement, a sale on it, or a sale under one program")
async def open_dispute(body: DisputeIn, ctx: Ctx, principal: AdminOrPartner) -> JSONResponse:
    ensure_partner_scope(principal, body.partner_id)
    async with ctx.db.transaction() as tx:
        view = await usecases.open_dispute(tx, body, principal.sub, _dispute_data)
    return json_response(Dispute.model_validate(view), 201)


@router.get("/disputes", response_model=Page[Dispute], tags=["disputes"],
            summary="Disputes, newest first (a partner token sees its own)")
async def list_disputes(
    ctx: Ctx, principal: AdminOrPartner, partner_id: uuid.UUID | None = None,
    status: Literal["open", "accepted", "rejected", "withdrawn"] | None = None, period: Period = None,
    limit: Limit = 50, cursor: Cursor = None,
) -> Page[Dispute]:
    if principal.partner_id is not None:
        if partner_id is not None:
            ensure_partner_scope(principal, partner_id)
        partner_id = principal.partner_id
    after = _cursor_values(cursor, 2)
    async with ctx.db.transaction() as tx:
        views = await usecases.list_disputes(
            tx, partner_id, status, period,
            time_and_id(after), limit + 1)
    last = views[limit - 1] if len(views) > limit else None
    return Page[Dispute](
        items=[Dispute.model_validate(view) for view in views[:limit]],
        next_cursor=encode_cursor(last["created_at"].isoformat(), str(last["id"])) if last else None,
    )


@router.get("/disputes/{dispute_id}", response_model=Dispute, tags=["disputes"], summary="One dispute")
async def get_dispute(dispute_id: uuid.UUID, ctx: Ctx, principal: AdminOrPartner) -> Dispute:
    async with ctx.db.transaction() as tx:
        view = await usecases.get_dispute(tx, dispute_id)
    if not principal.may_see_partner(view["partner_id"]):
        raise Problem(404, detail=f"dispute {dispute_id} was not found")
    return Dispute.model_validate(view)


@router.post("/disputes/{dispute_id}/decision", response_model=Dispute, tags=["disputes"],
             summary="Accept (posting the settlement into the earliest open period) or reject an open dispute")
async def decide_dispute(dispute_id: uuid.UUID, body: DisputeDecisionIn, ctx: Ctx, principal: Admin) -> Dispute:
    async with ctx.db.transaction() as tx:
        view = await usecases.resolve_dispute(
            tx, dispute_id, principal.sub, _dispute_data, accept=isinstance(body, AcceptDispute),
            amount=body.amount if isinstance(body, AcceptDispute) else None, reason=body.reason)
    return Dispute.model_validate(view)


@router.post("/disputes/{dispute_id}/withdraw", response_model=Dispute, tags=["disputes"],
             summary="The partner withdraws its open dispute")
async def withdraw_dispute(dispute_id: uuid.UUID, ctx: Ctx, principal: PartnerOnly) -> Dispute:
    async with ctx.db.transaction() as tx:
        view = await usecases.resolve_dispute(tx, dispute_id, principal.sub, _dispute_data, accept=None,
                                              partner_id=principal.partner_id)
    return Dispute.model_validate(view)


@router.post("/periods/{period}/close", response_model=PeriodClosed, tags=["statements"],
             summary="Close a period and every earlier open one; closed statements never change")
async def close_period(period: PeriodPath, ctx: Ctx, principal: Admin) -> PeriodClosed:
    async with ctx.db.transaction() as tx:
        return PeriodClosed.model_validate(await usecases.close_period(tx, period))

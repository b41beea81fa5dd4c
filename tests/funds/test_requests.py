"""Requests, decisions, claims, payouts and completion on real PostgreSQL, concurrency included."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError

from services.funds import usecases
from tests.conftest import eventually
from tests.funds.support import (
    apply,
    approved_request,
    balance,
    days_ahead,
    fund,
    ledger,
    new_fund,
    partner,
    request_body,
    run_sql,
    sweep,
)


async def test_forty_concurrent_requests_never_over_commit_the_budget(funds, tokens) -> None:
    created = await new_fund(funds, tokens, budget="1000.00")
    partners = [partner() for _ in range(8)]
    responses = await asyncio.gather(*[
        apply(funds, tokens, created["code"], partners[i % len(partners)], "100.00") for i in range(40)
    ])
    assert all(r.status_code == 201 for r in responses), [r.text for r in responses if r.status_code != 201]
    statuses = [r.json()["status"] for r in responses]
    assert statuses.count("approved") == 10 and statuses.count("submitted") == 30
    after = await fund(funds, tokens, created["code"])
    assert (after["committed"], after["paid"], after["available"]) == ("1000.00", "0.00", "0.00")

    waiting = next(r.json() for r in responses if r.json()["status"] == "submitted")
    assert "budget" in waiting["review_reason"]
    refused = await funds.post(f"/v1/fund-requests/{waiting['id']}/decision", json={"decision": "approve"},
                               headers=tokens())
    assert refused.status_code == 409 and "0.00 of its budget available" in refused.json()["detail"]

    # The database itself refuses an over-commitment, whatever the code above it does.
    with pytest.raises(IntegrityError, match="funds_within_budget"):
        await run_sql(funds, "UPDATE funds SET committed = committed + 0.01 WHERE code = :code",
                      code=created["code"])


async def test_concurrent_requests_of_one_partner_stay_within_its_limit(funds, tokens) -> None:
    created = await new_fund(funds, tokens, budget="100000.00", per_partner_limit="300.00")
    me = partner()
    responses = await asyncio.gather(*[apply(funds, tokens, created["code"], me, "100.00") for _ in range(10)])
    statuses = [r.json()["status"] for r in responses]
    assert statuses.count("approved") == 3 and statuses.count("submitted") == 7
    mine = await balance(funds, tokens, me, created["code"])
    assert (mine["committed"], mine["available"], mine["earned"]) == ("300.00", "0.00", None)
    other = await apply(funds, tokens, created["code"], partner(), "300.00")
    assert other.json()["status"] == "approved"


async def test_a_request_beyond_the_limit_waits_for_review_and_an_admin_decides(funds, tokens, settings) -> None:
    created = await new_fund(funds, tokens, per_partner_limit="500.00")
    me = partner()
    waiting = await apply(funds, tokens, created["code"], me, "800.00")
    assert waiting.status_code == 201
    request = waiting.json()
    assert request["status"] == "submitted" and request["decided_by"] is None
    assert "per-partner limit of 500.00" in request["review_reason"]

    queue = await funds.get("/v1/fund-requests", params={"status": "submitted", "fund_code": created["code"]},
                            headers=tokens())
    assert [r["id"] for r in queue.json()["items"]] == [request["id"]]

    over = await funds.post(f"/v1/fund-requests/{request['id']}/decision", json={"decision": "approve"},
                            headers=tokens())
    assert over.status_code == 409 and over.json()["reasons"]
    got = await funds.get(f"/v1/fund-requests/{request['id']}", headers=tokens())
    stale = await funds.post(f"/v1/fund-requests/{request['id']}/decision", headers={**tokens(), "If-Match": '"0"'},
                             json={"decision": "reject", "reason": "too much"})
    assert stale.status_code == 412
    rejected = await funds.post(
        f"/v1/fund-requests/{request['id']}/decision", headers={**tokens(), "If-Match": got.headers["etag"]},
        json={"decision": "reject", "reason": "more than the limit; apply for at most 500.00"},
    )
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
    again = await funds.post(f"/v1/fund-requests/{request['id']}/decision", json={"decision": "approve"},
                             headers=tokens())
    assert again.status_code == 409 and again.json()["allowed"] == []

    events = await _outbox(funds, me)
    decided = [e for e in events if e["type"] == "fund.request_decided"]
    assert len(decided) == 1 and decided[0]["data"]["decision"] == "reject"
    assert decided[0]["data"]["status"] == "rejected" and decided[0]["data"]["id"] == request["id"]
    assert decided[0]["subject"] == str(me)  # key and subject: the partner id (CONTRACT §2)


async def test_a_rejected_request_may_be_resubmitted_once_within_45_days(funds, tokens) -> None:
    created = await new_fund(funds, tokens, per_partner_limit="500.00")
    me = partner()
    first = (await apply(funds, tokens, created["code"], me, "800.00")).json()
    not_yet = await apply(funds, tokens, created["code"], me, "400.00", resubmission_of=first["id"])
    assert not_yet.status_code == 422 and not_yet.json()["rule"] == "resubmission"
    await funds.post(f"/v1/fund-requests/{first['id']}/decision", json={"decision": "reject", "reason": "limit"},
                     headers=tokens())

    resubmitted = await apply(funds, tokens, created["code"], me, "400.00", resubmission_of=first["id"])
    assert resubmitted.status_code == 201, resubmitted.text
    assert resubmitted.json()["resubmission_of"] == first["id"] and resubmitted.json()["status"] == "approved"
    twice = await apply(funds, tokens, created["code"], me, "50.00", resubmission_of=first["id"])
    assert twice.status_code == 409

    old = (await apply(funds, tokens, created["code"], me, "900.00")).json()
    await funds.post(f"/v1/fund-requests/{old['id']}/decision", json={"decision": "reject", "reason": "limit"},
                     headers=tokens())
    await run_sql(funds, "UPDATE fund_requests SET decided_at = now() - interval '46 days' WHERE id = :id",
                  id=uuid.UUID(old["id"]))
    late = await apply(funds, tokens, created["code"], me, "50.00", resubmission_of=old["id"])
    assert late.status_code == 422 and late.json()["rule"] == "resubmission_window"
    theirs = await apply(funds, tokens, created["code"], partner(), "50.00", resubmission_of=old["id"])
    assert theirs.status_code == 422 and theirs.json()["rule"] == "resubmission"


async def test_policy_rules_and_bad_input_are_422_naming_the_rule(funds, tokens) -> None:
    created = await new_fund(funds, tokens)
    me = partner()
    soon = await apply(funds, tokens, created["code"], me, "100.00", planned_start=days_ahead(3))
    assert soon.status_code == 422
    assert soon.json()["rule"] == "request_lead_time" and "10 working days" in soon.json()["detail"]
    assert soon.json()["errors"][0]["loc"] == ["body", "planned_start"]

    relaxed = await new_fund(funds, tokens, policy={"request_lead_working_days": 0})
    ok = await apply(funds, tokens, relaxed["code"], me, "100.00", planned_start=days_ahead(0),
                     planned_end=days_ahead(1))
    assert ok.status_code == 201

    closed = await new_fund(funds, tokens, valid_from="2020-01-01T00:00:00Z", valid_to="2021-01-01T00:00:00Z")
    shut = await funds.post(f"/v1/funds/{closed['code']}/requests", json=request_body(me, "10.00"), headers=tokens())
    assert shut.status_code == 422 and shut.json()["rule"] == "fund_validity"

    for override in ({"amount": "0.00"}, {"amount": 100.0}, {"amount": "1.001"}, {"amount": "99999999999999999"},
                     {"currency": "EUR"}, {"planned_start": "2026-12-24T00:00:00"},
                     {"planned_end": days_ahead(20)}, {"planned_start": "soon"}, {"activity": ""}):
        bad = await funds.post(f"/v1/funds/{created['code']}/requests", json={**request_body(me, "100.00"),
                               **override}, headers=tokens("partner", me))
        assert bad.status_code == 422, (override, bad.text)
    missing = await apply(funds, tokens, f"NOPE-{uuid.uuid4().hex[:6]}", me, "10.00")
    assert missing.status_code == 404


async def test_claims_payouts_and_completion_move_every_figure(funds, tokens) -> None:
    created = await new_fund(funds, tokens, budget="5000.00")
    me = partner()
    as_me = tokens("partner", me)
    request = await approved_request(funds, tokens, created["code"], me, "1000.00")
    assert request["decided_by"] == "auto"

    claims_url = f"/v1/fund-requests/{request['id']}/claims"
    proof = {"proof_uri": "https://proofs.example.com/webinar-1.pdf"}
    first = await funds.post(claims_url, json={"amount": "600.00", **proof}, headers=as_me)
    assert first.status_code == 201 and first.json()["status"] == "submitted"
    too_much = await funds.post(claims_url, json={"amount": "400.01", **proof}, headers=as_me)
    assert too_much.status_code == 409 and too_much.json()["remaining"] == "400.00"
    second = await funds.post(claims_url, json={"amount": "300.00", **proof}, headers=as_me)
    assert second.status_code == 201
    assert (await funds.post(claims_url, json={"amount": "1.00", **proof}, headers=tokens())).status_code == 403
    no_proof = await funds.post(claims_url, json={"amount": "1.00", "proof_uri": "nothing"}, headers=as_me)
    assert no_proof.status_code == 422

    paid = await funds.post(f"/v1/fund-claims/{first.json()['id']}/decision", json={"decision": "approve"},
                            headers=tokens())
    assert paid.status_code == 200 and paid.json()["status"] == "paid" and paid.json()["paid_at"]
    twice = await funds.post(f"/v1/fund-claims/{first.json()['id']}/decision", json={"decision": "reject"},
                             headers=tokens())
    assert twice.status_code == 409 and twice.json()["allowed"] == []
    figures = await fund(funds, tokens, created["code"])
    assert (figures["committed"], figures["paid"], figures["available"]) == ("400.00", "600.00", "4000.00")

    rejected = await funds.post(f"/v1/fund-claims/{second.json()['id']}/decision",
                                json={"decision": "reject", "reason": "no attendee list"}, headers=tokens())
    assert rejected.json()["status"] == "rejected"
    refiled = await funds.post(claims_url, json={"amount": "150.00", **proof}, headers=as_me)
    assert refiled.status_code == 201

    completed = await funds.post(f"/v1/fund-requests/{request['id']}/complete", headers=as_me)
    assert completed.status_code == 200, completed.text
    done = completed.json()
    assert done["status"] == "completed" and done["released"] == "250.00" and done["paid"] == "600.00"
    assert [c["status"] for c in done["claims"]] == ["paid", "rejected", "submitted"]
    figures = await fund(funds, tokens, created["code"])
    assert (figures["committed"], figures["paid"]) == ("150.00", "600.00")
    closed = await funds.post(claims_url, json={"amount": "1.00", **proof}, headers=as_me)
    assert closed.status_code == 409
    again = await funds.post(f"/v1/fund-requests/{request['id']}/complete", headers=as_me)
    assert again.status_code == 409 and again.json()["allowed"] == []

    # The claim still pending at completion is decided later: paid from what it held back.
    await funds.post(f"/v1/fund-claims/{refiled.json()['id']}/decision", json={"decision": "approve"},
                     headers=tokens())
    figures = await fund(funds, tokens, created["code"])
    assert (figures["committed"], figures["paid"], figures["available"]) == ("0.00", "750.00", "4250.00")
    mine = await balance(funds, tokens, me, created["code"])
    assert (mine["committed"], mine["paid"], mine["available"]) == ("0.00", "750.00", "4250.00")

    entries = await ledger(funds, tokens, me, created["code"])
    assert [(e["kind"], e["amount"]) for e in entries] == [
        ("commitment", "1000.00"), ("payout", "600.00"), ("release", "250.00"), ("payout", "150.00"),
    ]
    assert entries[1]["claim_id"] == first.json()["id"] and entries[1]["cause_type"] == "claim.paid"
    assert all(e["request_id"] == request["id"] for e in entries)

    events = await _outbox(funds, me)
    paid_events = [e for e in events if e["type"] == "fund.claim_paid"]
    assert [e["data"]["amount"] for e in paid_events] == ["600.00", "150.00"]
    assert paid_events[0]["data"]["request"]["id"] == request["id"] and paid_events[0]["source"] == "funds"
    decided = [e for e in events if e["type"] == "fund.request_decided"]
    assert decided[0]["data"]["decision"] == "approve" and decided[0]["data"]["decided_by"] == "auto"


async def test_claims_close_after_the_claim_window_and_the_deadline_sweep_completes(funds, tokens) -> None:
    created = await new_fund(funds, tokens)
    me = partner()
    request = await approved_request(funds, tokens, created["code"], me, "500.00")
    claims_url = f"/v1/fund-requests/{request['id']}/claims"
    proof = {"proof_uri": "https://proofs.example.com/event.jpg"}
    assert (await funds.post(claims_url, json={"amount": "200.00", **proof},
                             headers=tokens("partner", me))).status_code == 201
    await run_sql(funds, "UPDATE fund_requests SET planned_end = now() - interval '91 days', "
                  "claim_deadline = now() - interval '1 day' WHERE id = :id", id=uuid.UUID(request["id"]))
    late = await funds.post(claims_url, json={"amount": "100.00", **proof}, headers=tokens("partner", me))
    assert late.status_code == 422 and late.json()["rule"] == "claim_window"

    await sweep(funds, "funds.claim_deadline", usecases.complete_overdue_requests)
    done = (await funds.get(f"/v1/fund-requests/{request['id']}", headers=tokens())).json()
    assert done["status"] == "completed" and done["completed_by"] == "claim deadline"
    assert done["released"] == "300.00"
    assert (await fund(funds, tokens, created["code"]))["committed"] == "200.00"
    assert await sweep(funds, "funds.claim_deadline", usecases.complete_overdue_requests) in (0, None)


async def test_a_suspended_or_terminated_partner_cannot_request(funds, tokens, publish) -> None:
    created = await new_fund(funds, tokens)
    me = partner()
    await publish("registry.partners", "partner.registered", me, _partner(me, "active"))
    await publish("registry.partners", "partner.status_changed", me,
                  {**_partner(me, "suspended"), "from": "active", "to": "suspended",
                   "changed_at": "2026-03-01T00:00:00Z", "reason": "audit"})
    await _replica_becomes(funds, me, "suspended")
    refused = await apply(funds, tokens, created["code"], me, "100.00")
    assert refused.status_code == 409 and refused.json()["partner_status"] == "suspended"

    await publish("registry.partners", "partner.status_changed", me,
                  {**_partner(me, "active"), "from": "suspended", "to": "active",
                   "changed_at": "2026-03-02T00:00:00Z"})
    await _replica_becomes(funds, me, "active")
    assert (await apply(funds, tokens, created["code"], me, "100.00")).json()["status"] == "approved"

    await publish("registry.partners", "partner.status_changed", me,
                  {**_partner(me, "terminated"), "from": "active", "to": "terminated",
                   "changed_at": "2026-03-03T00:00:00Z", "reason": "contract ended"})
    await _replica_becomes(funds, me, "terminated")
    assert (await apply(funds, tokens, created["code"], me, "100.00")).status_code == 409


async def test_partners_reach_only_their_own_requests_claims_and_balances(funds, tokens) -> None:
    created = await new_fund(funds, tokens)
    me, other = partner(), partner()
    mine = await approved_request(funds, tokens, created["code"], me, "100.00")
    theirs = await approved_request(funds, tokens, created["code"], other, "100.00")
    claim = await funds.post(f"/v1/fund-requests/{theirs['id']}/claims", headers=tokens("partner", other),
                             json={"amount": "50.00", "proof_uri": "https://proofs.example.com/x.pdf"})
    as_me = tokens("partner", me)

    assert (await funds.get(f"/v1/fund-requests/{mine['id']}", headers=as_me)).status_code == 200
    assert (await funds.get(f"/v1/fund-requests/{theirs['id']}", headers=as_me)).status_code == 404
    assert (await funds.get(f"/v1/fund-claims/{claim.json()['id']}", headers=as_me)).status_code == 404
    stolen = await funds.post(f"/v1/fund-requests/{theirs['id']}/claims", headers=as_me,
                              json={"amount": "1.00", "proof_uri": "https://proofs.example.com/x.pdf"})
    assert stolen.status_code == 404
    assert (await funds.post(f"/v1/fund-requests/{theirs['id']}/complete", headers=as_me)).status_code == 404
    for path in ("fund-balances", "fund-ledger"):
        assert (await funds.get(f"/v1/partners/{other}/{path}", headers=as_me)).status_code == 403
        assert (await funds.get(f"/v1/partners/{me}/{path}", headers=as_me)).status_code == 200
    on_behalf = await funds.post(f"/v1/funds/{created['code']}/requests", json=request_body(other, "1.00"),
                                 headers=as_me)
    assert on_behalf.status_code == 403
    by_system = await funds.post(f"/v1/funds/{created['code']}/requests", json=request_body(me, "1.00"),
                                 headers=tokens("system"))
    assert by_system.status_code == 403
    as_admin = await funds.post(f"/v1/funds/{created['code']}/requests", json=request_body(me, "1.00"),
                                headers=tokens())
    assert as_admin.status_code == 201

    listed = await funds.get("/v1/fund-requests", params={"fund_code": created["code"]}, headers=as_me)
    assert {r["partner_id"] for r in listed.json()["items"]} == {me}
    assert len(listed.json()["items"]) == 2
    forbidden = await funds.get("/v1/fund-requests", params={"partner_id": other}, headers=as_me)
    assert forbidden.status_code == 403
    admin_view = await funds.get("/v1/fund-requests", params={"fund_code": created["code"]}, headers=tokens())
    assert len(admin_view.json()["items"]) == 3
    other_claims = await funds.get("/v1/fund-claims", params={"partner_id": other}, headers=tokens())
    assert [c["id"] for c in other_claims.json()["items"]] == [claim.json()["id"]]
    assert (await funds.get("/v1/fund-claims", headers=as_me)).json()["items"] == []
    assert (await funds.post(f"/v1/fund-claims/{claim.json()['id']}/decision", json={"decision": "approve"},
                             headers=tokens("partner", other))).status_code == 403


async def test_a_request_replayed_with_its_idempotency_key_is_committed_once(funds, tokens) -> None:
    created = await new_fund(funds, tokens, budget="1000.00")
    me = partner()
    body = request_body(me, "400.00")
    headers = {**tokens("partner", me), "Idempotency-Key": f"req-{uuid.uuid4()}"}
    url = f"/v1/funds/{created['code']}/requests"
    first, replay = [await funds.post(url, json=body, headers=headers) for _ in range(2)]
    assert first.status_code == replay.status_code == 201
    assert first.json()["id"] == replay.json()["id"] and replay.headers["idempotent-replayed"] == "true"
    assert (await fund(funds, tokens, created["code"]))["committed"] == "400.00"
    different = await funds.post(url, json={**body, "amount": "10.00"}, headers=headers)
    assert different.status_code == 409


async def test_requests_paginate_with_a_cursor(funds, tokens) -> None:
    created = await new_fund(funds, tokens)
    me = partner()
    ids = [(await approved_request(funds, tokens, created["code"], me, "10.00"))["id"] for _ in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"partner_id": me, "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await funds.get("/v1/fund-requests", params=params, headers=tokens())).json()
        seen += [r["id"] for r in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == ids
    assert (await funds.get("/v1/fund-requests", params={"cursor": "garbage"}, headers=tokens())).status_code == 422


def _partner(partner_id: str, status: str) -> dict[str, Any]:
    return {"id": partner_id, "name": "Initech", "country": "DE", "region": "EMEA", "types": ["sales"],
            "tier": "gold", "status": status, "parent_partner_id": None, "certifications": [],
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"}


async def _replica_becomes(funds, partner_id: str, status: str) -> None:  # type: ignore[no-untyped-def]
    async def check() -> bool:
        rows = await run_sql(funds, "SELECT status FROM partners WHERE id = :id", id=uuid.UUID(partner_id))
        return bool(rows) and rows[0].status == status

    await eventually(check)


async def _outbox(funds, partner_id: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    rows = await run_sql(funds, "SELECT topic, payload FROM outbox WHERE key = :key ORDER BY id", key=partner_id)
    assert all(r.topic == "funds.funds" for r in rows)
    return [r.payload if isinstance(r.payload, dict) else json.loads(r.payload) for r in rows]



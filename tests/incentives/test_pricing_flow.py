"""Incentives on real PostgreSQL and the broker: upstream events in, accruals and the ledger out."""

from __future__ import annotations

import json
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer

from tests.conftest import eventually
from tests.incentives.support import T0, World, account_data, partner_data


async def test_reclassification_reprices_only_later_sales(incentives, publish, tokens) -> None:
    world = await World(incentives, publish, tokens).setup()
    a, b = f"A-{uuid.uuid4()}", f"B-{uuid.uuid4()}"
    await world.publish_sale(world.sale(a, "1000.00", "2026-03-05T10:00:00Z"))
    await world.publish_sale(world.sale(b, "2000.00", "2026-03-20T10:00:00Z"))
    first = await world.amount_becomes(a, "50.00")
    await world.amount_becomes(b, "100.00")
    assert first[0]["rate"] == "0.05" and first[0]["classification"] == "commercial"
    assert first[0]["program_code"] == world.program and first[0]["period"] == "2026-03"
    assert "commercial" in first[0]["explanation"] and "50.00" in first[0]["explanation"]

    reclass_id = await publish("accounts.accounts", "account.reclassified", world.account_id, {
        **account_data(world.account_id, "key", world.partner_id),
        "from": "commercial", "to": "key", "effective_from": "2026-03-10T00:00:00Z", "reason": "grew",
    })
    later = await world.amount_becomes(b, "160.00")
    assert later[0]["rate"] == "0.08" and later[0]["classification"] == "key"
    assert [i["amount"] for i in await world.accruals(a)] == ["50.00"]

    ledger = await world.ledger(b)
    assert [(e["kind"], e["revision"], e["amount"]) for e in ledger] == [
        ("original", 1, "100.00"), ("adjustment", 2, "60.00")]
    assert ledger[1]["cause"] == reclass_id
    assert ledger[1]["period"] == ledger[1]["sale_period"] == "2026-03"
    assert [e["amount"] for e in await world.ledger(a)] == ["50.00"]

    runs = (await incentives.get("/v1/recalculations", params={"account_id": world.account_id},
                                 headers=tokens())).json()["items"]
    reclass_run = next(r for r in runs if r["trigger_event_id"] == reclass_id)
    assert reclass_run["sales_recomputed"] == 1 and reclass_run["sales_changed"] == 1
    assert reclass_run["delta"] == [{"currency": "USD", "amount": "60.00"}]
    assert reclass_run["status"] == "completed"


async def test_sale_arriving_after_an_earlier_reclassification_prices_as_of_booked_at(
    incentives, publish, tokens
) -> None:
    world = await World(incentives, publish, tokens).setup()
    reclass_id = await publish("accounts.accounts", "account.reclassified", world.account_id, {
        **account_data(world.account_id, "key", world.partner_id),
        "from": "commercial", "to": "key", "effective_from": "2026-03-10T00:00:00Z",
    })

    async def applied() -> bool:
        runs = (await incentives.get("/v1/recalculations", params={"account_id": world.account_id},
                                     headers=tokens())).json()["items"]
        return any(r["trigger_event_id"] == reclass_id for r in runs)

    await eventually(applied)
    early, late = f"E-{uuid.uuid4()}", f"L-{uuid.uuid4()}"
    await world.publish_sale(world.sale(late, "2000.00", "2026-03-20T10:00:00Z"))
    await world.publish_sale(world.sale(early, "1000.00", "2026-03-05T10:00:00Z"))
    await world.amount_becomes(late, "160.00")
    await world.amount_becomes(early, "50.00")
    assert [e["kind"] for e in await world.ledger(late)] == ["original"]


async def test_a_sale_published_twice_is_accrued_once_and_conflicts_are_dead_lettered(
    incentives, publish, tokens, settings
) -> None:
    world = await World(incentives, publish, tokens).setup()
    sale_id = f"D-{uuid.uuid4()}"
    sale = world.sale(sale_id, "1000.00", "2026-03-05T10:00:00Z")
    event_id = await world.publish_sale(sale)
    await world.publish_sale(sale, event_id=event_id)  # redelivery
    await world.publish_sale(sale)  # the same sale under another event id
    conflicting_id = await world.publish_sale({**sale, "amount": "999.00"})
    marker = f"M-{uuid.uuid4()}"
    await world.publish_sale(world.sale(marker, "10.00", "2026-03-06T10:00:00Z"))
    await world.amount_becomes(marker, "0.50")
    # The sale may have arrived while a recalculation of the setup held its account (recorded as received, the
    # pricer prices it moments later): wait for its accrual, then look at its ledger.
    await world.amount_becomes(sale_id, "50.00")
    assert [e["amount"] for e in await world.ledger(sale_id)] == ["50.00"]

    dead = await _dead_letters(settings, "sales.recorded.dlq", lambda e: e.get("id") == conflicting_id)
    assert "already recorded with other content" in dead["reason"]


async def test_garbage_goes_to_the_dead_letter_topic_and_the_partition_keeps_flowing(
    incentives, publish, tokens, settings
) -> None:
    from aiokafka import AIOKafkaProducer

    world = await World(incentives, publish, tokens).setup()
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_idempotence=False)
    await producer.start()
    garbage = f"not json {uuid.uuid4()}".encode()
    try:
        await producer.send_and_wait("sales.recorded", garbage, key=world.account_id.encode())
    finally:
        await producer.stop()
    invalid_id = await world.publish_sale({**world.sale(f"X-{uuid.uuid4()}", "12.345", "2026-03-05T10:00:00Z")})
    good = f"G-{uuid.uuid4()}"
    await world.publish_sale(world.sale(good, "200.00", "2026-03-07T10:00:00Z"))
    await world.amount_becomes(good, "10.00")

    dead = await _dead_letters(settings, "sales.recorded.dlq", lambda e: e.get("raw") == garbage)
    assert "not JSON" in dead["reason"] and dead["headers"]["dlq.topic"] == "sales.recorded"
    invalid = await _dead_letters(settings, "sales.recorded.dlq", lambda e: e.get("id") == invalid_id)
    assert "amount" in invalid["reason"] and "two decimals" in invalid["reason"]


async def _dead_letters(settings, topic: str, match) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap_servers,
                                group_id=f"test-{uuid.uuid4()}", auto_offset_reset="earliest")
    await consumer.start()
    try:
        async def find() -> dict[str, Any] | None:
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                for message in messages:
                    try:
                        document = json.loads(message.value)
                    except ValueError:
                        document = {}
                    document["raw"] = message.value
                    if match(document):
                        headers = {k: v.decode() for k, v in message.headers}
                        return {"reason": headers["dlq.reason"], "headers": headers, "document": document}
            return None

        found: dict[str, Any] = await eventually(find)
        return found
    finally:
        await consumer.stop()


async def test_unknown_account_waits_unpriced_then_prices_when_it_arrives(incentives, publish, tokens) -> None:
    world = await World(incentives, publish, tokens).setup()
    stranger = str(uuid.uuid4())
    sale_id = f"U-{uuid.uuid4()}"
    await world.publish_sale(world.sale(sale_id, "1000.00", "2026-03-05T10:00:00Z", account_id=stranger))
    waiting = await world.amount_becomes(sale_id, "0.00", status="unpriced")
    assert waiting[0]["program_code"] is None and "not known yet" in waiting[0]["explanation"]
    assert await world.ledger(sale_id) == []
    await publish("accounts.accounts", "account.created", stranger, account_data(stranger, "key", None))
    await world.amount_becomes(sale_id, "80.00")
    assert [e["kind"] for e in await world.ledger(sale_id)] == ["original"]


async def test_statuses_channel_conflict_on_hold_and_not_eligible(incentives, publish, tokens) -> None:
    world = await World(incentives, publish, tokens).setup()
    rival = str(uuid.uuid4())
    conflict = f"C-{uuid.uuid4()}"
    await publish("accounts.accounts", "account.ownership_changed", world.account_id, {
        **account_data(world.account_id, "commercial", rival),
        "from": world.partner_id, "to": rival, "effective_from": "2026-04-01T00:00:00Z",
    })
    await world.publish_sale(world.sale(conflict, "100.00", "2026-04-02T10:00:00Z"))
    items = await world.amount_becomes(conflict, "0.00", status="channel_conflict")
    assert "would pay" in items[0]["explanation"] and "5.00" in items[0]["explanation"]

    sku = f"NE-{uuid.uuid4().hex[:6]}"
    await incentives.put(f"/v1/products/{sku}", headers=tokens(), json={
        "name": "Cable", "category": world.category, "rebate_eligible": False})
    not_eligible = f"N-{uuid.uuid4()}"
    await world.publish_sale(world.sale(not_eligible, "100.00", "2026-03-02T10:00:00Z", sku=sku))
    await world.amount_becomes(not_eligible, "0.00", status="not_eligible")

    held = f"H-{uuid.uuid4()}"
    await world.publish_sale(world.sale(held, "100.00", "2026-03-03T10:00:00Z"))
    await world.amount_becomes(held, "5.00")
    await publish("registry.partners", "partner.status_changed", world.partner_id, {
        **partner_data(world.partner_id, status="suspended"),
        "from": "active", "to": "suspended", "changed_at": "2026-03-03T00:00:00Z", "reason": "audit",
    })
    await world.amount_becomes(held, "0.00", status="on_hold")
    assert [e["amount"] for e in await world.ledger(held)] == ["5.00", "-5.00"]


async def test_cancellation_reverses_and_one_arriving_first_is_kept(incentives, publish, tokens) -> None:
    world = await World(incentives, publish, tokens).setup()
    sale_id = f"K-{uuid.uuid4()}"
    await world.publish_sale(world.sale(sale_id, "300.00", "2026-03-05T10:00:00Z"))
    await world.amount_becomes(sale_id, "15.00")
    cancel_id = await publish("sales.recorded", "sale.cancelled", world.account_id,
                              {"sale_id": sale_id, "cancelled_at": "2026-03-08T00:00:00Z"}, subject=sale_id)
    await world.amount_becomes(sale_id, "0.00", status="cancelled")
    ledger = await world.ledger(sale_id)
    assert [e["amount"] for e in ledger] == ["15.00", "-15.00"] and ledger[1]["cause"] == cancel_id

    early = f"KE-{uuid.uuid4()}"
    await publish("sales.recorded", "sale.cancelled", world.account_id,
                  {"sale_id": early, "cancelled_at": "2026-03-08T00:00:00Z"}, subject=early)
    await world.publish_sale(world.sale(early, "300.00", "2026-03-05T10:00:00Z"))
    await world.amount_becomes(early, "0.00", status="cancelled")
    assert await world.ledger(early) == []


async def test_rest_sales_are_idempotent_by_sale_id(incentives, publish, tokens) -> None:
    world = await World(incentives, publish, tokens).setup()
    sale = world.sale(f"R-{uuid.uuid4()}", "100.00", "2026-03-05T10:00:00Z")
    first = await incentives.post("/v1/sales", json=sale, headers=tokens("system"))
    assert first.status_code == 202, first.text
    assert (await incentives.post("/v1/sales", json=sale, headers=tokens("system"))).json()["outcome"] == "duplicate"
    other = await incentives.post("/v1/sales", json={**sale, "amount": "101.00"}, headers=tokens("system"))
    assert other.status_code == 409 and "other content" in other.json()["detail"]
    assert (await incentives.post("/v1/sales", json=sale, headers=tokens("admin"))).status_code == 403
    await world.amount_becomes(sale["sale_id"], "5.00")


async def test_the_same_new_sale_posted_at_once_is_received_once(incentives, publish, tokens) -> None:
    """Requests racing with one new sale_id (a client retrying while the first is in flight): one records it,
    the others answer as if they came after it, a duplicate or a 409 for other content, never a 500."""
    import asyncio

    world = await World(incentives, publish, tokens).setup()
    for busy in (False, True):
        sale = world.sale(f"RACE-{uuid.uuid4()}", "100.00", "2026-03-05T10:00:00Z")
        if busy:  # a sale of an unknown partner and account: recorded as received, priced when they are known
            sale = {**sale, "partner_id": str(uuid.uuid4()), "account_id": str(uuid.uuid4())}
        same = [incentives.post("/v1/sales", json=sale, headers=tokens("system")) for _ in range(6)]
        other = [incentives.post("/v1/sales", json={**sale, "amount": "101.00"}, headers=tokens("system"))
                 for _ in range(2)]
        answers = await asyncio.gather(*same, *other)
        assert all(a.status_code in (202, 409) for a in answers), [a.text for a in answers]
        accepted = [a.json()["outcome"] for a in answers if a.status_code == 202]
        assert accepted.count("received") == 1 and set(accepted) <= {"received", "duplicate"}, accepted
        assert len(accepted) in (6, 2) and len(answers) - len(accepted) in (2, 6)


async def test_program_rules_that_could_tie_are_refused(incentives, tokens) -> None:
    response = await incentives.post("/v1/programs", headers=tokens(), json={
        "code": f"TIE-{uuid.uuid4().hex[:6]}", "name": "Tie", "kind": "base_rebate", "valid_from": T0,
        "rules": [{"classification": "key", "tier": "*", "category": "*", "rate": "0.01"},
                  {"classification": "*", "tier": "gold", "category": "*", "rate": "0.02"}],
    })
    assert response.status_code == 422
    assert "rules 0" in response.json()["detail"] and "1" in response.json()["detail"]


async def test_a_new_program_prices_sales_already_recorded(incentives, publish, tokens) -> None:
    world = await World(incentives, publish, tokens).setup(program=False)
    sale_id = f"P-{uuid.uuid4()}"
    await world.publish_sale(world.sale(sale_id, "1000.00", "2026-05-05T10:00:00Z"))
    await world.amount_becomes(sale_id, "0.00", status="no_program")
    code = f"LATE-{uuid.uuid4().hex[:6]}"
    response = await incentives.post("/v1/programs", headers=tokens(), json={
        "code": code, "name": "Storage push", "kind": "base_rebate", "valid_from": "2026-05-01T00:00:00Z",
        "valid_to": "2026-06-01T00:00:00Z",
        "rules": [{"classification": "*", "tier": "*", "category": world.category, "rate": "0.015"}],
    })
    assert response.status_code == 201, response.text
    items = {i["program_code"]: i["amount"] for i in await world.accruals(sale_id)}
    assert items[code] == "15.00"


async def test_contract_conventions_on_products_programs_sales_and_statements(incentives, publish, tokens) -> None:
    world = await World(incentives, publish, tokens).setup()
    product = await incentives.get(f"/v1/products/{world.sku}", headers=tokens())
    stale = await incentives.put(f"/v1/products/{world.sku}", headers={**tokens(), "If-Match": '"999"'},
                                 json={"name": "x", "category": world.category, "rebate_eligible": True})
    assert stale.status_code == 412
    fresh = await incentives.put(f"/v1/products/{world.sku}", headers={**tokens(), "If-Match": product.headers["etag"]},
                                 json={"name": "Storage v2", "category": world.category, "rebate_eligible": True})
    assert fresh.status_code == 200
    stale_program = await incentives.patch(f"/v1/programs/{world.program}", headers={**tokens(), "If-Match": '"9"'},
                                           json={"valid_to": "2026-12-01T00:00:00Z"})
    assert stale_program.status_code == 412

    sale = world.sale(f"IK-{uuid.uuid4()}", "100.00", "2026-03-05T10:00:00Z")
    key = {**tokens("system"), "Idempotency-Key": str(uuid.uuid4())}
    first = await incentives.post("/v1/sales", json=sale, headers=key)
    again = await incentives.post("/v1/sales", json=sale, headers=key)
    assert first.status_code == again.status_code == 202 and again.json() == first.json()
    other = await incentives.post("/v1/sales", json={**sale, "sale_id": f"IK-{uuid.uuid4()}"}, headers=key)
    assert other.status_code == 409

    epoch = await incentives.post("/v1/sales", json={**sale, "booked_at": 1772704800}, headers=tokens("system"))
    assert epoch.status_code == 422
    naive = await incentives.post("/v1/sales", json={**sale, "booked_at": "2026-03-05T10:00:00"},
                                  headers=tokens("system"))
    assert naive.status_code == 422

    statement = await incentives.get(f"/v1/partners/{world.partner_id}/statements/2026-03", headers=tokens())
    assert statement.status_code == 200 and statement.headers["etag"].startswith('W/"')


async def test_a_sale_in_cloudevents_binary_mode_is_the_same_sale(incentives, publish, tokens, infrastructure) -> None:
    """The Kafka binding's binary mode (ce_* headers, the value is the data) is accepted on sales.recorded, and a
    sale sent once in each mode is one sale."""
    from aiokafka import AIOKafkaProducer

    world = await World(incentives, publish, tokens).setup()
    sale_id = f"BIN-{uuid.uuid4()}"
    sale = world.sale(sale_id, "400.00", "2026-03-07T10:00:00Z")
    producer = AIOKafkaProducer(bootstrap_servers=infrastructure.bootstrap_servers, enable_idempotence=False)
    await producer.start()
    try:
        headers = [("ce_specversion", b"1.0"), ("ce_id", str(uuid.uuid4()).encode()),
                   ("ce_source", b"crm-binary"), ("ce_type", b"sale.recorded"), ("ce_subject", sale_id.encode()),
                   ("ce_time", b"2026-03-07T10:00:05Z"), ("content-type", b"application/json")]
        await producer.send_and_wait("sales.recorded", json.dumps(sale).encode(), key=world.account_id.encode(),
                                     headers=headers)
    finally:
        await producer.stop()
    await world.amount_becomes(sale_id, "20.00")
    await world.publish_sale(sale)  # the same sale, structured
    ledger = await world.ledger(sale_id)
    assert [(e["kind"], e["amount"]) for e in ledger] == [("original", "20.00")]

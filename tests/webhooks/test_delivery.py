"""Deliveries end to end: events published on the broker reach a real receiver on loopback, signed per Standard
Webhooks (verified with the `standardwebhooks` package), retried on errors and timeouts, each subscription served
on its own, replayed and retried on request, and disabled after failing for the whole window."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator

import asyncpg
import httpx
import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from partnerhub.config import Settings
from partnerhub.db import asyncpg_dsn
from tests.conftest import Infrastructure, Publish, eventually
from tests.webhooks.receiver import Receiver, answer, failing_first, slow_first
from tests.webhooks.support import Tokens, accrual, arrived, deliveries, event_ids, new_path, subscribe


async def delivered(client: httpx.AsyncClient, headers: dict[str, str], subscription_id: str, count: int) -> None:
    async def check() -> bool:
        return len(await deliveries(client, headers, subscription_id, "delivered")) >= count

    await eventually(check, within=90)


async def test_an_event_is_posted_as_its_cloudevent_signed_per_standard_webhooks(
    webhooks: httpx.AsyncClient, receiver: Receiver, publish: Publish, tokens: Tokens,
) -> None:
    partner = uuid.uuid4()
    path = new_path()
    subscription = await subscribe(webhooks, tokens(), receiver.url(path), ["accrual.recorded"], partner)
    assert subscription["secret"].startswith("whsec_") and subscription["status"] == "active"

    event_id = await accrual(publish, partner)
    await arrived(receiver, path, 1)

    request = receiver.at(path)[0]
    assert request.headers["webhook-id"] == event_id
    assert request.headers["content-type"].startswith("application/cloudevents+json")
    event = Webhook(subscription["secret"]).verify(request.body, request.headers)
    assert (event["id"], event["type"], event["specversion"]) == (event_id, "accrual.recorded", "1.0")
    assert event["data"]["partner_id"] == str(partner)
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "QUJD" * 8).verify(request.body, request.headers)

    await delivered(webhooks, tokens(), subscription["id"], 1)
    [log] = await deliveries(webhooks, tokens(), subscription["id"])
    assert (log["event_id"], log["event_type"], log["status"]) == (event_id, "accrual.recorded", "delivered")
    assert [a["response_status"] for a in log["attempts"]] == [200] and log["next_attempt_at"] is None
    assert log["attempts"][0]["error"] is None and log["attempts"][0]["latency_ms"] >= 0
    metrics = (await webhooks.get("/metrics")).text
    assert 'partnerhub_webhook_attempts_total{outcome="delivered"}' in metrics
    assert "partnerhub_webhook_attempt_duration_seconds_count" in metrics


async def test_the_secret_is_shown_only_on_creation_and_kept_sealed(
    webhooks: httpx.AsyncClient, receiver: Receiver, tokens: Tokens, infrastructure: Infrastructure,
) -> None:
    subscription = await subscribe(webhooks, tokens(), receiver.url(new_path()), ["*"], uuid.uuid4())
    one = (await webhooks.get(f"/v1/webhooks/{subscription['id']}", headers=tokens())).json()
    listed = (await webhooks.get("/v1/webhooks", headers=tokens(), params={"limit": 500})).json()["items"]
    assert "secret" not in one and all("secret" not in s for s in listed)
    assert subscription["secret"] not in json.dumps([one, listed])
    connection = await asyncpg.connect(asyncpg_dsn(infrastructure.database_urls["webhooks"]))
    try:
        stored = await connection.fetchval("SELECT secret FROM subscriptions WHERE id = $1",
                                           uuid.UUID(subscription["id"]))
    finally:
        await connection.close()
    assert stored.startswith("fernet:") and subscription["secret"] not in stored


async def test_a_receiver_answering_500_gets_the_event_again_until_it_takes_it(
    webhooks: httpx.AsyncClient, receiver: Receiver, publish: Publish, tokens: Tokens,
) -> None:
    partner = uuid.uuid4()
    path = new_path()
    receiver.behaviours[path] = failing_first(2, 500)
    subscription = await subscribe(webhooks, tokens(), receiver.url(path), ["accrual.recorded"], partner)
    event_id = await accrual(publish, partner)

    await delivered(webhooks, tokens(), subscription["id"], 1)
    [log] = await deliveries(webhooks, tokens(), subscription["id"])
    assert [a["response_status"] for a in log["attempts"]] == [500, 500, 200]
    assert "500" in log["attempts"][0]["error"]
    assert event_ids(receiver, path) == [event_id] * 3


async def test_a_receiver_answering_too_late_gets_the_event_again(
    webhooks: httpx.AsyncClient, receiver: Receiver, publish: Publish, tokens: Tokens,
) -> None:
    partner = uuid.uuid4()
    path = new_path()
    receiver.behaviours[path] = slow_first(1, 3.0)  # the tests' timeout is 1 s
    subscription = await subscribe(webhooks, tokens(), receiver.url(path), ["accrual.recorded"], partner)
    await accrual(publish, partner)

    await delivered(webhooks, tokens(), subscription["id"], 1)
    [log] = await deliveries(webhooks, tokens(), subscription["id"])
    first, *_, last = log["attempts"]
    assert first["response_status"] is None and "no answer within 1 s" in first["error"]
    assert last["response_status"] == 200


async def test_a_redirect_is_not_followed_and_fails_the_attempt(
    webhooks: httpx.AsyncClient, receiver: Receiver, publish: Publish, tokens: Tokens,
) -> None:
    partner = uuid.uuid4()
    path = new_path()
    receiver.behaviours[path] = failing_first(1, 307)
    subscription = await subscribe(webhooks, tokens(), receiver.url(path), ["accrual.recorded"], partner)
    await accrual(publish, partner)

    await delivered(webhooks, tokens(), subscription["id"], 1)
    [log] = await deliveries(webhooks, tokens(), subscription["id"])
    assert [a["response_status"] for a in log["attempts"]] == [307, 200]
    assert "redirects are not followed" in log["attempts"][0]["error"]


async def test_a_slow_receiver_holds_only_its_own_few_slots(
    webhooks: httpx.AsyncClient, receiver: Receiver, publish: Publish, tokens: Tokens,
) -> None:
    partner = uuid.uuid4()
    stuck, quick = new_path(), new_path()
    release = asyncio.Event()

    async def held(_request: object) -> int:
        await release.wait()
        return 200

    receiver.behaviours[stuck] = held
    slow = await subscribe(webhooks, tokens(), receiver.url(stuck), ["accrual.recorded"], partner)
    fast = await subscribe(webhooks, tokens(), receiver.url(quick), ["accrual.recorded"], partner)
    sent = [await accrual(publish, partner) for _ in range(20)]

    # Every event reaches the quick receiver while the stuck one holds what it was sent, which is never more
    # than the per-subscription limit (2 in the tests) at a time.
    await eventually(lambda: set(sent) <= set(event_ids(receiver, quick)), within=60)
    assert receiver.most_in_flight[stuck] <= 2
    assert receiver.most_in_flight.get(quick, 0) <= 2
    release.set()
    receiver.behaviours[stuck] = answer(200)
    await delivered(webhooks, tokens(), slow["id"], 20)
    await delivered(webhooks, tokens(), fast["id"], 20)
    # Ordering is not promised: only that each event arrives.
    assert set(event_ids(receiver, stuck)) == set(sent)


async def test_retry_delivers_a_delivery_again_now(
    webhooks: httpx.AsyncClient, receiver: Receiver, publish: Publish, tokens: Tokens,
) -> None:
    partner = uuid.uuid4()
    path = new_path()
    headers = tokens("partner", partner)
    subscription = await subscribe(webhooks, headers, receiver.url(path), ["accrual.recorded"])
    event_id = await accrual(publish, partner)
    await delivered(webhooks, headers, subscription["id"], 1)
    [log] = await deliveries(webhooks, headers, subscription["id"])

    answer_ = await webhooks.post(f"/v1/webhooks/{subscription['id']}/deliveries/{log['id']}/retry",
                                  headers=headers)
    assert answer_.status_code == 202, answer_.text
    await arrived(receiver, path, 2)
    assert event_ids(receiver, path) == [event_id, event_id]

    async def two_attempts() -> bool:
        [again] = await deliveries(webhooks, headers, subscription["id"])
        return again["status"] == "delivered" and len(again["attempts"]) == 2

    await eventually(two_attempts)
    missing = await webhooks.post(f"/v1/webhooks/{subscription['id']}/deliveries/{uuid.uuid4()}/retry",
                                  headers=headers)
    assert missing.status_code == 404


async def test_replay_delivers_every_kept_matching_event_since_then_again(
    webhooks: httpx.AsyncClient, receiver: Receiver, publish: Publish, tokens: Tokens,
) -> None:
    partner = uuid.uuid4()
    early = new_path()
    # An event taken in before the subscription below existed is kept, and replay reaches it too.
    witness = await subscribe(webhooks, tokens(), receiver.url(early), ["accrual.recorded"], partner)
    before = await accrual(publish, partner)
    await delivered(webhooks, tokens(), witness["id"], 1)

    path = new_path()
    subscription = await subscribe(webhooks, tokens(), receiver.url(path), ["accrual.recorded"], partner)
    after = [await accrual(publish, partner), await accrual(publish, partner, "accrual.adjusted")]
    await arrived(receiver, path, 1)
    assert event_ids(receiver, path) == [after[0]]

    answer_ = await webhooks.post(f"/v1/webhooks/{subscription['id']}/replay",
                                  json={"since": "2020-01-01T00:00:00Z"}, headers=tokens())
    assert answer_.status_code == 202, answer_.text
    assert answer_.json()["deliveries"] == 2  # the two accrual.recorded; accrual.adjusted is not subscribed to
    await arrived(receiver, path, 3)
    assert sorted(event_ids(receiver, path)) == sorted([before, after[0], after[0]])

    future = await webhooks.post(f"/v1/webhooks/{subscription['id']}/replay",
                                 json={"since": "2199-01-01T00:00:00Z"}, headers=tokens())
    assert future.json()["deliveries"] == 0
    bad = await webhooks.post(f"/v1/webhooks/{subscription['id']}/replay", json={"since": "yesterday"},
                              headers=tokens())
    assert bad.status_code == 422


async def test_a_rotated_secret_signs_alongside_the_new_one(
    webhooks: httpx.AsyncClient, receiver: Receiver, publish: Publish, tokens: Tokens,
) -> None:
    partner = uuid.uuid4()
    path = new_path()
    headers = tokens("partner", partner)
    subscription = await subscribe(webhooks, headers, receiver.url(path), ["fund.claim_paid"])
    rotated = await webhooks.post(f"/v1/webhooks/{subscription['id']}/secret", headers=headers)
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    assert new.startswith("whsec_") and new != subscription["secret"]
    assert rotated.json()["previous_secret_expires_at"] is not None

    await publish("funds.funds", "fund.claim_paid", str(partner), {"id": str(uuid.uuid4()),
                                                                  "partner_id": str(partner)})
    await arrived(receiver, path, 1)
    request = receiver.at(path)[0]
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    Webhook(new).verify(request.body, request.headers)
    Webhook(subscription["secret"]).verify(request.body, request.headers)


@pytest.fixture
def short_windows(webhook_settings: Settings) -> Iterator[None]:
    """Retry and disable windows of 3 s for one test, in the running service's own settings."""
    saved = (webhook_settings.webhook_retry_window_seconds, webhook_settings.webhook_disable_after_seconds)
    webhook_settings.webhook_retry_window_seconds = webhook_settings.webhook_disable_after_seconds = 3.0
    yield
    webhook_settings.webhook_retry_window_seconds, webhook_settings.webhook_disable_after_seconds = saved


@pytest.mark.usefixtures("short_windows")
async def test_a_subscription_failing_for_the_whole_window_is_disabled(
    webhooks: httpx.AsyncClient, receiver: Receiver, publish: Publish, tokens: Tokens,
) -> None:
    partner = uuid.uuid4()
    path = new_path()
    receiver.behaviours[path] = answer(503)
    subscription = await subscribe(webhooks, tokens(), receiver.url(path), ["accrual.recorded"], partner)
    await accrual(publish, partner)

    async def disabled() -> bool:
        one = (await webhooks.get(f"/v1/webhooks/{subscription['id']}", headers=tokens())).json()
        return bool(one["status"] == "disabled")

    await eventually(disabled, within=60)

    # Once the retry window (3 s here) is spent the delivery is failed; nothing more is tried.
    async def failed() -> bool:
        return len(await deliveries(webhooks, tokens(), subscription["id"], "failed")) == 1

    await eventually(failed, within=60)
    # Active again lifts it; a receiver that works again gets what comes next.
    receiver.behaviours[path] = answer(200)
    resumed = await webhooks.patch(f"/v1/webhooks/{subscription['id']}", json={"status": "active"},
                                   headers=tokens())
    assert resumed.status_code == 200 and resumed.json()["status"] == "active"
    later = await accrual(publish, partner)
    await eventually(lambda: later in event_ids(receiver, path))


async def test_paused_and_deleted_subscriptions_receive_nothing(
    webhooks: httpx.AsyncClient, receiver: Receiver, publish: Publish, tokens: Tokens,
) -> None:
    partner = uuid.uuid4()
    paused_path, deleted_path, witness_path = new_path(), new_path(), new_path()
    paused = await subscribe(webhooks, tokens(), receiver.url(paused_path), ["*"], partner)
    deleted = await subscribe(webhooks, tokens(), receiver.url(deleted_path), ["*"], partner)
    await subscribe(webhooks, tokens(), receiver.url(witness_path), ["*"], partner)
    patched = await webhooks.patch(f"/v1/webhooks/{paused['id']}", json={"status": "paused"}, headers=tokens())
    assert patched.json()["status"] == "paused"
    gone = await webhooks.delete(f"/v1/webhooks/{deleted['id']}", headers=tokens())
    assert gone.status_code == 204
    assert (await webhooks.get(f"/v1/webhooks/{deleted['id']}", headers=tokens())).status_code == 404

    event_id = await accrual(publish, partner)
    await eventually(lambda: event_id in event_ids(receiver, witness_path))
    assert receiver.at(paused_path) == [] and receiver.at(deleted_path) == []
    assert await deliveries(webhooks, tokens(), paused["id"]) == []


async def test_two_replicas_share_the_queue_and_its_per_subscription_limit(
    webhooks: httpx.AsyncClient, receiver: Receiver, publish: Publish, tokens: Tokens,
    infrastructure: Infrastructure, webhook_settings: Settings,
) -> None:
    """A second delivery worker on the same database, as another replica runs it: claims skip what the other
    holds, and the limit of 2 in flight per subscription counts both replicas' deliveries."""
    from partnerhub.db import Database
    from services.webhooks.usecases import DeliveryWorker

    partner = uuid.uuid4()
    paths = [new_path(), new_path()]
    release = asyncio.Event()

    async def held(_request: object) -> int:
        await release.wait()
        return 200

    for path in paths:
        receiver.behaviours[path] = held
    subscriptions = [await subscribe(webhooks, tokens(), receiver.url(p), ["accrual.recorded"], partner)
                     for p in paths]
    db = Database(infrastructure.database_urls["webhooks"], "webhooks")
    replica = DeliveryWorker(db, webhook_settings)
    running = asyncio.create_task(replica.run())
    try:
        sent = [await accrual(publish, partner) for _ in range(8)]
        await eventually(lambda: all(receiver.in_flight.get(p, 0) == 2 for p in paths), within=60)
        await asyncio.sleep(0.5)  # both replicas polling meanwhile: neither may start a third
        assert all(receiver.most_in_flight[p] == 2 for p in paths)
        release.set()
        for path in paths:
            receiver.behaviours[path] = answer(200)
        for subscription in subscriptions:
            await delivered(webhooks, tokens(), subscription["id"], 8)
        assert all(set(event_ids(receiver, p)) == set(sent) for p in paths)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await db.dispose()

"""Webhook rules without I/O: scope, Standard Webhooks signatures, the retry schedule, URL safety, fair claiming."""

from __future__ import annotations

import base64
import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook

from services.webhooks import domain
from services.webhooks.domain import Due, RetryPolicy, UnsafeUrl

A, B = uuid.uuid4(), uuid.uuid4()
ALLOWED = domain.allowed_host_set("127.0.0.1, localhost")


# --- scope -----------------------------------------------------------------------------------------------------


def test_an_event_is_about_the_partner_it_names() -> None:
    assert domain.event_partners("accrual.adjusted", {"partner_id": str(A)}) == {A}
    assert domain.event_partners("statement.closed", {"partner_id": str(A), "period": "2026-11"}) == {A}
    assert domain.event_partners("partner.tier_changed", {"id": str(A), "tier": "gold"}) == {A}
    assert domain.event_partners("recalculation.completed", {"partner_id": None, "account_id": str(B)}) == set()
    assert domain.event_partners("fund.claim_paid", {"partner_id": "not-a-uuid"}) == set()


def test_an_account_event_is_about_its_owner_and_the_owner_before_the_change() -> None:
    assert domain.event_partners("account.reclassified", {"owner_partner_id": str(A)}) == {A}
    moved = {"owner_partner_id": str(B), "from": str(A), "to": str(B)}
    assert domain.event_partners("account.ownership_changed", moved) == {A, B}
    released = {"owner_partner_id": None, "from": str(A), "to": None}
    assert domain.event_partners("account.ownership_changed", released) == {A}
    assert domain.event_partners("account.created", {"owner_partner_id": None}) == set()


def test_a_partner_subscription_receives_only_its_partners_events_of_its_types() -> None:
    about_a = frozenset({A})
    assert domain.receives(A, ["accrual.adjusted"], "active", "accrual.adjusted", about_a)
    assert domain.receives(A, ["*"], "active", "fund.claim_paid", about_a)
    assert not domain.receives(B, ["*"], "active", "fund.claim_paid", about_a)
    assert not domain.receives(A, ["accrual.recorded"], "active", "accrual.adjusted", about_a)
    assert not domain.receives(A, ["*"], "paused", "accrual.adjusted", about_a)
    assert not domain.receives(A, ["*"], "disabled", "accrual.adjusted", about_a)
    assert not domain.receives(A, ["*"], "active", "recalculation.completed", frozenset())
    # A subscription without a partner (an admin's) receives every partner's events, and those about none.
    assert domain.receives(None, ["*"], "active", "recalculation.completed", frozenset())


# --- signatures ------------------------------------------------------------------------------------------------

# The Standard Webhooks specification's example: secret, id, timestamp, payload and the signature they give.
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_signing_matches_the_specifications_example() -> None:
    assert domain.sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY) == VECTOR_SIGNATURE
    reference = Webhook(VECTOR_SECRET).sign(VECTOR_ID, datetime.fromtimestamp(VECTOR_TIMESTAMP, UTC), VECTOR_BODY)
    assert reference == VECTOR_SIGNATURE


def test_headers_carry_a_signature_per_secret_that_standardwebhooks_verifies() -> None:
    old, new = domain.new_secret(), domain.new_secret()
    now = datetime.now(UTC)
    body = b'{"id": "e-1", "type": "accrual.adjusted"}'
    headers = domain.webhook_headers([new, old], "e-1", now, body)
    assert headers["webhook-id"] == "e-1" and headers["webhook-timestamp"] == str(int(now.timestamp()))
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Webhook(new).verify(body, headers) == {"id": "e-1", "type": "accrual.adjusted"}
    assert Webhook(old).verify(body, headers)


def test_a_new_secret_is_whsec_and_base64_of_32_random_bytes() -> None:
    one, two = domain.new_secret(), domain.new_secret()
    assert one.startswith("whsec_") and one != two
    assert len(base64.b64decode(one.removeprefix("whsec_"))) == 32


def test_the_replaced_secret_signs_only_while_its_overlap_lasts() -> None:
    now = datetime(2026, 12, 7, 12, tzinfo=UTC)
    assert domain.signing_secrets("new", "old", now + timedelta(hours=1), now) == ["new", "old"]
    assert domain.signing_secrets("new", "old", now, now) == ["new"]
    assert domain.signing_secrets("new", None, None, now) == ["new"]


# --- retries ---------------------------------------------------------------------------------------------------


def test_backoff_starts_at_seconds_and_grows_to_hours_within_its_bounds() -> None:
    policy = RetryPolicy()
    rng = random.Random(7)
    for attempt in range(1, 30):
        top = policy.ceiling(attempt)
        for _ in range(50):
            delay = policy.delay(attempt, rng)
            assert top / 2 <= delay <= top
    assert policy.ceiling(1) == timedelta(seconds=5)
    assert policy.ceiling(2) == timedelta(seconds=10)
    assert policy.ceiling(30) == timedelta(hours=4)


def test_the_schedule_retries_for_the_window_then_gives_up() -> None:
    policy = RetryPolicy()
    rng = random.Random(1)
    started = datetime(2026, 12, 7, tzinfo=UTC)
    now, attempt, tries = started, 1, []
    while (following := policy.next_attempt(attempt, started, now, rng)) is not None:
        assert following > now and following <= started + policy.window
        tries.append(following - now)
        now, attempt = following, attempt + 1
    assert now == started + policy.window  # the last try falls at the window's end
    assert tries[0] <= timedelta(seconds=5) and max(tries) > timedelta(hours=1)
    assert 10 <= len(tries) <= 30


def test_a_subscription_is_disabled_once_it_failed_for_the_whole_window() -> None:
    now = datetime(2026, 12, 7, tzinfo=UTC)
    day = timedelta(hours=24)
    assert domain.should_disable(now - day, now, day)
    assert not domain.should_disable(now - day + timedelta(seconds=1), now, day)
    assert not domain.should_disable(None, now, day)


# --- URL safety ------------------------------------------------------------------------------------------------


def test_only_https_except_for_allowed_hosts() -> None:
    assert domain.parse_target("https://erp.example.com/hook", ALLOWED).port == 443
    assert domain.parse_target("http://127.0.0.1:9000/hook", ALLOWED).allowed
    assert domain.parse_target("http://LOCALHOST:9000/hook", ALLOWED).allowed
    for url, rule in [("http://erp.example.com/hook", "only https"), ("ftp://erp.example.com/", "only https"),
                      ("https:///nohost", "must name a host"), ("https://u:p@erp.example.com/", "credentials"),
                      ("https://erp.example.com:99999/", "not well-formed")]:
        with pytest.raises(UnsafeUrl, match=rule):
            domain.parse_target(url, ALLOWED)


@pytest.mark.parametrize(("address", "rule"), [
    ("10.0.0.1", "private"), ("192.168.1.20", "private"), ("172.16.0.9", "private"), ("127.0.0.1", "loopback"),
    ("::1", "loopback"), ("169.254.169.254", "metadata"), ("169.254.10.10", "link-local"), ("fe80::1", "link-local"),
    ("fd00:ec2::254", "metadata"), ("::ffff:10.0.0.1", "private"), ("100.64.0.1", "not a public"),
    ("0.0.0.0", "not a public"), ("224.0.0.1", "not a public"),
])
def test_no_delivery_to_an_address_that_is_not_public(address: str, rule: str) -> None:
    target = domain.parse_target("https://hooks.example.com/x", ALLOWED)
    with pytest.raises(UnsafeUrl, match=rule):
        domain.check_addresses(target, [address])
    # One bad answer among good ones is enough to refuse (a rebinding trick needs only one).
    with pytest.raises(UnsafeUrl):
        domain.check_addresses(target, ["93.184.216.34", address])


def test_public_addresses_and_allowed_hosts_pass() -> None:
    domain.check_addresses(domain.parse_target("https://hooks.example.com/x", ALLOWED), ["93.184.216.34",
                                                                                        "2606:2800:220:1::1"])
    domain.check_addresses(domain.parse_target("http://localhost:8080/x", ALLOWED), ["127.0.0.1"])
    with pytest.raises(UnsafeUrl, match="does not resolve"):
        domain.check_addresses(domain.parse_target("https://hooks.example.com/x", ALLOWED), [])


# --- claiming --------------------------------------------------------------------------------------------------


def test_claims_take_the_oldest_first_within_each_subscriptions_share() -> None:
    slow, other = uuid.uuid4(), uuid.uuid4()
    t0 = datetime(2026, 12, 7, tzinfo=UTC)
    due = [Due(uuid.uuid4(), slow, t0 + timedelta(seconds=i)) for i in range(10)]
    due.append(Due(uuid.uuid4(), other, t0 + timedelta(seconds=20)))
    chosen = domain.choose_claims(due, {slow: 1}, per_subscription=4, free_slots=10)
    assert [d.subscription_id for d in chosen] == [slow, slow, slow, other]
    assert [d.next_attempt_at for d in chosen[:3]] == [t0, t0 + timedelta(seconds=1), t0 + timedelta(seconds=2)]
    assert domain.choose_claims(due, {}, per_subscription=4, free_slots=2) == due[:2]
    assert domain.choose_claims(due, {slow: 4, other: 4}, per_subscription=4, free_slots=10) == []


def test_a_failing_subscription_is_sent_one_delivery_at_a_time() -> None:
    failing, healthy = uuid.uuid4(), uuid.uuid4()
    t0 = datetime(2026, 12, 7, tzinfo=UTC)
    due = [Due(uuid.uuid4(), failing, t0 + timedelta(seconds=i), failing=True) for i in range(4)]
    due += [Due(uuid.uuid4(), healthy, t0 + timedelta(seconds=10 + i)) for i in range(4)]
    chosen = domain.choose_claims(due, {}, per_subscription=4, free_slots=10)
    assert [d.subscription_id for d in chosen] == [failing, healthy, healthy, healthy, healthy]
    assert domain.choose_claims(due[:4], {failing: 1}, per_subscription=4, free_slots=10) == []


def test_only_a_2xx_answer_delivers() -> None:
    assert domain.answer_error(200) is None and domain.answer_error(204) is None
    assert "redirect" in (domain.answer_error(301) or "")
    assert domain.answer_error(500) == "the receiver answered 500"
    assert domain.answer_error(404) == "the receiver answered 404"


def test_a_subscription_fails_since_the_oldest_delivery_failing_after_its_last_delivered_one() -> None:
    sub, other = uuid.uuid4(), uuid.uuid4()
    t = datetime(2026, 12, 7, tzinfo=UTC)

    def at(seconds: int, delivered: bool, owed: int, who: uuid.UUID = sub) -> domain.Attempted:
        return domain.Attempted(who, t + timedelta(seconds=seconds), delivered, t + timedelta(seconds=owed))

    found = domain.failing_after([at(5, False, 3), at(1, False, 0), at(4, True, 2), at(6, False, 1, other)])
    # sub: delivered at 4 s, then one failure owed since 3 s; other: failing, keeps any earlier start it has.
    assert found == {sub: domain.Failing(True, t + timedelta(seconds=3)),
                     other: domain.Failing(False, t + timedelta(seconds=1))}
    assert domain.failing_after([at(1, False, 0), at(2, True, 0)]) == {sub: domain.Failing(True, None)}


def test_a_secret_is_sealed_with_the_first_key_and_opened_with_any() -> None:
    from cryptography.fernet import Fernet

    from partnerhub.config import Settings

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    secret = domain.new_secret()
    assert domain.seal(secret, "") == secret and domain.unseal(secret, old) == secret  # none configured: as issued
    sealed = domain.seal(secret, old)
    assert sealed.startswith("fernet:") and secret not in sealed
    assert domain.unseal(sealed, f"{new},{old}") == secret  # the sealing key replaced: the old one still opens
    with pytest.raises(domain.SecretUnavailable, match="none of"):
        domain.unseal(sealed, new)
    with pytest.raises(domain.SecretUnavailable, match="is not set"):
        domain.unseal(sealed, "")
    with pytest.raises(ValueError, match="Fernet key"):
        Settings(webhook_secrets_keys="not-a-key")


def test_a_lease_must_outlast_an_attempt() -> None:
    from partnerhub.config import Settings

    with pytest.raises(ValueError, match="must exceed"):
        Settings(webhook_timeout_seconds=10, webhook_lease_seconds=10)
    assert Settings(webhook_timeout_seconds=10, webhook_lease_seconds=11).webhook_lease_seconds == 11

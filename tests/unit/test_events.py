import json

import pytest

from partnerhub.events import EnvelopeError, OutgoingEvent, dumps, parse_event, parse_message


def test_envelope_round_trip() -> None:
    event = OutgoingEvent(topic="t", type="sale.recorded", key="acc-1", subject="S-1", data={"sale_id": "S-1"})
    parsed = parse_event(dumps(event.envelope("tests")))
    assert parsed.id == event.id and parsed.subject == "S-1" and parsed.specversion == "1.0"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [(b"not json", "not JSON"), (b"[1]", "not a JSON object"), (b'{"specversion": "1.0"}', "CloudEvents"),
     (None, "no value")],
)
def test_invalid_messages_say_why(raw: bytes | None, reason: str) -> None:
    with pytest.raises(EnvelopeError, match=reason):
        parse_event(raw)


def test_consumer_membership_follows_the_settings() -> None:
    from partnerhub.config import Settings
    from partnerhub.consumer import membership

    dynamic = membership(Settings(kafka_session_timeout_ms=6000, kafka_rebalance_timeout_ms=2000), "funds.accruals")
    assert dynamic == {"session_timeout_ms": 6000, "heartbeat_interval_ms": 2000, "rebalance_timeout_ms": 2000}
    static = membership(Settings(kafka_instance_id="funds-0", kafka_session_timeout_ms=10_000,
                                 kafka_heartbeat_interval_ms=500), "funds.accruals")
    assert static["group_instance_id"] == "funds-0.funds.accruals" and static["heartbeat_interval_ms"] == 500
    assert static["session_timeout_ms"] == 10_000 and "group_instance_id" not in dynamic


def test_both_modes_of_the_kafka_binding_parse_to_the_same_event() -> None:
    data = {"sale_id": "S-1", "amount": "10.00"}
    structured = parse_message(json.dumps({
        "specversion": "1.0", "id": "e-1", "source": "crm", "type": "sale.recorded", "subject": "S-1",
        "time": "2026-03-07T10:00:05Z", "datacontenttype": "application/json", "data": data}).encode(),
        [("content-type", b"application/cloudevents+json")])
    binary = parse_message(json.dumps(data).encode(), [
        ("ce_specversion", b"1.0"), ("ce_id", b"e-1"), ("ce_source", b"crm"), ("ce_type", b"sale.recorded"),
        ("ce_subject", b"S-1"), ("ce_time", b"2026-03-07T10:00:05Z"), ("content-type", b"application/json")])
    assert binary == structured
    for value, headers, why in (
        (b"not json", [("ce_specversion", b"1.0"), ("ce_id", b"e"), ("ce_source", b"s"), ("ce_type", b"t")],
         "not JSON"),
        (b"{}", [("ce_specversion", b"1.0"), ("ce_source", b"s"), ("ce_type", b"t")], "id"),
        (b"{}", [("ce_specversion", b"1.0"), ("ce_id", b"e"), ("ce_source", b"s"), ("ce_type", b"t"),
                 ("content-type", b"text/plain")], "application/json"),
        (b"{}", [("ce_specversion", b"1.0"), ("ce_id", b"\xff"), ("ce_source", b"s"), ("ce_type", b"t")], "UTF-8"),
    ):
        with pytest.raises(EnvelopeError, match=why):
            parse_message(value, headers)

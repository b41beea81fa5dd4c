import pytest

from partnerhub.events import EnvelopeError, OutgoingEvent, dumps, parse_event


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

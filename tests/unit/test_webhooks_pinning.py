"""A public host is connected to at the address its check resolved (no second lookup), under its own name for
the Host header and TLS (SNI and the certificate check)."""

from __future__ import annotations

from services.webhooks.domain import parse_target
from services.webhooks.usecases import pinned


def test_a_public_host_is_reached_at_the_checked_address_under_its_name() -> None:
    headers: dict[str, str] = {}
    url, extensions = pinned(parse_target("https://hooks.example.com:8443/in?x=1", frozenset()),
                              ["93.184.216.34"], headers)
    assert url == "https://93.184.216.34:8443/in?x=1"
    assert headers == {"host": "hooks.example.com:8443"} and extensions == {"sni_hostname": "hooks.example.com"}

    headers = {}
    url, extensions = pinned(parse_target("https://hooks.example.com/in", frozenset()), ["2606:2800:220:1::1"],
                              headers)
    assert url == "https://[2606:2800:220:1::1]/in" and headers == {"host": "hooks.example.com"}


def test_an_address_literal_or_an_allowed_host_is_used_as_written() -> None:
    literal = parse_target("https://93.184.216.34/in", frozenset())
    assert pinned(literal, ["93.184.216.34"], {}) == ("https://93.184.216.34/in", {})
    allowed = parse_target("http://localhost:9000/in", frozenset({"localhost"}))
    assert pinned(allowed, [], {}) == ("http://localhost:9000/in", {})

from decimal import Decimal

import pytest

from partnerhub.money import check_currency, format_money, format_rate, parse_money, parse_rate, round_money


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0.005", "0.01"), ("0.004", "0.00"), ("2.675", "2.68"), ("-0.005", "-0.01"), ("1.5", "1.50")],
)
def test_rounding_is_half_up_to_the_cent(value: str, expected: str) -> None:
    assert format_money(round_money(Decimal(value))) == expected


def test_money_must_be_a_string_with_at_most_two_decimals() -> None:
    assert parse_money("1250") == Decimal("1250.00")
    assert format_money(parse_money("1250.5")) == "1250.50"
    for bad in (1250.0, "12.345", "abc", "NaN", "Infinity", None):
        with pytest.raises(ValueError):
            parse_money(bad)


def test_rates_are_non_negative_decimal_strings() -> None:
    assert parse_rate("0.05") == Decimal("0.05")
    assert format_rate(Decimal("0.050000")) == "0.05"
    for bad in (0.05, "-0.01", "x"):
        with pytest.raises(ValueError):
            parse_rate(bad)


def test_only_two_decimal_iso_currencies() -> None:
    assert check_currency("EUR") == "EUR"
    for bad in ("JPY", "KWD", "usd", "XXX", 840):
        with pytest.raises(ValueError):
            check_currency(bad)

"""Exact money: Decimal end to end, half-up to the cent once per entry."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

CENT = Decimal("0.01")
# CONTRACT §1: a money amount has at most 12 digits before the point.
MAX_WHOLE_DIGITS = 12
# ISO 4217 codes whose minor unit is 2 (the only ones Partner Hub books).
TWO_DECIMAL_CURRENCIES = frozenset(
    """AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BRL BSD BTN BWP BYN BZD CAD CDF
    CHF CNY COP CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG
    HUF IDR ILS INR IRR KES KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR
    MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK
    SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD UYU UZS VED VES WST XCD
    YER ZAR ZMW ZWG""".split()
)


def round_money(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def format_money(value: Decimal) -> str:
    return str(round_money(value))


def parse_money(raw: object) -> Decimal:
    """A money amount given as a string with at most two decimals; floats are refused."""
    if isinstance(raw, Decimal):
        raw = str(raw)
    if not isinstance(raw, str):
        raise ValueError("money must be a string such as \"1250.00\"")
    try:
        value = Decimal(raw)
    except InvalidOperation as exc:
        raise ValueError(f"{raw!r} is not a decimal amount") from exc
    if not value.is_finite():
        raise ValueError(f"{raw!r} is not a finite amount")
    if value and value.adjusted() >= MAX_WHOLE_DIGITS:
        raise ValueError(f"{raw!r} is too large: an amount has at most {MAX_WHOLE_DIGITS} digits before the point")
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -2:
        raise ValueError(f"{raw!r} has more than two decimals")
    return round_money(value)


def parse_rate(raw: object) -> Decimal:
    if isinstance(raw, Decimal):
        raw = str(raw)
    if not isinstance(raw, str):
        raise ValueError("a rate must be a decimal string such as \"0.05\"")
    try:
        value = Decimal(raw)
    except InvalidOperation as exc:
        raise ValueError(f"{raw!r} is not a decimal rate") from exc
    if not value.is_finite() or value < 0:
        raise ValueError(f"{raw!r} is not a non-negative rate")
    return value


def format_rate(value: Decimal) -> str:
    return format(value.normalize(), "f")


def check_currency(code: object) -> str:
    if not isinstance(code, str) or code not in TWO_DECIMAL_CURRENCIES:
        raise ValueError(f"{code!r} is not an ISO 4217 currency with two decimals")
    return code

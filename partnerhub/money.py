"""Exact money: Decimal end to end, half-up to the cent once per entry."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

CENT = Decimal("0.01")
# CONTRACT §1: a money amount has at most 12 digits before the point.
MAX_WHOLE_DIGITS = 12
# The written form of an amount and of a rate, as the OpenAPI documents declare them (no exponent, no sign but
# a leading minus, no spaces): what matches is accepted, what does not is refused with the reason.
MONEY_PATTERN = r"^-?\d{1,12}(\.\d{1,2})?$"
RATE_PATTERN = r"^\d+(\.\d+)?$"
# A positive amount in its plain form (no leading zeros, no sign): what a sale, a budget or a claim is.
POSITIVE_MONEY_PATTERN = r"^([1-9]\d{0,11}(\.\d{1,2})?|0\.(0[1-9]|[1-9]\d?))$"
# Rates are fractions of revenue stored with 6 decimals: [0, 1], and (0, 1] where zero means nothing.
FRACTION_PATTERN = r"^(0(\.\d{1,6})?|1(\.0{1,6})?)$"
POSITIVE_FRACTION_PATTERN = (
    r"^(0\.([1-9]\d{0,5}|0[1-9]\d{0,4}|00[1-9]\d{0,3}|000[1-9]\d{0,2}|0000[1-9]\d?|00000[1-9])|1(\.0{1,6})?)$"
)
# An exchange rate: how many units of the quote currency one unit of the base buys; above zero, at most 8 digits
# before the point and 10 after it (as stored).
EXCHANGE_RATE_PATTERN = r"^(0|[1-9]\d{0,7})(\.\d{1,10})?$"
_MONEY = re.compile(MONEY_PATTERN)
_RATE = re.compile(RATE_PATTERN)
_POSITIVE_MONEY = re.compile(POSITIVE_MONEY_PATTERN)
_FRACTION = re.compile(FRACTION_PATTERN)
_POSITIVE_FRACTION = re.compile(POSITIVE_FRACTION_PATTERN)
_EXCHANGE_RATE = re.compile(EXCHANGE_RATE_PATTERN)
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
        raw = format(raw, "f")
    if not isinstance(raw, str):
        raise ValueError("money must be a string such as \"1250.00\"")
    if not _MONEY.match(raw):
        try:
            value = Decimal(raw)
        except InvalidOperation as exc:
            raise ValueError(f"{raw!r} is not a decimal amount such as \"1250.00\"") from exc
        if value.is_finite() and value and value.adjusted() >= MAX_WHOLE_DIGITS:
            raise ValueError(f"{raw!r} is too large: an amount has at most {MAX_WHOLE_DIGITS} digits before the point")
        exponent = value.as_tuple().exponent
        if isinstance(exponent, int) and exponent < -2:
            raise ValueError(f"{raw!r} has more than two decimals")
        raise ValueError(f"{raw!r} is not written as an amount: digits, a point and up to two decimals, "
                         "such as \"1250.00\" or \"-12.50\"")
    return round_money(Decimal(raw))


def parse_rate(raw: object) -> Decimal:
    if isinstance(raw, Decimal):
        raw = format(raw, "f")
    if not isinstance(raw, str):
        raise ValueError("a rate must be a decimal string such as \"0.05\"")
    if not _RATE.match(raw):
        raise ValueError(f"{raw!r} is not a non-negative decimal rate such as \"0.05\"")
    return Decimal(raw)


def parse_positive_money(raw: object) -> Decimal:
    if isinstance(raw, str) and _POSITIVE_MONEY.match(raw):  # the usual case: plainly written, so a money amount
        return round_money(Decimal(raw))
    value = parse_money(raw)
    if isinstance(raw, str) and not _POSITIVE_MONEY.match(raw):
        raise ValueError(f"{raw!r} is not a positive amount written plainly, such as \"1250.00\" or \"0.50\"")
    return value


def parse_fraction(raw: object) -> Decimal:
    value = parse_rate(raw)
    if isinstance(raw, str) and not _FRACTION.match(raw):
        raise ValueError(f"{raw!r} is not a rate from 0 to 1 with at most 6 decimals, such as \"0.05\"")
    return value


def parse_positive_fraction(raw: object) -> Decimal:
    value = parse_rate(raw)
    if isinstance(raw, str) and not _POSITIVE_FRACTION.match(raw):
        raise ValueError(f"{raw!r} is not a rate above 0 and at most 1 with at most 6 decimals, such as \"0.05\"")
    return value


def parse_exchange_rate(raw: object) -> Decimal:
    value = parse_rate(raw)
    if (isinstance(raw, str) and not _EXCHANGE_RATE.match(raw)) or not value:
        raise ValueError(f"{raw!r} is not an exchange rate above 0 with at most 8 digits before the point and 10 "
                         "after it, such as \"0.0283\"")
    return value


def format_rate(value: Decimal) -> str:
    return format(value.normalize(), "f")


def check_currency(code: object) -> str:
    if not isinstance(code, str) or code not in TWO_DECIMAL_CURRENCIES:
        raise ValueError(f"{code!r} is not an ISO 4217 currency with two decimals")
    return code

"""Pydantic field types for the contract's conventions: money strings, rates, UTC timestamps, currencies."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, WithJsonSchema

from partnerhub.money import (
    EXCHANGE_RATE_PATTERN,
    FRACTION_PATTERN,
    MONEY_PATTERN,
    POSITIVE_FRACTION_PATTERN,
    POSITIVE_MONEY_PATTERN,
    TWO_DECIMAL_CURRENCIES,
    check_currency,
    format_money,
    format_rate,
    parse_exchange_rate,
    parse_fraction,
    parse_money,
    parse_positive_fraction,
    parse_positive_money,
)
from partnerhub.timeutil import BEGINNING, isoformat, stored_utc, to_utc

Money = Annotated[
    Decimal,
    BeforeValidator(parse_money),
    PlainSerializer(format_money, return_type=str),
    WithJsonSchema({"type": "string", "pattern": MONEY_PATTERN, "examples": ["1250.00"],
                    "description": "at most 12 digits before the point and 2 after it"}),
]
# An amount that must be above zero (a sale, a budget, a request, a claim).
PositiveMoney = Annotated[
    Decimal,
    BeforeValidator(parse_positive_money),
    PlainSerializer(format_money, return_type=str),
    WithJsonSchema({"type": "string", "pattern": POSITIVE_MONEY_PATTERN, "examples": ["1250.00"],
                    "description": "above zero, at most 12 digits before the point and 2 after it"}),
]
# A rate is a fraction of revenue, from 0 to 1 with at most 6 decimals (as stored).
Rate = Annotated[
    Decimal,
    BeforeValidator(parse_fraction),
    PlainSerializer(format_rate, return_type=str),
    WithJsonSchema({"type": "string", "pattern": FRACTION_PATTERN, "examples": ["0.05"]}),
]
PositiveRate = Annotated[
    Decimal,
    BeforeValidator(parse_positive_fraction),
    PlainSerializer(format_rate, return_type=str),
    WithJsonSchema({"type": "string", "pattern": POSITIVE_FRACTION_PATTERN, "examples": ["0.05"]}),
]
# 1 base = rate quote: above zero, at most 8 digits before the point and 10 after it.
ExchangeRate = Annotated[
    Decimal,
    BeforeValidator(parse_exchange_rate),
    PlainSerializer(format_rate, return_type=str),
    WithJsonSchema({"type": "string", "pattern": EXCHANGE_RATE_PATTERN, "examples": ["0.0283"],
                    "description": "units of the quote currency one unit of the base buys; above zero"}),
]
Currency = Annotated[
    str,
    AfterValidator(check_currency),
    WithJsonSchema({"type": "string", "enum": sorted(TWO_DECIMAL_CURRENCIES), "examples": ["USD"],
                    "description": "ISO 4217, a currency whose minor unit is 2"}),
]
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
# ISO 3166-1 alpha-2, officially assigned codes.
COUNTRIES = frozenset(
    """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS
    BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE
    EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM
    HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC
    LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA
    NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW
    SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO
    TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW
    """.split()
)


def _rfc3339(value: object) -> object:
    """JSON timestamps are RFC 3339 strings with an offset; numbers and zone-less strings are refused."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and _TIMESTAMP.match(value):  # the usual case: one match accepts it
        return value
    if not isinstance(value, str) or not RFC3339.match(value):
        raise ValueError("a timestamp is an RFC 3339 string with a time zone, e.g. 2026-02-01T10:00:00Z")
    if not _TIMESTAMP.match(value):
        raise ValueError("a timestamp must be a real date and time (at most 6 decimals of a second) and lie "
                         "between 1900-01-01T00:00:00Z and 2200-01-01T00:00:00Z")
    return value


# CONTRACT §1: every accepted timestamp lies in [EARLIEST, LATEST), so nothing computed from one overflows.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def _utc_in_bounds(value: datetime) -> datetime:
    value = to_utc(value)
    if not EARLIEST <= value < LATEST:
        raise ValueError("a timestamp must lie between 1900-01-01T00:00:00Z and 2200-01-01T00:00:00Z")
    return value




def _date_pattern(years: str, leap_years: str) -> str:
    """A calendar date of the given years, as a regular expression: every month with its own days, and
    February's 29th in leap years only."""
    days = (r"(0[1-9]|1\d|2[0-8])", r"(29|30)", "31")
    return (rf"(({years})-(0[1-9]|1[0-2])-{days[0]}|({years})-(0[13-9]|1[0-2])-{days[1]}"
            rf"|({years})-(0[13578]|1[02])-{days[2]}|({leap_years})-02-29)")


# Years 1900-2199, and those of them that are leap years (1900 and 2100 are not).
YEARS = r"(19|20|21)\d{2}"
LEAP_YEARS = r"19(0[48]|[2468][048]|[13579][26])|20([02468][048]|[13579][26])|21(0[48]|[2468][048]|[13579][26])"
TIME = r"([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,6})?([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)"
# What the documents declare: exactly the timestamps and dates accepted (the bounds are checked on the UTC
# instant, so only a 1900-01-01 with a positive offset or a 2199-12-31 with a negative one can differ).
TIMESTAMP_PATTERN = rf"^{_date_pattern(YEARS, LEAP_YEARS)}[Tt ]{TIME}$"
DATE_PATTERN = rf"^{_date_pattern(YEARS, LEAP_YEARS)}$"
_TIMESTAMP = re.compile(TIMESTAMP_PATTERN)
# Years 1970-2199 (every timeline begins in 1970), and their leap years.
EFFECTIVE_YEARS = r"19[7-9]\d|2[01]\d{2}"
EFFECTIVE_LEAP_YEARS = r"19(7[26]|8[048]|9[26])|20([02468][048]|[13579][26])|21(0[48]|[2468][048]|[13579][26])"
EFFECTIVE_PATTERN = rf"^{_date_pattern(EFFECTIVE_YEARS, EFFECTIVE_LEAP_YEARS)}[Tt ]{TIME}$"
# Unicode's control characters (category Cc) are exactly these two ranges; the patterns are the OpenAPI
# documents' (ECMA-262 and Python read them alike).
CLEAN_PATTERN = r"^[^\u0000-\u001f\u007f-\u009f]*$"
LINES_PATTERN = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$"
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
CONTROL_BUT_LINES = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def no_control_characters(value: str) -> str:
    """CONTRACT §1: no NUL or other control character (PostgreSQL text cannot even hold a NUL)."""
    if CONTROL.search(value):
        raise ValueError("must not contain a NUL or another control character")
    return value


def plain_text(value: str) -> str:
    """Free text may break lines and hold tabs; no other control character."""
    if CONTROL_BUT_LINES.search(value):
        raise ValueError("must not contain a NUL or a control character other than tab and newline")
    return value


def _country(value: object) -> str:
    if not isinstance(value, str) or value not in COUNTRIES:
        raise ValueError(f"{value!r} is not an ISO 3166-1 alpha-2 country code (e.g. DE, US)")
    return value


UtcDatetime = Annotated[
    datetime,
    BeforeValidator(_rfc3339),
    AfterValidator(_utc_in_bounds),
    PlainSerializer(isoformat, return_type=str),
    WithJsonSchema({"type": "string", "pattern": TIMESTAMP_PATTERN,
                    "description": "RFC 3339 with a time zone, from 1900-01-01T00:00:00Z to before "
                                   "2200-01-01T00:00:00Z", "examples": ["2026-02-01T10:00:00Z"]}),
]


def _from_beginning(value: datetime) -> datetime:
    if value < BEGINNING:
        raise ValueError(f"effective_from must not be before {isoformat(BEGINNING)}")
    return value


# When a change to a timeline takes effect: a timestamp from the beginning of every timeline (1970) on.
EffectiveFrom = Annotated[
    datetime,
    BeforeValidator(_rfc3339),
    AfterValidator(_utc_in_bounds),
    AfterValidator(_from_beginning),
    PlainSerializer(isoformat, return_type=str),
    WithJsonSchema({"type": "string", "pattern": EFFECTIVE_PATTERN,
                    "description": "RFC 3339 with a time zone, from 1970-01-01T00:00:00Z to before "
                                   "2200-01-01T00:00:00Z", "examples": ["2026-02-01T10:00:00Z"]}),
]
# A stored moment on its way out: never refused (a row may predate the bounds), always RFC 3339 UTC.
Instant = Annotated[datetime, AfterValidator(stored_utc), PlainSerializer(isoformat, return_type=str)]
# Codes and keys (sale_id, sku, program and certification codes, event ids): up to 100 characters.
Code = Annotated[str, Field(min_length=1, max_length=100, json_schema_extra={"pattern": CLEAN_PATTERN}),
                 AfterValidator(no_control_characters)]
# Names: up to 500 characters on one line.
Name = Annotated[str, Field(min_length=1, max_length=500, json_schema_extra={"pattern": CLEAN_PATTERN}),
                 AfterValidator(no_control_characters)]
# Free text (reasons, activities): up to 500 characters, tabs and newlines allowed.
FreeText = Annotated[str, Field(max_length=500, json_schema_extra={"pattern": LINES_PATTERN}),
                     AfterValidator(plain_text)]
Country = Annotated[
    str,
    BeforeValidator(_country),
    WithJsonSchema(
        {"type": "string", "enum": sorted(COUNTRIES), "description": "ISO 3166-1 alpha-2", "examples": ["DE"]}
    ),
]


class Input(BaseModel):
    """A request body or command: unknown fields are refused, and booleans and integers must be JSON's own
    (use StrictBool and StrictInt: pydantic would otherwise take 0, "yes" or "5" for them)."""

    model_config = ConfigDict(extra="forbid")

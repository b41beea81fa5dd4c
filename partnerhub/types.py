"""Pydantic field types for the contract's conventions: money strings, rates, UTC timestamps, currencies."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field, PlainSerializer, WithJsonSchema

from partnerhub.money import check_currency, format_money, format_rate, parse_money, parse_rate
from partnerhub.timeutil import isoformat, stored_utc, to_utc

Money = Annotated[
    Decimal,
    BeforeValidator(parse_money),
    PlainSerializer(format_money, return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^-?\d+\.\d{2}$", "examples": ["1250.00"]}),
]
Rate = Annotated[
    Decimal,
    BeforeValidator(parse_rate),
    PlainSerializer(format_rate, return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^\d+(\.\d+)?$", "examples": ["0.05"]}),
]
Currency = Annotated[
    str,
    AfterValidator(check_currency),
    WithJsonSchema({"type": "string", "pattern": "^[A-Z]{3}$", "examples": ["USD"]}),
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
    if not isinstance(value, str) or not RFC3339.match(value):
        raise ValueError("a timestamp is an RFC 3339 string with a time zone, e.g. 2026-02-01T10:00:00Z")
    return value


# CONTRACT §1: every accepted timestamp lies in [EARLIEST, LATEST), so nothing computed from one overflows.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def _utc_in_bounds(value: datetime) -> datetime:
    value = to_utc(value)
    if not EARLIEST <= value < LATEST:
        raise ValueError("a timestamp must lie between 1900-01-01T00:00:00Z and 2200-01-01T00:00:00Z")
    return value


# Unicode's control characters (category Cc) are exactly these two ranges.
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
]
# A stored moment on its way out: never refused (a row may predate the bounds), always RFC 3339 UTC.
Instant = Annotated[datetime, AfterValidator(stored_utc), PlainSerializer(isoformat, return_type=str)]
# Codes and keys (sale_id, sku, program and certification codes, event ids): up to 100 characters.
Code = Annotated[str, Field(min_length=1, max_length=100), AfterValidator(no_control_characters)]
# Names: up to 500 characters on one line.
Name = Annotated[str, Field(min_length=1, max_length=500), AfterValidator(no_control_characters)]
# Free text (reasons, activities): up to 500 characters, tabs and newlines allowed.
FreeText = Annotated[str, Field(max_length=500), AfterValidator(plain_text)]
Country = Annotated[
    str,
    BeforeValidator(_country),
    WithJsonSchema(
        {"type": "string", "pattern": "^[A-Z]{2}$", "description": "ISO 3166-1 alpha-2", "examples": ["DE"]}
    ),
]

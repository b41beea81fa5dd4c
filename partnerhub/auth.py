"""JWT bearer auth: roles admin, partner, system; a partner token reaches only its own partner's data."""

from __future__ import annotations

import time
import uuid
from enum import StrEnum
from typing import Annotated

import jwt
from fastapi import Depends, Request
from pydantic import BaseModel

from partnerhub.config import Settings, get_settings
from partnerhub.problems import Problem


class Role(StrEnum):
    ADMIN = "admin"
    PARTNER = "partner"
    SYSTEM = "system"


class Principal(BaseModel):
    sub: str
    role: Role
    partner_id: uuid.UUID | None = None

    def may_see_partner(self, partner_id: uuid.UUID | str | None) -> bool:
        if self.role is not Role.PARTNER:
            return True
        return partner_id is not None and str(partner_id) == str(self.partner_id)


def issue_token(
    settings: Settings,
    role: Role | str,
    sub: str | None = None,
    partner_id: uuid.UUID | str | None = None,
    ttl_seconds: int = 12 * 3600,
) -> str:
    role = Role(role)
    if role is Role.PARTNER and partner_id is None:
        raise ValueError("a partner token needs a partner id")
    now = int(time.time())
    claims: dict[str, object] = {"sub": sub or f"{role.value}-user", "role": role.value, "iat": now}
    claims["exp"] = now + ttl_seconds
    if partner_id is not None:
        claims["partner_id"] = str(partner_id)
    return jwt.encode(claims, settings.signing_secret, algorithm="HS256")


def _unauthorized(detail: str) -> Problem:
    return Problem(401, "Unauthorized", detail, headers={"WWW-Authenticate": "Bearer"})


def _why_refused(exc: jwt.PyJWTError, settings: Settings) -> str:
    """Why a token was refused, in our words (the library's own messages describe its internals)."""
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "the token has expired"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "the token is not valid yet (its nbf or iat lies in the future)"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"the token lacks the {exc.claim!r} claim"
    if isinstance(exc, jwt.InvalidAlgorithmError):
        wanted = "RS256" if settings.jwt_public_key else "HS256"
        return f"the token must be signed with {wanted}"
    if isinstance(exc, jwt.InvalidSignatureError):
        if settings.jwt_public_key:
            return "the token's signature does not verify with PARTNERHUB_JWT_PUBLIC_KEY"
        return ("the token's signature does not verify: it was signed with another secret "
                "(is PARTNERHUB_JWT_SECRET the same here and where the token was made?)")
    if isinstance(exc, jwt.DecodeError):
        return "the token is not a well-formed JWT (three base64url parts separated by dots)"
    return "the token is not valid"


# Tokens already verified, with the window they are valid in: a client sends the same token with every
# request, and checking its signature again (RS256 above all) would cost more than most requests. Keyed by the
# verifying key too, so a changed secret verifies afresh; bounded, the oldest entries leave first.
_verified: dict[tuple[str, str], tuple[Principal, float, float]] = {}
VERIFIED_CACHE_SIZE = 10_000


def verify_token(token: str, settings: Settings) -> Principal:
    key = settings.jwt_public_key or settings.signing_secret
    known = _verified.get((token, key))
    if known is not None:
        principal, not_before, expires = known
        if not_before <= time.time() < expires:
            return principal
        del _verified[(token, key)]  # expired (or not valid yet): verified again, and refused with its reason
    principal, claims = _verify(token, settings)
    if len(_verified) >= VERIFIED_CACHE_SIZE:
        del _verified[next(iter(_verified))]
    _verified[(token, key)] = (principal, _number(claims.get("nbf"), float("-inf")),
                               _number(claims.get("exp"), float("inf")))
    return principal


def _number(value: object, default: float) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


def _verify(token: str, settings: Settings) -> tuple[Principal, dict[str, object]]:
    try:
        if settings.jwt_public_key:
            claims = jwt.decode(token, settings.jwt_public_key, algorithms=["RS256"], options={"require": ["sub"]})
        else:
            claims = jwt.decode(token, settings.signing_secret, algorithms=["HS256"], options={"require": ["sub"]})
    except jwt.PyJWTError as exc:
        raise _unauthorized(_why_refused(exc, settings)) from exc
    role = claims.get("role")
    if role not in {r.value for r in Role}:
        raise _unauthorized("the token's role claim must be admin, partner or system")
    partner_id = claims.get("partner_id")
    if role == Role.PARTNER.value:
        try:
            partner_id = uuid.UUID(str(partner_id))
        except ValueError as exc:
            raise _unauthorized("a partner token needs a partner_id claim holding a partner id") from exc
    else:
        partner_id = None
    return Principal(sub=str(claims["sub"]), role=Role(role), partner_id=partner_id), claims


async def authenticate(request: Request) -> Principal:
    # async: FastAPI would run a plain function in its thread pool, a thread hop on every request.
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("an Authorization: Bearer <JWT> header is required")
    return verify_token(token.strip(), get_settings())


def require(*roles: Role):  # type: ignore[no-untyped-def]
    allowed = frozenset(roles)

    async def dependency(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if principal.role not in allowed:
            names = ", ".join(sorted(r.value for r in allowed))
            raise Problem(403, "Forbidden", f"this call is for the roles: {names}")
        return principal

    return dependency


def ensure_partner_scope(principal: Principal, partner_id: uuid.UUID | str) -> None:
    """A path naming another partner's id is forbidden to a partner token."""
    if not principal.may_see_partner(partner_id):
        raise Problem(403, "Forbidden", "a partner token reaches only its own partner's data")


Anyone = Annotated[Principal, Depends(require(Role.ADMIN, Role.PARTNER, Role.SYSTEM))]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
System = Annotated[Principal, Depends(require(Role.SYSTEM))]
AdminOrSystem = Annotated[Principal, Depends(require(Role.ADMIN, Role.SYSTEM))]
AdminOrPartner = Annotated[Principal, Depends(require(Role.ADMIN, Role.PARTNER))]
PartnerOnly = Annotated[Principal, Depends(require(Role.PARTNER))]

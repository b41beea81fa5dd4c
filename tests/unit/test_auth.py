"""Token verification: a verified token is remembered for as long as it is valid, and no longer; another secret
verifies afresh."""

from __future__ import annotations

import time

import pytest

from partnerhub.auth import Role, issue_token, verify_token
from partnerhub.config import Settings
from partnerhub.problems import Problem


def settings(secret: str) -> Settings:
    return Settings(jwt_secret=secret)


def test_a_remembered_token_is_refused_once_it_expires() -> None:
    signing = settings("s" * 32)
    token = issue_token(signing, Role.PARTNER, "ann", "6f1c7a7e-3c39-4b4e-9a4e-0d2b7f0e9c11", ttl_seconds=1)
    first = verify_token(token, signing)
    assert verify_token(token, signing) is first  # remembered: not verified again
    time.sleep(1.1)  # exp is whole seconds: past it now
    with pytest.raises(Problem) as refused:
        verify_token(token, signing)
    assert refused.value.status == 401 and "expired" in refused.value.detail


def test_a_token_remembered_under_one_secret_is_checked_again_under_another() -> None:
    token = issue_token(settings("a" * 32), Role.ADMIN, "ann")
    assert verify_token(token, settings("a" * 32)).role is Role.ADMIN
    with pytest.raises(Problem) as refused:
        verify_token(token, settings("b" * 32))
    assert "another secret" in refused.value.detail

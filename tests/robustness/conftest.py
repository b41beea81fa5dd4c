"""Robustness tests: the four services in-process as their own tests start them, probed with hostile input."""

from __future__ import annotations

from tests.accounts.conftest import accounts, registry
from tests.funds.conftest import funds
from tests.incentives.conftest import incentives

# The services' own session fixtures, shared so every robustness test runs against one set of services.
__all__ = ["accounts", "funds", "incentives", "registry"]

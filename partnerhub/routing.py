"""Which service serves a `/v1` path on the one gateway origin (CONTRACT §1 "routing"), written once.

The embedded gateway (partnerhub.gateway) routes with these rules; the nginx gateway's template
(deploy/gateway/default.conf.template) holds one regular-expression location per rule, in the same order, and
the deployment tests check that both send every contract path and every OpenAPI path to the same service.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property


@dataclass(frozen=True)
class Rule:
    """A path pattern (a regular expression, searched as nginx does) and the service it routes to."""

    pattern: str
    service: str

    @cached_property
    def regex(self) -> re.Pattern[str]:
        return re.compile(self.pattern)


# Tried in order, the first match wins: a partner's rebate views (accruals, ledger, statements, business incentive
# program progress) live in incentives and its marketing-fund views in funds, so both come before the registry's
# catch-all for /v1/partners.
RULES: tuple[Rule, ...] = (
    Rule(r"^/v1/partners/[^/]+/(accruals|ledger|statements|bip)(/|$)", "incentives"),
    Rule(r"^/v1/partners/[^/]+/(fund-balances|fund-ledger)(/|$)", "funds"),
    Rule(r"^/v1/partners(/|$)", "registry"),
    Rule(r"^/v1/(accounts|registrations)(/|$)", "accounts"),
    Rule(r"^/v1/(products|programs|sales|periods|recalculations|disputes|fx-rates)(/|$)", "incentives"),
    Rule(r"^/v1/(funds|fund-requests|fund-claims)(/|$)", "funds"),
    Rule(r"^/v1/webhooks(/|$)", "webhooks"),
)


def service_for(path: str) -> str | None:
    """The service that serves this path, or None when no Partner Hub service does."""
    for rule in RULES:
        if rule.regex.search(path):
            return rule.service
    return None

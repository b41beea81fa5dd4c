"""Partner Hub shared core: mechanism used by all four services, no domain rules."""

SERVICES = ("registry", "accounts", "incentives", "funds")

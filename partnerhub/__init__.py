"""Partner Hub shared core: mechanism used by every service, no domain rules."""

SERVICES = ("registry", "accounts", "incentives", "funds", "webhooks")

"""Accounts: customer accounts, their classification and their one owner at a time, effective-dated."""

"""Incentives: products, programs, sales, the accrual ledger and statements."""

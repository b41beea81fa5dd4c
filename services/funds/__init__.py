"""Funds: MDF, JMF, ADIF and GPIF budgets, earned balances, requests, claims and payouts."""

"""Billing: wallet and ledger in integer pence, per-minute charging, Stripe top-ups and webhooks, earnings, withdrawals, payouts."""

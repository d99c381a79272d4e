"""Purchases (receipts): commit with earn and redeem, returns, pending points of EC orders."""

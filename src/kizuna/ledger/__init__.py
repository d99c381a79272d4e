"""The points ledger (ポイント管理): journal, lots, allocations, expiry, reconcile."""

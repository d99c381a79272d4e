"""Offline POS batches: a till that was offline uploads the day's receipts as one file.

Each row is processed exactly once: its work, its result and its idempotency key (per store and
receipt number) commit together, so a crash or a second upload of the same file posts nothing
twice, and a malformed or refused row gets its own error without stopping the others. Offline
receipts are evaluated at their `occurred_at` and may not redeem points.
"""

"""Earning rules: base earn, the condition language, campaigns and their budgets."""

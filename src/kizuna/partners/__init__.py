"""Programmes, partner companies and their stores (the coalition's cast)."""

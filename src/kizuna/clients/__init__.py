"""API clients: the systems that call `/v1` (a partner, a store, a terminal, the EC site, the app).

A client belongs to one partner and sees only that partner's data. It authenticates with an API key
shown once at creation; only the key's SHA-256 is stored, found by a short public prefix. Scopes say
what it may do; a per-client token bucket limits how fast.
"""

"""A realistic demo programme, built through the services as real tills would have built it.

`catalogue` holds the fixed cast (partners, stores, products), `plan` turns a seed into a year of
dated events without touching a database, and `builder` replays those events through the
partners, members, purchases and ledger services in committed batches.
"""

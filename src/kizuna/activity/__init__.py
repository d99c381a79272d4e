"""Member activity: visits, log-ins, app opens and custom events reported by tills and apps.

Each event is recorded (the data analytics and ranks count) and earns what the campaigns covering
it give — usually nothing — through the same ledger as purchases.
"""

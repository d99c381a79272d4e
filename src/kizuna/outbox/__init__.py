"""The transactional outbox: events written in the same transaction as the change they report.

Services call `publish`; `kizuna worker` delivers the rows to webhooks later, so an event is never
lost (it commits with the change) nor invented (it rolls back with it).
"""

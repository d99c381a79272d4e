"""Webhooks out: the outbox's events delivered to the endpoints API clients registered.

`kizuna worker` fans each new outbox event out into one delivery per subscribed endpoint, then
POSTs due deliveries, signed with HMAC-SHA256 over timestamp and body, retrying with exponential
back-off. Delivery is at-least-once: a claimed delivery carries a lease, so a worker that dies
mid-delivery only delays it, and two workers never hold the same delivery at once.
"""

"""Scheduled work run by `kizuna worker`."""

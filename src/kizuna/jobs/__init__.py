"""Scheduled work run by `kizuna worker`.

A job is a function of a `JobContext` that does one bounded round of work and says how much it did;
the runner calls each job at its interval, and again at once while it keeps finding work. Jobs are
safe to run in several workers at once: each claims its work in the database.
"""

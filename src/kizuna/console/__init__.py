"""The admin console: server-rendered screens for staff."""

"""Staff accounts, sessions, roles and the audit log."""

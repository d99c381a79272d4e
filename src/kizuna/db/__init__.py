"""The database: one schema on two engines (SQLite embedded, PostgreSQL in production)."""

"""Storage: one SQLite file (WAL) holding the keys and the decision log."""

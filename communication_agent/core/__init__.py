"""Configuration, database engine, schema management and logging."""

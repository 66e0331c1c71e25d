"""Storage with peewee: one database chosen by URL (SQLite embedded, PostgreSQL or MariaDB for many nodes)."""

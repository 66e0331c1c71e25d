"""Schema creation with a recorded version, so later releases can upgrade in place."""

from __future__ import annotations

import contextlib
import time

import peewee
from playhouse.migrate import SchemaMigrator, migrate

from storage.models import TABLES, SCHEMA_VERSION, SchemaVersion


def _mysql_table_settings(db: peewee.Database) -> list[str]:
    # Identifiers (client ids, jti) compare exactly, as on SQLite and PostgreSQL: a binary,
    # no-pad collation, or "MyApp" would find "myapp" and "a" would equal "a ".
    version = db.execute_sql("SELECT VERSION()").fetchone()[0]
    collation = "utf8mb4_nopad_bin" if "MariaDB" in version else "utf8mb4_0900_bin"
    return ["ENGINE=InnoDB", "DEFAULT CHARSET=utf8mb4", f"COLLATE={collation}"]


@contextlib.contextmanager
def _schema_lock(db: peewee.Database):
    """Nodes starting together upgrade one at a time (on SQLite, BEGIN IMMEDIATE does it)."""
    if isinstance(db, peewee.PostgresqlDatabase):
        db.execute_sql("SELECT pg_advisory_xact_lock(7523)")  # released at commit
        yield
    elif isinstance(db, peewee.MySQLDatabase):
        if db.execute_sql("SELECT GET_LOCK('idp_schema_upgrade', 60)").fetchone()[0] != 1:
            raise peewee.OperationalError("another node held the schema upgrade lock for 60 s")
        try:
            yield
        finally:
            db.execute_sql("SELECT RELEASE_LOCK('idp_schema_upgrade')")
    else:
        yield


def _add_missing_columns(db: peewee.Database) -> None:
    """Columns added by a later schema version (each nullable or with a default) are added to
    tables an earlier version created."""
    migrator = SchemaMigrator.from_database(db)
    for model in TABLES:
        table = model._meta.table_name
        if not db.table_exists(table):
            continue
        present = {c.name.lower() for c in db.get_columns(table)}
        missing = [f for f in model._meta.sorted_fields if f.column_name.lower() not in present]
        if missing:
            migrate(*[migrator.add_column(table, f.column_name, f) for f in missing])  # with their indexes


def upgrade(db: peewee.Database) -> int:
    """Create missing tables and record the schema version; returns the version now in force.

    Each version's step is "create what is missing": 2 and 3 added columns (_add_missing_columns),
    4 the table IDN_OAUTH_CLIENT_ACTIVITY (create_tables) and the column oauth_client.require_explicit_typ."""
    settings = _mysql_table_settings(db) if isinstance(db, peewee.MySQLDatabase) else []
    saved = [model._meta.table_settings for model in TABLES]
    try:
        for model in TABLES:
            model._meta.table_settings = settings
        # SQLite: take the write lock before reading the schema, or of two nodes upgrading at
        # once the second fails with "database is locked" instead of waiting.
        begin = db.atomic("IMMEDIATE") if isinstance(db, peewee.SqliteDatabase) else db.atomic()
        with begin, _schema_lock(db):
            _add_missing_columns(db)  # first: create_tables also (re)creates indexes, on the new columns too
            db.create_tables(TABLES, safe=True)
            current = SchemaVersion.select(peewee.fn.MAX(SchemaVersion.version)).scalar() or 0
            if current < SCHEMA_VERSION:
                SchemaVersion.create(version=SCHEMA_VERSION, applied_at=int(time.time()))
                current = SCHEMA_VERSION
    finally:
        for model, value in zip(TABLES, saved):
            model._meta.table_settings = value
    return current

"""Schema creation with a recorded version, so later releases can upgrade in place."""

from __future__ import annotations

import time

import peewee

from storage.models import TABLES, SCHEMA_VERSION, SchemaVersion


def upgrade(db: peewee.Database) -> int:
    """Create missing tables and record the schema version; returns the version now in force."""
    with db.atomic():
        db.create_tables(TABLES, safe=True)
        current = SchemaVersion.select(peewee.fn.MAX(SchemaVersion.version)).scalar() or 0
        if current < SCHEMA_VERSION:
            SchemaVersion.create(version=SCHEMA_VERSION, applied_at=int(time.time()))
            current = SCHEMA_VERSION
    return current

"""The identity database, opened from `[database.identity_db] url`.

Models are bound to one `DatabaseProxy`; `open_database` points it at the real database.
Connections are opened lazily per thread, so a database opened before gunicorn forks is
never shared with a worker: each worker opens its own on first use.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

import peewee
from playhouse.db_url import connect

database_proxy = peewee.DatabaseProxy()

# Errors that mean "the database is not reachable now" rather than a bug.
UNAVAILABLE = (peewee.OperationalError, peewee.InterfaceError)


def open_database(url: str, base_dir: Path) -> peewee.Database:
    """Open the database named by `url`; a relative SQLite path is relative to `base_dir`."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        raw = unquote(parts.path)
        # sqlite:///var/identity.db is relative, sqlite:////abs/path.db absolute (SQLAlchemy's rule).
        path = Path(raw[1:]) if raw.startswith("/") else Path(raw)
        if not path.is_absolute():
            path = base_dir / path
        path.parent.mkdir(parents=True, exist_ok=True)
        db: peewee.Database = peewee.SqliteDatabase(
            str(path),
            pragmas={
                "journal_mode": "wal",      # readers never block the writer
                "busy_timeout": 5000,       # several workers share the file
                "synchronous": "normal",
                "foreign_keys": 1,
            },
        )
    else:
        db = connect(url)
    database_proxy.initialize(db)
    return db

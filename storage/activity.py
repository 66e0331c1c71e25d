"""IDN_OAUTH_CLIENT_ACTIVITY: per-client, per-hour counters, added to by every node.

A batch of counts is one upsert that adds to the stored totals (never replaces them), on
SQLite (3.24+), PostgreSQL and MariaDB/MySQL alike; rows are written in key order so that two
nodes flushing at once cannot deadlock each other. Reads are small aggregates for the console
and the migration report.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Mapping

import peewee

from storage.models import ClientActivity

# Rows per INSERT statement: SQLite allows 32766 bound parameters (5 per row), the others more.
# Writers flushing many counts add them this many at a time, one short transaction each.
BATCH = 500
FAILURE_PREFIX = "failure:"
ISSUED = "issued"

Key = tuple[str, int, str]  # (client id, epoch hour, counter name)


def _database(db: peewee.Database | None) -> peewee.Database:
    """The database given (a writer's own, whatever the models are bound to now), or the models'."""
    db = ClientActivity._meta.database if db is None else db
    return db.obj if isinstance(db, peewee.DatabaseProxy) else db


def add(counts: Mapping[Key, tuple[int, int]], db: peewee.Database | None = None) -> int:
    """Add `counts` — (client id, hour, name) → (count, latest event time) — to the table in
    one transaction; returns the number of rows written."""
    if not counts:
        return 0
    db = _database(db)
    mysql = isinstance(db, peewee.MySQLDatabase)
    rows = [{"client_id": c, "hour": h, "name": n, "count": v[0], "last_time": v[1]}
            for (c, h, n), v in sorted(counts.items())]
    # MySQL/MariaDB: ON DUPLICATE KEY UPDATE refers to the new row as VALUES(col); the others as EXCLUDED.col.
    def new(column: peewee.Field):
        return peewee.fn.VALUES(column) if mysql else getattr(peewee.EXCLUDED, column.column_name)

    new_count, new_time = new(ClientActivity.count), new(ClientActivity.last_time)
    update = {ClientActivity.count: ClientActivity.count + new_count,
              ClientActivity.last_time: peewee.Case(None, [(new_time > ClientActivity.last_time, new_time)],
                                                    ClientActivity.last_time)}
    target = {} if mysql else {"conflict_target": [ClientActivity.client_id, ClientActivity.hour, ClientActivity.name]}
    with db.atomic():
        for start in range(0, len(rows), BATCH):
            (ClientActivity.insert_many(rows[start:start + BATCH])
             # A row count, not the keys: no RETURNING, whichever database the models point at now.
             .on_conflict(update=update, **target).as_rowcount().execute(db))
    return len(rows)


def purge(before_hour: int, db: peewee.Database | None = None, batch: int = 100) -> int:
    """Delete the rows of hours before `before_hour`, `batch` rows per transaction (never a long
    lock against the token path's writes); returns how many."""
    db = _database(db)
    key = (ClientActivity.client_id, ClientActivity.hour, ClientActivity.name)
    deleted = 0
    while True:
        rows = list(ClientActivity.select(*key).where(ClientActivity.hour < before_hour).limit(batch)
                    .tuples().execute(db))
        if not rows:
            return deleted
        with db.atomic():
            # A flat IN list of row values: nested ORs overflow SQLite's parser.
            n = (ClientActivity.delete()
                 .where(peewee.Tuple(*key).in_([peewee.Tuple(*row) for row in rows])).execute(db))
        deleted += n
        if len(rows) < batch or not n:   # never a loop over rows that will not go
            return deleted


def hourly(client_id: str, since_hour: int) -> dict[tuple[int, str], int]:
    """One client's counts since an hour: (hour, name) → count."""
    rows = (ClientActivity.select(ClientActivity.client_id, ClientActivity.hour, ClientActivity.name,
                                  ClientActivity.count)
            .where((ClientActivity.client_id == client_id) & (ClientActivity.hour >= since_hour)).tuples())
    # Exact, whatever the database's collation says.
    return {(hour, name): count for cid, hour, name, count in rows if cid == client_id}


def totals(since_hour: int, client_ids: Iterable[str] | None = None) -> dict[str, dict[str, int]]:
    """Counts since an hour summed per client and name: client id → name → count."""
    query = (ClientActivity.select(ClientActivity.client_id, ClientActivity.name,
                                   peewee.fn.SUM(ClientActivity.count))
             .where(ClientActivity.hour >= since_hour)
             .group_by(ClientActivity.client_id, ClientActivity.name))
    if client_ids is not None:
        query = query.where(ClientActivity.client_id.in_(list(client_ids)))
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for client_id, name, count in query.tuples():
        out[client_id][name] = out[client_id].get(name, 0) + int(count)
    return dict(out)


def last_issued() -> dict[str, int]:
    """When each client was last issued a token (within the retention period): client id → time."""
    query = (ClientActivity.select(ClientActivity.client_id, peewee.fn.MAX(ClientActivity.last_time))
             .where(ClientActivity.name == ISSUED).group_by(ClientActivity.client_id))
    return {client_id: int(last) for client_id, last in query.tuples()}


def failures_since(since_hour: int) -> dict[str, int]:
    """Failures per client since an hour: client id → count."""
    query = (ClientActivity.select(ClientActivity.client_id, peewee.fn.SUM(ClientActivity.count))
             .where((ClientActivity.hour >= since_hour) & ClientActivity.name.startswith(FAILURE_PREFIX))
             .group_by(ClientActivity.client_id))
    return {client_id: int(count) for client_id, count in query.tuples()}

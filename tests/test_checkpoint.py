"""SQLite WAL checkpoints happen on a worker's own thread (storage.database.Checkpointer), not in
the request that crosses SQLite's page mark: a request's commit leaves its pages in the WAL, and
the thread copies them into the database file."""

from __future__ import annotations

import time

import peewee

from storage.database import CHECKPOINT_BACKSTOP_PAGES, Checkpointer, open_database


def _write_rows(db: peewee.Database, n: int) -> None:
    for i in range(n):
        db.execute_sql("INSERT INTO t (v) VALUES (?)", (f"{i:04d}" * 64,))


def test_commits_leave_pages_in_the_wal_and_the_thread_copies_them(tmp_path):
    db = open_database("sqlite:///var/identity.db", tmp_path)
    path = tmp_path / "var" / "identity.db"
    assert db.execute_sql("PRAGMA wal_autocheckpoint").fetchone()[0] == CHECKPOINT_BACKSTOP_PAGES
    db.execute_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    size_before = path.stat().st_size
    _write_rows(db, 200)   # about 50 KiB: far below the backstop, so no commit checkpointed
    assert path.stat().st_size == size_before

    checkpointer = Checkpointer(db, interval=0.05)
    checkpointer.start()
    try:
        deadline = time.monotonic() + 10
        while path.stat().st_size == size_before and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        checkpointer.stop()
    assert path.stat().st_size > size_before + 40_000
    busy, frames, copied = checkpointer.checkpoint()
    assert busy == 0 and frames == copied   # nothing left behind
    db.close()


def test_only_sqlite_gets_a_thread(tmp_path):
    class NotSqlite:
        pass

    checkpointer = Checkpointer(NotSqlite())   # PostgreSQL and MariaDB checkpoint themselves
    checkpointer.start()
    assert checkpointer._thread is None
    checkpointer.stop()

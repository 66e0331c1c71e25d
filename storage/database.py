"""The identity database, opened from `[database.identity_db] url`.

Models are bound to one `DatabaseProxy`; `open_database` points it at the real database.
Connections are opened lazily per thread, so a database opened in gunicorn's master is never
shared with a worker as long as the master closes what it used before forking (app.serve does).

PostgreSQL and MariaDB/MySQL use peewee's connection pool (one per process) with connect and
statement timeouts, so a database that stops answering turns into a quick 503, not a hung worker.
URL query parameters tune them: `max_connections`, `stale_timeout` (s), `connect_timeout` (s),
`statement_timeout` (ms), e.g. `postgresql://idp@db/identity?max_connections=8`.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import weakref
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

import peewee
from playhouse.pool import MaxConnectionsExceeded, PooledMySQLDatabase, PooledPostgresqlDatabase

database_proxy = peewee.DatabaseProxy()
log = logging.getLogger("storage.database")

# Errors that mean "the database cannot serve now" rather than a bug: unreachable, pool
# exhausted, or (PostgreSQL during a failover) read-only.
UNAVAILABLE = (peewee.OperationalError, peewee.InterfaceError, peewee.InternalError, MaxConnectionsExceeded)

# The one definition of the pool parameters' defaults (URL query parameters of [database.identity_db]
# url): stale_timeout and connect_timeout in seconds, statement_timeout in milliseconds. README.md
# ("Running several nodes") states them; tests/test_defaults.py checks it.
POOL_DEFAULTS = {"max_connections": 8, "stale_timeout": 300, "connect_timeout": 5, "statement_timeout": 5000}


# WAL pages (4 KiB) after which a committing request checkpoints itself (SQLite's 1,000 would
# checkpoint ten times as often, copying the few pages every request changes each time).
CHECKPOINT_BACKSTOP_PAGES = 10_000


def _pool_options(query: str) -> dict[str, int]:
    options = dict(POOL_DEFAULTS)
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in options:
            raise ValueError(f"unknown URL parameter {key} (known: {', '.join(options)})")
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"URL parameter {key} must be a positive integer")
        options[key] = int(value)
    return options


def sqlite_path(url: str, base_dir: Path) -> Path:
    """The file of a sqlite:// URL: sqlite:///var/identity.db is relative to `base_dir`,
    sqlite:////abs/path.db absolute (SQLAlchemy's rule)."""
    raw = unquote(urlsplit(url).path)
    path = Path(raw[1:]) if raw.startswith("/") else Path(raw)
    return path if path.is_absolute() else base_dir / path


def describe(url: str, base_dir: Path) -> str:
    """Where the database is, for an operator: the SQLite file, or the server and database
    without user, password or parameters."""
    parts = urlsplit(url)
    if parts.scheme.split("+", 1)[0] == "sqlite":
        return str(sqlite_path(url, base_dir))
    if "@" in parts.path + parts.query + parts.fragment:  # a password with "/", "?" or "#" not percent-encoded
        return f"{parts.scheme}://{url.rpartition('@')[2].split('?', 1)[0].split('#', 1)[0]}"
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


def open_database(url: str, base_dir: Path) -> peewee.Database:
    """Open the database named by `url`; a relative SQLite path is relative to `base_dir`.
    Raises ValueError for a URL this server cannot use."""
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme == "sqlite":
        path = sqlite_path(url, base_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        db: peewee.Database = peewee.SqliteDatabase(
            str(path),
            pragmas={
                "journal_mode": "wal",      # readers never block the writer
                "busy_timeout": 5000,       # several workers share the file
                "synchronous": "normal",    # survives process crashes, not power loss (README)
                # Checkpoints (copying the WAL into the database file, two fsyncs) run on a
                # worker's own thread (Checkpointer below) four times a second, so no request
                # reaches this mark: a checkpoint of 10,000 pages held the request that crossed
                # it for about 30 ms, and every request queued behind it (bench/README.md).
                # Where the thread does not run (the application served by another WSGI
                # server), requests checkpoint at the mark as before.
                "wal_autocheckpoint": CHECKPOINT_BACKSTOP_PAGES,
                "foreign_keys": 1,
            },
        )
    elif scheme in ("postgres", "postgresql", "mysql"):
        name = unquote(parts.path.lstrip("/"))
        if not name:
            raise ValueError("the URL must name a database")
        options = _pool_options(parts.query)
        common = {
            "user": unquote(parts.username) if parts.username else None,
            "password": unquote(parts.password) if parts.password else None,
            "host": parts.hostname or "127.0.0.1",
            "max_connections": options["max_connections"],
            "stale_timeout": options["stale_timeout"],
            "timeout": options["connect_timeout"],  # wait for a free pooled connection
            "connect_timeout": options["connect_timeout"],
        }
        if parts.port:
            common["port"] = parts.port
        common = {k: v for k, v in common.items() if v is not None}
        if scheme == "mysql":
            db = PooledMySQLDatabase(name, charset="utf8mb4", read_timeout=options["statement_timeout"] // 1000 + 1,
                                     write_timeout=options["statement_timeout"] // 1000 + 1, **common)
        else:
            # TCP keepalives: a silently dead network is noticed in about 20 s, not never.
            db = PooledPostgresqlDatabase(
                name, options=f"-c statement_timeout={options['statement_timeout']} "
                              f"-c lock_timeout={options['statement_timeout']}",
                keepalives=1, keepalives_idle=10, keepalives_interval=3, keepalives_count=3, **common)
    else:
        raise ValueError("unsupported database URL scheme")
    database_proxy.initialize(db)
    return db


def release(db: peewee.Database) -> None:
    """Give this thread's connection back (network databases) after a request; never raises,
    so a connection broken by a database outage is dropped instead of failing the response."""
    if isinstance(db, peewee.SqliteDatabase):
        return  # one connection per thread, kept open
    try:
        db.close()
    except Exception:
        try:
            db.manual_close()
        except Exception:
            pass


def close_all(db: peewee.Database) -> None:
    """Close every connection this process holds (before gunicorn forks its workers)."""
    _close_shared(db)
    if hasattr(db, "close_all"):
        db.close_all()
    elif not db.is_closed():
        db.close()


class _Rows:
    """What a statement on the shared connection returns: its rows, read while the lock was held."""

    __slots__ = ("rows", "rowcount", "lastrowid")

    def __init__(self, rows: list, rowcount: int, lastrowid) -> None:
        self.rows, self.rowcount, self.lastrowid = rows, rowcount, lastrowid

    def fetchone(self):
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list:
        return list(self.rows)

    def __iter__(self):
        return iter(self.rows)


def shared_sqlite(db: peewee.SqliteDatabase, sql: str, bound: tuple, write: bool):
    """A single statement outside any transaction, on one connection per process that its
    threads take turns on. SQLite lets one connection write at a time and makes the others
    sleep and retry (1, 2, 5, 10 … ms: about one request in twelve under load); and a
    connection that sees another one's commit drops its whole page cache, so with a
    connection per thread every statement read its pages again (bench/README.md).

    A write waits for its turn at most as long as SQLite would have (busy_timeout), then fails
    as SQLite does. A read waits only briefly: while a write of the process is itself held up
    (another process or a transaction holds SQLite's lock), reads go to the thread's own
    connection, as WAL mode lets them."""
    lock = _shared_lock
    if not lock.acquire(timeout=db._timeout if write else SHARED_READ_WAIT):
        if write:
            raise peewee.OperationalError("database is locked")
        return db.execute_sql(sql, bound)
    try:
        with peewee.__exception_wrapper__:
            cursor = _shared_connection(db).execute(sql, bound)
            try:
                rows = [] if write else cursor.fetchall()
                return _Rows(rows, cursor.rowcount, cursor.lastrowid)
            finally:
                cursor.close()   # its statement is reset here, never later outside the lock
    finally:
        lock.release()


def _shared_connection(db: peewee.SqliteDatabase) -> sqlite3.Connection:
    held = getattr(db, "_shared_connection", None)
    if held is not None:
        if held[0] == db.database:
            return held[1]
        _close_shared_locked(db)   # db.init() pointed the database elsewhere
    params = {k: v for k, v in db.connect_params.items() if k != "check_same_thread"}
    conn = sqlite3.connect(db.database, timeout=db._timeout, isolation_level=None, check_same_thread=False, **params)
    try:
        db._add_conn_hooks(conn)   # peewee's pragmas and functions, as on its own connections
    except Exception:
        conn.close()
        raise
    db._shared_connection = (db.database, conn)
    _sharing.add(db)
    return conn


def _close_shared(db: peewee.Database) -> None:
    with _shared_lock:
        _close_shared_locked(db)


def _close_shared_locked(db: peewee.Database) -> None:
    held = getattr(db, "_shared_connection", None)
    if held is not None:
        db._shared_connection = None
        held[1].close()


# One statement at a time on a process's shared SQLite connections (shared_sqlite), and the
# databases that have one. Before a fork the connections are closed (SQLite connections must
# not cross a fork: the child would hold none of the parent's file locks) and the lock is held,
# so no statement is half-way; each process then opens its own when it next needs it.
SHARED_READ_WAIT = 0.05   # seconds
_shared_lock = threading.Lock()
_sharing: "weakref.WeakSet[peewee.Database]" = weakref.WeakSet()


def _before_fork() -> None:
    _shared_lock.acquire()
    for db in list(_sharing):
        _close_shared_locked(db)


def _after_fork_in_parent() -> None:
    _shared_lock.release()


def _after_fork_in_child() -> None:
    global _shared_lock
    _shared_lock = threading.Lock()


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                    after_in_child=_after_fork_in_child)


class Checkpointer:
    """SQLite in WAL mode: a passive checkpoint every `interval` seconds on a daemon thread of
    the worker, so that copying the WAL into the database file (and its fsyncs) never happens
    inside a request. Passive: it never waits for, nor blocks, readers and writers; while
    another worker's checkpoint runs, this one skips its turn. Started after the fork
    (app.serve's post_fork), since a thread does not survive one."""

    def __init__(self, db: peewee.Database, interval: float = 0.25) -> None:
        self.db, self.interval = db, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if not isinstance(self.db, peewee.SqliteDatabase):
            return  # PostgreSQL and MariaDB manage their own logs
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def checkpoint(self) -> tuple[int, int, int]:
        """One passive checkpoint: (busy, frames in the WAL, frames checkpointed)."""
        return tuple(self.db.execute_sql("PRAGMA wal_checkpoint(PASSIVE)").fetchone())

    def _run(self) -> None:
        failed = False
        while not self._stop.wait(self.interval):
            try:
                self.checkpoint()
                failed = False
            except Exception as exc:  # e.g. the file is gone: say so once, keep trying
                if not failed:
                    log.warning("WAL checkpoint failed: %s", exc.__class__.__name__)
                failed = True
        self.db.close()

"""Deleting expired rows in small batches, so purging never holds long locks against token requests."""

from __future__ import annotations

import logging
import os
import threading
from typing import Callable

import peewee

from storage.database import database_proxy

log = logging.getLogger("storage.purge")


def purge_expired(db: peewee.Database, model: type[peewee.Model], expiry: peewee.Field, now: int,
                  limit: int = 500) -> int:
    """Delete at most `limit` rows of `model` whose `expiry` is before `now`; returns how many."""
    key = model._meta.primary_key
    fields = list(key.field_names) if isinstance(key, peewee.CompositeKey) else [key.name]
    columns = [getattr(model, name) for name in fields]
    rows = list(model.select(*columns).where(expiry < now).order_by(expiry).limit(limit).tuples())
    deleted = 0
    for start in range(0, len(rows), 100):
        chunk = rows[start:start + 100]
        # A flat IN list (row values for a composite key): nested ORs overflow SQLite's parser.
        if len(columns) == 1:
            match = columns[0].in_([row[0] for row in chunk])
        else:
            match = peewee.Tuple(*columns).in_([peewee.Tuple(*row) for row in chunk])
        with db.atomic():
            # The expiry test again: a row renewed meanwhile (a replaced jti) is kept.
            deleted += model.delete().where(match & (expiry < now)).execute()
    return deleted


def purge_all(db: peewee.Database, model, expiry, now: int, batch: int = 1000) -> int:
    total = 0
    while True:
        n = purge_expired(db, model, expiry, now, batch)
        total += n
        if n < batch:
            return total


# One batch at a time in a process: each holds a connection of the worker's pool, which is sized
# for its request threads, and the stores' batches fall due together. A fork copies the lock
# possibly held by a thread that does not exist in the child: the child starts a fresh one.
_batches = threading.Lock()


def _reset_after_fork() -> None:
    global _batches
    _batches = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


class PeriodicPurge:
    """One small purge batch every `every` calls (bounded work during normal operation), run on a
    thread of its own: the request whose call is the `every`-th never waits for it (nor for the
    locks it takes). While a batch is still running or waiting for its turn, the next due one of
    the same store is skipped."""

    def __init__(self, every: int = 1000, batch: int = 500,
                 observer: Callable[[int | None], None] | None = None) -> None:
        self.every = every
        self.batch = batch
        self.observer = observer  # told each batch's deleted rows, or None when it failed (metrics)
        self._calls = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def tick(self) -> bool:
        with self._lock:
            self._calls += 1
            return self._calls % self.every == 0

    def run(self, purge: Callable[[], int]) -> None:
        """Start one batch in the background; a failure is logged, never the request's."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            # Started when due, so never before gunicorn forks (a thread does not survive a fork).
            self._thread = threading.Thread(target=self._batch, args=(purge,), name="purge", daemon=True)
            self._thread.start()

    def wait(self, timeout: float | None = None) -> None:
        """Until the batch started last has finished (tests, shutdown)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _batch(self, purge: Callable[[], int]) -> None:
        with _batches:
            try:
                deleted: int | None = purge()
            except Exception as exc:  # e.g. a lock timeout: the next batch will try again
                log.warning("purge of expired rows failed: %s", exc.__class__.__name__)
                deleted = None
            finally:
                _close_connection()
        if self.observer is not None:
            try:
                self.observer(deleted)
            except Exception:
                log.exception("purge observer failed")


def _close_connection() -> None:
    """The purge thread's connection: back to the pool (network databases) or closed (SQLite)."""
    try:
        database_proxy.close()
    except Exception:  # a connection broken by an outage: dropped with the thread
        pass

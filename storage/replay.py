"""The replay store for client assertion `jti`s (RFC 7523 §3 item 7, OpenID Connect Core §9).

The database's primary key (CLIENT_ID, JWT_ID) decides: an INSERT either creates the row or
fails, and replacing an expired row is one conditional UPDATE. Neither is a read-then-write,
so N concurrent requests carrying one assertion give exactly one success on any database.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Callable

import peewee

from storage.models import JTI, DPoPJTI  # noqa: F401  (DPoPJTI: the other table it keeps)
from storage.sql import Param, Statement
from storage.purge import PeriodicPurge, purge_all, purge_expired


class SeenCache:
    """Per-process memory of recently accepted (client, jti) pairs, so an obvious replay is
    refused without a database read. Bounded; the database remains the source of truth."""

    def __init__(self, capacity: int, timeout_seconds: int) -> None:
        self.capacity = capacity
        self.timeout = timeout_seconds
        self._items: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._lock = threading.Lock()

    def seen(self, key: tuple[str, str], now: int) -> bool:
        with self._lock:
            until = self._items.get(key)
            if until is None:
                return False
            if until <= now:
                del self._items[key]
                return False
            return True

    def add(self, key: tuple[str, str], exp_time: int, now: int) -> None:
        if self.capacity <= 0:
            return
        with self._lock:
            self._items[key] = min(exp_time, now + self.timeout)
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)


class _Statements:
    """The three statements of a replay table keyed by (`owner`, jwt_id): IDN_OIDC_JTI (owner:
    the client id) or IDN_OAUTH_DPOP_JTI (owner: the DPoP key's thumbprint)."""

    def __init__(self, model: type[peewee.Model], owner: str) -> None:
        def key():
            return (getattr(model, owner) == Param("owner")) & (model.jwt_id == Param("jwt_id"))
        self.insert = Statement(lambda: model.insert({getattr(model, owner): Param("owner"),
                                                      model.jwt_id: Param("jwt_id"),
                                                      model.exp_time: Param("exp_time"),
                                                      model.time_created: Param("now")}))
        self.replace_expired = Statement(lambda: model.update(exp_time=Param("exp_time"), time_created=Param("now"))
                                         .where(key() & (model.exp_time < Param("now"))))
        # Reuse allowed: the record keeps the later expiry, so a switch to prevent-reuse still
        # covers every assertion of this jti that could be valid.
        self.record_reuse = Statement(lambda: model.update(
            exp_time=peewee.Case(None, [(model.exp_time < Param("exp_time"), Param("exp_time"))], model.exp_time),
            time_created=Param("now")).where(key()))


class ReplayStore:
    def __init__(self, db: peewee.Database, cache: SeenCache | None = None,
                 purge_every: int = 1000, purge_batch: int = 500,
                 model: type[peewee.Model] = JTI, owner: str = "client_id",
                 on_purge: Callable[[str, int | None], None] | None = None) -> None:
        self.db = db
        self.cache = cache
        self.model = model
        self.sql = _Statements(model, owner)
        # on_purge(table, deleted rows or None for a failed batch): the periodic purges' results.
        table = model._meta.table_name
        self.periodic = PeriodicPurge(purge_every, purge_batch,
                                      None if on_purge is None else lambda deleted: on_purge(table, deleted))

    def use(self, client_id: str, jwt_id: str, exp_time: int, prevent_reuse: bool,
            now: int | None = None) -> bool:
        """Record a use of `jwt_id` by `client_id`, valid until `exp_time`.

        Returns False when `prevent_reuse` is set and the pair is already recorded with an
        `exp_time` that has not passed (a replay). An expired record is replaced: the WSO2
        meaning of PreventTokenReuse. Without `prevent_reuse` the use is recorded and allowed.
        """
        now = int(time.time()) if now is None else now
        key = (client_id, jwt_id)
        if prevent_reuse and self.cache is not None and self.cache.seen(key, now):
            return False
        try:
            self.sql.insert.execute(owner=client_id, jwt_id=jwt_id, exp_time=exp_time, now=now)
            accepted = True
        except peewee.IntegrityError:
            if prevent_reuse:
                # One conditional UPDATE: of two concurrent replacements only one matches.
                accepted = self.sql.replace_expired.execute(owner=client_id, jwt_id=jwt_id, exp_time=exp_time,
                                                            now=now).rowcount == 1
            else:
                self.sql.record_reuse.execute(owner=client_id, jwt_id=jwt_id, exp_time=exp_time, now=now)
                accepted = True
        if accepted and self.cache is not None:
            self.cache.add(key, exp_time, now)
        self._maybe_purge(now)
        return accepted

    def _maybe_purge(self, now: int) -> None:
        if self.periodic.tick():
            self.periodic.run(lambda: self.purge(now, limit=self.periodic.batch))

    def purge(self, now: int | None = None, limit: int = 500) -> int:
        """Delete at most `limit` expired rows; returns how many were deleted."""
        return purge_expired(self.db, self.model, self.model.exp_time, int(time.time()) if now is None else now, limit)

    def purge_all(self, now: int | None = None, batch: int = 1000) -> int:
        return purge_all(self.db, self.model, self.model.exp_time, int(time.time()) if now is None else now, batch)

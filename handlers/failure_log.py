"""Recent failed client authentications per client, for the console's service provider page.

Each failure of a registered client (one its authenticator found: AuthAttempt.client_known)
becomes one row of `oauth_auth_failure` (time, reason, method, alg, kid, source address, and the
detail the response left out) — never the assertion or a secret. The table stays bounded: every
`PurgeEvery` rows written by a process, rows older than `RetentionInDays` are deleted and every
client is trimmed to its newest `MaxPerClient` rows.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from typing import Any

import peewee

from handlers.base import Listener, Property
from storage.models import AuthFailure
from storage.sql import Statement

log = logging.getLogger("handlers.failure_log")

# Not recorded: a claimed client id that is not registered (the authenticator did not find it:
# `client_known`) has no console page and would let anyone grow the table; and a 429 is the cheap
# answer to a flood that is already recorded.
SKIPPED_REASONS = frozenset({"rate_limited"})
_TRIM_CLIENTS_PER_PURGE = 50
# On the path of every rejected assertion of a registered client: SQL generated once (storage.sql).
_INSERT = Statement.insert(lambda: AuthFailure, "client_id", "time", "method", "reason", "alg", "kid", "remote_addr",
                           "detail")


class AuthFailureLogListener(Listener):
    default_order = 110
    properties = {
        "RetentionInDays": Property(int, 7, "failures older than this are deleted", minimum=1),
        "MaxPerClient": Property(int, 100, "newest failures kept per client", minimum=1),
        "PurgeEvery": Property(int, 200, "purge after this many failures recorded by one process", minimum=1),
    }

    def __init__(self, services, props) -> None:
        super().__init__(services, props)
        self._written = itertools.count(1)
        self._purging = threading.Lock()

    def on_event(self, event: str, data: dict[str, Any]) -> None:
        if event != "client_authentication" or data.get("outcome") != "failure":
            return
        client_id = data.get("client_id")
        if not data.get("client_known") or not isinstance(client_id, str) or data.get("reason") in SKIPPED_REASONS:
            return
        try:
            _INSERT.execute(client_id[:255], int(time.time()), _cut(data.get("method"), 40),
                            _cut(data.get("reason"), 64), _cut(data.get("alg"), 20), _cut(data.get("kid"), 255),
                            _cut(data.get("remote_addr"), 64), _cut(data.get("detail"), 255))
            if next(self._written) % self.props["PurgeEvery"] == 0:
                self.purge()
        except peewee.PeeweeException as exc:  # the token response is already decided; just say so
            log.warning("authentication failure not recorded: %s", exc.__class__.__name__)

    def purge(self) -> int:
        """Delete old rows and trim each client to its newest MaxPerClient; returns rows deleted."""
        if not self._purging.acquire(blocking=False):
            return 0  # another thread of this process is at it
        try:
            return purge(self.props["RetentionInDays"] * 86400, self.props["MaxPerClient"])
        finally:
            self._purging.release()


def purge(retention_seconds: int, max_per_client: int) -> int:
    deleted = AuthFailure.delete().where(AuthFailure.time < int(time.time()) - retention_seconds).execute()
    crowded = (AuthFailure.select(AuthFailure.client_id).group_by(AuthFailure.client_id)
               .having(peewee.fn.COUNT(AuthFailure.id) > max_per_client).limit(_TRIM_CLIENTS_PER_PURGE))
    for (client_id,) in list(crowded.tuples()):
        # The id of the oldest row to keep; ids grow with time, so everything below it goes.
        keep_from = (AuthFailure.select(AuthFailure.id).where(AuthFailure.client_id == client_id)
                     .order_by(AuthFailure.id.desc()).offset(max_per_client - 1).limit(1).scalar())
        if keep_from is not None:
            deleted += AuthFailure.delete().where((AuthFailure.client_id == client_id)
                                                  & (AuthFailure.id < keep_from)).execute()
    return deleted


def recent(client_id: str, limit: int = 100) -> list[AuthFailure]:
    """The newest failures of one client, newest first (what the console shows)."""
    rows = AuthFailure.select().where(AuthFailure.client_id == client_id).order_by(AuthFailure.id.desc()).limit(limit)
    return [row for row in rows if row.client_id == client_id]  # exact, whatever the collation says


def _cut(value: Any, size: int) -> str | None:
    return value[:size] if isinstance(value, str) and value else None

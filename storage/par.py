"""Pushed authorization requests (RFC 9126): the parameters a client pushed, found again by the
request_uri it was given, once.

A request_uri is a URN with 256 random bits (§2.2, §7.1: it must not be guessable); only its
SHA-256 is stored, like codes. Using it is one conditional UPDATE (`used` false → true, same
client, not expired), so of concurrent uses on any number of workers or nodes exactly one wins.
A used row stays until it expires, so that a second use is told apart from an unknown one in the
audit log; expired rows are purged a batch at a time from push() and by `flask db purge`.
"""

from __future__ import annotations

import json
import os
import secrets
import time

import peewee

from storage.hashing import sha256_hex as request_uri_hash
from storage.models import PushedAuthorizationRequest
from storage.purge import PeriodicPurge, purge_all, purge_expired

# RFC 9126 §2.2: the URN prefix of request_uri values this server issues.
PREFIX = "urn:ietf:params:oauth:request_uri:"
MAX_REQUEST_URI = 256
PURGE_EVERY = 200      # pushes; each row lives at most [oauth.par] request_uri_lifetime (≤ 600 s)
PURGE_BATCH = 500


class RequestUriError(Exception):
    """The request_uri cannot be used; `reason` is for the audit log ("unknown", "client",
    "expired", "reused")."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def push(client_id: str, parameters: dict, lifetime: int) -> tuple[str, int]:
    """Store the validated parameters of an authorization request pushed by `client_id` (a JSON
    object: string values, `resource` a list); returns (request_uri, expires_in)."""
    request_uri = PREFIX + secrets.token_urlsafe(32)
    now = int(time.time())
    PushedAuthorizationRequest.create(request_uri_hash=request_uri_hash(request_uri), client_id=client_id,
                                      parameters=json.dumps(parameters, separators=(",", ":")),
                                      expires_at=now + lifetime, used=False, code_issued=False)
    if _periodic.tick():
        _periodic.run(lambda: purge(PushedAuthorizationRequest._meta.database, now, _periodic.batch))
    return request_uri, lifetime


def use(request_uri: str, client_id: str) -> dict:
    """The parameters pushed for `request_uri`, to the client that pushed them only, once and
    before it expires (RFC 9126 §4); raises RequestUriError otherwise. Nothing is used up by a
    request of another client."""
    if not request_uri.startswith(PREFIX) or len(request_uri) > MAX_REQUEST_URI:
        raise RequestUriError("unknown")
    hashed = request_uri_hash(request_uri)
    now = int(time.time())
    row = PushedAuthorizationRequest
    won = row.update(used=True).where((row.request_uri_hash == hashed) & (row.used == False)  # noqa: E712
                                      & (row.client_id == client_id) & (row.expires_at > now)).execute() == 1
    found = row.get_or_none(row.request_uri_hash == hashed)
    if found is None:
        raise RequestUriError("unknown")
    if not won:
        # Only to name the reason: the UPDATE above decided.
        raise RequestUriError("client" if found.client_id != client_id else
                              "expired" if found.expires_at <= now else "reused")
    return json.loads(found.parameters)


def issue_code(hashed: str) -> bool:
    """Whether a code may be issued for the pushed request (by its request_uri's hash): once only,
    by one conditional UPDATE, so two posts of its pages give one code (RFC 9126 §4: one use)."""
    row = PushedAuthorizationRequest
    return row.update(code_issued=True).where((row.request_uri_hash == hashed)
                                              & (row.code_issued == False)).execute() == 1  # noqa: E712


def purge(db: peewee.Database, now: int | None = None, limit: int = PURGE_BATCH) -> int:
    """Delete at most `limit` expired rows; returns how many."""
    now = int(time.time()) if now is None else now
    return purge_expired(db, PushedAuthorizationRequest, PushedAuthorizationRequest.expires_at, now, limit)


def purge_every(db: peewee.Database, now: int | None = None) -> int:
    """Delete every expired row, in batches (`flask db purge`)."""
    now = int(time.time()) if now is None else now
    return purge_all(db, PushedAuthorizationRequest, PushedAuthorizationRequest.expires_at, now)


# A counter of pushes in this process. A fork copies it with its lock possibly held by another
# thread: the child starts a fresh one.
_periodic = PeriodicPurge(PURGE_EVERY, PURGE_BATCH)


def _reset_after_fork() -> None:
    global _periodic
    _periodic = PeriodicPurge(PURGE_EVERY, PURGE_BATCH)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)

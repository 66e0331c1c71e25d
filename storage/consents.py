"""Consents: the scopes a user has approved for a client, so the consent page is asked once
(OpenID Connect Core §3.1.2.4). One row per (user, client); approving more scopes widens it."""

from __future__ import annotations

import time

import peewee

from storage.models import Consent


def granted(user_sub: str, client_id: str) -> frozenset[str]:
    """The scopes this user has approved for this client (empty when never asked)."""
    row = Consent.get_or_none((Consent.user_sub == user_sub) & (Consent.client_id == client_id))
    # Client ids compare exactly, whatever a database's collation thinks of case.
    if row is None or row.client_id != client_id:
        return frozenset()
    return frozenset(row.scopes.split())


def grant(user_sub: str, client_id: str, scopes: tuple[str, ...] | frozenset[str]) -> frozenset[str]:
    """Add `scopes` to what the user approved for the client; returns the approved set."""
    approved = granted(user_sub, client_id) | frozenset(scopes)
    text = " ".join(sorted(approved))
    now = int(time.time())
    where = (Consent.user_sub == user_sub) & (Consent.client_id == client_id)
    if Consent.update(scopes=text, granted_at=now).where(where).execute() == 0:
        try:
            Consent.create(user_sub=user_sub, client_id=client_id, scopes=text, granted_at=now)
        except peewee.IntegrityError:  # another request created it first: widen that row
            Consent.update(scopes=text, granted_at=now).where(where).execute()
    return approved


def revoke(user_sub: str, client_id: str) -> bool:
    """Forget the consent: the page is shown again at the next authorization."""
    return Consent.delete().where((Consent.user_sub == user_sub) & (Consent.client_id == client_id)).execute() > 0


"""Consents: the scopes a user has approved for a client, so the consent page is asked once
(OpenID Connect Core §3.1.2.4). One row per (user, client); approving more scopes widens it;
withdrawing it also revokes what the client holds for the user."""

from __future__ import annotations

import time
from dataclasses import dataclass

import peewee

from storage.models import AccessToken, AuthorizationCode, Consent, RefreshToken


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


@dataclass(frozen=True)
class Withdrawal:
    """What withdrawing a consent ended."""

    consent: bool          # a consent was stored
    codes: int             # authorization codes not yet redeemed
    refresh_tokens: int
    access_tokens: int


def withdraw(user_sub: str, client_id: str) -> Withdrawal:
    """The user withdraws their approval of the client: the consent is forgotten (the page is shown
    again) and every live code, refresh token (offline access) and access token the client holds
    for the user stops working."""
    now = int(time.time())
    with Consent._meta.database.atomic():
        consent = revoke(user_sub, client_id)
        # A code redeemed after this counts as reused: refused, and its tokens revoked (storage.codes).
        codes = AuthorizationCode.update(used=True).where(
            (AuthorizationCode.user_sub == user_sub) & (AuthorizationCode.client_id == client_id)
            & (AuthorizationCode.used == False) & (AuthorizationCode.expires_at > now)).execute()  # noqa: E712
        refresh_tokens = RefreshToken.update(state="revoked").where(
            (RefreshToken.user_sub == user_sub) & (RefreshToken.client_id == client_id)
            & (RefreshToken.state == "active") & (RefreshToken.expires_at > now)).execute()
        access_tokens = AccessToken.update(revoked=True).where(
            (AccessToken.user_sub == user_sub) & (AccessToken.client_id == client_id)
            & (AccessToken.revoked == False) & (AccessToken.expires_at > now)).execute()  # noqa: E712
    return Withdrawal(consent, codes, refresh_tokens, access_tokens)

"""Token introspection (RFC 7662)."""

from __future__ import annotations

from flask import Blueprint

from core.request import INTROSPECTION
from server import current
from server.endpoints import token_to_examine
from server.render import json_response
from storage import refresh

bp = Blueprint("introspection", __name__)


@bp.route("/oauth2/introspect", methods=["POST"], provide_automatic_options=False)
def introspect():
    """RFC 7662: whether a token is active. Any authenticated confidential client may ask about an
    access token, whoever it was issued to: that is how a protected resource validates the opaque
    tokens it receives (§1). A refresh token is described only to the client it was issued to; to
    any other it is {"active": false} (§2.2: the answer for a token the caller may not know about).
    A public client cannot introspect (handlers.public_client)."""
    client_id, token, refresh_first = token_to_examine(INTROSPECTION)
    lookups = [_introspect_refresh, _introspect_access] if refresh_first else [_introspect_access, _introspect_refresh]
    for lookup in lookups:
        body = lookup(token, client_id)
        if body is not None:
            return json_response({"active": True, **body, "iss": current.services().settings.issuer})
    return json_response({"active": False})


def _introspect_access(token: str, client_id: str) -> dict | None:
    found = current.services().access_tokens.active(token)
    if found is None:
        return None
    # RFC 9449 §6.2: token_type and cnf.jkt of a DPoP-bound token; RFC 8705 §3.2: cnf.x5t#S256 of
    # a certificate-bound one (both members when both bind it); RFC 8707: its audience.
    body: dict = {"client_id": found.client_id, "token_type": found.token_type, "exp": found.expires_at,
                  "iat": found.issued_at}
    if found.scope:
        body["scope"] = found.scope
    if found.user_sub:
        body["sub"] = found.user_sub
    if found.audience:
        body["aud"] = found.audience[0] if len(found.audience) == 1 else list(found.audience)
    if found.cnf:
        body["cnf"] = found.cnf
    return body


def _introspect_refresh(token: str, client_id: str) -> dict | None:
    found = refresh.find(token)
    if found is None or found.client_id != client_id or not found.active():
        return None
    body = {"client_id": found.client_id, "exp": found.expires_at, "iat": found.issued_at, "sub": found.user_sub}
    if found.scopes:
        body["scope"] = " ".join(found.scopes)
    return body

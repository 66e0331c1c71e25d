"""Token revocation (RFC 7009)."""

from __future__ import annotations

from flask import Blueprint

from core.request import REVOCATION
from server import current
from server.endpoints import token_to_examine
from server.render import json_response
from storage import refresh

bp = Blueprint("revocation", __name__)


@bp.route("/oauth2/revoke", methods=["POST"], provide_automatic_options=False)
def revoke():
    """RFC 7009: the client revokes one of its own tokens; the answer is 200 either way (§2.2).
    A refresh token takes its whole grant with it: every refresh and access token issued from the
    same authorization code (§2.1). A public client may revoke its own tokens too (§2.1
    authenticates confidential clients only)."""
    client_id, token, refresh_first = token_to_examine(REVOCATION)
    revokers = [current.services().access_tokens.revoke, refresh.revoke]
    if refresh_first:
        revokers.reverse()
    for revoke_one in revokers:
        if revoke_one(token, client_id):
            break
    return json_response({})

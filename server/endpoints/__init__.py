"""The OAuth endpoints, one module each; app.py registers their blueprints."""

from __future__ import annotations

from core.errors import invalid_request
from server import current
from server.forms import token_request


def token_to_examine(endpoint: str) -> tuple[str, str, bool]:
    """What introspection (RFC 7662 §2.1) and revocation (RFC 7009 §2.1) share: the client,
    authenticated by the chain; the `token` parameter; and whether `token_type_hint` asks for
    refresh tokens first (the hint only decides the order of the look-ups)."""
    request = token_request(endpoint)
    client_id = current.chain().authenticate(request).client.client_id
    if "token" not in request.form:
        raise invalid_request("The token parameter is missing")
    return client_id, request.form["token"], request.form.get("token_type_hint") == "refresh_token"

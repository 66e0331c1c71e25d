"""The userinfo endpoint (OpenID Connect Core §5.3) with bearer tokens (RFC 6750)."""

from __future__ import annotations

import re

from flask import Blueprint, request

from core.errors import OAuthError
from server import current
from server.forms import parse_form, read_body
from server.render import json_response
from storage import users

bp = Blueprint("userinfo", __name__)


# OpenID Connect Core §5.4: the claims each scope makes available.
SCOPE_CLAIMS = {
    "profile": ("name", "family_name", "given_name", "middle_name", "nickname", "preferred_username", "profile",
                "picture", "website", "gender", "birthdate", "zoneinfo", "locale", "updated_at"),
    "email": ("email", "email_verified"),
    "address": ("address",),
    "phone": ("phone_number", "phone_number_verified"),
}
ID_TOKEN_CLAIMS = ("sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "azp")
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")  # RFC 6750 §2.1


def bearer_error(status: int, error: str | None, description: str, scope: str | None = None) -> OAuthError:
    """RFC 6750 §3: the challenge names the error, except when the request had no token at all."""
    challenge = 'Bearer realm="oauth2"'
    if error:
        challenge += f', error="{error}"'
    if scope:
        challenge += f', scope="{scope}"'
    return OAuthError(error or "invalid_token", description, status, {"WWW-Authenticate": challenge})


def _bearer_token() -> str:
    """The access token from the Authorization header or, on POST, the form body (RFC 6750 §2.1,
    §2.2); never from the URL (§2.3 is not supported: URLs end up in logs and Referer headers)."""
    if "access_token" in request.args:
        raise bearer_error(400, "invalid_request", "The access token must not be sent in the URL")
    found: list[str] = []
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer":
            value = value.strip(" ")
            if not _B64TOKEN.fullmatch(value):
                raise bearer_error(401, "invalid_token", "The access token is malformed")
            found.append(value)
    if request.method == "POST" and request.mimetype == "application/x-www-form-urlencoded":
        try:
            form = parse_form(read_body(request.stream))
        except OAuthError as exc:
            raise bearer_error(exc.status, "invalid_request", exc.description) from None
        if "access_token" in form:
            found.append(form["access_token"])
    if len(found) > 1:  # §2: exactly one method
        raise bearer_error(400, "invalid_request", "The access token was sent in more than one way")
    if not found:
        raise bearer_error(401, None, "An access token is required")
    return found[0]


@bp.route("/oauth2/userinfo", methods=["GET", "POST"], provide_automatic_options=False)
def userinfo():
    """OpenID Connect Core §5.3: the signed-in user's claims, as far as the token's scopes allow."""
    row = current.idp().services.tokens.active(_bearer_token())
    # Only a user's token (not a client's own) that is active.
    account = users.get_by_sub(row.user_sub) if row is not None and row.user_sub else None
    if account is None:
        raise bearer_error(401, "invalid_token", "The access token is invalid, expired or revoked")
    scopes = row.scope.split()
    if "openid" not in scopes:
        raise bearer_error(403, "insufficient_scope", "The access token does not have the openid scope",
                           scope="openid")
    allowed = {claim for scope in scopes for claim in SCOPE_CLAIMS.get(scope, ())}
    claims = {name: value for name, value in account.claims.items() if name in allowed}
    return json_response({**claims, "sub": account.sub})

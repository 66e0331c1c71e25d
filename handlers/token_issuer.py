"""Issues the token response (RFC 6749 §5.1): an opaque bearer access token (only its hash is
stored), and for a user's grant a refresh token (when the client is registered for the
refresh_token grant) and an ID token (when `openid` is in the scope, OpenID Connect Core §3.1.3.3).

What a grant handler hands over in `Grant.extra` for a user's grant: `user_sub`, `grant_id` (the
family every token of the grant shares), `auth_time`, `nonce`, `refresh_scopes` (the scope the
refresh token carries: the whole grant, however the access token was narrowed) and, for the
refresh grant, `rotate` (the hash of the presented refresh token, used up last), and for the
code grant `from_code` (the code's reuse flag is checked last).
"""

from __future__ import annotations

import time
from typing import Any

from handlers.base import TokenIssuer
from keystore.id_token import at_hash, sign_id_token
from core.errors import invalid_grant
from core.request import AuthenticatedClient, Grant, TokenRequest
from storage import codes, refresh


class OpaqueTokenIssuer(TokenIssuer):
    default_order = 100

    def issue(self, request: TokenRequest, client: AuthenticatedClient, grant: Grant) -> dict:
        registered = client.client
        settings = self.services.settings
        scope = " ".join(grant.scopes)
        user_sub = grant.extra.get("user_sub")
        if user_sub is None:  # the client's own token (client_credentials)
            token, expires_in = self.services.tokens.issue(
                registered.client_id, scope, registered.access_token_lifetime or settings.access_token_lifetime)
            return _response(token, expires_in, scope)

        validity = settings.validity
        grant_id = grant.extra["grant_id"]
        token, expires_in = self.services.tokens.issue(
            registered.client_id, scope, registered.access_token_lifetime or validity["user_access_token_validity"],
            user_sub=user_sub, grant_id=grant_id)
        response = _response(token, expires_in, scope)
        if "refresh_token" in registered.grant_types:
            response["refresh_token"] = refresh.issue(
                grant_id=grant_id, client_id=registered.client_id, user_sub=user_sub,
                scopes=grant.extra["refresh_scopes"], auth_time=grant.extra["auth_time"],
                lifetime=registered.refresh_token_lifetime or validity["refresh_token_validity"])
        if "openid" in grant.scopes:
            response["id_token"] = self._id_token(registered.client_id, user_sub, token, grant.extra,
                                                  registered.id_token_lifetime or validity["id_token_validity"])

        # Last, after the new tokens exist: a concurrent use of the same refresh token that lost
        # this UPDATE revokes the family, these new tokens included (storage.refresh).
        rotated = grant.extra.get("rotate")
        if rotated is not None and not refresh.rotate(rotated):
            refresh.revoke_family(grant_id)
            raise invalid_grant("The refresh token has already been used", reason="refresh_reused")
        # RFC 6749 §4.1.2: a second redemption running at the same time may have revoked the grant
        # before these tokens existed; it flagged the code first, so checking after storing is enough.
        if grant.extra.get("from_code") and codes.was_reused(grant_id):
            codes.revoke_grant(grant_id)
            raise invalid_grant("The authorization code has already been used", reason="code_reused")
        return response

    def _id_token(self, client_id: str, user_sub: str, access_token: str, extra: dict[str, Any],
                  lifetime: int) -> str:
        """OpenID Connect Core §2 and §3.1.3.6; on refresh (§12.2) the same auth_time and no nonce."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.services.settings.issuer,
            "sub": user_sub,
            "aud": client_id,
            "exp": now + lifetime,
            "iat": now,
            "auth_time": extra["auth_time"],
            "at_hash": at_hash(access_token),
            "azp": client_id,
        }
        if extra.get("nonce"):
            claims["nonce"] = extra["nonce"]
        return sign_id_token(self.services.keystore(), claims)


def _response(token: str, expires_in: int, scope: str) -> dict[str, Any]:
    response: dict[str, Any] = {"access_token": token, "token_type": "Bearer", "expires_in": expires_in}
    if scope:
        response["scope"] = scope
    return response

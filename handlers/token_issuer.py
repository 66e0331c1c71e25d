"""Issues the token response (RFC 6749 §5.1): an access token in the client's format (opaque and
stored hashed, or a JWT per RFC 9068: core.access_tokens), DPoP-bound when the request carried a
proof (RFC 9449 §5: `token_type` DPoP), bound to the client's TLS certificate when it is registered
for that (RFC 8705 §3: `token_type` stays Bearer), addressed to the requested resources (RFC 8707); and for a
user's grant (UserGrant) a refresh token (when the client is registered for the refresh_token
grant) and an ID token (when `openid` is in the scope, OpenID Connect Core §3.1.3.3). Checks that
must follow the issue (rotation, code reuse) belong to the grant handler (GrantHandler.after_issue).
"""

from __future__ import annotations

import time
from typing import Any

from handlers.base import AuthenticatedClient, Grant, TokenIssuer, TokenRequest, UserGrant
from keystore.certificates import x5t_s256
from keystore.id_token import at_hash, sign_id_token
from storage import refresh


class DefaultTokenIssuer(TokenIssuer):
    default_order = 100

    def issue(self, request: TokenRequest, client: AuthenticatedClient, grant: Grant) -> dict:
        registered = client.client
        settings = self.services.settings
        scope = " ".join(grant.scopes)
        jkt = request.dpop.jkt if request.dpop is not None else None
        x5t = self._certificate_binding(request, client)
        user = isinstance(grant, UserGrant)
        validity = settings.validity
        token, expires_in = self.services.access_tokens.issue(
            client=registered, scope=scope,
            lifetime=registered.access_token_lifetime or (validity["user_access_token_validity"] if user
                                                          else settings.access_token_lifetime),
            user_sub=grant.user_sub if user else None, grant_id=grant.grant_id if user else None,
            auth_time=grant.auth_time if user else None, jkt=jkt, x5t_s256=x5t, audience=grant.resources)
        response: dict[str, Any] = {"access_token": token, "token_type": "DPoP" if jkt else "Bearer",
                                    "expires_in": expires_in}
        if scope:
            response["scope"] = scope
        if not isinstance(grant, UserGrant):  # the client's own token (client_credentials)
            return response

        if "refresh_token" in registered.grant_types:
            # RFC 9449 §5: a public client's refresh token is bound to its DPoP key; a confidential
            # client's is bound to the client (its authentication) instead.
            response["refresh_token"] = refresh.issue(
                grant_id=grant.grant_id, client_id=registered.client_id, user_sub=grant.user_sub,
                scopes=grant.refresh_scopes, auth_time=grant.auth_time,
                lifetime=registered.refresh_token_lifetime or validity["refresh_token_validity"],
                jkt=jkt if client.method == "none" else None, resources=grant.grant_resources)
        if "openid" in grant.scopes:
            response["id_token"] = self._id_token(registered.client_id, grant, token,
                                                  registered.id_token_lifetime or validity["id_token_validity"])
        return response

    @staticmethod
    def _certificate_binding(request: TokenRequest, client: AuthenticatedClient) -> str | None:
        """RFC 8705 §3: the thumbprint an access token is bound to, for a client registered with
        tls_client_certificate_bound_access_tokens, whatever its authentication method (the chain
        refused such a client's request without a certificate before the grant was used). With a
        DPoP proof as well, the token is bound both ways and each binding must be proven at use."""
        if not client.client.tls_client_certificate_bound_access_tokens or request.client_certificate is None:
            return None
        return x5t_s256(request.client_certificate)

    def _id_token(self, client_id: str, grant: UserGrant, access_token: str, lifetime: int) -> str:
        """OpenID Connect Core §2 and §3.1.3.6; on refresh (§12.2) the same auth_time and no nonce."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.services.settings.issuer,
            "sub": grant.user_sub,
            "aud": client_id,
            "exp": now + lifetime,
            "iat": now,
            "auth_time": grant.auth_time,
            "at_hash": at_hash(access_token),
            "azp": client_id,
        }
        if grant.nonce:
            claims["nonce"] = grant.nonce
        return sign_id_token(self.services.keys().primary, claims)

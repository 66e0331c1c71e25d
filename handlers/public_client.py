"""Public clients: token_endpoint_auth_method `none` (OpenID Connect Registration §2, RFC 7591 §2).

A public client cannot keep a secret (RFC 6749 §2.1), so it only names itself with `client_id`
(§3.2.1). What protects its grants instead is PKCE (RFC 7636, enforced by the authorization code
grant) and refresh token rotation (Security BCP §4.14.2); that is why such a client may use only
those two grants at the token endpoint, and no other endpoint that requires authentication
(introspection, revocation) accepts it.
"""

from __future__ import annotations

from handlers.base import ClientAuthenticator
from handlers.chain import credential_kinds
from server.errors import invalid_client
from server.request import AuthAttempt, AuthenticatedClient, TokenRequest
from storage import clients

PUBLIC_GRANTS = ("authorization_code", "refresh_token")


class PublicClientAuthenticator(ClientAuthenticator):
    methods = ("none",)
    default_order = 1000

    def can_handle(self, request: TokenRequest) -> bool:
        # Only a client_id and no credentials of any kind: anything more belongs to another method.
        return "client_id" in request.form and not credential_kinds(request)

    def authenticate(self, request: TokenRequest, attempt: AuthAttempt) -> AuthenticatedClient:
        attempt.method = "none"
        client_id = request.form["client_id"]
        attempt.client_id = client_id
        self.check_rate(client_id)
        if (request.endpoint_url != self.services.settings.token_endpoint
                or request.form.get("grant_type") not in PUBLIC_GRANTS):
            raise invalid_client("Client authentication is required", reason="public_client_not_allowed")
        client = clients.get(client_id) if len(client_id) <= 255 and "\x00" not in client_id else None
        # One answer for an unknown client and a confidential one: no client enumeration.
        if client is None or client.auth_method != "none":
            raise invalid_client("Client authentication failed",
                                 reason="wrong_method" if client else "unknown_client")
        return AuthenticatedClient(client, "none")

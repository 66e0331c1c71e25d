"""Public clients: token_endpoint_auth_method `none` (OpenID Connect Registration §2, RFC 7591 §2).

A public client cannot keep a secret (RFC 6749 §2.1), so it only names itself with `client_id`
(§3.2.1). What protects its grants instead is PKCE (RFC 7636, enforced by the authorization code
grant) and refresh token rotation (Security BCP §4.14.2); that is why such a client may use only
those two grants at the token endpoint. It may also revoke its own tokens (RFC 7009 §2.1
authenticates confidential clients only, and a public client must be able to end its grant on
sign-out), and push its authorization requests (RFC 9126); introspection, which describes
tokens, stays closed to it.
"""

from __future__ import annotations

from handlers.base import PAR, REVOCATION, TOKEN, AuthAttempt, AuthenticatedClient, ClientAuthenticator, TokenRequest, invalid_client
from storage import clients

PUBLIC_GRANTS = ("authorization_code", "refresh_token")


class PublicClientAuthenticator(ClientAuthenticator):
    methods = ("none",)
    default_order = 1000

    def can_handle(self, request: TokenRequest) -> bool:
        # Only a client_id and no credentials of any kind (a TLS client certificate is one: mutual
        # TLS, handlers.tls_client_auth): anything more belongs to another method.
        return "client_id" in request.form and not request.credential_kinds() and request.client_certificate is None

    def authenticate(self, request: TokenRequest, attempt: AuthAttempt) -> AuthenticatedClient:
        attempt.method = "none"
        client_id = self.claim(attempt, request.form["client_id"])
        client = clients.get(client_id)
        attempt.client_known = client is not None
        if not self._allowed(request):
            raise invalid_client("Client authentication is required", reason="public_client_not_allowed")
        # One answer for an unknown client and a confidential one: no client enumeration.
        if client is None or client.auth_method != "none":
            raise invalid_client("Client authentication failed",
                                 reason="wrong_method" if client else "unknown_client")
        return AuthenticatedClient(client, "none")

    @staticmethod
    def _allowed(request: TokenRequest) -> bool:
        if request.endpoint == TOKEN:
            return request.form.get("grant_type") in PUBLIC_GRANTS
        # RFC 9126 §2: a public client may push its authorization requests (PKCE, required of it
        # by the authorization endpoint's rules, protects them).
        return request.endpoint in (REVOCATION, PAR)

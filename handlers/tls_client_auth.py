"""Mutual-TLS client authentication (RFC 8705 §2): tls_client_auth and self_signed_tls_client_auth."""

from __future__ import annotations

from handlers.base import AuthAttempt, AuthenticatedClient, ClientAuthenticator, TokenRequest, invalid_client


class TLSClientAuthenticator(ClientAuthenticator):
    methods = ("tls_client_auth", "self_signed_tls_client_auth")
    default_order = 950

    def can_handle(self, request: TokenRequest) -> bool:
        return False  # being written

    def authenticate(self, request: TokenRequest, attempt: AuthAttempt) -> AuthenticatedClient:
        raise invalid_client("Client authentication failed", reason="mtls")

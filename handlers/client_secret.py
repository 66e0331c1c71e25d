"""client_secret_basic and client_secret_post (RFC 6749 §2.3.1); secrets are stored hashed."""

from __future__ import annotations

import base64
import binascii
from urllib.parse import unquote_plus

from handlers.base import AuthAttempt, AuthenticatedClient, ClientAuthenticator, TokenRequest, invalid_client, invalid_request
from storage import clients


class ClientSecretAuthenticator(ClientAuthenticator):
    methods = ("client_secret_basic", "client_secret_post")
    default_order = 900
    wso2_name = "org.wso2.carbon.identity.oauth2.client.authentication.BasicAuthClientAuthenticator"

    def can_handle(self, request: TokenRequest) -> bool:
        return "authorization" in request.headers or "client_secret" in request.form

    def authenticate(self, request: TokenRequest, attempt: AuthAttempt) -> AuthenticatedClient:
        if "authorization" in request.headers:
            attempt.method = "client_secret_basic"
            client_id, secret = _basic_credentials(request.headers["authorization"])
            if "client_id" in request.form and request.form["client_id"] != client_id:
                raise invalid_client("The client_id parameter does not match the Authorization header",
                                     reason="client_id")
        else:
            attempt.method = "client_secret_post"
            client_id = request.form.get("client_id", "")
            secret = request.form["client_secret"]
            if not client_id:
                raise invalid_request("The client_id parameter is missing", reason="client_id")
        self.claim(attempt, client_id)
        client = clients.get(client_id)
        attempt.client_known = client is not None
        # Same answer for an unknown client and a wrong secret: no client enumeration.
        if client is None or not clients.secret_matches(client, secret):
            raise invalid_client("Client authentication failed", reason="bad_secret" if client else "unknown_client")
        if client.auth_method != attempt.method:
            raise invalid_client(f"The client is not registered for {attempt.method}", reason="wrong_method")
        return AuthenticatedClient(client, attempt.method)


def _basic_credentials(header: str) -> tuple[str, str]:
    """RFC 6749 §2.3.1 / RFC 7617: Basic base64(urlencode(id) ":" urlencode(secret))."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value.strip():
        raise invalid_client("The Authorization header must use the Basic scheme", reason="authorization_scheme")
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):  # ValueError: non-ASCII (UnicodeDecodeError is one too)
        raise invalid_client("The Authorization header is malformed", reason="authorization_malformed") from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise invalid_client("The Authorization header is malformed", reason="authorization_malformed")
    return unquote_plus(client_id), unquote_plus(secret)  # form-urlencoded: "+" is a space

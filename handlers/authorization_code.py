"""The authorization code grant at the token endpoint (RFC 6749 §4.1.3, OpenID Connect Core §3.1.3,
PKCE RFC 7636 §4.5–4.6).

The code is redeemed (used up) before its bindings are checked: a code presented with the wrong
client, redirect URI or verifier may have been stolen, and must not be retried (storage.codes).
What can be checked without the code — its presence, the syntax of scope and code_verifier — is
checked first, so a malformed request does not use up a good code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from handlers.base import (AuthenticatedClient, Grant, GrantHandler, RegisteredClient, TokenRequest, UserGrant,
                           invalid_grant, invalid_request, unauthorized_client)
from handlers.client_credentials import narrowed, narrowed_resources, requested_scopes, still_registered
from storage import codes, users
from storage.codes import CodeGrant

# RFC 7636 §4.1: code-verifier = 43*128unreserved
_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")

_CODE_ERRORS = {
    "unknown": "The authorization code is invalid",
    "client": "The authorization code was issued to another client",
    "expired": "The authorization code has expired",
    "reused": "The authorization code has already been used",
}


def s256(verifier: str) -> str:
    """RFC 7636 §4.2: BASE64URL-ENCODE(SHA256(ASCII(code_verifier)))."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode("ascii")


class AuthorizationCodeGrantHandler(GrantHandler):
    grant_type = "authorization_code"
    default_order = 100
    wso2_name = "org.wso2.carbon.identity.oauth2.token.handlers.grant.AuthorizationCodeGrantHandler"

    def handle(self, request: TokenRequest, client: AuthenticatedClient) -> UserGrant:
        registered = client.client
        if self.grant_type not in registered.grant_types:
            raise unauthorized_client("The client is not registered for the authorization_code grant")
        form = request.form
        code = form.get("code")
        if code is None:
            raise invalid_request("The code parameter is missing")
        requested = requested_scopes(request)
        verifier = form.get("code_verifier")
        if verifier is not None and not _VERIFIER.fullmatch(verifier):
            raise invalid_request("The code_verifier must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~")

        try:
            # RFC 6749 §4.1.3: the code was issued to the authenticated client (storage.codes checks it).
            grant = codes.redeem(code, registered.client_id)
        except codes.CodeError as exc:
            raise invalid_grant(_CODE_ERRORS[exc.reason], reason=f"code_{exc.reason}") from None
        self._check_redirect_uri(form.get("redirect_uri"), grant, registered)
        self._check_pkce(verifier, grant, client.method == "none")
        if grant.dpop_jkt is not None:  # RFC 9449 §10
            proof = request.dpop
            if proof is None or proof.jkt != grant.dpop_jkt:
                raise invalid_grant("The authorization code is bound to another DPoP key", reason="dpop_jkt")
        resources = narrowed_resources(grant.resources, request.resources, registered)

        granted = still_registered(grant.scopes, registered)
        scopes = narrowed(granted, requested, "authorization code")
        if users.get_by_sub(grant.user_sub) is None:
            raise invalid_grant("The user of the authorization code no longer exists", reason="code_user")
        return UserGrant(scopes=scopes, user_sub=grant.user_sub, grant_id=grant.grant_id, auth_time=grant.auth_time,
                         refresh_scopes=granted, nonce=grant.nonce, resources=resources,
                         grant_resources=grant.resources)

    def after_issue(self, request: TokenRequest, client: AuthenticatedClient, grant: Grant) -> None:
        # RFC 6749 §4.1.2: a second redemption running at the same time may have revoked the grant
        # before these tokens existed; it flagged the code first, so checking after storing is enough.
        assert isinstance(grant, UserGrant)
        if codes.was_reused(grant.grant_id):
            codes.revoke_grant(grant.grant_id)
            raise invalid_grant("The authorization code has already been used", reason="code_reused")

    @staticmethod
    def _check_redirect_uri(sent: str | None, grant: CodeGrant, registered: RegisteredClient) -> None:
        # RFC 6749 §4.1.3: required, and identical, when the authorization request included it.
        # When it omitted it (§3.1.2.3: the client has exactly one), the token request may omit
        # it too, or send that same URI; it cannot name another.
        if sent is None:
            if grant.redirect_uri_sent:
                raise invalid_grant("The redirect_uri parameter is required for this code", reason="redirect_uri")
            return
        if sent != grant.redirect_uri:
            raise invalid_grant("The redirect_uri does not match the authorization request", reason="redirect_uri")

    def _check_pkce(self, verifier: str | None, grant: CodeGrant, public: bool) -> None:
        if grant.code_challenge is None:
            # A public client's code must be bound by PKCE (RFC 7636 §1, Security BCP §2.1.1), and so
            # must every code when [oauth.pkce] mandatory is set.
            if public or self.services.settings.pkce["mandatory"]:
                raise invalid_grant("The authorization code was issued without a code_challenge",
                                    reason="pkce_required")
            # A verifier for a code without a challenge: the request does not match the code.
            if verifier is not None:
                raise invalid_grant("A code_verifier was sent for a code issued without a code_challenge",
                                    reason="pkce_unexpected")
            return
        if verifier is None:
            raise invalid_grant("The code_verifier parameter is required for this code", reason="pkce_missing")
        method = grant.code_challenge_method or "plain"  # RFC 7636 §4.3: plain when not given
        if method == "S256":
            computed = s256(verifier)
        elif method == "plain" and self.services.settings.pkce["allow_plain"]:
            computed = verifier
        else:
            raise invalid_grant("The code_challenge_method is not supported", reason="pkce_method")
        # RFC 7636 §4.6, compared in constant time.
        if not hmac.compare_digest(computed.encode("ascii"), grant.code_challenge.encode("utf-8")):
            raise invalid_grant("The code_verifier does not match the code_challenge", reason="pkce_mismatch")

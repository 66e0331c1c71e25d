"""OAuth errors as values: raised where a rule fails, rendered in exactly one place (server.render)."""

from __future__ import annotations

import re

# RFC 6749 §5.2: error_description is limited to %x20-21 / %x23-5B / %x5D-7E.
_UNSAFE = re.compile(r'[^\x20-\x21\x23-\x5b\x5d-\x7e]')


class OAuthError(Exception):
    """An OAuth 2.0 error response: `error` code, HTTP status and a safe, fixed description.

    The description is written by us, never built from request input, and is filtered
    to RFC 6749's character set anyway so that no caller can break the rule.
    """

    def __init__(self, error: str, description: str, status: int = 400,
                 headers: dict[str, str] | None = None, reason: str | None = None,
                 detail: str | None = None) -> None:
        super().__init__(description)
        self.error = error
        self.description = _UNSAFE.sub("?", description)
        self.status = status
        self.headers = dict(headers or {})
        # A short machine-readable reason for the audit log (e.g. "signature", "replay").
        self.reason = reason or error
        # What the operator needs and the caller must not learn (e.g. why a jwks_uri fetch
        # failed): written to the audit log and the console's failure list, never to the response.
        self.detail = detail


def invalid_request(description: str, reason: str | None = None) -> OAuthError:
    return OAuthError("invalid_request", description, 400, reason=reason)


def invalid_client(description: str, reason: str | None = None, detail: str | None = None) -> OAuthError:
    # RFC 6749 §5.2: 401 with a challenge in the scheme the client used in its Authorization
    # header; Basic is the only HTTP scheme defined for clients (§2.3.1), so it is sent always.
    return OAuthError("invalid_client", description, 401,
                      {"WWW-Authenticate": 'Basic realm="oauth2", error="invalid_client"'},
                      reason=reason, detail=detail)


def rate_limited(retry_after: int, detail: str | None = None) -> OAuthError:
    """A failed client authentication beyond a failure budget (core.ratelimit); `detail` keeps
    the failure's own reason for the audit log."""
    return OAuthError("invalid_client", "Too many failed client authentications; retry later", 429,
                      {"Retry-After": str(retry_after)}, reason="rate_limited", detail=detail)


def invalid_grant(description: str, reason: str | None = None) -> OAuthError:
    return OAuthError("invalid_grant", description, 400, reason=reason)


def invalid_scope(description: str) -> OAuthError:
    return OAuthError("invalid_scope", description, 400)


def unauthorized_client(description: str) -> OAuthError:
    return OAuthError("unauthorized_client", description, 400)


def unsupported_grant_type(description: str) -> OAuthError:
    return OAuthError("unsupported_grant_type", description, 400)


def temporarily_unavailable(description: str) -> OAuthError:
    return OAuthError("temporarily_unavailable", description, 503, {"Retry-After": "5"})


def invalid_dpop_proof(description: str, reason: str = "invalid_dpop_proof") -> OAuthError:
    """RFC 9449 §5: the DPoP proof at the token endpoint is missing where required, or fails a check."""
    return OAuthError("invalid_dpop_proof", description, 400, reason=reason)


def use_dpop_nonce(nonce: str) -> OAuthError:
    """RFC 9449 §8: the proof must carry the server's nonce, sent in the DPoP-Nonce header."""
    return OAuthError("use_dpop_nonce", "The DPoP proof must carry the nonce the server provides", 400,
                      {"DPoP-Nonce": nonce}, reason="dpop_nonce")


def invalid_target(description: str) -> OAuthError:
    """RFC 8707 §2: a `resource` the client may not ask for, or one that is not an absolute URI."""
    return OAuthError("invalid_target", description, 400)

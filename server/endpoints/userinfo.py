"""The userinfo endpoint (OpenID Connect Core §5.3) with bearer tokens (RFC 6750), DPoP-bound
tokens (RFC 9449 §7) and certificate-bound tokens (RFC 8705 §3)."""

from __future__ import annotations

import hmac
import re

from flask import Blueprint, request

from core.errors import OAuthError
from server import current
from server.forms import one_dpop_header, parse_form, read_body
from server.render import json_response
from core.access_tokens import ActiveToken
from keystore.certificates import x5t_s256
from storage import clients, users

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
    """RFC 6750 §3: the challenge names the error, except when the request had no token at all;
    then the DPoP scheme is offered too (RFC 9449 §7.1)."""
    challenge = 'Bearer realm="oauth2"'
    if error:
        challenge += f', error="{error}"'
    if scope:
        challenge += f', scope="{scope}"'
    if not error:
        challenge += ", " + _dpop_challenge(None)
    return OAuthError(error or "invalid_token", description, status, {"WWW-Authenticate": challenge})


def _dpop_challenge(error: str | None) -> str:
    algs = " ".join(current.services().dpop.algorithms)
    return f'DPoP error="{error}", algs="{algs}"' if error else f'DPoP algs="{algs}"'


def dpop_error(error: str, description: str, headers: dict[str, str] | None = None, status: int = 401) -> OAuthError:
    """RFC 9449 §7.1: a protected resource's error in the DPoP scheme."""
    return OAuthError(error, description, status, {"WWW-Authenticate": _dpop_challenge(error), **(headers or {})})


def _presented_token() -> tuple[str, str]:
    """The access token and the scheme it came with ("bearer" or "dpop"): from the Authorization
    header or, on POST, the form body (RFC 6750 §2.1, §2.2; RFC 9449 §7.1); never from the URL
    (§2.3 is not supported: URLs end up in logs and Referer headers)."""
    if "access_token" in request.args:
        raise bearer_error(400, "invalid_request", "The access token must not be sent in the URL")
    found: list[tuple[str, str]] = []
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() in ("bearer", "dpop"):
            value = value.strip(" ")
            if not _B64TOKEN.fullmatch(value):
                raise bearer_error(401, "invalid_token", "The access token is malformed")
            found.append((value, scheme.lower()))
    if request.method == "POST" and request.mimetype == "application/x-www-form-urlencoded":
        try:
            form = parse_form(read_body(request.stream))
        except OAuthError as exc:
            raise bearer_error(exc.status, "invalid_request", exc.description) from None
        if "access_token" in form:
            found.append((form["access_token"], "bearer"))
    if len(found) > 1:  # §2: exactly one method
        raise bearer_error(400, "invalid_request", "The access token was sent in more than one way")
    if not found:
        raise bearer_error(401, None, "An access token is required")
    return found[0]


def _usable_token() -> ActiveToken:
    """The presented access token if it is active and presented as its binding requires: a
    DPoP-bound token only with the DPoP scheme and a proof of its key carrying its hash
    (RFC 9449 §7), a bearer token only as a bearer token; a certificate-bound one only over a
    connection with the same TLS client certificate (RFC 8705 §3), whichever its scheme."""
    token, scheme = _presented_token()
    services = current.services()
    proof = None
    if scheme == "dpop":
        if "DPoP" not in request.headers or not one_dpop_header({"dpop": request.headers["DPoP"]}):
            raise dpop_error("invalid_dpop_proof", "Exactly one DPoP header is required with the DPoP scheme")
        proof = services.dpop.verify(request.headers["DPoP"], request.method, services.settings.base_url + request.path,
                                     access_token=token, error=lambda d, **_: dpop_error("invalid_dpop_proof", d))
    found = services.access_tokens.active(token)
    if found is None:
        if scheme == "dpop":
            raise dpop_error("invalid_token", "The access token is invalid, expired or revoked")
        raise bearer_error(401, "invalid_token", "The access token is invalid, expired or revoked")
    if found.audience and not {services.settings.issuer, services.settings.base_url + request.path} & set(found.audience):
        # RFC 8707: a token for other resources is not this server's to honour.
        error = dpop_error if proof is not None else lambda e, d: bearer_error(401, e, d)
        raise error("invalid_token", "The access token is not meant for this endpoint")
    if found.jkt is None:
        if proof is not None:
            raise dpop_error("invalid_token", "The access token is not DPoP-bound: send it as a Bearer token")
        _check_certificate(found)
        return found
    if proof is None:  # RFC 9449 §7.2: a bound token is not a bearer token
        raise dpop_error("invalid_token", "The access token is DPoP-bound: send it with the DPoP scheme and a proof")
    if proof.jkt != found.jkt:
        raise dpop_error("invalid_dpop_proof", "The DPoP proof is not signed by the key the token is bound to")
    _check_certificate(found)  # before the proof's jti is used up
    dpop = services.dpop
    dpop.check_nonce(proof, clients.get(found.client_id),
                     error=lambda nonce: dpop_error("use_dpop_nonce", "The DPoP proof must carry the nonce the "
                                                    "server provides", {"DPoP-Nonce": nonce}))
    dpop.record(proof, error=lambda d, **_: dpop_error("invalid_dpop_proof", d))
    return found


def _check_certificate(found: ActiveToken) -> None:
    """RFC 8705 §3: a certificate-bound token only from a client presenting that certificate on
    this request (server.current.client_certificate: this server's TLS or a trusted proxy's
    Client-Cert header). The error is in the token's own scheme."""
    if found.x5t_s256 is None:
        return
    try:
        presented = current.client_certificate(request)
    except OAuthError as exc:  # a trusted proxy's malformed Client-Cert header
        raise bearer_error(exc.status, "invalid_request", exc.description) from None
    if presented is None or not hmac.compare_digest(x5t_s256(presented), found.x5t_s256):
        description = "The access token is bound to a TLS client certificate that this request did not present"
        if found.jkt:
            raise dpop_error("invalid_token", description)
        raise bearer_error(401, "invalid_token", description)


@bp.route("/oauth2/userinfo", methods=["GET", "POST"], provide_automatic_options=False)
def userinfo():
    """OpenID Connect Core §5.3: the signed-in user's claims, as far as the token's scopes allow."""
    found = _usable_token()
    # Only a user's token (not a client's own). A DPoP-bound token's errors are in its scheme.
    account = users.get_by_sub(found.user_sub) if found.user_sub else None
    if account is None:
        if found.jkt:
            raise dpop_error("invalid_token", "The access token is invalid, expired or revoked")
        raise bearer_error(401, "invalid_token", "The access token is invalid, expired or revoked")
    scopes = found.scope.split()
    if "openid" not in scopes:
        if found.jkt:
            raise dpop_error("insufficient_scope", "The access token does not have the openid scope", status=403)
        raise bearer_error(403, "insufficient_scope", "The access token does not have the openid scope",
                           scope="openid")
    allowed = {claim for scope in scopes for claim in SCOPE_CLAIMS.get(scope, ())}
    claims = {name: value for name, value in account.claims.items() if name in allowed}
    return json_response({**claims, "sub": account.sub})

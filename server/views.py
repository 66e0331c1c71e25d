"""HTTP endpoints. Views are thin: build the TokenRequest, run the chain, render."""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from urllib.parse import unquote, urlsplit

from flask import Blueprint, Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.wrappers import Request

from keystore import id_token
from server import web
from core.errors import OAuthError, invalid_request, temporarily_unavailable
from server.forms import check_media_type, parse_form, read_body
from server.render import error_response, json_response
from core.request import TokenRequest
from storage import refresh, users
from storage.database import UNAVAILABLE

log = logging.getLogger("server.views")
bp = Blueprint("oauth2", __name__)


def _idp():
    return current_app.extensions["idp"]


def _oauth_request(req: Request | None = None, idp=None) -> TokenRequest:
    """The checks every POST endpoint of OAuth shares, then the immutable request object."""
    req = request if req is None else req
    idp = _idp() if idp is None else idp
    # RFC 6749 §3.2: parameters are sent in the body, never in the query string.
    if req.query_string:
        raise invalid_request("Parameters must be sent in the request body, not the URL", reason="query")
    check_media_type(req.headers.get("Content-Type"))
    form = parse_form(read_body(req.stream))
    return TokenRequest.build(
        form,
        {k.lower(): v for k, v in req.headers.items()},
        endpoint_url=idp.services.settings.base_url + req.path,  # never the Host header
        request_id=req.environ.setdefault("idp.request_id", os.urandom(8).hex()),
        remote_addr=client_address(req, idp),
    )


def client_address(req: Request | None = None, idp=None) -> str:
    """The client's address: the TCP peer, or, when the peer is one of [server] trusted_proxies,
    the right-most X-Forwarded-For entry that is not itself a trusted proxy."""
    req = request if req is None else req
    peer = req.remote_addr or ""
    trusted = (_idp() if idp is None else idp).services.settings.server["trusted_proxies"]
    if peer not in trusted:
        return peer
    for hop in reversed(req.headers.get("X-Forwarded-For", "").split(",")):
        hop = hop.strip()
        if hop and hop not in trusted:
            # The address the failure budgets count against: an IP address in one spelling
            # ("::1" and "0::1" are one address); anything else leaves the proxy's own.
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer
    return peer


def token_response(req: Request, idp) -> Response:
    return json_response(idp.chain.token(_oauth_request(req, idp)))


@bp.route("/oauth2/token", methods=["POST"], provide_automatic_options=False)
def token():
    # A POST reaches TokenEndpoint below first; this route gives other methods their 405.
    return token_response(request, _idp())


class TokenEndpoint:
    """WSGI middleware: POST /oauth2/token, the hot path, is answered without Flask's
    per-request machinery (request context, routing, hooks: a fifth to a third of the request's
    CPU, bench/README.md); everything else, other methods on this path included, goes to
    Flask. The view, the errors and their rendering are the ones Flask uses."""

    def __init__(self, flask_app, idp, release) -> None:
        self.flask_app, self.idp, self.release = flask_app, idp, release

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") != "/oauth2/token" or environ.get("REQUEST_METHOD") != "POST":
            return self.flask_app(environ, start_response)
        try:
            response = token_response(Request(environ), self.idp)
        except OAuthError as exc:
            response = error_response(exc)
        except Exception as exc:  # every failure leaves as JSON, as under Flask's handlers
            response = error_response(as_oauth_error(exc))
        finally:
            self.release()
        return response(environ, start_response)


@bp.route("/oauth2/introspect", methods=["POST"], provide_automatic_options=False)
def introspect():
    """RFC 7662: whether a token is active. Any authenticated confidential client may ask about an
    access token, whoever it was issued to: that is how a protected resource validates the opaque
    tokens it receives (§1). A refresh token is described only to the client it was issued to; to
    any other it is {"active": false} (§2.2: the answer for a token the caller may not know about).
    A public client cannot introspect (handlers.public_client)."""
    oauth_request = _oauth_request()
    idp = _idp()
    client_id = idp.chain.authenticate(oauth_request).client.client_id
    form = oauth_request.form
    if "token" not in form:
        raise invalid_request("The token parameter is missing")
    token = form["token"]
    # §2.1: token_type_hint only decides which kind is looked up first.
    lookups = [_introspect_access, _introspect_refresh]
    if form.get("token_type_hint") == "refresh_token":
        lookups.reverse()
    for lookup in lookups:
        body = lookup(token, client_id)
        if body is not None:
            return json_response({"active": True, **body, "iss": idp.services.settings.issuer})
    return json_response({"active": False})


def _introspect_access(token: str, client_id: str) -> dict | None:
    row = _idp().services.tokens.active(token)
    if row is None:
        return None
    body = {"client_id": row.client_id, "token_type": "Bearer", "exp": row.expires_at, "iat": row.issued_at}
    if row.scope:
        body["scope"] = row.scope
    if row.user_sub:
        body["sub"] = row.user_sub
    return body


def _introspect_refresh(token: str, client_id: str) -> dict | None:
    found = refresh.find(token)
    if found is None or found.client_id != client_id or not found.active():
        return None
    body = {"client_id": found.client_id, "exp": found.expires_at, "iat": found.issued_at, "sub": found.user_sub}
    if found.scopes:
        body["scope"] = " ".join(found.scopes)
    return body


@bp.route("/oauth2/revoke", methods=["POST"], provide_automatic_options=False)
def revoke():
    """RFC 7009: the client revokes one of its own tokens; the answer is 200 either way (§2.2).
    A refresh token takes its whole grant with it: every refresh and access token issued from the
    same authorization code (§2.1). A public client may revoke its own tokens too (§2.1
    authenticates confidential clients only)."""
    oauth_request = _oauth_request()
    idp = _idp()
    client_id = idp.chain.authenticate(oauth_request).client.client_id
    form = oauth_request.form
    if "token" not in form:
        raise invalid_request("The token parameter is missing")
    revokers = [idp.services.tokens.revoke, refresh.revoke]
    if form.get("token_type_hint") == "refresh_token":  # §2.1: the hint only decides the order
        revokers.reverse()
    for revoke_one in revokers:
        if revoke_one(form["token"], client_id):
            break
    return json_response({})


# --- userinfo (OpenID Connect Core §5.3, RFC 6750) -----------------------------------------------

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
    row = _idp().services.tokens.active(_bearer_token())
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


@bp.get("/oauth2/jwks")
def jwks():
    # One key: the primary keystore's, which signs ID tokens (keystore.id_token names its kid).
    return json_response({"keys": [id_token.public_jwk(_idp().services.keystore())]}, cacheable=True,
                         headers={"Cache-Control": "public, max-age=300"})


@bp.get("/.well-known/oauth-authorization-server/<path:issuer_path>")
@bp.get("/.well-known/openid-configuration/<path:issuer_path>")
def path_inserted_metadata(issuer_path: str):
    """RFC 8414 §3.1: for an issuer with a path, the well-known segment goes between host and path
    (/.well-known/oauth-authorization-server/oauth2/token); OpenID Connect clients that insert
    the path the same way find openid-configuration there too. Only the issuer's own path."""
    if "/" + issuer_path != unquote(urlsplit(_idp().services.settings.issuer).path):
        raise NotFound()
    return metadata()


@bp.get("/oauth2/token/.well-known/openid-configuration")  # WSO2's path
@bp.get("/.well-known/openid-configuration")
@bp.get("/.well-known/oauth-authorization-server")
def metadata():
    idp = _idp()
    settings = idp.services.settings
    body = {
        "issuer": settings.issuer,
        "authorization_endpoint": settings.base_url + "/oauth2/authorize",
        "token_endpoint": settings.token_endpoint,
        "userinfo_endpoint": settings.base_url + "/oauth2/userinfo",
        "jwks_uri": settings.base_url + "/oauth2/jwks",
        "introspection_endpoint": settings.base_url + "/oauth2/introspect",
        "revocation_endpoint": settings.base_url + "/oauth2/revoke",
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [id_token.ALGORITHM],
        "scopes_supported": ["openid", *SCOPE_CLAIMS],
        "claims_supported": [*ID_TOKEN_CLAIMS, *(c for claims in SCOPE_CLAIMS.values() for c in claims)],
        # RFC 7636 §4.2; plain only when [oauth.pkce] allow_plain says so.
        "code_challenge_methods_supported": ["S256", "plain"] if settings.pkce["allow_plain"] else ["S256"],
        "authorization_response_iss_parameter_supported": True,  # RFC 9207
        # OpenID Connect Discovery §3: request_uri_parameter_supported defaults to true; neither
        # request objects nor request_uri are supported.
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        **idp.chain.metadata(),
    }
    # RFC 8414 §2: the same client authentication serves introspection and revocation, except
    # that a public client (`none`) may revoke its own tokens but not introspect (handlers.public_client).
    methods = body["token_endpoint_auth_methods_supported"]
    body["introspection_endpoint_auth_methods_supported"] = [m for m in methods if m != "none"]
    body["revocation_endpoint_auth_methods_supported"] = list(methods)
    for endpoint in ("introspection", "revocation"):
        if "token_endpoint_auth_signing_alg_values_supported" in body:
            body[f"{endpoint}_endpoint_auth_signing_alg_values_supported"] = \
                body["token_endpoint_auth_signing_alg_values_supported"]
    return json_response(body, cacheable=True, headers={"Cache-Control": "public, max-age=60"})


def register_error_handlers(app: Flask) -> None:
    """Every error leaves as JSON: OAuth errors, Werkzeug's HTTP errors, and anything unexpected."""

    @app.errorhandler(OAuthError)
    def oauth_error(exc: OAuthError):
        if web.html_pages():
            return web.error_page(web.PageError(exc.status, "Bad request", exc.description))
        return error_response(exc)

    @app.errorhandler(web.PageError)
    def page_error(exc: web.PageError):
        return web.error_page(exc)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if web.html_pages():
            return web.http_error_page(exc)
        return error_response(as_oauth_error(exc))

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        error = as_oauth_error(exc)
        if web.html_pages():
            return web.error_page(web.PageError(error.status, "Service unavailable" if error.status == 503
                                                else "Server error", error.description))
        return error_response(error)


def as_oauth_error(exc: Exception) -> OAuthError:
    """The OAuth error an exception other than OAuthError is answered with (logged when it is
    the server's fault): Werkzeug's HTTP errors keep their status, a database that cannot
    serve is 503, anything else 500."""
    if isinstance(exc, HTTPException):
        status = exc.code or 500
        headers = {}
        description = exc.name or "HTTP error"
        if status == 405 and getattr(exc, "valid_methods", None):
            headers["Allow"] = ", ".join(exc.valid_methods)
            description = "This endpoint accepts only " + headers["Allow"]
        error = "not_found" if status == 404 else "invalid_request"
        return OAuthError(error, description, status, headers)
    if isinstance(exc, UNAVAILABLE):
        log.error("database unavailable: %s", exc.__class__.__name__)
        return temporarily_unavailable("The service is temporarily unavailable")
    log.exception("unexpected error", exc_info=exc)
    return OAuthError("server_error", "The server could not process the request", 500)

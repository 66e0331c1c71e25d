"""HTTP endpoints. Views are thin: build the TokenRequest, run the chain, render."""

from __future__ import annotations

import logging
import os

from flask import Blueprint, Flask, current_app, request
from werkzeug.exceptions import HTTPException

from keystore.jwk import PublicKey
from server import web
from server.errors import OAuthError, invalid_request, temporarily_unavailable
from server.forms import check_media_type, parse_form, read_body
from server.render import error_response, json_response
from server.request import TokenRequest
from storage.database import UNAVAILABLE

log = logging.getLogger("server.views")
bp = Blueprint("oauth2", __name__)


def _idp():
    return current_app.extensions["idp"]


def _oauth_request() -> TokenRequest:
    """The checks every POST endpoint of OAuth shares, then the immutable request object."""
    # RFC 6749 §3.2: parameters are sent in the body, never in the query string.
    if request.query_string:
        raise invalid_request("Parameters must be sent in the request body, not the URL", reason="query")
    check_media_type(request.headers.get("Content-Type"))
    form = parse_form(read_body(request.stream))
    return TokenRequest.build(
        form,
        {k.lower(): v for k, v in request.headers.items()},
        endpoint_url=_idp().services.settings.base_url + request.path,  # never the Host header
        request_id=request.environ.setdefault("idp.request_id", os.urandom(8).hex()),
        remote_addr=client_address(),
    )


def client_address() -> str:
    """The client's address: the TCP peer, or, when the peer is one of [server] trusted_proxies,
    the right-most X-Forwarded-For entry that is not itself a trusted proxy."""
    peer = request.remote_addr or ""
    trusted = _idp().services.settings.server["trusted_proxies"]
    if peer not in trusted:
        return peer
    for hop in reversed(request.headers.get("X-Forwarded-For", "").split(",")):
        hop = hop.strip()
        if hop and hop not in trusted:
            return hop[:64]
    return peer


@bp.route("/oauth2/token", methods=["POST"], provide_automatic_options=False)
def token():
    return json_response(_idp().chain.token(_oauth_request()))


@bp.route("/oauth2/introspect", methods=["POST"], provide_automatic_options=False)
def introspect():
    """RFC 7662: any authenticated client may ask whether a token is active."""
    oauth_request = _oauth_request()
    idp = _idp()
    idp.chain.authenticate(oauth_request)
    if "token" not in oauth_request.form:
        raise invalid_request("The token parameter is missing")
    row = idp.services.tokens.active(oauth_request.form["token"])
    if row is None:
        return json_response({"active": False})
    body = {"active": True, "client_id": row.client_id, "token_type": "Bearer", "exp": row.expires_at,
            "iat": row.issued_at, "iss": idp.services.settings.issuer}
    if row.scope:
        body["scope"] = row.scope
    return json_response(body)


@bp.route("/oauth2/revoke", methods=["POST"], provide_automatic_options=False)
def revoke():
    """RFC 7009: the client revokes one of its own tokens; the answer is 200 either way (§2.2)."""
    oauth_request = _oauth_request()
    idp = _idp()
    client = idp.chain.authenticate(oauth_request)
    if "token" not in oauth_request.form:
        raise invalid_request("The token parameter is missing")
    idp.services.tokens.revoke(oauth_request.form["token"], client.client.client_id)
    return json_response({})


@bp.get("/oauth2/jwks")
def jwks():
    ks = _idp().services.keystore()
    key = PublicKey.from_cryptography(ks.certificate.public_key())
    jwk = {**key.to_jwk(), "kid": key.thumbprint, "use": "sig", "alg": "RS256"}
    return json_response({"keys": [jwk]}, cacheable=True, headers={"Cache-Control": "public, max-age=300"})


@bp.get("/oauth2/token/.well-known/openid-configuration")  # WSO2's path
@bp.get("/.well-known/openid-configuration")
@bp.get("/.well-known/oauth-authorization-server")
def metadata():
    idp = _idp()
    settings = idp.services.settings
    body = {
        "issuer": settings.issuer,
        "token_endpoint": settings.token_endpoint,
        "jwks_uri": settings.base_url + "/oauth2/jwks",
        "introspection_endpoint": settings.base_url + "/oauth2/introspect",
        "revocation_endpoint": settings.base_url + "/oauth2/revoke",
        **idp.chain.metadata(),
    }
    # RFC 8414 §2: the same client authentication serves introspection and revocation.
    for endpoint in ("introspection", "revocation"):
        body[f"{endpoint}_endpoint_auth_methods_supported"] = body["token_endpoint_auth_methods_supported"]
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
        status = exc.code or 500
        headers = {}
        description = exc.name or "HTTP error"
        if status == 405 and getattr(exc, "valid_methods", None):
            headers["Allow"] = ", ".join(exc.valid_methods)
            description = "This endpoint accepts only " + headers["Allow"]
        error = "not_found" if status == 404 else "invalid_request"
        return error_response(OAuthError(error, description, status, headers))

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        if isinstance(exc, UNAVAILABLE):
            log.error("database unavailable: %s", exc.__class__.__name__)
            error = temporarily_unavailable("The service is temporarily unavailable")
        else:
            log.exception("unexpected error")
            error = OAuthError("server_error", "The server could not process the request", 500)
        if web.html_pages():
            return web.error_page(web.PageError(error.status, "Service unavailable" if error.status == 503
                                                else "Server error", error.description))
        return error_response(error)

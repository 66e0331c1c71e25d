"""Discovery: the authorization server metadata (RFC 8414, OpenID Connect Discovery 1.0) and the
server's JWK Set."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from flask import Blueprint
from werkzeug.exceptions import NotFound

from core.profile import fapi2
from server import current
from server.endpoints import par
from server.endpoints.userinfo import ID_TOKEN_CLAIMS, SCOPE_CLAIMS
from server.render import json_response

bp = Blueprint("discovery", __name__)


@bp.get("/oauth2/jwks")
def jwks():
    # Every key entry of the keystore: the primary (ID tokens), the access token key, and any
    # other kept for tokens it signed (keystore.signing_keys).
    return json_response(current.services().keys().jwks(), cacheable=True,
                         headers={"Cache-Control": "public, max-age=300"})


@bp.get("/.well-known/oauth-authorization-server/<path:issuer_path>")
@bp.get("/.well-known/openid-configuration/<path:issuer_path>")
def path_inserted_metadata(issuer_path: str):
    """RFC 8414 §3.1: for an issuer with a path, the well-known segment goes between host and path
    (/.well-known/oauth-authorization-server/oauth2/token); OpenID Connect clients that insert
    the path the same way find openid-configuration there too. Only the issuer's own path."""
    if "/" + issuer_path != unquote(urlsplit(current.idp().services.settings.issuer).path):
        raise NotFound()
    return metadata()


@bp.get("/oauth2/token/.well-known/openid-configuration")  # WSO2's path
@bp.get("/.well-known/openid-configuration")
@bp.get("/.well-known/oauth-authorization-server")
def metadata():
    idp = current.idp()
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
        "id_token_signing_alg_values_supported": [idp.services.keys().primary.alg],
        "scopes_supported": ["openid", *SCOPE_CLAIMS],
        "claims_supported": [*ID_TOKEN_CLAIMS, *(c for claims in SCOPE_CLAIMS.values() for c in claims)],
        # RFC 7636 §4.2; plain only when [oauth.pkce] allow_plain says so.
        "code_challenge_methods_supported": ["S256", "plain"] if settings.pkce["allow_plain"] else ["S256"],
        "authorization_response_iss_parameter_supported": True,  # RFC 9207
        # OpenID Connect Discovery §3: request_uri_parameter_supported defaults to true, and is
        # about request objects by reference (OIDC Core §6.2), which are not supported: false. The
        # request_uri of a pushed request is announced by the PAR metadata below (RFC 9126 §5
        # does not ask for this one), and a client fetching its own request_uri would be refused.
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        # RFC 9126 §5; required by [oauth.par] required or the server's FAPI 2.0 profile (a client's
        # own requirement is its registration's require_pushed_authorization_requests, §6).
        "pushed_authorization_request_endpoint": settings.base_url + par.ENDPOINT,
        "require_pushed_authorization_requests": bool(settings.par["required"] or fapi2(settings)),
        "dpop_signing_alg_values_supported": list(idp.services.dpop.algorithms),  # RFC 9449 §5.1
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

"""Dynamic client registration (RFC 7591) and management (RFC 7592) at WSO2's path, and its OpenAPI description.

    POST   /api/identity/oauth2/dcr/v1.1/register              register (RFC 7591 §3.1)
    GET    /api/identity/oauth2/dcr/v1.1/register/<client_id>  read (RFC 7592 §2.1)
    PUT    /api/identity/oauth2/dcr/v1.1/register/<client_id>  replace (RFC 7592 §2.2)
    DELETE /api/identity/oauth2/dcr/v1.1/register/<client_id>  delete (RFC 7592 §2.3)
    GET    /api/openapi.json                                    the OpenAPI description (administrators)

Callers: an administrator (HTTP Basic, with the sign-in failure limits) may do everything; an
initial access token (Bearer, RFC 7591 §3) may register; a registration access token (Bearer,
RFC 7592 §3) may manage the one client it was issued for. Neither bearer may widen what a
client may ask for: an initial access token registers standard OpenID Connect scopes only, a
registration access token keeps or removes scope values and grant types, never adds them. The
metadata rules are server.client_metadata's. Every answer is JSON, every error an OAuthError.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Response, request

from keystore.jwk import _loads_strict, _StrictJSONError
from server import current
from server import web
from server.client_metadata import MetadataError, check_client_id, metadata_of, validate
from core.errors import OAuthError, invalid_request
from server.forms import read_body
from server.render import NO_STORE, json_response
from storage import clients as client_store
from storage.clients import RegisteredClient

bp = Blueprint("registration", __name__)

REGISTER_PATH = "/api/identity/oauth2/dcr/v1.1/register"
REALM = "console"
OPENAPI = json.loads((Path(__file__).parent / "openapi.json").read_text(encoding="utf-8"))
_BEARER_TOKEN = re.compile(r"[A-Za-z0-9._~+/-]{1,512}=*")  # RFC 6750 §2.1 b64token


@dataclass(frozen=True)
class Caller:
    """Who is calling: an administrator, or the holder of a bearer token."""

    admin: str | None = None              # the administrator's user name
    initial_token: str | None = None      # RFC 7591 §3 initial access token
    client_id: str | None = None          # the client a registration access token is bound to

    @property
    def name(self) -> str:
        return self.admin or ("initial_access_token" if self.initial_token else "registration_access_token")


def _grant_types() -> list[str]:
    """The grant types the handler chain serves, drop-in handlers included."""
    return sorted(current.chain().grants)


# --- errors --------------------------------------------------------------------------------------

def _unauthorized(description: str, bearer_error: bool = False) -> OAuthError:
    # RFC 7235 §4.1: both schemes this API accepts; RFC 6750 §3: error only once a token was tried.
    challenge = f'Basic realm="{REALM}", Bearer realm="{REALM}"' + (', error="invalid_token"' if bearer_error else "")
    return OAuthError("invalid_token", description, 401, {"WWW-Authenticate": challenge})


def _metadata_error(exc: MetadataError) -> OAuthError:
    # RFC 7591 §3.2.2: invalid_redirect_uri or invalid_client_metadata, 400.
    return OAuthError(exc.error, exc.message, 400)


def _not_found() -> OAuthError:
    return OAuthError("not_found", "No client is registered with this client_id", 404)


# --- authentication ------------------------------------------------------------------------------

def _authorization() -> tuple[str, str] | None:
    """(scheme, credentials) of the Authorization header, scheme lower-cased; None without one."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, value = header.strip().partition(" ")
    scheme = scheme.lower()
    if scheme not in ("basic", "bearer") or not value.strip():
        raise _unauthorized("The Authorization header must carry Basic or Bearer credentials")
    return scheme, value.strip()


def _basic_admin(value: str) -> str:
    """An administrator's user name, after the same checks and failure limits as the console sign-in."""
    try:
        # RFC 7617 §2: base64 of user-id ":" password, UTF-8 (§2.1); the user name has no colon.
        username, colon, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
    except (binascii.Error, ValueError):
        raise _unauthorized("The Basic credentials are malformed") from None
    if not colon or not username:
        raise _unauthorized("The Basic credentials are malformed")
    limiter = current.services().limiter
    address = current.client_address()
    retry = limiter.blocked("signin_address", address) or limiter.blocked("user", username)
    if retry is not None:
        raise OAuthError("access_denied", "Too many failed sign-ins; retry later", 429, {"Retry-After": str(retry)})
    try:
        web.sign_in(username, password, address, "console")  # counts failures, refuses non-admins
    except web.SignInError:
        raise _unauthorized("The credentials are not those of an administrator") from None
    return username


def _bearer(value: str) -> str:
    if not _BEARER_TOKEN.fullmatch(value):
        raise _unauthorized("The bearer token is malformed", bearer_error=True)
    return value


def _caller_for_registration() -> Caller:
    """POST: an administrator, or the holder of a live initial access token."""
    credentials = _authorization()
    if credentials is None:
        raise _unauthorized("Registration needs an administrator's credentials or an initial access token")
    scheme, value = credentials
    if scheme == "basic":
        return Caller(admin=_basic_admin(value))
    token = _bearer(value)
    if not client_store.initial_token_valid(token):
        raise _unauthorized("The initial access token is invalid, expired or used up", bearer_error=True)
    return Caller(initial_token=token)


def _caller_for_client(client_id: str) -> Caller:
    """The client configuration endpoint: an administrator, or the client's registration access token."""
    credentials = _authorization()
    if credentials is None:
        raise _unauthorized("This endpoint needs an administrator's credentials or the registration access token")
    scheme, value = credentials
    if scheme == "basic":
        return Caller(admin=_basic_admin(value))
    # RFC 7592 §2: a token for another client, or for no client, is simply invalid here.
    if client_store.registration_token_client(_bearer(value)) != client_id:
        raise _unauthorized("The registration access token is not valid for this client", bearer_error=True)
    return Caller(client_id=client_id)


# --- the request body ------------------------------------------------------------------------------

def _json_body() -> dict[str, Any]:
    media_type = (request.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise OAuthError("invalid_request", "The request body must be application/json", 415)
    body = read_body(request.stream)  # 413 over the limit
    try:
        metadata = _loads_strict(body)  # UTF-8, no duplicate member names, no NaN
    except _StrictJSONError as exc:
        raise invalid_request(f"The request body is not valid JSON ({exc.reason})") from None
    if not isinstance(metadata, dict):
        raise invalid_request("The request body must be a JSON object of client metadata")
    return metadata


# --- responses -------------------------------------------------------------------------------------

def registration_client_uri(client_id: str) -> str:
    return f"{current.services().settings.base_url}{REGISTER_PATH}/{quote(client_id, safe='')}"


def _client_information(client: RegisteredClient, secret: str | None = None,
                        registration_token: str | None = None) -> dict[str, Any]:
    """RFC 7591 §3.2.1 / RFC 7592 §3. Secrets exist only as hashes here, so the client_secret and
    the registration_access_token appear only in the response that issued them."""
    body = metadata_of(client)
    body["client_id_issued_at"] = client.created_at
    if secret is not None:
        body["client_secret"] = secret
    if client.auth_method.startswith("client_secret"):
        body["client_secret_expires_at"] = 0  # RFC 7591 §3.2.1: 0, it does not expire
    body["registration_client_uri"] = registration_client_uri(client.client_id)
    if registration_token is not None:
        body["registration_access_token"] = registration_token
    return body


def _audit(action: str, client_id: str, caller: Caller) -> None:
    current.chain().emit("client_registration", {
        "action": action, "client_id": client_id, "by": caller.name, "remote_addr": current.client_address()})


# --- the endpoints ---------------------------------------------------------------------------------

@bp.route(REGISTER_PATH, methods=["POST"], provide_automatic_options=False)
def register():
    """RFC 7591 §3.1: 201 with the client information, the secret and the registration access token."""
    caller = _caller_for_registration()
    metadata = _json_body()
    try:
        client_id = _requested_client_id(metadata, caller)
        fields = validate(metadata, current.services().settings, admin=caller.admin is not None,
                          grant_types_supported=_grant_types())
    except MetadataError as exc:
        raise _metadata_error(exc) from None
    if caller.initial_token is not None and not client_store.use_initial_token(caller.initial_token):
        # Spent by a concurrent registration since it was checked.
        raise _unauthorized("The initial access token is invalid, expired or used up", bearer_error=True)
    try:
        client, secret = client_store.create(client_id, **fields)
    except ValueError as exc:
        raise OAuthError("invalid_client_metadata", f"The client_id was refused: {exc}", 400) from None
    token = client_store.issue_registration_token(client.client_id)
    _audit("create", client.client_id, caller)
    return json_response(_client_information(client, secret, token), 201)


def _requested_client_id(metadata: dict[str, Any], caller: Caller) -> str:
    """An administrator may choose the client_id (WSO2: ext_param_client_id); otherwise a random one."""
    requested = [check_client_id(metadata[name], name) for name in ("client_id", "ext_param_client_id")
                 if name in metadata]
    if not requested:
        return secrets.token_urlsafe(24)
    if caller.admin is None:
        raise MetadataError("client_id", "Only an administrator may choose the client_id")
    if len(set(requested)) != 1:
        raise MetadataError("client_id", "client_id and ext_param_client_id differ")
    return requested[0]


@bp.route(f"{REGISTER_PATH}/<path:client_id>", methods=["GET"], provide_automatic_options=False)
def read(client_id: str):
    """RFC 7592 §2.1."""
    _caller_for_client(client_id)
    client = client_store.get(client_id)
    if client is None:
        raise _not_found()
    return json_response(_client_information(client))


@bp.route(f"{REGISTER_PATH}/<path:client_id>", methods=["PUT"], provide_automatic_options=False)
def replace(client_id: str):
    """RFC 7592 §2.2: the body replaces the registration; absent fields take their defaults (an
    administrator's policy fields stay when a client updates itself)."""
    caller = _caller_for_client(client_id)
    client = client_store.get(client_id)
    if client is None:
        raise _not_found()
    metadata = _json_body()
    try:
        fields = validate(metadata, current.services().settings, existing=client, admin=caller.admin is not None,
                          grant_types_supported=_grant_types())
        # RFC 7592 §2.2: a client_secret sent must be the current one; a client never chooses its secret.
        if "client_secret" in metadata and not (isinstance(metadata["client_secret"], str)
                                                and client_store.secret_matches(client, metadata["client_secret"])):
            raise MetadataError("client_secret", "The client_secret is not the client's current secret")
    except MetadataError as exc:
        raise _metadata_error(exc) from None
    result = client_store.update(client_id, **fields)
    if result is None:  # deleted meanwhile
        raise _not_found()
    updated, secret = result
    if client.jwks_uri and client.jwks_uri != updated.jwks_uri:
        current.services().jwks_fetcher.invalidate(client.jwks_uri)  # this process forgets the old key set now
    _audit("update", client_id, caller)
    return json_response(_client_information(updated, secret))


@bp.route(f"{REGISTER_PATH}/<path:client_id>", methods=["DELETE"], provide_automatic_options=False)
def remove(client_id: str):
    """RFC 7592 §2.3: 204; the client's tokens and its registration access token stop working."""
    caller = _caller_for_client(client_id)
    client = client_store.get(client_id)
    if client is None or not client_store.delete(client_id):
        raise _not_found()
    if client.jwks_uri:
        current.services().jwks_fetcher.invalidate(client.jwks_uri)
    _audit("delete", client_id, caller)
    response = Response(status=204, headers=NO_STORE)
    del response.headers["Content-Type"]  # RFC 9110 §15.3.5: no content
    return response


@bp.route("/api/openapi.json", methods=["GET"], provide_automatic_options=False)
def openapi():
    """The OpenAPI description of this API, with this server's URL. Like everything under /api it
    answers administrators only."""
    credentials = _authorization()
    if credentials is None or credentials[0] != "basic":
        raise _unauthorized("The API description needs an administrator's credentials")
    _basic_admin(credentials[1])
    return json_response({**OPENAPI, "servers": [{"url": current.services().settings.base_url}]}, cacheable=True,
                         headers={"Cache-Control": "private, max-age=300"})

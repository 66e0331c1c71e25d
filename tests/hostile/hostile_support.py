"""Shared machinery for the hostile catalogue: the environment (a running server and its clients),
the request rows, raw JWS construction and the checks every answer must pass.

A row is a Case: an id, a builder that turns the environment into one HTTP request (method, path,
headers, body), the expected status, the expected `error` (None for a success) and the headers the
answer must carry.  Builders run at test time, so every assertion gets a fresh jti and fresh times.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import parse_qsl, urlencode

import pytest
import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from support import ASSERTION_TYPE, Server, assert_oauth_error, ec_key, ed_key, rsa_key

FORM = "application/x-www-form-urlencoded"

# RFC 6749 §4.1.2.1 and §5.2: the error codes an OAuth 2.0 token endpoint may answer with.
RFC6749_ERRORS = frozenset({
    "invalid_request", "invalid_client", "invalid_grant", "unauthorized_client", "unsupported_grant_type",
    "invalid_scope", "access_denied", "unsupported_response_type", "server_error", "temporarily_unavailable",
})
# The README documents one more code, for paths that are not an endpoint at all.
DOCUMENTED_NON_OAUTH = {404: "not_found"}
# RFC 6749 §5.2: error_description = 1*( %x20-21 / %x23-5B / %x5D-7E )
DESCRIPTION = re.compile(r"^[\x20\x21\x23-\x5b\x5d-\x7e]*$")


# --- base64url and raw JWS -------------------------------------------------------------------------

def b64(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def jdump(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


_HASH = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}
EC_SIZE = {"ES256": 32, "ES384": 48, "ES512": 66}
EC_ORDER = {
    "ES256": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
}


def signature_for(key, alg: str, signing_input: bytes) -> bytes:
    """Sign with `alg` whatever the key: no check that the key fits (that is the point of some rows)."""
    if alg.startswith("HS"):
        return hmac.new(key, signing_input, getattr(hashlib, "sha" + alg[2:])).digest()
    if alg.startswith("RS"):
        return key.sign(signing_input, padding.PKCS1v15(), _HASH[alg[2:]]())
    if alg.startswith("PS"):
        h = _HASH[alg[2:]]()
        return key.sign(signing_input, padding.PSS(padding.MGF1(h), h.digest_size), h)
    if alg.startswith("ES"):
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(_HASH[alg[2:]]())))
        size = (key.curve.key_size + 7) // 8
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    if alg in ("EdDSA", "Ed25519"):
        return key.sign(signing_input)
    raise ValueError(alg)


def compact(key, alg: str, header: dict | bytes, payload: dict | bytes, sign_alg: str | None = None) -> str:
    """A compact JWS from exact header and payload bytes (or dicts), signed with `sign_alg` (default `alg`)."""
    if isinstance(header, dict):
        header = jdump({"alg": alg, **header})
    if isinstance(payload, dict):
        payload = jdump(payload)
    signing_input = (b64(header) + "." + b64(payload)).encode()
    return signing_input.decode() + "." + b64(signature_for(key, sign_alg or alg, signing_input))


def resign(key, alg: str, token: str) -> str:
    """The same first two segments (whatever they hold) with a fresh, valid signature."""
    head, payload = token.split(".")[:2]
    signing_input = f"{head}.{payload}".encode()
    return f"{head}.{payload}." + b64(signature_for(key, alg, signing_input))


def segments(token: str) -> list[str]:
    return token.split(".")


def replace_segment(token: str, index: int, value: str) -> str:
    parts = token.split(".")
    parts[index] = value
    return ".".join(parts)


# --- requests and rows ------------------------------------------------------------------------------

@dataclass
class Req:
    method: str = "POST"
    path: str = "/oauth2/token"
    headers: dict = field(default_factory=dict)
    body: bytes | None = b""
    chunked: bool = False  # send the body with Transfer-Encoding: chunked

    def send(self, server: Server, session: requests.Session | None = None) -> requests.Response:
        data: Any = self.body
        if self.chunked:
            raw = self.body or b""
            data = (raw[i:i + 4096] for i in range(0, len(raw), 4096))
        sender = session or requests
        return sender.request(self.method, server.base + self.path, headers=self.headers, data=data,
                              verify=server.ca, timeout=30, allow_redirects=False)


def post(body: dict | str | bytes, content_type: str | None = FORM, headers: dict | None = None,
         path: str = "/oauth2/token", chunked: bool = False) -> Req:
    if isinstance(body, dict):
        body = urlencode(body)
    if isinstance(body, str):
        body = body.encode()
    all_headers = {**({"Content-Type": content_type} if content_type is not None else {}), **(headers or {})}
    return Req("POST", path, all_headers, body, chunked)


def form(assertion: str | None, **extra) -> dict:
    data = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE}
    if assertion is not None:
        data["client_assertion"] = assertion
    data.update(extra)
    return {k: v for k, v in data.items() if v is not ...}


@dataclass
class Case:
    id: str
    build: Callable[["Env"], Req]
    status: int
    error: str | None = None
    headers: dict = field(default_factory=dict)  # name -> exact value, or None for "present"
    bug: str | None = None  # a product bug: the row keeps the right expectation and is a strict xfail
    head: bool = False      # a HEAD request: no body to check


def ok(id: str, build: Callable[["Env"], Req]) -> Case:
    return Case(id, build, 200)


def bad_client(id: str, build: Callable[["Env"], Req], bug: str | None = None) -> Case:
    return Case(id, build, 401, "invalid_client", {"WWW-Authenticate": None}, bug)


def bad_request(id: str, build: Callable[["Env"], Req], status: int = 400, headers: dict | None = None,
                bug: str | None = None) -> Case:
    return Case(id, build, status, "invalid_request", headers or {}, bug)


CATALOGUE: dict[str, Case] = {}


def params(cases: Iterable[Case]) -> list:
    """pytest parameters for a table, registering each row in the catalogue (ids are unique across files)."""
    out = []
    for case in cases:
        assert case.id not in CATALOGUE or CATALOGUE[case.id] is case, f"duplicate row id {case.id}"
        CATALOGUE[case.id] = case
        marks = [pytest.mark.xfail(strict=True, reason="BUG: " + case.bug)] if case.bug else []
        out.append(pytest.param(case, id=case.id, marks=marks))
    return out


# --- checks -------------------------------------------------------------------------------------------

def check_response(response: requests.Response, case: Case, request: Req) -> dict | None:
    assert "<html" not in response.text.lower(), response.text[:200]
    if case.error is None:
        assert response.status_code == case.status, (response.status_code, response.text)
        assert response.headers["Content-Type"] == "application/json"
        assert response.headers["Cache-Control"] == "no-store"
        body = response.json()
        assert isinstance(body.get("access_token"), str) and body["token_type"] == "Bearer", body
        return body
    if case.head:
        assert response.status_code == case.status
        assert response.headers["Content-Type"] == "application/json"
        assert response.headers["Cache-Control"] == "no-store"
        assert response.content == b""
        body = None
    else:
        body = assert_error(response, case.status, case.error, request)
    for name, value in case.headers.items():
        assert name in response.headers, (name, dict(response.headers))
        if value is not None:
            assert response.headers[name] == value, (name, response.headers[name])
    return body


def assert_error(response, status: int, error: str, request: Req | None = None) -> dict:
    """support.assert_oauth_error plus: a code from RFC 6749, the §5.2 character set checked by a
    regular expression, only the two members, and a description that never echoes the request."""
    body = assert_oauth_error(response, status, error)
    assert error in RFC6749_ERRORS or DOCUMENTED_NON_OAUTH.get(status) == error, error
    description = body.get("error_description", "")
    assert isinstance(description, str) and DESCRIPTION.match(description), description
    assert set(body) <= {"error", "error_description", "error_uri"}, body
    assert "access_token" not in response.text
    if request is not None and request.body:
        for _, value in parse_qsl(request.body.decode("latin-1"), keep_blank_values=True):
            if len(value) >= 24 and value != ASSERTION_TYPE:
                assert value not in description, "the description echoes the request"
    return body


def run(env: "Env", case: Case) -> requests.Response:
    request = case.build(env)
    response = request.send(env.server, env.session)
    check_response(response, case, request)
    return response


# --- the environment ------------------------------------------------------------------------------------

@dataclass
class Keys:
    rsa: Any = field(default_factory=rsa_key)
    rsa_other: Any = field(default_factory=rsa_key)
    rsa_1024: Any = field(default_factory=lambda: rsa_key(1024))
    p256: Any = field(default_factory=lambda: ec_key(ec.SECP256R1))
    p256_other: Any = field(default_factory=lambda: ec_key(ec.SECP256R1))
    p384: Any = field(default_factory=lambda: ec_key(ec.SECP384R1))
    p521: Any = field(default_factory=lambda: ec_key(ec.SECP521R1))
    ed: Any = field(default_factory=ed_key)
    ed_other: Any = field(default_factory=ed_key)

    def for_alg(self, alg: str):
        if alg[:2] in ("RS", "PS"):
            return self.rsa
        return {"ES256": self.p256, "ES384": self.p384, "ES512": self.p521}.get(alg, self.ed)


@dataclass
class Env:
    server: Server
    keys: Keys
    session: requests.Session = field(default_factory=requests.Session)
    secrets: dict = field(default_factory=dict)

    @property
    def issuer(self) -> str:
        return self.server.base + "/oauth2/token"

    @property
    def directory(self) -> Path:
        return self.server.config_path.parent

    def register(self, client_id: str, jwks: str | None = None, auth_method: str = "private_key_jwt",
                 grant_types=("client_credentials",), scopes=("openid", "read"), **kwargs):
        """Write a client straight into the server's own database (read per request: no restart)."""
        from storage import clients
        from storage.database import open_database
        db = open_database("sqlite:///var/identity.db", self.directory)
        try:
            client, secret = clients.create(client_id, auth_method, grant_types=grant_types, scopes=scopes,
                                            jwks=jwks, **kwargs)
        finally:
            db.close()
        if secret:
            self.secrets[client_id] = secret
        return client

    def claims(self, client_id: str = "rsa-client", **overrides) -> dict:
        now = int(time.time())
        claims = {"iss": client_id, "sub": client_id, "aud": self.issuer, "jti": str(uuid.uuid4()),
                  "iat": now, "exp": now + 300}
        for name, value in overrides.items():
            if value is ...:
                claims.pop(name, None)
            else:
                claims[name] = value
        return claims

    def assertion(self, client_id: str = "rsa-client", key=None, alg: str = "RS256", kid: str | None = "k1",
                  headers: dict | None = None, **claims) -> str:
        header = {"typ": "JWT", **({"kid": kid} if kid is not None else {}), **(headers or {})}
        header = {k: v for k, v in header.items() if v is not ...}
        return compact(key or self.keys.for_alg(alg), alg, header, self.claims(client_id, **claims))

    def token_request(self, assertion: str | None, **extra) -> Req:
        return post(form(assertion, **extra))

    def token(self, assertion: str, **extra) -> requests.Response:
        return self.token_request(assertion, **extra).send(self.server, self.session)


def header_of(token: str) -> dict:
    return json.loads(unb64(token.split(".")[0]))


def payload_of(token: str) -> dict:
    return json.loads(unb64(token.split(".")[1]))

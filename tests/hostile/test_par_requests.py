"""Hostile pushed authorization requests (RFC 9126): POST /oauth2/par with bad transport, bad
client authentication and bad authorization parameters, and request_uris that must not work at
/oauth2/authorize. Every row goes over HTTPS to the real server; nothing is ever stored for a
refused push."""

from __future__ import annotations

import base64
import hashlib
import json
from urllib.parse import quote, urlencode

import pytest
import requests

from hostile_support import FORM, Case, Env, Req, bad_client, bad_request, params, post, run
from support import ASSERTION_TYPE, assert_oauth_error, dpop_proof, ec_key, jwks_of

PAR = "/oauth2/par"
REDIRECT = "https://app.example/cb"
API = "https://api.example/"
PREFIX = "urn:ietf:params:oauth:request_uri:"
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"   # RFC 7636 Appendix B
ALLOW_POST = {"Allow": "POST"}


def _register(e: Env) -> Env:
    jwks = jwks_of((e.keys.rsa, "k1"))
    e.register("par-client", jwks, grant_types=("authorization_code",), scopes=("openid", "read"),
               redirect_uris=(REDIRECT,), resources=(API,))
    e.register("par-machine", jwks, grant_types=("client_credentials",), redirect_uris=(REDIRECT,))
    e.register("par-public", auth_method="none", grant_types=("authorization_code",), scopes=("openid",),
               redirect_uris=(REDIRECT,))
    return e


@pytest.fixture(scope="module")
def par_env(env) -> Env:
    return _register(env)


@pytest.fixture(scope="module")
def par_legacy(legacy_env) -> Env:
    return _register(legacy_env)


def authorization(**overrides) -> dict:
    values = {"response_type": "code", "client_id": "par-client", "redirect_uri": REDIRECT, "scope": "openid",
              "state": "s", "code_challenge": CHALLENGE, "code_challenge_method": "S256"}
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not ...}


def credentials(e: Env, client_id: str = "par-client", **claims) -> dict:
    return {"client_assertion_type": ASSERTION_TYPE, "client_assertion": e.assertion(client_id, **claims)}


def push(e: Env, *, claims: dict | None = None, headers: dict | None = None, **overrides) -> Req:
    """A pushed request authenticated as par-client with a fresh assertion; `...` drops a parameter."""
    return post({**authorization(**overrides), **credentials(e, **(claims or {}))}, headers=headers, path=PAR)


def raw(e: Env, *pairs: str, content_type: str | None = FORM) -> Req:
    """A body from literal pairs, after a valid request's; `{A}` is a fresh assertion."""
    base = urlencode({**authorization(), "client_assertion_type": ASSERTION_TYPE})
    body = "&".join((base, "client_assertion=" + e.assertion("par-client"), *pairs))
    return post(body.encode(), content_type, path=PAR)


def par_url(e: Env) -> str:
    return e.server.base + PAR


ROWS = [
    # --- transport (§2.3: 405 for other methods, 413 beyond the size limit)
    bad_request("par-method-get", lambda e: Req("GET", PAR + "?" + urlencode(authorization()), {}, None), 405,
                ALLOW_POST),
    bad_request("par-method-put", lambda e: Req("PUT", PAR, {"Content-Type": FORM}, raw(e).body), 405, ALLOW_POST),
    bad_request("par-method-delete", lambda e: Req("DELETE", PAR, {}, None), 405, ALLOW_POST),
    bad_request("par-query-string", lambda e: Req("POST", PAR + "?scope=openid", {"Content-Type": FORM}, raw(e).body)),
    bad_request("par-ctype-json", lambda e: post(json.dumps({**authorization(), **credentials(e)}).encode(),
                                                 "application/json", path=PAR)),
    bad_request("par-ctype-missing", lambda e: raw(e, content_type=None)),
    bad_request("par-ctype-multipart", lambda e: raw(e, content_type="multipart/form-data; boundary=x")),
    bad_request("par-body-too-large", lambda e: raw(e, "padding=" + "a" * 70000), 413),
    bad_request("par-body-too-large-chunked",
                lambda e: Req("POST", PAR, {"Content-Type": FORM}, raw(e, "padding=" + "a" * 70000).body, True), 413),
    bad_request("par-flood", lambda e: raw(e, *(f"x{i}=1" for i in range(80)))),
    bad_request("par-bad-percent", lambda e: raw(e, "nonce=%zz")),
    bad_request("par-invalid-utf8", lambda e: raw(e, "nonce=%C3%28")),
    bad_request("par-odd-name", lambda e: raw(e, "na%00me=1")),
    # --- duplicates (RFC 6749 §3.2; `resource` alone may repeat)
    bad_request("par-duplicate-scope", lambda e: raw(e, "scope=openid")),
    bad_request("par-duplicate-empty-state", lambda e: raw(e, "state=")),
    bad_request("par-duplicate-redirect-uri", lambda e: raw(e, "redirect_uri=" + quote(REDIRECT, safe=""))),
    bad_request("par-duplicate-client-id", lambda e: raw(e, "client_id=par-client")),
    bad_request("par-duplicate-assertion", lambda e: raw(e, "client_assertion=" + e.assertion("par-client"))),
    # --- client authentication
    bad_client("par-no-credentials", lambda e: post(authorization(), path=PAR)),
    bad_client("par-unknown-public-client", lambda e: post(authorization(client_id="nobody"), path=PAR)),
    bad_client("par-aud-par-url-strict", lambda e: push(e, claims={"aud": par_url(e)})),
    bad_client("par-aud-array-par-url-strict", lambda e: push(e, claims={"aud": [par_url(e)]})),
    bad_client("par-aud-foreign", lambda e: push(e, claims={"aud": "https://evil.example/"})),
    bad_client("par-wrong-key", lambda e: post({**authorization(), "client_assertion_type": ASSERTION_TYPE,
                                                "client_assertion": e.assertion("par-client", key=e.keys.rsa_other)},
                                               path=PAR)),
    bad_client("par-expired-assertion", lambda e: push(e, claims={"exp": 1000})),
    bad_client("par-client-id-not-the-assertions", lambda e: push(e, client_id="rsa-client")),
    bad_request("par-two-methods", lambda e: push(e, headers={"Authorization": "Basic " + base64.b64encode(
        b"par-client:x").decode()})),
    # --- the authorization parameters (§2.1: the authorization endpoint's rules, as JSON)
    bad_request("par-request-uri-pushed", lambda e: push(e, request_uri=PREFIX + "A" * 43)),
    bad_request("par-request-uri-https-pushed", lambda e: push(e, request_uri="https://app.example/r.jwt")),
    bad_request("par-redirect-uri-unregistered", lambda e: push(e, redirect_uri="https://evil.example/cb")),
    bad_request("par-redirect-uri-prefix", lambda e: push(e, redirect_uri=REDIRECT + "/x")),
    bad_request("par-redirect-uri-javascript", lambda e: push(e, redirect_uri="javascript:alert(1)")),
    Case("par-scope-unregistered", lambda e: push(e, scope="openid admin"), 400, "invalid_scope"),
    Case("par-scope-missing", lambda e: push(e, scope=...), 400, "invalid_scope"),
    Case("par-scope-malformed", lambda e: push(e, scope='openid "read"'), 400, "invalid_scope"),
    Case("par-response-type-token", lambda e: push(e, response_type="token"), 400, "unsupported_response_type"),
    bad_request("par-response-type-missing", lambda e: push(e, response_type=...)),
    Case("par-grant-not-registered", lambda e: post({**authorization(client_id="par-machine"),
                                                     **credentials(e, "par-machine")}, path=PAR),
         400, "unauthorized_client"),
    bad_request("par-pkce-plain", lambda e: push(e, code_challenge_method="plain")),
    bad_request("par-pkce-short", lambda e: push(e, code_challenge=CHALLENGE[:42])),
    bad_request("par-pkce-method-alone", lambda e: push(e, code_challenge=...)),
    bad_request("par-public-without-pkce", lambda e: post(authorization(client_id="par-public", scope="openid",
                                                                        code_challenge=..., code_challenge_method=...),
                                                          path=PAR)),
    bad_request("par-nul-in-nonce", lambda e: push(e, nonce="n\x00")),
    bad_request("par-state-too-long", lambda e: push(e, state="s" * 513)),
    bad_request("par-prompt-unknown", lambda e: push(e, prompt="always")),
    bad_request("par-max-age-negative", lambda e: push(e, max_age="-1")),
    bad_request("par-response-mode-fragment", lambda e: push(e, response_mode="fragment")),
    bad_request("par-dpop-jkt-malformed", lambda e: push(e, dpop_jkt="x")),
]


@pytest.mark.parametrize("case", params(ROWS))
def test_refused_pushes(par_env, case):
    before = stored(par_env)
    run(par_env, case)
    assert stored(par_env) == before


def stored(e: Env) -> int:
    from storage.database import open_database
    from storage.models import PushedAuthorizationRequest
    db = open_database("sqlite:///var/identity.db", e.directory)
    try:
        return PushedAuthorizationRequest.select().count()
    finally:
        db.close()


def send(e: Env, request: Req) -> requests.Response:
    return request.send(e.server, e.session)


def test_a_good_push_for_comparison(par_env):
    response = send(par_env, push(par_env))
    assert response.status_code == 201 and set(response.json()) == {"request_uri", "expires_in"}
    assert response.headers["Cache-Control"] == "no-store"
    # `resource` may repeat; the public client may push with PKCE.
    repeated = send(par_env, raw(par_env, "resource=" + quote(API, safe=""), "resource=" + quote(API, safe="")))
    assert repeated.status_code == 201
    public = send(par_env, post(authorization(client_id="par-public"), path=PAR))
    assert public.status_code == 201


def test_the_assertion_is_used_once(par_env):
    request = push(par_env)
    assert send(par_env, request).status_code == 201
    assert_oauth_error(send(par_env, request), 401, "invalid_client")


@pytest.mark.parametrize("overrides, error", [
    ({"resource": "https://other.example/"}, "invalid_target"),
    ({"resource": "relative/path"}, "invalid_target"),
    ({"resource": API + "#fragment"}, "invalid_target"),
    ({"request": "eyJhbGciOiJub25lIn0.e30."}, "request_not_supported"),
])
def test_extension_errors(par_env, overrides, error):
    assert_oauth_error(send(par_env, push(par_env, **overrides)), 400, error)


def test_dpop_proofs_at_par(par_env):
    key = ec_key()
    url = par_url(par_env)
    for proof in (dpop_proof(key, par_env.issuer),                 # the token endpoint's htu
                  dpop_proof(key, url, method="GET"),
                  dpop_proof(key, url, iat=1000),
                  dpop_proof(key, url)[:-4] + "AAAA"):             # a broken signature
        assert_oauth_error(send(par_env, push(par_env, headers={"DPoP": proof})), 400, "invalid_dpop_proof")
    two = push(par_env, headers={"DPoP": dpop_proof(key, url) + ", " + dpop_proof(key, url)})
    assert_oauth_error(send(par_env, two), 400, "invalid_dpop_proof")
    mismatch = push(par_env, dpop_jkt="A" * 43, headers={"DPoP": dpop_proof(key, url)})
    assert_oauth_error(send(par_env, mismatch), 400, "invalid_dpop_proof")
    assert send(par_env, push(par_env, headers={"DPoP": dpop_proof(key, url)})).status_code == 201


def test_the_legacy_policy_accepts_the_par_url_as_audience(par_legacy):
    for aud in (par_url(par_legacy), [par_url(par_legacy)], par_legacy.issuer):
        response = send(par_legacy, push(par_legacy, claims={"aud": aud}))
        assert response.status_code == 201, response.text
    assert_oauth_error(send(par_legacy, push(par_legacy, claims={"aud": "https://evil.example/"})), 401,
                       "invalid_client")


# --- request_uris that must not work at the authorization endpoint: pages, never redirects ------------

def authorize(e: Env, **query) -> requests.Response:
    return e.server.get("/oauth2/authorize", params=query, allow_redirects=False)


def assert_refused(response: requests.Response) -> None:
    assert response.status_code == 400, (response.status_code, response.text[:300])
    assert "Location" not in response.headers
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "(invalid_request_uri)" in response.text


def test_request_uris_that_must_not_work(par_env):
    request_uri = send(par_env, push(par_env)).json()["request_uri"]
    stem = request_uri[len(PREFIX):]
    for query in (
        {"client_id": "par-public", "request_uri": request_uri},               # another client's
        {"client_id": "par-client", "request_uri": PREFIX + stem.swapcase()},  # compared exactly
        {"client_id": "par-client", "request_uri": PREFIX + stem[:-1]},
        {"client_id": "par-client", "request_uri": PREFIX + stem + "A"},
        {"client_id": "par-client", "request_uri": PREFIX + hashlib.sha256(request_uri.encode()).hexdigest()},
        {"client_id": "par-client", "request_uri": PREFIX + "A" * 5000},
        {"client_id": "par-client", "request_uri": PREFIX + "%00"},
    ):
        assert_refused(authorize(par_env, **query))
    # None of those used it up; the first use does, the second is refused.
    first = authorize(par_env, client_id="par-client", request_uri=request_uri)
    assert first.status_code == 200 and 'id="signin"' in first.text
    assert_refused(authorize(par_env, client_id="par-client", request_uri=request_uri))

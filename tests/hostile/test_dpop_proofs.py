"""DPoP (RFC 9449) against the real server: every way a proof can be wrong at the token endpoint,
htu normalisation, the proof's time window, replay (sequential and 20 requests racing over two
workers), duplicate headers, proofs at the userinfo endpoint, bound codes and refresh tokens, and
server nonces (asked for, forged, carried across a restart).

One server of its own (two gunicorn workers, HTTPS, deployment.toml written by support) serves
the file; the clients are written into its database. Every refused proof is followed by the same
client assertion with a good proof, which must succeed: a proof is checked before the client
authenticates, so a request that fails on its proof never uses up the assertion's jti.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import secrets
import ssl
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode

import pytest
import requests

from hostile_support import FORM, Env, b64, compact, form, jdump, post
from oidc_support import verifier_pair
from support import (Server, assert_oauth_error, authorize_over_https, dpop_proof, free_port, jkt_of, jwks_of,
                     public_jwk, write_config)

PASSWORD = "correct horse battery"
REDIRECT = "https://app.example/cb"
DPOP_ALGS = "ES256 ES384 ES512 PS256 PS384 PS512 EdDSA RS256"
# RFC 9449 §4.2, §7.1: the challenges of a protected resource.
INVALID_PROOF_CHALLENGE = f'DPoP error="invalid_dpop_proof", algs="{DPOP_ALGS}"'
INVALID_TOKEN_CHALLENGE = f'DPoP error="invalid_token", algs="{DPOP_ALGS}"'
NONCE = re.compile(r"[A-Za-z0-9_-]{32}")


# --- the server and its clients -------------------------------------------------------------------

@pytest.fixture(scope="module")
def e(tmp_path_factory, keys) -> Env:
    directory = tmp_path_factory.mktemp("hostile-dpop")
    port = free_port()
    server = Server(write_config(directory, port, workers=2), port).start()
    try:
        env = Env(server, keys)
        jwks = jwks_of((keys.rsa, "k1"))
        env.register("dpop-client", jwks)
        env.register("dpop-nonce-client", jwks, require_dpop_nonce=True)
        env.register("dpop-web", jwks, grant_types=("authorization_code", "refresh_token"),
                     scopes=("openid", "profile"), redirect_uris=(REDIRECT,))
        env.register("dpop-spa", auth_method="none", grant_types=("authorization_code", "refresh_token"),
                     scopes=("openid", "profile"), redirect_uris=(REDIRECT,))
        _create_user(env, "dora")
        yield env
    finally:
        server.stop()


def _create_user(env: Env, username: str) -> None:
    from storage import users
    from storage.database import open_database
    db = open_database("sqlite:///var/identity.db", env.directory)
    try:
        users.create(username, PASSWORD, claims={"name": "Dora"})
    finally:
        db.close()


def token_url(e: Env) -> str:
    return e.server.base + "/oauth2/token"


def userinfo_url(e: Env) -> str:
    return e.server.base + "/oauth2/userinfo"


def send_token(e: Env, proof: str | None, assertion: str | None = None, *, public: str | None = None,
               **extra) -> requests.Response:
    """A client_credentials request (or another grant through `extra`) with one DPoP header (none
    for proof None), authenticated by `assertion` (default: a fresh one of dpop-client) or, for
    the public client named by `public`, by client_id alone."""
    headers = {"DPoP": proof} if proof is not None else {}
    if public is not None:
        body = {"client_id": public, **extra}
    else:
        body = form(assertion or e.assertion("dpop-client"), **extra)
    return post(body, headers=headers).send(e.server, e.session)


def good(e: Env, **changes) -> str:
    return dpop_proof(e.keys.p256, token_url(e), **changes)


def assert_dpop_token(response: requests.Response) -> dict:
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "DPoP", body
    assert isinstance(body["access_token"], str) and body["access_token"]
    return body


def assert_refused_then_assertion_unused(e: Env, proof: str, error: str = "invalid_dpop_proof") -> dict:
    """The proof is refused with `error`; the same client assertion then succeeds with a good proof."""
    assertion = e.assertion("dpop-client")
    body = assert_oauth_error(send_token(e, proof, assertion), 400, error)
    assert_dpop_token(send_token(e, good(e), assertion))
    return body


# --- hand-built proofs ------------------------------------------------------------------------------

def proof_payload(e: Env, **changes) -> dict:
    payload = {"jti": str(uuid.uuid4()), "htm": "POST", "htu": token_url(e), "iat": int(time.time())}
    payload.update(changes)
    return {k: v for k, v in payload.items() if v is not ...}


def built(e: Env, key, alg: str, header: dict, **changes) -> str:
    """A compact JWS with exactly `header` (plus alg) over a proof payload, signed by `key` with `alg`."""
    return compact(key, alg, header, proof_payload(e, **changes))


def unsigned(e: Env, header: dict) -> str:
    return b64(jdump(header)) + "." + b64(jdump(proof_payload(e))) + "."


def ec_private_jwk(key) -> dict:
    jwk = public_jwk(key)
    d = key.private_numbers().private_value.to_bytes(32, "big")
    return {**jwk, "d": b64(d)}


def rsa_jwk(key) -> dict:
    """Built here: keystore.jwk refuses to describe an RSA key under 2048 bits."""
    numbers = key.public_key().public_numbers()
    return {"kty": "RSA", "n": b64(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
            "e": b64(numbers.e.to_bytes(3, "big"))}


def oct_jwk(secret: bytes) -> dict:
    return {"kty": "oct", "k": b64(secret)}


SECRET = secrets.token_bytes(32)

# id -> a proof that must be refused with 400 invalid_dpop_proof.
REFUSED = {
    # RFC 9449 §4.3 item 4: explicit typing.
    "typ-missing": lambda e: built(e, e.keys.p256, "ES256", {"jwk": public_jwk(e.keys.p256)}),
    "typ-JWT": lambda e: good(e, header={"typ": "JWT"}),
    "typ-at+jwt": lambda e: good(e, header={"typ": "at+jwt"}),
    "typ-dpop": lambda e: good(e, header={"typ": "dpop"}),
    "typ-not-a-string": lambda e: built(e, e.keys.p256, "ES256", {"typ": ["dpop+jwt"], "jwk": public_jwk(e.keys.p256)}),
    # RFC 9449 §4.3 item 5: asymmetric algorithms only.
    "alg-none": lambda e: unsigned(e, {"alg": "none", "typ": "dpop+jwt", "jwk": public_jwk(e.keys.p256)}),
    "alg-none-capitalised": lambda e: unsigned(e, {"alg": "None", "typ": "dpop+jwt", "jwk": public_jwk(e.keys.p256)}),
    "alg-HS256-ec-jwk": lambda e: built(e, SECRET, "HS256", {"typ": "dpop+jwt", "jwk": public_jwk(e.keys.p256)}),
    "alg-HS256-oct-jwk": lambda e: built(e, SECRET, "HS256", {"typ": "dpop+jwt", "jwk": oct_jwk(SECRET)}),
    "alg-ES256-oct-jwk": lambda e: built(e, e.keys.p256, "ES256", {"typ": "dpop+jwt", "jwk": oct_jwk(SECRET)}),
    "alg-ES256-rsa-jwk": lambda e: built(e, e.keys.p256, "ES256", {"typ": "dpop+jwt", "jwk": public_jwk(e.keys.rsa)}),
    "alg-RS256-rsa-1024": lambda e: built(e, e.keys.rsa_1024, "RS256", {"typ": "dpop+jwt",
                                                                       "jwk": rsa_jwk(e.keys.rsa_1024)}),
    # RFC 9449 §4.3 item 7: the jwk is a public key.
    "jwk-private-d": lambda e: built(e, e.keys.p256, "ES256", {"typ": "dpop+jwt", "jwk": ec_private_jwk(e.keys.p256)}),
    "jwk-missing": lambda e: built(e, e.keys.p256, "ES256", {"typ": "dpop+jwt"}),
    "jwk-not-an-object": lambda e: built(e, e.keys.p256, "ES256", {"typ": "dpop+jwt", "jwk": "key"}),
    # RFC 9449 §4.3 item 6: the signature is the jwk's.
    "signature-other-key": lambda e: built(e, e.keys.p256_other, "ES256",
                                           {"typ": "dpop+jwt", "jwk": public_jwk(e.keys.p256)}),
    "signature-flipped": lambda e: (lambda p: p[:-4] + ("AAAA" if p[-4:] != "AAAA" else "BBBB"))(good(e)),
    "not-a-jws": lambda e: "not.a.proof",
    "empty": lambda e: "",
    "two-segments": lambda e: ".".join(good(e).split(".")[:2]),
    # RFC 9449 §4.3 item 3: jti.
    "jti-missing": lambda e: good(e, jti=...),
    "jti-empty": lambda e: good(e, jti=""),
    "jti-not-a-string": lambda e: good(e, jti=12345),
    "jti-too-long": lambda e: good(e, jti="j" * 256),
    # RFC 9449 §4.3 item 8: htm, case-sensitive.
    "htm-GET": lambda e: good(e, htm="GET"),
    "htm-post": lambda e: good(e, htm="post"),
    "htm-missing": lambda e: good(e, htm=...),
    # RFC 9449 §4.3 item 9: htu names this endpoint.
    "htu-other-path": lambda e: good(e, htu=e.server.base + "/oauth2/introspect"),
    "htu-other-host": lambda e: good(e, htu=f"https://example.com:{e.server.port}/oauth2/token"),
    "htu-ip-for-host": lambda e: good(e, htu=f"https://127.0.0.1:{e.server.port}/oauth2/token"),
    "htu-http": lambda e: good(e, htu=f"http://localhost:{e.server.port}/oauth2/token"),
    "htu-trailing-slash": lambda e: good(e, htu=token_url(e) + "/"),
    "htu-other-port": lambda e: good(e, htu=f"https://localhost:{e.server.port + 1}/oauth2/token"),
    # The server's port is not 443: a URL without a port, or with an empty one, names 443 (RFC 3986 §6.2.3).
    "htu-no-port": lambda e: good(e, htu="https://localhost/oauth2/token"),
    "htu-empty-port": lambda e: good(e, htu="https://localhost:/oauth2/token"),
    "htu-port-443": lambda e: good(e, htu="https://localhost:443/oauth2/token"),
    "htu-path-case": lambda e: good(e, htu=e.server.base + "/OAUTH2/token"),
    "htu-userinfo-in-authority": lambda e: good(e, htu=f"https://user@localhost:{e.server.port}/oauth2/token"),
    "htu-relative": lambda e: good(e, htu="/oauth2/token"),
    "htu-missing": lambda e: good(e, htu=...),
    # RFC 9449 §4.3 item 11: iat within proof_lifetime (60) + timestamp_skew (5) in the past, skew in the future.
    "iat-old": lambda e: good(e, iat=int(time.time()) - 60 - 5 - 10),
    "iat-future": lambda e: good(e, iat=int(time.time()) + 5 + 10),
    "iat-missing": lambda e: good(e, iat=...),
    "iat-string": lambda e: good(e, iat=str(int(time.time()))),
    "nonce-not-a-string": lambda e: good(e, nonce=1),
}

# id -> a proof that is equivalent to a good one and must be accepted.
ACCEPTED = {
    "htu-query": lambda e: good(e, htu=token_url(e) + "?a=b"),
    "htu-fragment": lambda e: good(e, htu=token_url(e) + "#frag"),
    "htu-upper-case-host": lambda e: good(e, htu=f"https://LOCALHOST:{e.server.port}/oauth2/token"),
    "htu-upper-case-scheme": lambda e: good(e, htu=f"HTTPS://localhost:{e.server.port}/oauth2/token"),
    "htu-percent-encoded-unreserved": lambda e: good(e, htu=e.server.base + "/oauth2/%74oken"),
    "htu-dot-segments": lambda e: good(e, htu=e.server.base + "/oauth2/x/../token"),
    "typ-media-type": lambda e: good(e, header={"typ": "application/dpop+jwt"}),
    "iat-recent": lambda e: good(e, iat=int(time.time()) - 50),
    "iat-within-skew": lambda e: good(e, iat=int(time.time()) + 3),
    "alg-EdDSA": lambda e: dpop_proof(e.keys.ed, token_url(e)),
    "alg-PS256": lambda e: dpop_proof(e.keys.rsa_other, token_url(e), alg="PS256"),
    "alg-ES384": lambda e: dpop_proof(e.keys.p384, token_url(e)),
}


@pytest.mark.parametrize("make", list(REFUSED.values()), ids=list(REFUSED))
def test_refused_proof_leaves_the_assertion_usable(e, make):
    assert_refused_then_assertion_unused(e, make(e))


@pytest.mark.parametrize("make", list(ACCEPTED.values()), ids=list(ACCEPTED))
def test_equivalent_proof_is_accepted(e, make):
    assert_dpop_token(send_token(e, make(e)))


def test_proof_is_bound_to_its_key(e):
    """The token's binding is the thumbprint of the proof's key, computed here (RFC 7638)."""
    token = assert_dpop_token(send_token(e, good(e)))["access_token"]
    body = introspect(e, token)
    assert body["active"] is True and body["token_type"] == "DPoP"
    assert body["cnf"] == {"jkt": jkt_of(e.keys.p256)}


def introspect(e: Env, token: str) -> dict:
    r = post(form(e.assertion("dpop-client"), token=token, grant_type=...), path="/oauth2/introspect").send(
        e.server, e.session)
    assert r.status_code == 200, r.text
    return r.json()


# --- two DPoP headers ------------------------------------------------------------------------------

def raw_post(e: Env, path: str, headers: list[tuple[str, str]], body: bytes) -> tuple[int, dict, dict]:
    """One request with exactly these header lines (requests merges repeated names)."""
    context = ssl.create_default_context(cafile=e.server.ca)
    connection = http.client.HTTPSConnection("localhost", e.server.port, context=context, timeout=15)
    try:
        connection.putrequest("POST", path)
        for name, value in [("Content-Type", FORM), ("Content-Length", str(len(body))), *headers]:
            connection.putheader(name, value)
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read())
    finally:
        connection.close()


def test_two_dpop_headers_are_refused(e):
    """RFC 9449 §4.3 item 1: exactly one DPoP header, even when both proofs are good."""
    assertion = e.assertion("dpop-client")
    body = urlencode(form(assertion)).encode()
    status, headers, answer = raw_post(e, "/oauth2/token", [("DPoP", good(e)), ("DPoP", good(e))], body)
    assert status == 400, answer
    assert headers["Content-Type"] == "application/json" and headers["Cache-Control"] == "no-store"
    assert answer == {"error": "invalid_dpop_proof", "error_description": "Exactly one DPoP header is allowed"}
    assert_dpop_token(send_token(e, good(e), assertion))  # the assertion was not used


# --- replay (RFC 9449 §11.1) --------------------------------------------------------------------------

def test_proof_used_twice_is_refused(e):
    proof = good(e)
    assert_dpop_token(send_token(e, proof))
    assert_oauth_error(send_token(e, proof), 400, "invalid_dpop_proof")
    # The same jti from another key is another proof (the table is keyed by the key's thumbprint).
    jti = json.loads(base64.urlsafe_b64decode(proof.split(".")[1] + "==")).get("jti")
    assert_dpop_token(send_token(e, dpop_proof(e.keys.p256_other, token_url(e), jti=jti)))


def test_twenty_concurrent_uses_of_one_proof_get_one_token(e):
    """Two workers, twenty requests, one proof, each request its own fresh client assertion."""
    proof = good(e)
    assertions = [e.assertion("dpop-client") for _ in range(20)]

    def attempt(assertion: str) -> tuple[int, str | None]:
        r = requests.post(token_url(e), data=form(assertion), headers={"DPoP": proof}, verify=e.server.ca,
                          timeout=30)
        return r.status_code, r.json().get("error") if r.status_code != 200 else r.json()["token_type"]

    with ThreadPoolExecutor(20) as pool:
        results = Counter(pool.map(attempt, assertions))
    assert results == Counter({(200, "DPoP"): 1, (400, "invalid_dpop_proof"): 19}), results


# --- server nonces (RFC 9449 §8) ------------------------------------------------------------------------

def nonce_request(e: Env, assertion: str, **changes) -> requests.Response:
    return send_token(e, good(e, **changes), assertion)


def test_nonce_is_asked_for_then_the_same_assertion_succeeds(e):
    assertion = e.assertion("dpop-nonce-client")
    asked = nonce_request(e, assertion)
    assert_oauth_error(asked, 400, "use_dpop_nonce")
    nonce = asked.headers["DPoP-Nonce"]
    assert NONCE.fullmatch(nonce), nonce
    done = nonce_request(e, assertion, nonce=nonce)
    assert_dpop_token(done)
    assert NONCE.fullmatch(done.headers["DPoP-Nonce"])
    # A client that does not require nonces is not asked, but is told the nonce all the same
    # (RFC 9449 §8.2); a request without a proof is not.
    assert NONCE.fullmatch(send_token(e, good(e)).headers["DPoP-Nonce"])
    assert "DPoP-Nonce" not in send_token(e, None).headers


@pytest.mark.parametrize("forge", [
    lambda n: b64(secrets.token_bytes(24)),                              # right length, random
    lambda n: n[:-1] + ("A" if n[-1] != "A" else "B"),                   # the tag changed
    lambda n: b64((int.from_bytes(base64.urlsafe_b64decode(n + "=")[:8], "big") + 5)
                  .to_bytes(8, "big") + base64.urlsafe_b64decode(n + "=")[8:]),  # a later slot
    lambda n: n + "A",                                                   # too long
    lambda n: "",
], ids=["random", "tag-changed", "slot-changed", "too-long", "empty"])
def test_forged_nonce_is_refused(e, forge):
    assertion = e.assertion("dpop-nonce-client")
    nonce = nonce_request(e, assertion).headers["DPoP-Nonce"]
    refused = nonce_request(e, assertion, nonce=forge(nonce))
    assert_oauth_error(refused, 400, "use_dpop_nonce")
    assert NONCE.fullmatch(refused.headers["DPoP-Nonce"])
    assert_dpop_token(nonce_request(e, assertion, nonce=nonce))


def test_refused_proof_comes_before_the_nonce(e):
    """A bad proof is invalid_dpop_proof whether or not it carries the nonce."""
    assertion = e.assertion("dpop-nonce-client")
    assert_oauth_error(nonce_request(e, assertion, htm="GET"), 400, "invalid_dpop_proof")


def test_nonce_survives_a_restart(e):
    """Stateless nonces: derived from the keystore, so a restarted server (same keystore) accepts
    the nonce the previous process handed out."""
    nonce = nonce_request(e, e.assertion("dpop-nonce-client")).headers["DPoP-Nonce"]
    e.server.restart()
    assert_dpop_token(nonce_request(e, e.assertion("dpop-nonce-client"), nonce=nonce))


# --- codes and refresh tokens bound to a key (RFC 9449 §5, §10) ----------------------------------------------

def authorize(e: Env, client_id: str, **extra) -> tuple[str, str]:
    """A code for `client_id` through /oauth2/authorize (sign-in and consent as a browser); and its verifier."""
    verifier, challenge = verifier_pair()
    query = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT, "scope": "openid profile",
             "state": "s1", "code_challenge": challenge, "code_challenge_method": "S256", **extra}
    values = authorize_over_https(e.server, query, "dora", PASSWORD)
    assert "code" in values, values
    return values["code"], verifier


def redeem(e: Env, client_id: str, code: str, verifier: str, proof: str | None) -> requests.Response:
    extra = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "code_verifier": verifier}
    if client_id == "dpop-spa":
        return send_token(e, proof, public=client_id, **extra)
    return send_token(e, proof, e.assertion(client_id), **extra)


def refresh(e: Env, client_id: str, refresh_token: str, proof: str | None) -> requests.Response:
    extra = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    if client_id == "dpop-spa":
        return send_token(e, proof, public=client_id, **extra)
    return send_token(e, proof, e.assertion(client_id), **extra)


def test_public_clients_refresh_token_is_bound_to_its_key(e):
    code, verifier = authorize(e, "dpop-spa")
    tokens = assert_dpop_token(redeem(e, "dpop-spa", code, verifier, good(e)))
    other = dpop_proof(e.keys.p256_other, token_url(e))
    body = assert_oauth_error(refresh(e, "dpop-spa", tokens["refresh_token"], other), 400, "invalid_grant")
    assert "DPoP" in body["error_description"]
    body = assert_oauth_error(refresh(e, "dpop-spa", tokens["refresh_token"], None), 400, "invalid_grant")
    assert "DPoP" in body["error_description"]
    # Neither attempt used the token up: its own key still refreshes it.
    assert_dpop_token(refresh(e, "dpop-spa", tokens["refresh_token"], good(e)))


def test_code_bound_by_dpop_jkt_needs_that_key(e):
    code, verifier = authorize(e, "dpop-spa", dpop_jkt=jkt_of(e.keys.p256))
    body = assert_oauth_error(redeem(e, "dpop-spa", code, verifier, dpop_proof(e.keys.p256_other, token_url(e))),
                              400, "invalid_grant")
    assert "DPoP" in body["error_description"]
    # The code was redeemed before its bindings were checked (it may have been stolen): gone.
    assert_oauth_error(redeem(e, "dpop-spa", code, verifier, good(e)), 400, "invalid_grant")


def test_code_bound_by_dpop_jkt_without_a_proof(e):
    code, verifier = authorize(e, "dpop-web", dpop_jkt=jkt_of(e.keys.p256))
    body = assert_oauth_error(redeem(e, "dpop-web", code, verifier, None), 400, "invalid_grant")
    assert "DPoP" in body["error_description"]


def test_code_bound_by_dpop_jkt_with_that_key(e):
    code, verifier = authorize(e, "dpop-web", dpop_jkt=jkt_of(e.keys.p256))
    assert_dpop_token(redeem(e, "dpop-web", code, verifier, good(e)))


def test_malformed_dpop_jkt_at_authorize(e):
    verifier, challenge = verifier_pair()
    r = e.server.get("/oauth2/authorize", params={
        "response_type": "code", "client_id": "dpop-web", "redirect_uri": REDIRECT, "scope": "openid",
        "state": "s1", "code_challenge": challenge, "code_challenge_method": "S256", "dpop_jkt": "not-a-thumbprint"},
        allow_redirects=False)
    assert r.status_code == 302, r.text
    assert r.headers["Location"].startswith(REDIRECT + "?") and "error=invalid_request" in r.headers["Location"]


# --- the userinfo endpoint (RFC 9449 §7) ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def user_token(e) -> str:
    """A DPoP-bound access token of dora's, bound to keys.p256."""
    code, verifier = authorize(e, "dpop-web")
    return assert_dpop_token(redeem(e, "dpop-web", code, verifier, good(e)))["access_token"]


def userinfo(e: Env, method: str, authorization: str | None, proof: str | None) -> requests.Response:
    headers = {}
    if authorization is not None:
        headers["Authorization"] = authorization
    if proof is not None:
        headers["DPoP"] = proof
    return requests.request(method, userinfo_url(e), headers=headers, verify=e.server.ca, timeout=15)


def assert_challenge(response: requests.Response, error: str, challenge: str) -> None:
    assert_oauth_error(response, 401, error)
    assert response.headers["WWW-Authenticate"] == challenge


def test_userinfo_with_proof(e, user_token):
    for method in ("GET", "POST"):
        proof = dpop_proof(e.keys.p256, userinfo_url(e), method, access_token=user_token)
        r = userinfo(e, method, "DPoP " + user_token, proof)
        assert r.status_code == 200, r.text
        assert r.json()["name"] == "Dora" and isinstance(r.json()["sub"], str)


USERINFO_REFUSED = {
    # id -> (authorization, proof, error)
    "ath-other-token": lambda e, t: ("DPoP " + t, dpop_proof(e.keys.p256, userinfo_url(e), "GET",
                                                             access_token=t + "x"), "invalid_dpop_proof"),
    "ath-missing": lambda e, t: ("DPoP " + t, dpop_proof(e.keys.p256, userinfo_url(e), "GET"), "invalid_dpop_proof"),
    "ath-of-the-proof-key": lambda e, t: ("DPoP " + t, dpop_proof(e.keys.p256, userinfo_url(e), "GET",
                                                                  ath=jkt_of(e.keys.p256)), "invalid_dpop_proof"),
    "other-key": lambda e, t: ("DPoP " + t, dpop_proof(e.keys.p256_other, userinfo_url(e), "GET", access_token=t),
                               "invalid_dpop_proof"),
    "htu-token-endpoint": lambda e, t: ("DPoP " + t, dpop_proof(e.keys.p256, token_url(e), "GET", access_token=t),
                                        "invalid_dpop_proof"),
    "htm-POST-for-GET": lambda e, t: ("DPoP " + t, dpop_proof(e.keys.p256, userinfo_url(e), "POST", access_token=t),
                                      "invalid_dpop_proof"),
    "no-proof": lambda e, t: ("DPoP " + t, None, "invalid_dpop_proof"),
    "bound-token-as-bearer": lambda e, t: ("Bearer " + t, None, "invalid_token"),
    "bound-token-as-bearer-with-proof": lambda e, t: ("Bearer " + t, dpop_proof(e.keys.p256, userinfo_url(e), "GET",
                                                                                access_token=t), "invalid_token"),
    "unknown-token": lambda e, t: ("DPoP " + t[:-2] + "xx", dpop_proof(e.keys.p256, userinfo_url(e), "GET",
                                                                      access_token=t[:-2] + "xx"), "invalid_token"),
}


@pytest.mark.parametrize("make", list(USERINFO_REFUSED.values()), ids=list(USERINFO_REFUSED))
def test_userinfo_refuses(e, user_token, make):
    authorization, proof, error = make(e, user_token)
    response = userinfo(e, "GET", authorization, proof)
    assert_challenge(response, error, INVALID_PROOF_CHALLENGE if error == "invalid_dpop_proof"
                     else INVALID_TOKEN_CHALLENGE)


def test_userinfo_refuses_a_replayed_proof(e, user_token):
    proof = dpop_proof(e.keys.p256, userinfo_url(e), "GET", access_token=user_token)
    assert userinfo(e, "GET", "DPoP " + user_token, proof).status_code == 200
    assert_challenge(userinfo(e, "GET", "DPoP " + user_token, proof), "invalid_dpop_proof", INVALID_PROOF_CHALLENGE)


def test_userinfo_refuses_two_proofs(e, user_token):
    proofs = [dpop_proof(e.keys.p256, userinfo_url(e), "POST", access_token=user_token) for _ in range(2)]
    status, headers, body = raw_post(e, "/oauth2/userinfo", [("Authorization", "DPoP " + user_token),
                                                             *(("DPoP", p) for p in proofs)], b"")
    assert (status, body["error"]) == (401, "invalid_dpop_proof"), body
    assert headers["WWW-Authenticate"] == INVALID_PROOF_CHALLENGE


def test_unbound_token_with_the_dpop_scheme(e):
    token = send_token(e, None).json()["access_token"]  # client_credentials, Bearer
    # A client's own token has no user: it must not reach the claims either way; with the DPoP
    # scheme it is refused as not bound before that.
    proof = dpop_proof(e.keys.p256, userinfo_url(e), "GET", access_token=token)
    assert_challenge(userinfo(e, "GET", "DPoP " + token, proof), "invalid_token", INVALID_TOKEN_CHALLENGE)


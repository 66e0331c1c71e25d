"""Interoperability under the FAPI 2.0 profile with openid-client (npm, v6), a client library that
implements private_key_jwt, pushed authorization requests (RFC 9126) and DPoP (RFC 9449) itself:
the client-credentials flow (private_key_jwt + DPoP) and the authorization-code flow (PAR + PKCE +
DPoP + private_key_jwt), end to end against the real server (gunicorn, HTTPS, two workers) with
[oauth] profile = "fapi2", the user's sign-in and consent done in headless Chromium.

tests/interop/fapi2_client.mjs drives openid-client and reports, as JSON, what it got and every
HTTP exchange as it went over the wire; the assertions are all here. The Node.js binary and the
node modules come from tests/interop/package-lock.json (the `node` fixture of
test_interop_openid_client.py installs them with `npm ci` when missing).

The redirect URI is https://client.example/cb, a name that never resolves (RFC 2606): the browser
is sent there by the server's 303 and fails to load it, and the URL it was sent to is read from
the browser and handed to openid-client — nothing but the test ever sees the code."""

from __future__ import annotations

import hashlib
import json
import subprocess
import threading
import time
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from browser import chromium, wait_for_element, wait_for_url, wait_until
from support import (ASSERTION_TYPE, Server, assert_oauth_error, claims_for, dpop_proof, ec_key, free_port, jwks_of,
                     pem, register_in_database, rsa_key, shared_keystore, sign, write_config)
from test_interop_openid_client import INTEROP, PINNED, b64url, node, thumbprint  # noqa: F401 (node: a fixture)

SCRIPT = INTEROP / "fapi2_client.mjs"
KID = "fapi-es256"
REDIRECT = "https://client.example/cb"
USERNAME, PASSWORD = "alice", "correct horse battery staple"
WEB, MACHINE = "fapi-web", "fapi-machine"
REQUEST_URI_PREFIX = "urn:ietf:params:oauth:request_uri:"


# --- the client script -------------------------------------------------------------------------

class ClientRun:
    """One run of fapi2_client.mjs, its standard input and output JSON lines; a context manager
    that kills the process on the way out if it still runs (or after TIMEOUT)."""

    TIMEOUT = 180

    def __init__(self, node: str, server: Server, **parameters) -> None:
        self.proc = subprocess.Popen([node, str(SCRIPT)], cwd=INTEROP, text=True, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env={**server.env, "NODE_EXTRA_CA_CERTS": server.ca})
        self.watchdog = threading.Timer(self.TIMEOUT, self.proc.kill)
        self.watchdog.start()
        self.send(parameters)

    def __enter__(self) -> "ClientRun":
        return self

    def __exit__(self, *exc) -> None:
        self.watchdog.cancel()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def send(self, obj: dict) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(obj) + "\n")
        self.proc.stdin.flush()

    def read(self) -> dict:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.fail("ended without a report")
        obj = json.loads(line)
        if "failure" in obj:
            self.fail("failed: " + json.dumps(obj, indent=1))
        return obj

    def finish(self) -> dict:
        report = self.read()
        assert self.proc.wait(30) == 0
        return report

    def fail(self, what: str):
        self.proc.kill()
        stderr = self.proc.stderr.read() if self.proc.stderr else ""
        pytest.fail(f"fapi2_client.mjs {what}\n{stderr}", pytrace=False)


# --- the server --------------------------------------------------------------------------------

@dataclass
class Fapi:
    server: Server
    issuer: str
    alice_sub: str
    keys: dict  # client id -> its EC P-256 private key (kid KID)
    nonce_required: bool  # [oauth.dpop] require_nonce

    @property
    def base(self) -> str:
        return self.server.base


@pytest.fixture(scope="module", params=["nonce-off", "nonce-required"])
def fapi(request, tmp_path_factory) -> Fapi:
    """The real server (two workers) under [oauth] profile = "fapi2", the issuer its base URL, with
    [oauth.dpop] require_nonce false (default) or true; user alice; two private_key_jwt clients with
    an EC P-256 key each, written straight into its database: fapi-web (authorization_code,
    redirect URI REDIRECT) and fapi-machine (client_credentials)."""
    nonce_required = request.param == "nonce-required"
    tmp = tmp_path_factory.mktemp(f"interop-fapi2-{request.param}")
    shared_keystore(tmp)
    port = free_port()
    issuer = f"https://localhost:{port}"
    nonces = "[oauth.dpop]\nrequire_nonce = true\n" if nonce_required else ""
    config = write_config(tmp, port, workers=2, extra=f"""
[oauth]
profile = "fapi2"
[oauth.oidc.id_token]
issuer = "{issuer}"
{nonces}""")
    server = Server(config, port).start()
    try:
        created = server.cli("users", "create", "--username", USERNAME, "--password-stdin", "--name",
                             "Alice Example", "--email", "alice@example.com", "--email-verified",
                             input=PASSWORD + "\n")
        keys = {WEB: ec_key(), MACHINE: ec_key()}
        register_in_database(tmp, WEB, "private_key_jwt", grant_types=("authorization_code",),
                             scopes=("openid", "profile", "email"), redirect_uris=(REDIRECT,),
                             jwks=jwks_of((keys[WEB], KID)))
        register_in_database(tmp, MACHINE, "private_key_jwt", grant_types=("client_credentials",),
                             scopes=("read",), jwks=jwks_of((keys[MACHINE], KID)))
        yield Fapi(server, issuer, json.loads(created.stdout)["sub"], keys, nonce_required)
    finally:
        server.stop()


def run_parameters(fapi: Fapi, client_id: str, **extra) -> dict:
    return {"issuer": fapi.issuer, "client_id": client_id, "client_key_pem": pem(fapi.keys[client_id]).decode(),
            "kid": KID, **extra}


# --- what the wire must show -------------------------------------------------------------------

def to(report: dict, url: str) -> list[dict]:
    return [e for e in report["exchanges"] if e["request"]["url"] == url]


def assert_assertion(form: dict, fapi: Fapi, client_id: str) -> None:
    """openid-client's private_key_jwt with an EC P-256 key: ES256 (the alg follows the key),
    `aud` the issuer as one string (FAPI 2.0 Security Profile §5.3.2.1 item 8)."""
    assert (form["client_id"], form["client_assertion_type"]) == (client_id, ASSERTION_TYPE)
    assertion = form["client_assertion"]
    assert assertion["header"] == {"alg": "ES256", "kid": KID}  # no typ: see README "Explicit typing"
    claims = assertion["payload"]
    assert sorted(claims) == ["aud", "exp", "iat", "iss", "jti", "nbf", "sub"]
    assert (claims["iss"], claims["sub"], claims["aud"]) == (client_id, client_id, fapi.issuer)
    assert (claims["exp"] - claims["iat"], claims["nbf"]) == (60, claims["iat"])


def assert_proof(proof: dict, report: dict, method: str, url: str, nonce: str | None,
                 access_token: str | None = None) -> None:
    """RFC 9449 §4.2 as openid-client makes the proof: ES256, typ dpop+jwt, the public key."""
    assert proof["header"] == {"alg": "ES256", "typ": "dpop+jwt", "jwk": report["dpop_public_jwk"]}
    expected = {"htm": method, "htu": url}
    if nonce is not None:
        expected["nonce"] = nonce
    if access_token is not None:
        expected["ath"] = b64url(hashlib.sha256(access_token.encode()).digest())
    claims = dict(proof["payload"])
    assert isinstance(claims.pop("iat"), int) and isinstance(claims.pop("jti"), str)
    assert claims == expected


def after_nonce_round_trip(exchanges: list[dict], fapi: Fapi) -> list[dict]:
    """Where the server requires DPoP nonces, openid-client's first proof to an origin has none:
    it is refused with use_dpop_nonce (RFC 9449 §8) and openid-client retries once with the nonce
    the refusal carried. Returns the exchanges after that round trip (all of them without one)."""
    if not fapi.nonce_required:
        return exchanges
    refused, *rest = exchanges
    assert refused["status"] == 400
    assert refused["body"] == {"error": "use_dpop_nonce",
                               "error_description": "The DPoP proof must carry the nonce the server provides"}
    assert refused["content_type"] == "application/json" and refused["cache_control"] == "no-store"
    assert refused["dpop_nonce"]
    assert "nonce" not in refused["request"]["dpop"]["payload"]
    assert rest and rest[0]["request"]["dpop"]["payload"]["nonce"] == refused["dpop_nonce"]
    return rest


def assert_fapi_metadata(report: dict, fapi: Fapi) -> None:
    metadata = report["metadata"]
    assert report["openid_client_version"] == PINNED
    assert report["issuer"] == metadata["issuer"] == fapi.issuer
    assert metadata["pushed_authorization_request_endpoint"] == fapi.base + "/oauth2/par"
    assert metadata["require_pushed_authorization_requests"] is True
    assert metadata["authorization_response_iss_parameter_supported"] is True
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert metadata["id_token_signing_alg_values_supported"] == ["PS256"]
    assert "ES256" in metadata["dpop_signing_alg_values_supported"]
    assert "ES256" in metadata["token_endpoint_auth_signing_alg_values_supported"]
    discovery = to(report, fapi.base + "/.well-known/openid-configuration")
    assert [e["status"] for e in discovery] == [200]
    assert report["dpop_thumbprint"] == thumbprint(report["dpop_public_jwk"])


def events(server: Server, event: str, client_id: str) -> list[dict]:
    """The server's audit log records of one event for one client."""
    found = []
    for line in server.log().splitlines():
        if line.startswith("{"):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("event") == event and record.get("client_id") == client_id:
                found.append(record)
    return found


def introspect(fapi: Fapi, token: str, client_id: str) -> dict:
    """RFC 7662 introspection by the token's own client, with an ES256 assertion made here."""
    assertion = sign(fapi.keys[client_id], claims_for(client_id, fapi.issuer), "ES256", {"kid": KID})
    response = requests.post(fapi.base + "/oauth2/introspect", verify=fapi.server.ca, timeout=15, data={
        "token": token, "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion})
    assert response.status_code == 200, response.text
    return response.json()


# --- client credentials: private_key_jwt + DPoP ------------------------------------------------------

def test_client_credentials_with_private_key_jwt_and_dpop(node, fapi):
    with ClientRun(node, fapi.server, flow="client_credentials", scope="read",
                   **run_parameters(fapi, MACHINE)) as run:
        report = run.finish()

    assert_fapi_metadata(report, fapi)
    token_endpoint = report["metadata"]["token_endpoint"]
    assert token_endpoint == fapi.base + "/oauth2/token"
    exchanges = to(report, token_endpoint)
    assert [e["status"] for e in exchanges] == ([400, 200] if fapi.nonce_required else [200])
    for attempt in exchanges:
        form = attempt["request"]["form"]
        assert sorted(attempt["request"]["form_keys"]) == sorted([
            "grant_type", "scope", "client_id", "client_assertion_type", "client_assertion"])
        assert (form["grant_type"], form["scope"]) == ("client_credentials", "read")
        assert_assertion(form, fapi, MACHINE)
    [exchange] = after_nonce_round_trip(exchanges, fapi)
    assert_proof(exchanges[0]["request"]["dpop"], report, "POST", token_endpoint, None)
    assert_proof(exchange["request"]["dpop"], report, "POST", token_endpoint,
                 exchanges[0]["dpop_nonce"] if fapi.nonce_required else None)
    assert exchange["dpop_nonce"]  # RFC 9449 §8.2: offered even where none is required

    body = exchange["body"]
    assert (body["token_type"], body["scope"], body["expires_in"] > 0) == ("DPoP", "read", True)
    assert "refresh_token" not in body and "id_token" not in body
    assert report["tokens"]["token_type"] == "dpop"  # openid-client lowercases it
    assert report["tokens"]["access_token"] == body["access_token"]
    assert exchange["cache_control"] == "no-store"

    # Bound to the DPoP key openid-client generated (cnf.jkt, RFC 9449 §6).
    result = introspect(fapi, body["access_token"], MACHINE)
    assert {k: result.get(k) for k in ("active", "client_id", "token_type", "scope", "cnf", "iss")} == {
        "active": True, "client_id": MACHINE, "token_type": "DPoP", "scope": "read",
        "cnf": {"jkt": report["dpop_thumbprint"]}, "iss": fapi.issuer}

    authentications = events(fapi.server, "client_authentication", MACHINE)
    assert [(r["outcome"], r["method"], r["alg"], r["kid"]) for r in authentications][:1] == \
        [("success", "private_key_jwt", "ES256", KID)]
    issued = events(fapi.server, "token_issued", MACHINE)
    assert [(r["grant_type"], r["token_type"]) for r in issued] == [("client_credentials", "DPoP")]


# --- authorization code: PAR + PKCE + DPoP + private_key_jwt, sign-in in Chromium -----------------------

def sign_in_and_allow(driver, fapi: Fapi, authorization_url: str) -> str:
    """The server's sign-in and consent pages in headless Chromium (a fresh profile: no session);
    returns the URL the server sent the browser back to (REDIRECT, which the browser cannot load).
    The consent page comes only the first time alice meets the client with these scopes."""
    driver.get(authorization_url)
    wait_for_url(driver, fapi.base + "/oauth2/authorize")
    wait_for_element(driver, "username").send_keys(USERNAME)
    driver.find_element("id", "password").send_keys(PASSWORD)
    driver.find_element("id", "signin").click()
    wait_until(driver, lambda d: d.current_url.startswith(REDIRECT + "?") or d.find_elements("id", "allow"),
               "neither the consent page nor the redirect came")
    if not driver.current_url.startswith(REDIRECT + "?"):
        driver.find_element("id", "allow").click()
    return wait_for_url(driver, REDIRECT + "?")


def test_authorization_code_with_par_pkce_dpop_and_private_key_jwt(node, fapi, tmp_path):
    with ClientRun(node, fapi.server, flow="authorization_code", scope="openid profile", redirect_uri=REDIRECT,
                   **run_parameters(fapi, WEB)) as run:
        authorization_url = run.read()["authorization_url"]
        with chromium(tmp_path, trust_cert=fapi.server.ca) as driver:
            callback = sign_in_and_allow(driver, fapi, authorization_url)
            # The request_uri was used up when the authorization request started (RFC 9126 §4):
            # the same URL again, with the user signed in, is an error page and never a redirect.
            driver.get(authorization_url)
            message = driver.find_element("css selector", "p.error").text
            assert driver.current_url == authorization_url
            assert "(invalid_request_uri)" in message
        run.send({"callback_url": callback})
        report = run.finish()

    assert_fapi_metadata(report, fapi)
    par_endpoint = fapi.base + "/oauth2/par"
    token_endpoint = fapi.base + "/oauth2/token"

    # The pushed authorization request (RFC 9126 §2.1): every parameter of the request, the
    # client's authentication, and a DPoP proof for the PAR URL (RFC 9449 §10.1).
    pushes = to(report, par_endpoint)
    assert [e["status"] for e in pushes] == ([400, 201] if fapi.nonce_required else [201])
    for attempt in pushes:
        request = attempt["request"]
        assert request["method"] == "POST"
        assert request["content_type"] == "application/x-www-form-urlencoded;charset=UTF-8"
        form = request["form"]
        assert sorted(request["form_keys"]) == sorted([
            "redirect_uri", "scope", "code_challenge", "code_challenge_method", "state", "nonce", "client_id",
            "response_type", "client_assertion_type", "client_assertion"])
        assert {k: form[k] for k in ("response_type", "client_id", "redirect_uri", "scope", "code_challenge",
                                      "code_challenge_method", "state", "nonce")} == {
            "response_type": "code", "client_id": WEB, "redirect_uri": REDIRECT, "scope": "openid profile",
            "code_challenge": report["code_challenge"], "code_challenge_method": "S256", "state": report["state"],
            "nonce": report["nonce"]}
        assert "dpop_jkt" not in form  # openid-client binds the code with the DPoP header instead
        assert_assertion(form, fapi, WEB)
        assert "dpop" in request, "openid-client sent no DPoP proof with the pushed request"
    assert report["code_challenge"] == b64url(hashlib.sha256(report["code_verifier"].encode()).digest())
    assert_proof(pushes[0]["request"]["dpop"], report, "POST", par_endpoint, None)
    [push] = after_nonce_round_trip(pushes, fapi)
    request = push["request"]
    assert_proof(request["dpop"], report, "POST", par_endpoint,
                 pushes[0]["dpop_nonce"] if fapi.nonce_required else None)
    assert push["content_type"] == "application/json"
    assert push["cache_control"] == "no-store"
    pushed = push["body"]
    assert sorted(pushed) == ["expires_in", "request_uri"]
    assert pushed["request_uri"].startswith(REQUEST_URI_PREFIX) and len(pushed["request_uri"]) > 60
    assert pushed["expires_in"] == 60
    par_nonce = push["dpop_nonce"]
    assert par_nonce

    # The authorization URL: client_id and request_uri, nothing else (RFC 9126 §4).
    url = urlsplit(authorization_url)
    assert f"{url.scheme}://{url.netloc}{url.path}" == report["metadata"]["authorization_endpoint"] == \
        fapi.base + "/oauth2/authorize"
    assert parse_qs(url.query) == {"client_id": [WEB], "request_uri": [pushed["request_uri"]]}

    # The authorization response: code, state and iss (RFC 9207), to the registered URI.
    assert callback.startswith(REDIRECT + "?")
    response = parse_qs(urlsplit(callback).query)
    assert sorted(response) == ["code", "iss", "state"]
    assert (response["iss"], response["state"]) == ([fapi.issuer], [report["state"]])
    code = response["code"][0]

    # The token request: the code with the PKCE verifier, a proof for the token URL carrying the
    # nonce the server handed out at PAR (openid-client keeps one per origin).
    exchanges = to(report, token_endpoint)
    assert [e["status"] for e in exchanges] == [200]
    exchange = exchanges[0]
    form = exchange["request"]["form"]
    assert sorted(exchange["request"]["form_keys"]) == sorted([
        "grant_type", "code", "redirect_uri", "code_verifier", "client_id", "client_assertion_type",
        "client_assertion"])
    assert (form["grant_type"], form["code"], form["redirect_uri"], form["code_verifier"]) == \
        ("authorization_code", code, REDIRECT, report["code_verifier"])
    assert_assertion(form, fapi, WEB)
    assert form["client_assertion"]["payload"]["jti"] != request["form"]["client_assertion"]["payload"]["jti"]
    assert_proof(exchange["request"]["dpop"], report, "POST", token_endpoint, par_nonce)
    body = exchange["body"]
    assert (body["token_type"], body["scope"], body["expires_in"] > 0) == ("DPoP", "openid profile", True)
    assert exchange["cache_control"] == "no-store"
    assert report["tokens"]["token_type"] == "dpop"
    access_token = body["access_token"]

    # The ID token: PS256 (FAPI 2.0) with the server's key, validated by openid-client: alg PS256
    # (the client's id_token_signed_response_alg), signature with the discovered jwks_uri (its
    # non-repudiation checks), iss, aud, azp, nonce, exp, iat.
    id_token = report["id_token"]
    jwks = requests.get(fapi.base + "/oauth2/jwks", verify=fapi.server.ca, timeout=15).json()
    assert id_token["header"]["alg"] == "PS256"
    assert id_token["header"]["kid"] in [key["kid"] for key in jwks["keys"] if key.get("alg") == "PS256"]
    claims = report["id_token_claims"]
    assert claims == id_token["payload"]
    assert (claims["sub"], claims["iss"], claims["aud"], claims["nonce"], claims["azp"]) == \
        (fapi.alice_sub, fapi.issuer, WEB, report["nonce"], WEB)
    assert claims["at_hash"] == b64url(hashlib.sha256(access_token.encode()).digest()[:16])
    assert claims["exp"] > time.time() and claims["auth_time"] <= claims["iat"]

    # Userinfo with the DPoP-bound token: the claims of `openid profile`.
    assert report["userinfo"] == {"sub": fapi.alice_sub, "preferred_username": USERNAME, "name": "Alice Example"}
    userinfo = to(report, fapi.base + "/oauth2/userinfo")
    assert [e["status"] for e in userinfo] == [200]
    assert (userinfo[0]["request"]["method"], userinfo[0]["request"]["authorization_scheme"]) == ("GET", "DPoP")
    assert_proof(userinfo[0]["request"]["dpop"], report, "GET", fapi.base + "/oauth2/userinfo",
                 exchange["dpop_nonce"], access_token=access_token)

    # Every request openid-client made, in order: nothing else went over the wire.
    assert [(e["request"]["method"], e["request"]["url"]) for e in report["exchanges"]] == [
        ("GET", fapi.base + "/.well-known/openid-configuration"),
        *[("POST", par_endpoint)] * (2 if fapi.nonce_required else 1),
        ("POST", token_endpoint), ("GET", report["metadata"]["jwks_uri"]), ("GET", fapi.base + "/oauth2/userinfo")]

    # Bound to the key of the proofs openid-client sent at PAR and at the token endpoint.
    result = introspect(fapi, access_token, WEB)
    assert {k: result.get(k) for k in ("active", "client_id", "token_type", "sub", "scope", "cnf")} == {
        "active": True, "client_id": WEB, "token_type": "DPoP", "sub": fapi.alice_sub, "scope": "openid profile",
        "cnf": {"jkt": report["dpop_thumbprint"]}}

    issued = events(fapi.server, "token_issued", WEB)
    assert [(r["grant_type"], r["token_type"]) for r in issued][-1:] == [("authorization_code", "DPoP")]


def test_code_pushed_with_one_dpop_key_is_refused_with_another(node, fapi, tmp_path):
    """RFC 9449 §10: the DPoP proof openid-client sent with the pushed request binds the code to its
    key; the same client redeeming the code with a proof of another key (as a thief holding the
    code and the client's credentials would) is refused, and the code is used up: the right key
    gets nothing with it afterwards."""
    issued_before = len(events(fapi.server, "token_issued", WEB))
    with ClientRun(node, fapi.server, flow="authorization_code", scope="openid", redirect_uri=REDIRECT,
                   token_dpop="other", **run_parameters(fapi, WEB)) as run:
        authorization_url = run.read()["authorization_url"]
        with chromium(tmp_path, trust_cert=fapi.server.ca) as driver:
            callback = sign_in_and_allow(driver, fapi, authorization_url)
        run.send({"callback_url": callback})
        report = run.finish()

    token_endpoint = fapi.base + "/oauth2/token"
    pushes = to(report, fapi.base + "/oauth2/par")
    assert [e["status"] for e in pushes][-1] == 201
    assert_proof(pushes[0]["request"]["dpop"], report, "POST", fapi.base + "/oauth2/par", None)
    assert report["other_dpop_thumbprint"] != report["dpop_thumbprint"]
    # The other key's handle has no nonce yet: with nonces required, one round trip first.
    exchanges = after_nonce_round_trip(to(report, token_endpoint), fapi)
    assert [e["status"] for e in exchanges] == [400, 400]
    stolen, rightful = exchanges
    assert stolen["request"]["dpop"]["header"]["jwk"] != report["dpop_public_jwk"]
    assert stolen["body"]["error"] == "invalid_grant", stolen["body"]
    assert report["token_error"]["error"] == "invalid_grant"
    # The refused attempt used the code up: the right key gets nothing with it afterwards.
    assert_proof(rightful["request"]["dpop"], report, "POST", token_endpoint, pushes[-1]["dpop_nonce"])
    assert rightful["body"]["error"] == "invalid_grant", rightful["body"]
    assert report["retry_error"]["error"] == "invalid_grant"
    assert len(events(fapi.server, "token_issued", WEB)) == issued_before


# --- FAPI 2.0 §5.4.1 for DPoP proofs -------------------------------------------------------------------

def pushed_authorization(fapi: Fapi, dpop: str | None = None) -> requests.Response:
    """POST /oauth2/par for fapi-web, built here (not by openid-client), with an ES256 assertion."""
    challenge = b64url(hashlib.sha256(b"x" * 43).digest())
    assertion = sign(fapi.keys[WEB], claims_for(WEB, fapi.issuer), "ES256", {"kid": KID})
    return requests.post(fapi.base + "/oauth2/par", verify=fapi.server.ca, timeout=15,
                         headers={"DPoP": dpop} if dpop else {}, data={
                             "response_type": "code", "client_id": WEB, "redirect_uri": REDIRECT, "scope": "openid",
                             "code_challenge": challenge, "code_challenge_method": "S256",
                             "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion})


def test_dpop_proofs_are_held_to_the_fapi2_algorithms(fapi):
    """FAPI 2.0 §5.4.1: PS256, ES256 or EdDSA for every JWS the server processes, proofs included."""
    par_url, token_url = fapi.base + "/oauth2/par", fapi.base + "/oauth2/token"
    # The current nonce (needed where nonces are required), from a push with a good ES256 proof.
    nonce = pushed_authorization(fapi, dpop_proof(ec_key(), par_url)).headers["DPoP-Nonce"]
    rsa = rsa_key()

    assertion = sign(fapi.keys[MACHINE], claims_for(MACHINE, fapi.issuer), "ES256", {"kid": KID})
    token = requests.post(token_url, verify=fapi.server.ca, timeout=15,
                          headers={"DPoP": dpop_proof(rsa, token_url, alg="RS256", nonce=nonce)},
                          data={"grant_type": "client_credentials", "scope": "read",
                                "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion})
    assert_oauth_error(token, 400, "invalid_dpop_proof")

    pushed = pushed_authorization(fapi, dpop_proof(rsa, par_url, alg="RS256", nonce=nonce))
    assert_oauth_error(pushed, 400, "invalid_dpop_proof")

    metadata = requests.get(fapi.base + "/.well-known/openid-configuration", verify=fapi.server.ca, timeout=15).json()
    assert set(metadata["dpop_signing_alg_values_supported"]) <= {"PS256", "ES256", "EdDSA", "Ed25519"}

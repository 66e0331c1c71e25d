"""The playground client on its own: key pair, self-registration, the start of the flow, the
callback's refusals and error display, the ID token checks, and its token requests to the real
server over HTTPS (verified TLS, private_key_jwt)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from jose import jwt as jose_jwt

from support import make_in_process
import playground
from playground import HTTPResult, PlaygroundError, verify_id_token
from support import Server, free_port, jwks_of, pem, rsa_key, shared_keystore, write_config

START = "/playground2/oauth2client"


def prepare(env, port: int = 8080, client_id: str = "playground", ca: str | None = None):
    with env.app.app_context():
        return playground.prepare(env.settings, port=port, client_id=client_id, ca=ca)


@pytest.fixture
def env(tmp_path):
    # A port where no server listens: nothing here may reach a real token endpoint.
    return make_in_process(tmp_path, port=free_port())


@pytest.fixture
def client(env):
    config, _ = prepare(env)
    return playground.create_app(config).test_client()


def start(client, scope: str = "openid profile") -> dict:
    response = client.post(START, data={"scope": scope})
    assert response.status_code == 303, response.text
    return {k: v[0] for k, v in parse_qs(urlsplit(response.headers["Location"]).query).items()}


# --- key pair and registration -----------------------------------------------------------------

def test_key_is_created_once_with_mode_0600_and_reused(env):
    key_path = env.tmp / "var" / "playground" / "private-key.pem"
    config, messages = prepare(env)
    assert messages[0].startswith(f"created the client key {key_path} (RSA 2048, kid {config.kid})")
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_path.parent.stat().st_mode) == 0o700
    first = key_path.read_bytes()
    assert b"PRIVATE KEY" in first and config.key.key_size == 2048

    again, messages = prepare(env)
    assert messages[0].startswith(f"using the client key {key_path}")
    assert key_path.read_bytes() == first and again.kid == config.kid


def test_a_key_readable_by_others_is_refused(env):
    prepare(env)
    key_path = env.tmp / "var" / "playground" / "private-key.pem"
    key_path.chmod(0o644)
    with pytest.raises(PlaygroundError, match="readable by other users"):
        prepare(env)


def test_self_registration_is_idempotent(env):
    from storage import clients
    config, messages = prepare(env)
    assert messages[1] == (f"registered client playground: private_key_jwt (RS256, kid {config.kid}), grant types "
                           "authorization_code refresh_token, scope openid profile email offline_access, "
                           "redirect URI http://localhost:8080/playground2/oauth2client")
    _, messages = prepare(env)
    assert messages[1] == "client playground is already registered"
    with env.app.app_context():
        registered = [c for c in clients.all_clients() if c.client_id == "playground"]
    assert len(registered) == 1
    view = registered[0].public_view()
    assert view["token_endpoint_auth_method"] == "private_key_jwt"
    assert view["grant_types"] == ["authorization_code", "refresh_token"]
    assert view["scope"] == "openid profile email offline_access"
    assert view["redirect_uris"] == ["http://localhost:8080/playground2/oauth2client"]
    assert view["token_endpoint_auth_signing_alg"] == "RS256"
    # Only the public key is registered, under its RFC 7638 thumbprint.
    (jwk,) = view["jwks"]["keys"]
    assert jwk["kid"] == config.kid and jwk["use"] == "sig" and jwk["alg"] == "RS256" and "d" not in jwk


def test_an_existing_client_with_another_key_is_refused(env):
    env.register("playground", keys=[(rsa_key(), "other")], grant_types=("authorization_code",),
                 redirect_uris=("http://localhost:8080/playground2/oauth2client",))
    with pytest.raises(PlaygroundError, match="registered with another key"):
        prepare(env)


def test_an_existing_client_for_another_port_is_refused(env):
    prepare(env, port=8080)
    with pytest.raises(PlaygroundError, match="use the --port it was registered with"):
        prepare(env, port=8081)
    _, messages = prepare(env, client_id="playground-8081", port=8081)
    assert messages[1].startswith("registered client playground-8081:")


def test_the_server_certificate_is_trusted_by_default(env):
    _, messages = prepare(env)
    assert messages[2] == "trusting the system's certificate authorities for the server"
    cert = env.tmp / "var" / "tls" / "cert.pem"
    with env.app.app_context():
        env.app.extensions["idp"].services.keystore().write_tls_files(str(cert.parent))
    config, messages = prepare(env)
    assert messages[2] == f"trusting the server certificate in {cert}" and config.ca_file == str(cert)
    other = env.tmp / "other.pem"
    other.write_bytes(cert.read_bytes())
    config, messages = prepare(env, ca=str(other))
    assert config.ca_file == str(other)


# --- the start of the flow ---------------------------------------------------------------------

def test_start_page(client):
    response = client.get(START)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Frame-Options"] == "DENY"
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp and "frame-ancestors 'none'" in csp
    assert 'id="start"' in response.text and "http://localhost:8080/playground2/oauth2client" in response.text


def test_start_redirects_to_the_authorization_endpoint_with_pkce(env, client):
    response = client.post(START, data={"scope": "openid profile"})
    assert response.status_code == 303
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == env.settings.base_url + "/oauth2/authorize"
    params = parse_qs(location.query)
    assert all(len(v) == 1 for v in params.values())
    params = {k: v[0] for k, v in params.items()}
    assert set(params) == {"response_type", "client_id", "redirect_uri", "scope", "state", "nonce",
                           "code_challenge", "code_challenge_method"}
    assert params["response_type"] == "code" and params["client_id"] == "playground"
    assert params["redirect_uri"] == "http://localhost:8080/playground2/oauth2client"
    assert params["scope"] == "openid profile" and params["code_challenge_method"] == "S256"
    assert len(params["code_challenge"]) == 43 and len(params["state"]) == 43 and len(params["nonce"]) == 43
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("playground_browser=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    # Each start has its own state, nonce and verifier.
    second = start(client)
    assert {second["state"], second["nonce"], second["code_challenge"]}.isdisjoint(params.values())


def test_code_challenge_is_s256_of_the_verifier():
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"   # RFC 7636 Appendix B
    assert playground.code_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


@pytest.mark.parametrize("scope", ["", "openid\x7fprofile", 'openid "x"', "openid\\x", "ópenid"])
def test_a_malformed_scope_is_refused(client, scope):
    response = client.post(START, data={"scope": scope})
    assert response.status_code == 400
    assert 'id="start-error"' in response.text
    assert "Location" not in response.headers


@pytest.mark.parametrize("origin", ["https://attacker.example", "null", "http://localhost:8081"])
def test_a_start_from_another_site_is_refused(client, origin):
    response = client.post(START, data={"scope": "openid"}, headers={"Origin": origin})
    assert response.status_code == 403
    assert "The form was sent from another site." in response.text
    assert "Location" not in response.headers and "Set-Cookie" not in response.headers


def test_a_start_from_the_playground_itself_is_accepted(client):
    response = client.post(START, data={"scope": "openid"}, headers={"Origin": "http://localhost:8080"})
    assert response.status_code == 303


# --- the callback --------------------------------------------------------------------------------

STATE_REFUSED = "The state does not match an authorization started in this browser"


def test_state_mismatch_is_refused_and_nothing_redeemed(env, client):
    params = start(client)
    iss = env.settings.issuer
    # Unknown state (never started), missing state, a state of another browser, and a state
    # without the browser's cookie: refused with 400 before any token request (a 502 would show
    # that the unreachable token endpoint was called).
    for query in ({"code": "c" * 43, "state": "x" * 43, "iss": iss}, {"code": "c" * 43, "iss": iss}):
        response = client.get(START, query_string=query)
        assert response.status_code == 400 and STATE_REFUSED in response.text
    other = client.application.test_client()   # another browser: same playground, no cookie
    response = other.get(START, query_string={"code": "c" * 43, "state": params["state"], "iss": iss})
    assert response.status_code == 400 and STATE_REFUSED in response.text
    # The refusal used the state up: not even the right browser can use it now.
    response = client.get(START, query_string={"code": "c" * 43, "state": params["state"], "iss": iss})
    assert response.status_code == 400 and STATE_REFUSED in response.text


def test_state_of_another_browser_is_refused(env, client):
    params = start(client)
    client.set_cookie("playground_browser", "B" * 43, path="/playground2")
    response = client.get(START, query_string={"code": "c" * 43, "state": params["state"],
                                               "iss": env.settings.issuer})
    assert response.status_code == 400 and STATE_REFUSED in response.text


def test_a_state_is_used_once(env, client):
    params = start(client)
    query = {"code": "c" * 43, "state": params["state"], "iss": env.settings.issuer}
    first = client.get(START, query_string=query)
    assert first.status_code == 502   # accepted, then the (absent) token endpoint could not be reached
    assert "cannot reach https://localhost:" in first.text
    second = client.get(START, query_string=query)
    assert second.status_code == 400 and STATE_REFUSED in second.text


@pytest.mark.parametrize("iss", [None, "", "https://attacker.example/oauth2/token"])
def test_a_wrong_or_missing_iss_is_refused(client, iss):
    params = start(client)
    query = {"code": "c" * 43, "state": params["state"], **({"iss": iss} if iss is not None else {})}
    response = client.get(START, query_string=query)
    assert response.status_code == 400
    assert "is not the issuer" in response.text and "Nothing was redeemed" in response.text


def test_a_callback_without_code_is_refused(env, client):
    params = start(client)
    response = client.get(START, query_string={"state": params["state"], "iss": env.settings.issuer})
    assert response.status_code == 400 and "The response carries no code." in response.text


def test_callback_error_parameters_are_shown_escaped(env, client):
    params = start(client)
    response = client.get(START, query_string={
        "error": "access_denied", "error_description": "<script>alert(1)</script> The user denied",
        "error_uri": "javascript:alert(2)", "state": params["state"], "iss": env.settings.issuer})
    assert response.status_code == 400
    html = response.text
    assert '<code id="error">access_denied</code>' in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; The user denied" in html
    assert "<script>" not in html and 'href="javascript' not in html
    assert "matches the request started in this browser" in html
    # An error for a state this browser never started is shown too, and says so.
    response = client.get(START, query_string={"error": "invalid_request", "state": "x" * 43})
    assert response.status_code == 400
    assert '<code id="error">invalid_request</code>' in response.text
    assert "does not match a request started in this browser" in response.text


def test_unknown_paths_are_plain_pages(client):
    response = client.get("/nowhere")
    assert response.status_code == 404 and "There is no such page here." in response.text


# --- ID token checks (OpenID Connect Core §3.1.3.7) ---------------------------------------------

ISSUER = "https://idp.example/oauth2/token"


@pytest.fixture(scope="module")
def server_key():
    return rsa_key()


def id_token(key, kid: str = "k1", alg: str = "RS256", **overrides) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": "user-1", "aud": "playground", "exp": now + 300, "iat": now, "nonce": "n-1",
              "at_hash": at_hash("the-access-token")}
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not ...}
    return jose_jwt.encode(claims, pem(key).decode(), algorithm=alg, headers={"kid": kid})


def at_hash(token: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(token.encode()).digest()[:16]).rstrip(b"=").decode()


def report(key, token: str, jwks=None):
    jwks = HTTPResult(200, json.loads(jwks or jwks_of((key, "k1"))))
    return verify_id_token(token, jwks, issuer=ISSUER, client_id="playground", nonce="n-1",
                           access_token="the-access-token")


def failed(result) -> set[str]:
    return {c.name for c in result.checks if not c.ok}


def test_a_valid_id_token_passes_every_check(server_key):
    result = report(server_key, id_token(server_key))
    assert result.valid, result.checks
    assert [c.name for c in result.checks] == ["signature", "iss", "aud", "nonce", "exp", "iat", "sub", "at_hash"]
    assert result.claims["sub"] == "user-1" and result.header["kid"] == "k1"


@pytest.mark.parametrize("overrides, check", [
    ({"iss": "https://attacker.example/oauth2/token"}, "iss"),
    ({"aud": "someone-else"}, "aud"),
    ({"aud": ["playground", "someone-else"]}, "aud"),                       # several audiences, no azp
    ({"aud": ["playground", "someone-else"], "azp": "someone-else"}, "aud"),
    ({"azp": "someone-else"}, "aud"),
    ({"nonce": "n-2"}, "nonce"),
    ({"nonce": ...}, "nonce"),
    ({"exp": int(time.time()) - 120}, "exp"),
    ({"exp": "later"}, "exp"),
    ({"iat": int(time.time()) + 3600}, "iat"),
    ({"sub": ""}, "sub"),
    ({"sub": ...}, "sub"),
    ({"at_hash": at_hash("another-token")}, "at_hash"),
])
def test_each_claim_check_can_fail(server_key, overrides, check):
    result = report(server_key, id_token(server_key, **overrides))
    assert not result.valid and failed(result) == {check}, result.checks


def test_several_audiences_with_azp_pass(server_key):
    result = report(server_key, id_token(server_key, aud=["playground", "api"], azp="playground"))
    assert result.valid, result.checks


def test_signature_checks(server_key):
    # Signed by another key, a kid the JWKS does not have, no key at all, alg none and HS256.
    assert failed(report(server_key, id_token(rsa_key()))) == {"signature"}
    result = report(server_key, id_token(server_key, kid="k2"))
    assert failed(result) == {"signature"} and "no key with kid" in result.checks[0].detail
    head = base64.urlsafe_b64encode(b'{"alg":"none","kid":"k1"}').rstrip(b"=").decode()
    body = id_token(server_key).split(".")[1]
    assert "signature" in failed(report(server_key, f"{head}.{body}.c2ln"))
    hs = jose_jwt.encode({"iss": ISSUER}, "secret", algorithm="HS256", headers={"kid": "k1"})
    assert "signature" in failed(report(server_key, hs))
    result = verify_id_token(id_token(server_key), HTTPResult(None, None, "cannot reach the JWKS"), issuer=ISSUER,
                             client_id="playground", nonce="n-1", access_token="the-access-token")
    assert failed(result) == {"signature"} and "cannot reach the JWKS" in result.checks[0].detail


def test_a_malformed_id_token_is_reported(server_key):
    result = report(server_key, "not-a-jwt")
    assert not result.valid and result.header is None and [c.name for c in result.checks] == ["format"]


# --- against the real server over HTTPS ---------------------------------------------------------

@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """The real server, and the playground prepared against the same deployment.toml."""
    tmp = tmp_path_factory.mktemp("playground-server")
    shared_keystore(tmp)
    port = free_port()
    server = Server(write_config(tmp, port, workers=1), port).start()
    from app import build_app
    idp = build_app(str(server.config_path))
    with idp.app_context():
        config, _ = playground.prepare(idp.extensions["idp"].services.settings, port=free_port(),
                                       client_id="playground", ca=None)
    yield server, config
    server.stop()


def test_token_endpoint_errors_are_shown(real):
    """A callback with a code the server never issued: the playground authenticates with a fresh
    assertion (so the answer is about the code, not the client) and shows the server's error."""
    server, config = real
    assert config.ca_file == server.ca
    client = playground.create_app(config).test_client()
    params = start(client)
    response = client.get(START, query_string={"code": "c" * 43, "state": params["state"], "iss": config.issuer})
    assert response.status_code == 502
    html = response.text
    assert '<code id="token-status">400</code>' in html
    assert '<code id="error">invalid_grant</code>' in html
    assert "The authorization code is invalid" in html


def test_the_server_certificate_is_verified(real, tmp_path):
    server, config = real
    from dataclasses import replace
    from keystore.store import Keystore
    other = Keystore.create(str(tmp_path / "other.p12"), "PKCS12", "pass-word", "other", "localhost")
    other.write_tls_files(str(tmp_path))
    client = playground.create_app(replace(config, ca_file=str(tmp_path / "cert.pem"))).test_client()
    params = start(client)
    response = client.get(START, query_string={"code": "c" * 43, "state": params["state"], "iss": config.issuer})
    assert response.status_code == 502
    assert "the server&#39;s TLS certificate was not trusted" in response.text
    assert "--ca" in response.text


def test_client_assertion_is_fresh_and_accepted(real):
    server, config = real
    first, second = playground.client_assertion(config), playground.client_assertion(config)
    claims = jose_jwt.get_unverified_claims(first)
    assert claims["iss"] == claims["sub"] == "playground" and claims["aud"] == config.issuer
    assert claims["exp"] - claims["iat"] == 300
    assert claims["jti"] != jose_jwt.get_unverified_claims(second)["jti"]
    assert jose_jwt.get_unverified_header(first)["kid"] == config.kid
    # The server accepts it (introspection needs nothing but an authenticated client).
    response = server.post("/oauth2/introspect", data={
        "token": "unknown", "client_assertion_type": playground.ASSERTION_TYPE, "client_assertion": first})
    assert response.status_code == 200 and response.json() == {"active": False}


# --- the command ---------------------------------------------------------------------------------

def test_the_command_registers_once_and_reports_a_busy_port(env):
    """`flask playground` end to end up to serving: a port in use ends it with one line."""
    import socket
    import subprocess
    from support import PYTHON, ROOT
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    command = [PYTHON, "-m", "flask", "--app", str(ROOT / "app.py"), "playground", "--port", str(port)]
    run_env = {**os.environ, "DEPLOYMENT_TOML": str(env.tmp / "deployment.toml")}
    try:
        outputs = [subprocess.run(command, cwd=ROOT, env=run_env, capture_output=True, text=True, timeout=60)
                   for _ in range(2)]
    finally:
        busy.close()
    for result in outputs:
        assert result.returncode == 1
        assert result.stderr.strip().endswith(f"Error: cannot listen on 127.0.0.1:{port}: Address already in use")
    assert "created the client key" in outputs[0].stdout and "registered client playground:" in outputs[0].stdout
    assert "using the client key" in outputs[1].stdout and "client playground is already registered" in outputs[1].stdout

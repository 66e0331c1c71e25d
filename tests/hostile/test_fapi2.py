"""The FAPI 2.0 Security Profile switch ([oauth] profile = "fapi2"), against the real server: the
negative cases of the OpenID Foundation's FAPI 2.0 conformance plan for client authentication and
sender-constrained tokens, by name, each with its exact answer; and what a contradicting
deployment.toml does at start-up."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from hostile_support import Env, Keys, assert_error
from support import ROOT, Server, assert_oauth_error, dpop_proof, free_port, jkt_of, jwks_of, write_config

PYTHON = sys.executable


def fapi_config(directory: Path, port: int, extra: str = "", pkjwt: dict | None = None) -> Path:
    # The issuer is the server's base URL, so that the token endpoint URL is another audience.
    return write_config(directory, port, pkjwt=pkjwt, extra=f"""
[oauth]
profile = "fapi2"
[oauth.oidc.id_token]
issuer = "https://localhost:{port}"
{extra}""")


class FapiEnv(Env):
    @property
    def issuer(self) -> str:
        return self.server.base


@pytest.fixture(scope="module")
def fapi(tmp_path_factory) -> FapiEnv:
    port = free_port()
    server = Server(fapi_config(tmp_path_factory.mktemp("fapi2"), port), port).start()
    try:
        env = FapiEnv(server, Keys())
        env.register("ps-client", jwks_of((env.keys.rsa, "k1")))
        env.register("es-client", jwks_of((env.keys.p256, "k1")))
        env.register("other-client", jwks_of((env.keys.rsa_other, "k1")))
        env.register("secret-client", auth_method="client_secret_basic")
        yield env
    finally:
        server.stop()


def token(env: FapiEnv, assertion: str, proof: str | None = None, **extra):
    """A client_credentials request with a DPoP proof (FAPI 2.0 needs sender-constrained tokens)."""
    req = env.token_request(assertion, **extra)
    req.headers["DPoP"] = proof or dpop_proof(env.keys.p256_other, env.server.base + "/oauth2/token")
    return req.send(env.server, env.session)


def assert_token(r) -> dict:
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "DPoP"
    return body


# --- client authentication (FAPI 2.0 Security Profile §5.3.2.1, §5.4.1) -----------------------------

def test_ps256_and_es256_assertions_accepted(fapi):
    assert_token(token(fapi, fapi.assertion("ps-client", alg="PS256")))
    assert_token(token(fapi, fapi.assertion("es-client", alg="ES256")))


@pytest.mark.parametrize("alg", ["RS256", "RS512"])
def test_rsa_pkcs1_assertion_refused(fapi, alg):
    assert_error(token(fapi, fapi.assertion("ps-client", alg=alg)), 401, "invalid_client")


@pytest.mark.parametrize("aud", ["token_endpoint", "par_endpoint", "array", "array_of_issuer"])
def test_audience_other_than_the_issuer_string_refused(fapi, aud):
    base = fapi.server.base
    value = {"token_endpoint": base + "/oauth2/token", "par_endpoint": base + "/oauth2/par",
             "array": [base, base + "/oauth2/token"], "array_of_issuer": [base]}[aud]
    r = token(fapi, fapi.assertion("ps-client", alg="PS256", aud=value))
    body = assert_error(r, 401, "invalid_client")
    assert "aud" in body["error_description"]


def test_missing_sub_refused(fapi):
    assert_error(token(fapi, fapi.assertion("ps-client", alg="PS256", sub=...)), 401, "invalid_client")


def test_assertion_for_another_client_refused(fapi):
    # Signed by ps-client's key, naming other-client: no key of other-client verifies it.
    r = token(fapi, fapi.assertion("other-client", key=fapi.keys.rsa, alg="PS256"))
    assert_error(r, 401, "invalid_client")


def test_expired_assertion_refused(fapi):
    now = int(time.time())
    r = token(fapi, fapi.assertion("ps-client", alg="PS256", iat=now - 120, exp=now - 60))
    assert_error(r, 401, "invalid_client")


def test_nbf_8_seconds_ahead_accepted(fapi):
    assert_token(token(fapi, fapi.assertion("ps-client", alg="PS256", nbf=int(time.time()) + 8)))


def test_nbf_70_seconds_ahead_refused(fapi):
    body = assert_error(token(fapi, fapi.assertion("ps-client", alg="PS256", nbf=int(time.time()) + 70)),
                        401, "invalid_client")
    assert "nbf" in body["error_description"]


def test_iat_8_seconds_ahead_accepted_and_70_refused(fapi):
    now = int(time.time())
    assert_token(token(fapi, fapi.assertion("ps-client", alg="PS256", iat=now + 8)))
    assert_error(token(fapi, fapi.assertion("ps-client", alg="PS256", iat=now + 70)), 401, "invalid_client")


def test_client_secret_refused(fapi):
    secret = fapi.secrets["secret-client"]
    r = fapi.session.post(fapi.server.base + "/oauth2/token", data={"grant_type": "client_credentials"},
                          auth=("secret-client", secret), verify=fapi.server.ca,
                          headers={"DPoP": dpop_proof(fapi.keys.p256_other, fapi.server.base + "/oauth2/token")})
    body = assert_error(r, 401, "invalid_client")
    assert "FAPI 2.0" in body["error_description"]


# --- sender-constrained access tokens (§5.3.2.1) --------------------------------------------------

def test_token_without_dpop_proof_refused(fapi):
    r = fapi.token(fapi.assertion("ps-client", alg="PS256"))
    body = assert_oauth_error(r, 400, "invalid_dpop_proof")
    assert "sender-constrained" in body["error_description"]


@pytest.mark.parametrize("offset", [-10, 10])
def test_dpop_proof_iat_10_seconds_off_accepted(fapi, offset):
    proof = dpop_proof(fapi.keys.p256_other, fapi.server.base + "/oauth2/token", iat=int(time.time()) + offset)
    body = assert_token(token(fapi, fapi.assertion("ps-client", alg="PS256"), proof))
    introspected = fapi.session.post(
        fapi.server.base + "/oauth2/introspect", verify=fapi.server.ca,
        data={"token": body["access_token"], "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:"
              "jwt-bearer", "client_assertion": fapi.assertion("es-client", alg="ES256")}).json()
    assert introspected["cnf"] == {"jkt": jkt_of(fapi.keys.p256_other)}


def test_dpop_proof_iat_70_seconds_ahead_refused(fapi):
    proof = dpop_proof(fapi.keys.p256_other, fapi.server.base + "/oauth2/token", iat=int(time.time()) + 70)
    assert_oauth_error(token(fapi, fapi.assertion("ps-client", alg="PS256"), proof), 400, "invalid_dpop_proof")


# --- authorization requests (§5.3.2.2) ------------------------------------------------------------

def test_authorization_request_without_par_refused(fapi):
    """A well-formed request with PKCE S256, not pushed: back to the redirect URI with
    invalid_request and the issuer (RFC 9207), no sign-in page."""
    from urllib.parse import parse_qs, urlsplit
    fapi.register("web-client", jwks_of((fapi.keys.p256, "k1")), grant_types=("authorization_code",),
                  redirect_uris=("https://app.example/cb",))
    r = fapi.session.get(fapi.server.base + "/oauth2/authorize", verify=fapi.server.ca, allow_redirects=False, params={
        "response_type": "code", "client_id": "web-client", "redirect_uri": "https://app.example/cb",
        "scope": "openid", "state": "s1", "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "code_challenge_method": "S256"})
    assert r.status_code == 302
    location = urlsplit(r.headers["Location"])
    assert location.netloc == "app.example"
    values = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert values["error"] == "invalid_request" and values["state"] == "s1" and values["iss"] == fapi.issuer
    assert "pushed authorization request is required" in values["error_description"]


# --- metadata -------------------------------------------------------------------------------------

def test_metadata_says_what_fapi2_accepts(fapi):
    meta = fapi.session.get(fapi.server.base + "/.well-known/openid-configuration", verify=fapi.server.ca).json()
    assert meta["issuer"] == fapi.server.base
    assert meta["token_endpoint_auth_signing_alg_values_supported"] == ["PS256", "ES256", "EdDSA", "Ed25519"]
    assert "client_secret_basic" not in meta["token_endpoint_auth_methods_supported"]
    assert "none" not in meta["token_endpoint_auth_methods_supported"]
    assert "private_key_jwt" in meta["token_endpoint_auth_methods_supported"]
    assert meta["id_token_signing_alg_values_supported"] == ["PS256"]
    assert meta["code_challenge_methods_supported"] == ["S256"]
    jwks = fapi.session.get(fapi.server.base + "/oauth2/jwks", verify=fapi.server.ca).json()
    assert [key["alg"] for key in jwks["keys"]] == ["PS256"]


# --- start-up: one line naming the key that contradicts the profile ----------------------------------

STARTUP = {
    # case: (deployment.toml additions, what the line starts with, the key named)
    "SigningAlgorithms-RS256": ({"SigningAlgorithms": ["RS256", "PS256"]}, "", "SigningAlgorithms"),
    "AudiencePolicy-legacy": ({"AudiencePolicy": "legacy"}, "", "AudiencePolicy"),
    "single-element-array": ({"AllowSingleElementAudienceArray": True}, "", "AllowSingleElementAudienceArray"),
    "alias": ({"TokenEndpointAlias": "https://lb.example/token"}, "", "TokenEndpointAlias"),
    "skew-30": ({}, "[oauth.dpop]\ntimestamp_skew = 30\n", "timestamp_skew"),
    "code-lifetime": ({}, "[oauth.token_validation]\nauthorization_code_validity = 300\n",
                      "authorization_code_validity"),
    "plain-pkce": ({}, "[oauth.pkce]\nallow_plain = true\n", "allow_plain"),
    "proof-lifetime": ({}, "[oauth.dpop]\nproof_lifetime = 300\n", "proof_lifetime"),
    "proof-algorithms": ({}, '[oauth.dpop]\nsigning_algorithms = ["ES256", "RS256"]\n', "signing_algorithms"),
}


@pytest.mark.parametrize("case", list(STARTUP))
def test_contradicting_settings_stop_start_up(tmp_path, case):
    pkjwt, extra, key = STARTUP[case]
    path = fapi_config(tmp_path, free_port(), extra=extra, pkjwt=pkjwt)
    result = subprocess.run([PYTHON, str(ROOT / "app.py"), str(path)], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    text = path.read_text().splitlines()
    number = next(n for n, line in enumerate(text, 1) if line.startswith(key))
    assert lines[0].startswith(f"configuration error: deployment.toml:{number}: "), lines[0]
    assert key in lines[0] and "fapi2" in lines[0]


def test_shipped_deployment_toml_with_one_line_starts(tmp_path):
    """The shipped file, with profile = "fapi2" added, is a valid FAPI 2.0 configuration: the keys
    it shows at their defaults follow the profile."""
    from core import config
    text = (ROOT / "deployment.toml").read_text().replace('profile = "oauth2"', 'profile = "fapi2"')
    path = tmp_path / "deployment.toml"
    path.write_text(text)
    settings = config.load(path)
    assert settings.profile == "fapi2"
    assert settings.timestamp_skew == 10 and settings.dpop["timestamp_skew"] == 10
    assert settings.par["required"] is True and settings.pkce["mandatory"] is True
    assert settings.token["signing_alg"] == "PS256"
    assert settings.validity["authorization_code_validity"] == 60
    assert settings.dpop["signing_algorithms"] == ["PS256", "ES256", "EdDSA"]

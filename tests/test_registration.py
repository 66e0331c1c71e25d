"""The client registration API (RFC 7591 / RFC 7592) at /api/identity/oauth2/dcr/v1.1/register:
in-process for every call and refusal, then over HTTPS against the real server (gunicorn, two
workers) for what a client sees: a registered key gets a token, a replaced key is refused on the
very next request, a deleted client gets nothing."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey

from support import (JWKSServer, Server, assert_oauth_error, claims_for, ec_key, free_port, jwks_of, rsa_key, shared_keystore,
                     sign, token_form, write_config)
from test_client_metadata import certificate, private_jwks, rsa_1024_jwks

REGISTER = "/api/identity/oauth2/dcr/v1.1/register"
ADMIN_PASSWORD = "admin-password"
USER_PASSWORD = "user-password"


def basic(username: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


ADMIN = basic("admin", ADMIN_PASSWORD)
CHALLENGE = 'Basic realm="console", Bearer realm="console"'
BEARER_CHALLENGE = CHALLENGE + ', error="invalid_token"'


def jwks(*pairs) -> dict:
    return json.loads(jwks_of(*pairs))


def pkjwt(key, kid: str = "k1", **extra) -> dict:
    return {"client_name": "Billing", "token_endpoint_auth_method": "private_key_jwt",
            "grant_types": ["client_credentials"], "scope": "openid read", "jwks": jwks((key, kid)), **extra}


def alg_for(key) -> str:
    return "ES256" if isinstance(key, EllipticCurvePrivateKey) else "RS256"


def body_of(response) -> dict:
    return response.json() if callable(response.json) else response.json


def assert_unauthorized(response, challenge: str = CHALLENGE) -> dict:
    """401, the JSON error and the challenge; nothing else in the body."""
    body = assert_oauth_error(response, 401, "invalid_token")
    assert response.headers["WWW-Authenticate"] == challenge
    assert set(body) == {"error", "error_description"}
    return body


def assert_client_information(response, status: int = 200) -> dict:
    assert response.status_code == status, (response.status_code, response.data if hasattr(response, "data")
                                            else response.text)
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    return body_of(response)


# =================================================================================================
# In-process: the app built by build_app() on a real SQLite file
# =================================================================================================

class Api:
    def __init__(self, env) -> None:
        self.env = env
        self.client = env.app.test_client()

    def post(self, body=None, headers=ADMIN, **kwargs):
        return self.client.post(REGISTER, json=body, headers=headers, **kwargs)

    def get(self, client_id: str, headers=ADMIN):
        return self.client.get(f"{REGISTER}/{quote(client_id, safe='')}", headers=headers)

    def put(self, client_id: str, body=None, headers=ADMIN, **kwargs):
        return self.client.put(f"{REGISTER}/{quote(client_id, safe='')}", json=body, headers=headers, **kwargs)

    def delete(self, client_id: str, headers=ADMIN):
        return self.client.delete(f"{REGISTER}/{quote(client_id, safe='')}", headers=headers)

    def register(self, body: dict, headers=ADMIN) -> dict:
        return assert_client_information(self.post(body, headers), 201)

    def token(self, client_id: str, key, kid: str = "k1"):
        assertion = sign(key, claims_for(client_id, self.env.issuer), alg_for(key), {"kid": kid})
        return self.env.post(token_form(assertion, scope="openid"))

    def cli(self, *args: str):
        result = self.env.app.test_cli_runner().invoke(args=list(args))
        assert result.exit_code == 0, result.output
        return result


def make_api(directory: Path, **config) -> Api:
    from support import make_in_process
    from storage import users
    env = make_in_process(directory, **config)
    with env.app.app_context():
        users.create("admin", ADMIN_PASSWORD, is_admin=True)
        users.create("user", USER_PASSWORD)
    return Api(env)


@pytest.fixture(scope="module")
def api(tmp_path_factory) -> Api:
    return make_api(tmp_path_factory.mktemp("api"))


# --- authentication -------------------------------------------------------------------------------

def test_no_credentials_get_401_and_no_data(api):
    created = api.register(pkjwt(rsa_key()))
    cid = created["client_id"]
    for response in (api.post(pkjwt(rsa_key()), headers={}), api.get(cid, headers={}),
                     api.put(cid, pkjwt(rsa_key()), headers={}), api.delete(cid, headers={})):
        body = assert_unauthorized(response)
        assert cid not in json.dumps(body)
    assert api.get(cid).status_code == 200  # nothing was changed or deleted


@pytest.mark.parametrize("headers", [
    basic("admin", "wrong-password"),
    basic("nobody", ADMIN_PASSWORD),
    basic("user", USER_PASSWORD),             # a user, not an administrator
    basic("Admin", ADMIN_PASSWORD),           # user names match exactly
    {"Authorization": "Basic !!!"},           # not base64
    {"Authorization": "Basic " + base64.b64encode(b"admin").decode()},   # no colon
    {"Authorization": "Basic " + base64.b64encode(b"\xff:\xfe").decode()},  # not UTF-8
    {"Authorization": "Basic"},
    {"Authorization": "Digest username=admin"},
    {"Authorization": "admin:" + ADMIN_PASSWORD},
], ids=["wrong-password", "unknown-user", "not-admin", "case", "not-base64", "no-colon", "not-utf8", "empty",
        "digest", "no-scheme"])
def test_bad_basic_credentials(api, headers):
    cid = api.register(pkjwt(rsa_key()))["client_id"]
    assert_unauthorized(api.post(pkjwt(rsa_key()), headers=headers))
    assert_unauthorized(api.get(cid, headers=headers))
    assert_unauthorized(api.delete(cid, headers=headers))
    assert api.get(cid).status_code == 200


@pytest.mark.parametrize("token", ["unknown-token", "a b", "x" * 600, "%%%"])
def test_bad_bearer_tokens(api, token):
    cid = api.register(pkjwt(rsa_key()))["client_id"]
    assert_unauthorized(api.post(pkjwt(rsa_key()), headers=bearer(token)), BEARER_CHALLENGE)
    assert_unauthorized(api.get(cid, headers=bearer(token)), BEARER_CHALLENGE)
    assert_unauthorized(api.put(cid, pkjwt(rsa_key()), headers=bearer(token)), BEARER_CHALLENGE)
    assert_unauthorized(api.delete(cid, headers=bearer(token)), BEARER_CHALLENGE)


def test_failed_basic_sign_ins_are_limited_like_the_console(tmp_path):
    api = make_api(tmp_path, rate_limit={"signin_failures_per_user": 3, "signin_failures_per_address": 100})
    for _ in range(3):
        assert_unauthorized(api.post(pkjwt(rsa_key()), headers=basic("admin", "guess")))
    # Now even the right password waits: 429 with Retry-After, and nothing is registered.
    response = api.post(pkjwt(rsa_key()), headers=ADMIN)
    body = assert_oauth_error(response, 429, "access_denied")
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert "client_id" not in body
    # Another administrator is not affected by this user name's failures.
    from storage import users
    with api.env.app.app_context():
        users.create("admin2", ADMIN_PASSWORD, is_admin=True)
    api.register(pkjwt(rsa_key()), headers=basic("admin2", ADMIN_PASSWORD))


def test_failures_are_counted_per_address_too(tmp_path):
    api = make_api(tmp_path, rate_limit={"signin_failures_per_user": 100, "signin_failures_per_address": 2})
    assert_unauthorized(api.post(pkjwt(rsa_key()), headers=basic("someone", "x")))
    assert_unauthorized(api.post(pkjwt(rsa_key()), headers=basic("someone-else", "x")))
    assert_oauth_error(api.post(pkjwt(rsa_key()), headers=ADMIN), 429, "access_denied")


# --- registration (POST) --------------------------------------------------------------------------

def test_register_private_key_jwt_and_get_a_token(api):
    key = rsa_key()
    body = api.register(pkjwt(key, token_endpoint_auth_signing_alg="RS256", logo_uri="https://x.example/l.png",
                              contacts=["ops@example.com"]))
    cid = body["client_id"]
    assert len(cid) == 32 and cid.replace("-", "").replace("_", "").isalnum()
    assert body["registration_client_uri"] == f"https://localhost:9443{REGISTER}/{cid}"
    assert len(body["registration_access_token"]) >= 40
    assert abs(body["client_id_issued_at"] - time.time()) < 60
    assert "client_secret" not in body and "client_secret_expires_at" not in body
    # Unknown fields are ignored, not stored (RFC 7591 §2).
    assert "logo_uri" not in body and "contacts" not in body
    assert body["jwks"] == jwks((key, "k1")) and body["token_endpoint_auth_signing_alg"] == "RS256"
    assert (body["grant_types"], body["response_types"], body["scope"]) == (["client_credentials"], [], "openid read")
    response = api.token(cid, key)
    assert response.status_code == 200, response.json
    assert response.json["scope"] == "openid"


def test_register_a_secret_client(api):
    body = api.register({"client_name": "Batch", "grant_types": ["client_credentials"], "scope": "read"})
    assert body["token_endpoint_auth_method"] == "client_secret_basic"  # RFC 7591 §2 default
    assert body["client_secret_expires_at"] == 0
    secret = body["client_secret"]
    response = api.env.post({"grant_type": "client_credentials"}, headers=basic(body["client_id"], secret))
    assert response.status_code == 200, response.json
    # The secret is shown once: reading the registration never shows it again.
    again = assert_client_information(api.get(body["client_id"]))
    assert "client_secret" not in again and "registration_access_token" not in again
    assert again["client_secret_expires_at"] == 0


def test_register_a_public_authorization_code_client(api):
    body = api.register({"token_endpoint_auth_method": "none", "grant_types": ["authorization_code", "refresh_token"],
                         "redirect_uris": ["com.example.app:/oauth2redirect", "http://127.0.0.1/cb"]})
    assert body["response_types"] == ["code"] and "client_secret" not in body


def test_the_default_registration_is_an_authorization_code_client(api):
    body = api.register({"redirect_uris": ["https://app.example.com/cb"]})
    assert body["grant_types"] == ["authorization_code"] and body["response_types"] == ["code"]
    assert body["token_endpoint_auth_method"] == "client_secret_basic"


def test_register_with_a_certificate(api):
    key = ec_key()
    body = api.register(pkjwt(key, jwks=None, certificate=certificate(key).decode()))
    assert body["jwks"]["keys"][0]["kty"] == "EC" and "x5c" in body["jwks"]["keys"][0]
    assert "certificate" not in body
    kid = body["jwks"]["keys"][0]["kid"]
    assertion = sign(key, claims_for(body["client_id"], api.env.issuer), "ES256", {"kid": kid})
    assert api.env.post(token_form(assertion)).status_code == 200


def test_an_administrator_chooses_the_client_id(api):
    body = api.register(pkjwt(rsa_key(), client_id="billing-service"))
    assert body["client_id"] == "billing-service"
    assert body["registration_client_uri"].endswith(f"{REGISTER}/billing-service")
    # WSO2's parameter name does the same.
    assert api.register(pkjwt(rsa_key(), ext_param_client_id="wso2-style"))["client_id"] == "wso2-style"
    for client_id in ("billing-service", "BILLING-SERVICE"):   # taken, also ignoring case
        body = assert_oauth_error(api.post(pkjwt(rsa_key(), client_id=client_id)), 400, "invalid_client_metadata")
        assert "already exists" in body["error_description"]
    for client_id in ("", "a\nb", "x" * 256, 42, ["a"], {"a": 1}, None):
        assert_oauth_error(api.post(pkjwt(rsa_key(), client_id=client_id)), 400, "invalid_client_metadata")
        assert_oauth_error(api.post(pkjwt(rsa_key(), ext_param_client_id=client_id)), 400, "invalid_client_metadata")
    assert_oauth_error(api.post(pkjwt(rsa_key(), client_id="a", ext_param_client_id="b")), 400,
                       "invalid_client_metadata")


def test_client_ids_with_slashes_and_spaces_have_a_working_configuration_uri(api):
    body = api.register(pkjwt(rsa_key(), client_id="team a/app 1"))
    assert body["registration_client_uri"].endswith(f"{REGISTER}/team%20a%2Fapp%201")
    assert assert_client_information(api.get("team a/app 1"))["client_id"] == "team a/app 1"
    assert api.delete("team a/app 1").status_code == 204


@pytest.mark.parametrize("change, error, words", [
    ({"jwks": rsa_1024_jwks()}, "invalid_client_metadata", "2048"),
    ({"jwks": private_jwks()}, "invalid_client_metadata", "private key material"),
    ({"jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}}, "invalid_client_metadata", "private key material"),
    ({"jwks": {"keys": [{"kty": "oct"}]}}, "invalid_client_metadata", "symmetric"),
    ({"jwks": None, "certificate": certificate(rsa_key(), days=-1, start_days=-30).decode()},
     "invalid_client_metadata", "expired"),
    ({"jwks_uri": "https://keys.example.com/jwks"}, "invalid_client_metadata", "only one of jwks, jwks_uri"),
    ({"jwks": None, "jwks_uri": "http://10.0.0.1/jwks"}, "invalid_client_metadata", "non-public"),
    ({"token_endpoint_auth_signing_alg": "ES256"}, "invalid_client_metadata", "ES256"),
    ({"token_endpoint_auth_signing_alg": "HS256"}, "invalid_client_metadata", "token_endpoint_auth_signing_alg"),
    ({"token_endpoint_auth_method": "none"}, "invalid_client_metadata", "none"),
    ({"token_endpoint_auth_method": "client_secret_basic"}, "invalid_client_metadata",
     "jwks applies to token_endpoint_auth_method private_key_jwt or self_signed_tls_client_auth only"),
    ({"grant_types": ["authorization_code"]}, "invalid_redirect_uri", "redirect URI"),
    ({"grant_types": ["authorization_code"], "redirect_uris": ["http://app.example.com/cb"]},
     "invalid_redirect_uri", "https"),
    ({"grant_types": ["authorization_code"], "redirect_uris": ["https://app.example.com/cb#x"]},
     "invalid_redirect_uri", "fragment"),
    ({"grant_types": ["authorization_code"], "redirect_uris": ["/cb"]}, "invalid_redirect_uri", "absolute"),
    ({"grant_types": ["authorization_code"], "redirect_uris": ["javascript:alert(1)"]}, "invalid_redirect_uri",
     "private-use"),
    ({"grant_types": ["refresh_token", "client_credentials"]}, "invalid_client_metadata", "authorization_code"),
    ({"grant_types": ["client_credentials"], "response_types": ["code"]}, "invalid_client_metadata",
     "response_types"),
    ({"grant_types": ["urn:ietf:params:oauth:grant-type:device_code"]}, "invalid_client_metadata", "grant_types"),
    ({"grant_types": "client_credentials"}, "invalid_client_metadata", "array"),
    ({"client_name": ["x"]}, "invalid_client_metadata", "client_name"),
    ({"scope": "openid\tread"}, "invalid_client_metadata", "scope"),
    ({"first_party": "true"}, "invalid_client_metadata", "first_party"),
    ({"access_token_lifetime": 10}, "invalid_client_metadata", "access_token_lifetime"),
    ({"token_reuse": "never"}, "invalid_client_metadata", "token_reuse"),
    ({"require_explicit_typ": "true"}, "invalid_client_metadata", "require_explicit_typ must be true, false or null"),
    ({"require_explicit_typ": 1}, "invalid_client_metadata", "require_explicit_typ must be true, false or null"),
    ({"dpop_bound_access_tokens": "true"}, "invalid_client_metadata", "dpop_bound_access_tokens must be true or false"),
    ({"require_dpop_nonce": 1}, "invalid_client_metadata", "require_dpop_nonce must be true or false"),
    ({"access_token_format": "reference"}, "invalid_client_metadata", "access_token_format must be one of opaque, jwt"),
    ({"resources": ["/api"]}, "invalid_client_metadata", "A resource in resources must be an absolute URI"),
    ({"resources": ["https://api.example.com/#x"]}, "invalid_client_metadata",
     "A resource in resources must not contain a fragment"),
    ({"resources": [7]}, "invalid_client_metadata", "resources must be an array of strings"),
    ({"resources": "https://api.example.com/"}, "invalid_client_metadata", "resources must be an array of strings"),
    ({"resources": ["https://api.example.com/"] * 2}, "invalid_client_metadata", "resources lists a value twice"),
], ids=["rsa-1024", "private-jwk", "oct-with-k", "oct", "expired-certificate", "jwks-and-jwks_uri",
        "private-jwks_uri", "alg-does-not-fit", "hs256", "none-with-client_credentials", "jwks-with-secret",
        "code-without-redirect", "http-redirect", "fragment", "relative-redirect", "javascript-redirect",
        "refresh-without-code", "response-types", "unsupported-grant", "grant-types-string", "name-type",
        "scope-tab", "first-party-string", "lifetime-too-short", "token-reuse-value", "explicit-typ-string",
        "explicit-typ-number", "dpop-bound-string",
        "dpop-nonce-number", "token-format-unknown", "resource-relative", "resource-fragment", "resource-number",
        "resources-string", "resource-twice"])
def test_every_refusal_is_a_400_with_the_rfc7591_error(api, change, error, words):
    metadata = {k: v for k, v in {**pkjwt(rsa_key()), **change}.items() if v is not None}
    before = _client_count(api)
    body = assert_oauth_error(api.post(metadata), 400, error)
    assert set(body) == {"error", "error_description"}
    assert words in body["error_description"], body
    assert _client_count(api) == before  # nothing was registered


def test_token_settings_round_trip(api):
    """RFC 9449 §5.2 dpop_bound_access_tokens, require_dpop_nonce, access_token_format (RFC 9068) and
    RFC 8707 resources: registered, read back, replaced, and returned to their defaults."""
    settings = {"dpop_bound_access_tokens": True, "require_dpop_nonce": True, "access_token_format": "jwt",
                "resources": ["https://api.example.com/", "urn:example:payments"]}
    created = api.register(pkjwt(rsa_key(), **settings))
    cid = created["client_id"]
    read = assert_client_information(api.get(cid))
    for body in (created, read):
        assert {name: body[name] for name in settings} == settings
    from storage import clients
    with api.env.app.app_context():
        stored = clients.get(cid)
    assert (stored.dpop_bound_access_tokens, stored.require_dpop_nonce, stored.access_token_format,
            stored.resources) == (True, True, "jwt", ("https://api.example.com/", "urn:example:payments"))
    # A replace with what was read changes nothing; a replace without them returns to the defaults.
    assert assert_client_information(api.put(cid, read)) == read
    changed = assert_client_information(api.put(cid, pkjwt(rsa_key(), access_token_format="opaque",
                                                           resources=["https://api.example.com/"])))
    assert (changed["dpop_bound_access_tokens"], changed["require_dpop_nonce"], changed["access_token_format"],
            changed["resources"]) == (False, False, "opaque", ["https://api.example.com/"])
    plain = assert_client_information(api.put(cid, pkjwt(rsa_key())))
    assert (plain["dpop_bound_access_tokens"], plain["require_dpop_nonce"]) == (False, False)
    assert "access_token_format" not in plain and "resources" not in plain
    assert assert_client_information(api.get(cid)) == plain


def test_a_client_sets_its_own_token_settings_but_not_its_resources(api):
    token = _initial_token(api, "--uses", "2")
    body = assert_oauth_error(api.post(pkjwt(rsa_key(), scope="openid", resources=["https://api.example.com/"]),
                                       headers=bearer(token)), 400, "invalid_client_metadata")
    assert body["error_description"] == "Only an administrator may set resources"
    own = {"dpop_bound_access_tokens": True, "require_dpop_nonce": True, "access_token_format": "jwt"}
    created = api.register(pkjwt(rsa_key(), scope="openid", resources=[], **own), headers=bearer(token))
    assert {name: created[name] for name in own} == own and "resources" not in created
    # An administrator gives it resources; the client keeps them when it replaces its registration
    # and may change its own settings, but not the resources.
    cid, registration = created["client_id"], bearer(created["registration_access_token"])
    given = assert_client_information(api.put(cid, pkjwt(rsa_key(), scope="openid", resources=["urn:example:a"])))
    assert given["resources"] == ["urn:example:a"] and given["dpop_bound_access_tokens"] is False
    kept = assert_client_information(api.put(cid, pkjwt(rsa_key(), scope="openid", access_token_format="opaque"),
                                             headers=registration))
    assert (kept["resources"], kept["access_token_format"]) == (["urn:example:a"], "opaque")
    for resources in (["urn:example:a", "urn:example:b"], []):
        body = assert_oauth_error(api.put(cid, pkjwt(rsa_key(), scope="openid", resources=resources),
                                          headers=registration), 400, "invalid_client_metadata")
        assert body["error_description"] == "Only an administrator may set resources"
    assert assert_client_information(api.get(cid)) == kept


def _client_count(api) -> int:
    from storage import clients
    with api.env.app.app_context():
        return len(clients.all_clients())


# --- mutual TLS (RFC 8705), PAR (RFC 9126), FAPI 2.0 ----------------------------------------------------

def mtls(**extra) -> dict:
    return {"client_name": "Payments", "token_endpoint_auth_method": "tls_client_auth",
            "grant_types": ["client_credentials"], "scope": "openid", **extra}


def test_tls_client_auth_round_trip(api):
    """RFC 8705 §2.1.2: named by one subject DN or SAN, stored normalised, given back under its RFC
    name; no secret, no keys. PAR and certificate-bound tokens with it."""
    created = api.register(mtls(tls_client_auth_subject_dn="cn=Payments, O=Example\\2C Inc., c=SE",
                                require_pushed_authorization_requests=True,
                                tls_client_certificate_bound_access_tokens=True))
    cid = created["client_id"]
    assert created["token_endpoint_auth_method"] == "tls_client_auth"
    assert created["tls_client_auth_subject_dn"] == "CN=Payments,O=Example\\, Inc.,C=SE"
    assert not {"client_secret", "client_secret_expires_at", "jwks", "jwks_uri", "tls_client_auth_san_dns",
                "tls_client_auth_san_uri", "tls_client_auth_san_ip", "tls_client_auth_san_email",
                "profile"} & set(created)
    assert (created["require_pushed_authorization_requests"], created["tls_client_certificate_bound_access_tokens"]) \
        == (True, True)
    read = assert_client_information(api.get(cid))
    assert {k: v for k, v in read.items() if k != "registration_access_token"} == \
        {k: v for k, v in created.items() if k != "registration_access_token"}
    assert assert_client_information(api.put(cid, read)) == read   # the normalised DN is stable
    from storage import clients
    with api.env.app.app_context():
        stored = clients.get(cid)
    assert (stored.secret_hash, stored.tls_client_auth_subject_dn, stored.tls_client_auth_san) == \
        (None, "CN=Payments,O=Example\\, Inc.,C=SE", None)
    # Replaced by a SAN: the DN goes; the booleans return to false.
    changed = assert_client_information(api.put(cid, mtls(tls_client_auth_san_ip="2001:DB8:0:0::7")))
    assert changed["tls_client_auth_san_ip"] == "2001:db8::7" and "tls_client_auth_subject_dn" not in changed
    assert (changed["require_pushed_authorization_requests"], changed["tls_client_certificate_bound_access_tokens"]) \
        == (False, False)
    with api.env.app.app_context():
        assert clients.get(cid).tls_client_auth_san == "ip:2001:db8::7"
    for field, value, given in (("tls_client_auth_san_dns", "Payments.Example.com", "payments.example.com"),
                                ("tls_client_auth_san_uri", "spiffe://example.org/payments",
                                 "spiffe://example.org/payments"),
                                ("tls_client_auth_san_email", "ops@Example.com", "ops@example.com")):
        body = assert_client_information(api.put(cid, mtls(**{field: value})))
        assert body[field] == given
        assert [name for name in body if name.startswith("tls_client_auth_s")] == [field]


def test_self_signed_tls_client_auth_registers_its_certificate(api):
    key = rsa_key()
    created = api.register({"token_endpoint_auth_method": "self_signed_tls_client_auth",
                            "grant_types": ["client_credentials"], "certificate": certificate(key).decode()})
    assert created["token_endpoint_auth_method"] == "self_signed_tls_client_auth"
    assert "client_secret" not in created and len(created["jwks"]["keys"]) == 1
    assert "x5c" in created["jwks"]["keys"][0] and "token_endpoint_auth_signing_alg" not in created
    assert assert_client_information(api.put(created["client_id"], assert_client_information(
        api.get(created["client_id"]))))["jwks"] == created["jwks"]


def test_a_client_chooses_fapi2_par_and_certificate_binding_itself(api):
    token = _initial_token(api)
    own = {"require_pushed_authorization_requests": True, "tls_client_certificate_bound_access_tokens": True,
           "profile": "fapi2"}
    created = api.register(mtls(tls_client_auth_san_dns="payments.example.com", **own), headers=bearer(token))
    assert {name: created[name] for name in own} == own
    # Its own profile holds it to FAPI 2.0 on this oauth2 server: a secret method is refused.
    body = assert_oauth_error(api.put(created["client_id"], {**mtls(**own), "token_endpoint_auth_method":
                                                             "client_secret_basic"},
                                      headers=bearer(created["registration_access_token"])),
                              400, "invalid_client_metadata")
    assert body["error_description"].startswith("FAPI 2.0: token_endpoint_auth_method must be private_key_jwt")


FAPI = {"profile": "fapi2"}
MTLS_REFUSALS = [
    (mtls(), "invalid_client_metadata", "token_endpoint_auth_method tls_client_auth needs exactly one of "
     "tls_client_auth_subject_dn, tls_client_auth_san_dns, tls_client_auth_san_uri, tls_client_auth_san_ip, "
     "tls_client_auth_san_email"),
    (mtls(tls_client_auth_subject_dn="CN=client", tls_client_auth_san_ip="192.0.2.1"), "invalid_client_metadata",
     "needs exactly one of tls_client_auth_subject_dn, tls_client_auth_san_dns, tls_client_auth_san_uri, "
     "tls_client_auth_san_ip, tls_client_auth_san_email, not tls_client_auth_subject_dn and tls_client_auth_san_ip"),
    (pkjwt(rsa_key(), tls_client_auth_subject_dn="CN=client"), "invalid_client_metadata",
     "tls_client_auth_subject_dn applies to token_endpoint_auth_method tls_client_auth only"),
    ({"token_endpoint_auth_method": "self_signed_tls_client_auth", "grant_types": ["client_credentials"]},
     "invalid_client_metadata", "token_endpoint_auth_method self_signed_tls_client_auth needs the client "
     "certificate's public key: give jwks, jwks_uri or certificate"),
    ({**pkjwt(rsa_key()), "token_endpoint_auth_method": "self_signed_tls_client_auth",
      "token_endpoint_auth_signing_alg": "PS256"}, "invalid_client_metadata",
     "token_endpoint_auth_signing_alg applies to token_endpoint_auth_method private_key_jwt only"),
    (mtls(tls_client_auth_subject_dn="CN=client;O=Corp"), "invalid_client_metadata",
     "tls_client_auth_subject_dn must be a distinguished name in RFC 4514 string form"),
    (mtls(tls_client_auth_san_ip="192.0.2.300"), "invalid_client_metadata",
     "tls_client_auth_san_ip must be an IPv4 or IPv6 address"),
    (pkjwt(rsa_key(), profile="oauth2"), "invalid_client_metadata",
     "profile must be fapi2, or absent for the server's profile"),
    (pkjwt(rsa_key(), require_pushed_authorization_requests="true"), "invalid_client_metadata",
     "require_pushed_authorization_requests must be true or false"),
    ({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_basic", **FAPI},
     "invalid_client_metadata", "FAPI 2.0: token_endpoint_auth_method must be private_key_jwt, tls_client_auth or "
     "self_signed_tls_client_auth (no public clients, no client secrets)"),
    ({"redirect_uris": ["https://app.example.com/cb"], "token_endpoint_auth_method": "none", **FAPI},
     "invalid_client_metadata", "FAPI 2.0: token_endpoint_auth_method must be private_key_jwt"),
    (pkjwt(rsa_key(), token_endpoint_auth_signing_alg="RS256", **FAPI), "invalid_client_metadata",
     "FAPI 2.0: token_endpoint_auth_signing_alg must be PS256, ES256 or EdDSA"),
    (pkjwt(rsa_key(), grant_types=["authorization_code"], redirect_uris=["http://app.example.com/cb"], **FAPI),
     "invalid_redirect_uri", "A redirect URI must use https (http only on a loopback address"),
    (pkjwt(rsa_key(), grant_types=["authorization_code"], redirect_uris=["com.example.app:/cb"], **FAPI),
     "invalid_redirect_uri", "FAPI 2.0: a redirect URI must use https (http only on a loopback address"),
]


@pytest.mark.parametrize("metadata, error, words", MTLS_REFUSALS, ids=[
    "tls-no-identifier", "tls-two-identifiers", "tls-field-with-private_key_jwt", "self-signed-without-keys",
    "self-signed-with-alg", "bad-dn", "bad-ip", "profile-oauth2", "par-string", "fapi-secret", "fapi-none",
    "fapi-rs256", "fapi-http-redirect", "fapi-private-use-redirect"])
def test_mtls_and_fapi_refusals_are_400(api, metadata, error, words):
    before = _client_count(api)
    body = assert_oauth_error(api.post(metadata), 400, error)
    assert set(body) == {"error", "error_description"}
    assert words in body["error_description"], body
    assert _client_count(api) == before


def test_fapi2_server_profile(tmp_path):
    """[oauth] profile = "fapi2": every registration follows FAPI 2.0; loopback http stays allowed."""
    api = make_api(tmp_path, extra='[oauth]\nprofile = "fapi2"\n')
    body = assert_oauth_error(api.post({"grant_types": ["client_credentials"]}), 400, "invalid_client_metadata")
    assert body["error_description"].startswith("FAPI 2.0: token_endpoint_auth_method must be private_key_jwt")
    body = assert_oauth_error(api.post(pkjwt(rsa_key(), token_endpoint_auth_signing_alg="RS256")), 400,
                              "invalid_client_metadata")
    assert body["error_description"] == "FAPI 2.0: token_endpoint_auth_signing_alg must be PS256, ES256 or EdDSA"
    created = api.register(pkjwt(rsa_key(), grant_types=["authorization_code"], token_endpoint_auth_signing_alg="PS256",
                                 redirect_uris=["https://app.example.com/cb", "http://127.0.0.1:8080/cb"]))
    assert created["redirect_uris"] == ["https://app.example.com/cb", "http://127.0.0.1:8080/cb"]
    assert "profile" not in created   # the server's profile, not the client's
    assert api.register(mtls(tls_client_auth_subject_dn="CN=payments"))["token_endpoint_auth_method"] == \
        "tls_client_auth"


# --- the request body ------------------------------------------------------------------------------

@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "application/jsonp", "multipart/form-data; boundary=x"])
def test_the_body_must_be_json(api, content_type):
    headers = {**ADMIN, **({"Content-Type": content_type} if content_type else {})}
    response = api.client.post(REGISTER, data=json.dumps(pkjwt(rsa_key())), headers=headers)
    body = assert_oauth_error(response, 415, "invalid_request")
    assert "application/json" in body["error_description"]


def test_a_charset_parameter_is_accepted(api):
    response = api.client.post(REGISTER, data=json.dumps(pkjwt(rsa_key())).encode(),
                               headers={**ADMIN, "Content-Type": "application/json; charset=utf-8"})
    assert response.status_code == 201


@pytest.mark.parametrize("raw", [
    b"", b"{", b"null", b"[]", b'"text"', b"42",
    b'{"client_name": "a", "client_name": "b"}',     # duplicate member names
    b'{"access_token_lifetime": NaN}',
    b'{"client_name": "\xff"}',                      # not UTF-8
    b'{"client_name": "\\ud800"}',                   # a lone surrogate
    b"[" * 100 + b"]" * 100,
], ids=["empty", "truncated", "null", "array", "string", "number", "duplicate-keys", "nan", "not-utf8",
        "surrogate", "deep"])
def test_strict_json(api, raw):
    response = api.client.post(REGISTER, data=raw, headers={**ADMIN, "Content-Type": "application/json"})
    assert_oauth_error(response, 400, "invalid_request")


def test_a_body_over_the_limit_is_413(api):
    metadata = pkjwt(rsa_key(), description="x" * 70000)
    assert_oauth_error(api.post(metadata), 413, "invalid_request")


def test_other_methods_and_paths_answer_json(api):
    response = api.client.get(REGISTER, headers=ADMIN)
    assert_oauth_error(response, 405, "invalid_request")
    assert response.headers["Allow"] == "POST"
    response = api.client.patch(f"{REGISTER}/x", headers=ADMIN)
    assert_oauth_error(response, 405, "invalid_request")
    assert {"GET", "PUT", "DELETE"} <= set(response.headers["Allow"].split(", "))
    assert_oauth_error(api.client.get("/api/identity/oauth2/dcr/v1.0/register", headers=ADMIN), 404, "not_found")
    assert_oauth_error(api.client.get(f"{REGISTER}/", headers=ADMIN), 404, "not_found")


# --- initial access tokens ----------------------------------------------------------------------------

def _initial_token(api, *args: str) -> str:
    return json.loads(api.cli("dcr", "initial-token", "create", *args).output)["initial_access_token"]


def test_an_initial_access_token_registers_one_client(api):
    token = _initial_token(api)
    body = api.register(pkjwt(rsa_key(), scope="openid profile"), headers=bearer(token))
    assert body["registration_access_token"] and body["first_party"] is False and body["scope"] == "openid profile"
    assert_unauthorized(api.post(pkjwt(rsa_key(), scope="openid"), headers=bearer(token)), BEARER_CHALLENGE)  # used up


def test_a_refused_registration_does_not_use_up_the_token(api):
    token = _initial_token(api, "--uses", "2")
    assert_oauth_error(api.post(pkjwt(rsa_key(), grant_types=["password"]), headers=bearer(token)), 400,
                       "invalid_client_metadata")
    assert_oauth_error(api.post(pkjwt(rsa_key()), headers=bearer(token)), 400, "invalid_client_metadata")
    api.register(pkjwt(rsa_key(), scope="openid"), headers=bearer(token))
    api.register(pkjwt(rsa_key(), scope="openid"), headers=bearer(token))
    assert_unauthorized(api.post(pkjwt(rsa_key(), scope="openid"), headers=bearer(token)), BEARER_CHALLENGE)


def test_an_initial_access_token_holder_is_not_an_administrator(api):
    token = _initial_token(api, "--uses", "10")
    for extra in ({"client_id": "chosen"}, {"ext_param_client_id": "chosen"}, {"first_party": True},
                  {"token_reuse": "allow"}, {"audience_policy": "legacy"}, {"require_explicit_typ": True},
                  {"require_explicit_typ": False}, {"access_token_lifetime": 600},
                  {"resources": ["https://api.example.com/"]}, {"scope": "openid read"}, {"scope": "payments:write"}):
        body = assert_oauth_error(api.post(pkjwt(rsa_key(), **{"scope": "openid", **extra}), headers=bearer(token)),
                                  400, "invalid_client_metadata")
        assert "administrator" in body["error_description"]
        assert next(iter(extra)).replace("ext_param_", "") in body["error_description"]  # names the field
    # The standard OpenID Connect scopes are its to ask for; an administrator registers any other.
    standard = "openid profile email address phone offline_access"
    assert api.register(pkjwt(rsa_key(), scope=standard), headers=bearer(token))["scope"] == standard
    assert api.register(pkjwt(rsa_key(), scope="openid payments:write"))["scope"] == "openid payments:write"
    # Nor may it read or manage clients.
    cid = api.register(pkjwt(rsa_key()))["client_id"]
    assert_unauthorized(api.get(cid, headers=bearer(token)), BEARER_CHALLENGE)
    assert_unauthorized(api.delete(cid, headers=bearer(token)), BEARER_CHALLENGE)


def test_expired_and_revoked_initial_access_tokens(api):
    from storage.models import InitialAccessToken
    token = _initial_token(api, "--lifetime", "60", "--uses", "5")
    listed = json.loads(api.cli("dcr", "initial-token", "list").output)
    token_id = [row for row in listed if row["remaining_uses"] == 5][-1]["id"]
    with api.env.app.app_context():
        InitialAccessToken.update(expires_at=int(time.time()) - 1).execute()
    assert_unauthorized(api.post(pkjwt(rsa_key()), headers=bearer(token)), BEARER_CHALLENGE)

    token = _initial_token(api)
    token_id = json.loads(api.cli("dcr", "initial-token", "list").output)[-1]["id"]
    assert api.cli("dcr", "initial-token", "revoke", token_id).output.strip() == f"revoked {token_id}"
    assert_unauthorized(api.post(pkjwt(rsa_key()), headers=bearer(token)), BEARER_CHALLENGE)
    assert api.env.app.test_cli_runner().invoke(args=["dcr", "initial-token", "revoke", token_id]).exit_code != 0


# --- read, replace, delete (RFC 7592) -------------------------------------------------------------------

def test_a_client_manages_itself_with_its_registration_access_token(api):
    key, new_key = rsa_key(), ec_key()
    created = api.register(pkjwt(key))
    cid, token = created["client_id"], created["registration_access_token"]
    read = assert_client_information(api.get(cid, headers=bearer(token)))
    assert {k: v for k, v in created.items() if k != "registration_access_token"} == read

    # RFC 7592 §2.2: a complete replacement; sending back what was read changes nothing.
    assert assert_client_information(api.put(cid, read, headers=bearer(token))) == read
    replaced = assert_client_information(api.put(cid, pkjwt(new_key, kid="e1", client_id=cid, scope="openid"),
                                                 headers=bearer(token)))
    assert replaced["jwks"] == jwks((new_key, "e1")) and replaced["scope"] == "openid"
    assert "registration_access_token" not in replaced
    # The change applies to the next token request: the old key is refused, the new one works.
    assert_oauth_error(api.token(cid, key), 401, "invalid_client")
    assert api.token(cid, new_key, "e1").status_code == 200

    # The token is bound to its client.
    other = api.register(pkjwt(rsa_key()))["client_id"]
    assert_unauthorized(api.get(other, headers=bearer(token)), BEARER_CHALLENGE)
    assert_unauthorized(api.put(other, pkjwt(rsa_key()), headers=bearer(token)), BEARER_CHALLENGE)
    assert_unauthorized(api.delete(other, headers=bearer(token)), BEARER_CHALLENGE)

    response = api.delete(cid, headers=bearer(token))
    assert response.status_code == 204 and response.data == b""
    assert "Content-Type" not in response.headers and response.headers["Cache-Control"] == "no-store"
    assert_unauthorized(api.get(cid, headers=bearer(token)), BEARER_CHALLENGE)   # RFC 7592 §2.1: 401
    assert_oauth_error(api.token(cid, new_key, "e1"), 401, "invalid_client")


def test_a_client_cannot_change_its_id_choose_its_secret_or_the_administrators_policy(api):
    created = api.register({"grant_types": ["client_credentials"], "token_reuse": "allow", "first_party": True})
    cid, token, secret = created["client_id"], created["registration_access_token"], created["client_secret"]
    base = {"grant_types": ["client_credentials"]}
    body = assert_oauth_error(api.put(cid, {**base, "client_id": "other"}, headers=bearer(token)), 400,
                              "invalid_client_metadata")
    assert "client_id" in body["error_description"]
    assert_oauth_error(api.put(cid, {**base, "client_secret": "my-own-choice"}, headers=bearer(token)), 400,
                       "invalid_client_metadata")
    assert_oauth_error(api.put(cid, {**base, "client_secret": 5}, headers=bearer(token)), 400,
                       "invalid_client_metadata")
    assert_oauth_error(api.put(cid, {**base, "token_reuse": "prevent"}, headers=bearer(token)), 400,
                       "invalid_client_metadata")
    # The current secret may be sent; the administrator's choices stay when the client leaves them out.
    replaced = assert_client_information(api.put(cid, {**base, "client_secret": secret, "client_name": "New"},
                                                 headers=bearer(token)))
    assert (replaced["client_name"], replaced["token_reuse"], replaced["first_party"]) == ("New", "allow", True)
    assert "client_secret" not in replaced  # it keeps its secret
    assert api.env.post({"grant_type": "client_credentials"}, headers=basic(cid, secret)).status_code == 200


def _untyped_and_typed(api, cid: str, key) -> tuple[int, int]:
    """The token endpoint's status for an assertion without typ and for one with typ JWT."""
    statuses = []
    for headers in ({"kid": "k1"}, {"kid": "k1", "typ": "JWT"}):
        response = api.env.post(token_form(sign(key, claims_for(cid, api.env.issuer), "RS256", headers)))
        if response.status_code != 200:
            assert_oauth_error(response, 401, "invalid_client")
        statuses.append(response.status_code)
    return statuses[0], statuses[1]


def test_require_explicit_typ_is_an_administrators_per_client_setting(api):
    """true/false override the server's RequireExplicitTyp (false here) for the client, stricter or
    looser; absent or null: the server's. A client may send its setting back, never change it."""
    key = rsa_key()
    created = api.register(pkjwt(key, require_explicit_typ=True))
    cid, token = created["client_id"], created["registration_access_token"]
    assert created["require_explicit_typ"] is True
    assert _untyped_and_typed(api, cid, key) == (401, 401)
    explicit = sign(key, claims_for(cid, api.env.issuer), "RS256", {"kid": "k1", "typ": "client-authentication+jwt"})
    assert api.env.post(token_form(explicit)).status_code == 200
    read = assert_client_information(api.get(cid, headers=bearer(token)))
    assert read["require_explicit_typ"] is True
    # The client itself: sending it back or leaving it out keeps it; changing it is refused.
    assert assert_client_information(api.put(cid, read, headers=bearer(token)))["require_explicit_typ"] is True
    kept = assert_client_information(api.put(cid, pkjwt(key, client_name="New"), headers=bearer(token)))
    assert kept["require_explicit_typ"] is True
    for value in (False, None):
        body = assert_oauth_error(api.put(cid, pkjwt(key, require_explicit_typ=value), headers=bearer(token)), 400,
                                  "invalid_client_metadata")
        assert body["error_description"] == "Only an administrator may set require_explicit_typ"
    assert _untyped_and_typed(api, cid, key) == (401, 401)
    # An administrator: false is looser than the server would be with RequireExplicitTyp on.
    assert assert_client_information(api.put(cid, pkjwt(key, require_explicit_typ=False)))[
        "require_explicit_typ"] is False
    assert _untyped_and_typed(api, cid, key) == (200, 200)
    # Null, or left out of a replacement: the server's setting.
    assert "require_explicit_typ" not in assert_client_information(api.put(cid, pkjwt(key, require_explicit_typ=None)))
    assert "require_explicit_typ" not in assert_client_information(api.get(cid))
    assert _untyped_and_typed(api, cid, key) == (200, 200)


def test_a_client_cannot_widen_its_scope_or_grant_types(api):
    """RFC 7592 §2.2 with a registration access token: scope values and grant types may be kept
    or removed, never added; only an administrator widens them."""
    key = rsa_key()
    created = api.register(pkjwt(key, scope="openid read"))
    cid, token = created["client_id"], created["registration_access_token"]
    read = assert_client_information(api.get(cid, headers=bearer(token)))
    for change, field in (({"scope": "openid read write"}, "scope"), ({"scope": "profile"}, "scope"),
                          ({"grant_types": ["client_credentials", "authorization_code"],
                            "redirect_uris": ["https://app.example.com/cb"]}, "grant_types")):
        body = assert_oauth_error(api.put(cid, pkjwt(key, **change), headers=bearer(token)), 400,
                                  "invalid_client_metadata")
        assert body["error_description"].startswith(field + " ") and "administrator" in body["error_description"]
    assert assert_client_information(api.get(cid)) == read  # nothing changed
    assert_oauth_error(api.env.post(token_form(sign(key, claims_for(cid, api.env.issuer), headers={"kid": "k1"}),
                                               scope="write")), 400, "invalid_scope")
    # Narrowing is the client's to do; widening back is not.
    assert assert_client_information(api.put(cid, pkjwt(key, scope="read"), headers=bearer(token)))["scope"] == "read"
    assert_oauth_error(api.put(cid, pkjwt(key, scope="openid read"), headers=bearer(token)), 400,
                       "invalid_client_metadata")
    # An administrator widens both.
    widened = assert_client_information(api.put(cid, pkjwt(key, scope="openid read write", grant_types=[
        "client_credentials", "authorization_code"], redirect_uris=["https://app.example.com/cb"])))
    assert widened["scope"] == "openid read write"
    assert widened["grant_types"] == ["client_credentials", "authorization_code"]
    assert api.env.post(token_form(sign(key, claims_for(cid, api.env.issuer), headers={"kid": "k1"}),
                                   scope="write")).status_code == 200


def test_an_administrator_replaces_everything(api):
    created = api.register({"grant_types": ["client_credentials"], "token_reuse": "allow", "client_name": "A"})
    cid, secret = created["client_id"], created["client_secret"]
    replaced = assert_client_information(api.put(cid, {"grant_types": ["client_credentials"]}))
    assert replaced["client_name"] == "" and "token_reuse" not in replaced
    # Moving to private_key_jwt drops the secret; moving back issues a new one, shown once.
    key = rsa_key()
    assert "client_secret" not in assert_client_information(api.put(cid, pkjwt(key)))
    assert_oauth_error(api.env.post({"grant_type": "client_credentials"}, headers=basic(cid, secret)), 401,
                       "invalid_client")
    back = assert_client_information(api.put(cid, {"grant_types": ["client_credentials"],
                                                   "token_endpoint_auth_method": "client_secret_post"}))
    assert back["client_secret"] != secret and back["client_secret_expires_at"] == 0
    response = api.env.post({"grant_type": "client_credentials", "client_id": cid,
                             "client_secret": back["client_secret"]})
    assert response.status_code == 200, response.json


def test_refusals_on_replace_change_nothing(api):
    created = api.register(pkjwt(rsa_key()))
    cid = created["client_id"]
    assert_oauth_error(api.put(cid, {**pkjwt(rsa_key()), "jwks": rsa_1024_jwks()}), 400, "invalid_client_metadata")
    assert_oauth_error(api.put(cid, {"grant_types": ["authorization_code"]}), 400, "invalid_redirect_uri")
    assert_oauth_error(api.client.put(f"{REGISTER}/{cid}", data=b"{}", headers={**ADMIN, "Content-Type": "text/json"}),
                       415, "invalid_request")
    assert_oauth_error(api.client.put(f"{REGISTER}/{cid}", data=b'{"a":1,"a":2}',
                                      headers={**ADMIN, "Content-Type": "application/json"}), 400, "invalid_request")
    read = assert_client_information(api.get(cid))
    assert {k: v for k, v in created.items() if k != "registration_access_token"} == read


def test_unknown_clients_are_404_for_administrators(api):
    for response in (api.get("no-such-client"), api.put("no-such-client", pkjwt(rsa_key())),
                     api.delete("no-such-client")):
        body = assert_oauth_error(response, 404, "not_found")
        assert set(body) == {"error", "error_description"}


def test_deleting_a_client_ends_its_registration_access_token_and_tokens(api):
    key = rsa_key()
    created = api.register(pkjwt(key, client_id="short-lived"))
    access_token = api.token("short-lived", key).json["access_token"]
    assert api.delete("short-lived").status_code == 204
    assert_unauthorized(api.get("short-lived", headers=bearer(created["registration_access_token"])),
                        BEARER_CHALLENGE)
    with api.env.app.app_context():
        assert api.env.app.extensions["idp"].services.access_tokens.active(access_token) is None
    # A new client with the same id does not inherit the old registration access token.
    api.register(pkjwt(rsa_key(), client_id="short-lived"))
    assert_unauthorized(api.get("short-lived", headers=bearer(created["registration_access_token"])),
                        BEARER_CHALLENGE)
    assert_oauth_error(api.delete("short-lived", headers=bearer(created["registration_access_token"])), 401,
                       "invalid_token")


# --- jwks_uri ---------------------------------------------------------------------------------------

@pytest.fixture
def key_server():
    server = JWKSServer(cache_control="max-age=3600")
    yield server
    server.close()


def test_a_replaced_jwks_uri_is_not_served_from_the_cache(api, key_server):
    """Registering jwks_uri A, then B, then A again: the keys of A are fetched anew, not taken from
    the copy cached (for an hour) before the first change."""
    a_key, b_key, a_new_key = rsa_key(), rsa_key(), rsa_key()
    key_server.documents = {"/a": jwks_of((a_key, "a1")), "/b": jwks_of((b_key, "b1"))}
    def metadata(path: str) -> dict:
        return {"token_endpoint_auth_method": "private_key_jwt", "grant_types": ["client_credentials"],
                "scope": "openid", "jwks_uri": key_server.url(path)}

    cid = api.register(metadata("/a"))["client_id"]
    assert api.token(cid, a_key, "a1").status_code == 200
    assert_client_information(api.put(cid, metadata("/b")))
    assert api.token(cid, b_key, "b1").status_code == 200
    assert_oauth_error(api.token(cid, a_key, "a1"), 401, "invalid_client")
    key_server.documents["/a"] = jwks_of((a_new_key, "a2"))
    assert_client_information(api.put(cid, metadata("/a")))
    assert api.token(cid, a_new_key, "a2").status_code == 200
    assert_oauth_error(api.token(cid, a_key, "a1"), 401, "invalid_client")


# --- the OpenAPI description (in-process; the schema run against the real server is test_openapi.py) --

def test_the_openapi_description_answers_administrators_only(api):
    response = api.client.get("/api/openapi.json")
    assert response.status_code == 401 and "paths" not in response.json
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    response = api.client.get("/api/openapi.json", headers=ADMIN)
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/json"
    assert response.json["servers"] == [{"url": "https://localhost:9443"}]
    assert set(response.json["paths"]) == {REGISTER, REGISTER + "/{client_id}"}


# =================================================================================================
# Over HTTPS against the real server, two workers
# =================================================================================================

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    directory = tmp_path_factory.mktemp("registration-server")
    shared_keystore(directory)
    port = free_port()
    server = Server(write_config(directory, port, workers=2), port)
    server.start()
    try:
        server.cli("admin", "create", "--username", "admin", "--password-stdin", input=ADMIN_PASSWORD + "\n")
        server.cli("users", "create", "--username", "user", "--password-stdin", input=USER_PASSWORD + "\n")
        yield server
    finally:
        server.stop()


def https(server: Server, method: str, path: str, **kwargs):
    import requests
    return requests.request(method, server.base + path, verify=server.ca, timeout=15, **kwargs)


def https_token(server: Server, client_id: str, key, kid: str):
    return server.post(data=token_form(sign(key, claims_for(client_id, server.base + "/oauth2/token"), alg_for(key),
                                            {"kid": kid})))


def test_https_no_credentials_and_non_admins_get_401_and_no_data(server):
    created = https(server, "POST", REGISTER, json=pkjwt(rsa_key()), headers=ADMIN)
    assert created.status_code == 201, created.text
    cid = created.json()["client_id"]
    for headers in ({}, basic("user", USER_PASSWORD), basic("admin", "wrong"), bearer("not-a-token")):
        for method, path, body in (("POST", REGISTER, pkjwt(rsa_key())), ("GET", f"{REGISTER}/{cid}", None),
                                   ("PUT", f"{REGISTER}/{cid}", pkjwt(rsa_key())),
                                   ("DELETE", f"{REGISTER}/{cid}", None)):
            response = https(server, method, path, json=body, headers=headers)
            assert_unauthorized(response, BEARER_CHALLENGE if "Bearer" in headers.get("Authorization", "")
                                else CHALLENGE)
            assert cid not in response.text
    assert https(server, "GET", f"{REGISTER}/{cid}", headers=ADMIN).status_code == 200


def test_https_register_rotate_and_delete(server):
    """Registered over the API, a private_key_jwt client gets a token; a replaced key is refused and
    the new key accepted on the very next request, whichever worker takes it; deleted, it gets nothing."""
    old_key, new_key = rsa_key(), ec_key()
    created = https(server, "POST", REGISTER, json=pkjwt(old_key), headers=ADMIN)
    assert created.status_code == 201, created.text
    info = created.json()
    cid, token = info["client_id"], info["registration_access_token"]
    assert info["registration_client_uri"] == f"{server.base}{REGISTER}/{cid}"
    response = https_token(server, cid, old_key, "k1")
    assert response.status_code == 200, response.text

    # The client replaces its key with its registration access token; it cannot add a scope.
    widened = https(server, "PUT", f"{REGISTER}/{cid}", json=pkjwt(new_key, kid="e1", scope="openid read write"),
                    headers=bearer(token))
    assert assert_oauth_error(widened, 400, "invalid_client_metadata")["error_description"].startswith("scope ")
    replaced = https(server, "PUT", f"{REGISTER}/{cid}", json=pkjwt(new_key, kid="e1"), headers=bearer(token))
    assert replaced.status_code == 200, replaced.text
    for _ in range(6):  # new connections each time: both workers answer some of them
        assert_oauth_error(https_token(server, cid, old_key, "k1"), 401, "invalid_client")
        response = https_token(server, cid, new_key, "e1")
        assert response.status_code == 200, response.text

    deleted = https(server, "DELETE", f"{REGISTER}/{cid}", headers=ADMIN)
    assert deleted.status_code == 204 and deleted.content == b""
    for _ in range(4):
        assert_oauth_error(https_token(server, cid, new_key, "e1"), 401, "invalid_client")
    assert_oauth_error(https(server, "GET", f"{REGISTER}/{cid}", headers=ADMIN), 404, "not_found")
    assert_unauthorized(https(server, "GET", f"{REGISTER}/{cid}", headers=bearer(token)), BEARER_CHALLENGE)


def test_https_secret_client_and_initial_access_token(server):
    token = json.loads(server.cli("dcr", "initial-token", "create", "--uses", "1").stdout)["initial_access_token"]
    # Only the standard OpenID Connect scopes without an administrator; the refusal keeps the token.
    refused = https(server, "POST", REGISTER, json={"grant_types": ["client_credentials"], "scope": "openid read"},
                    headers=bearer(token))
    assert assert_oauth_error(refused, 400, "invalid_client_metadata")["error_description"].startswith("scope ")
    created = https(server, "POST", REGISTER, json={"grant_types": ["client_credentials"], "scope": "openid"},
                    headers=bearer(token))
    assert created.status_code == 201, created.text
    info = created.json()
    response = server.post(data={"grant_type": "client_credentials", "scope": "openid"},
                           headers=basic(info["client_id"], info["client_secret"]))
    assert response.status_code == 200, response.text
    assert_unauthorized(https(server, "POST", REGISTER, json={"grant_types": ["client_credentials"]},
                              headers=bearer(token)), BEARER_CHALLENGE)


def test_https_errors_are_json(server):
    body = json.dumps(pkjwt(rsa_key())).encode()
    response = https(server, "POST", REGISTER, data=body, headers={**ADMIN, "Content-Type": "text/plain"})
    assert_oauth_error(response, 415, "invalid_request")
    response = https(server, "POST", REGISTER, data=b'{"a": 1, "a": 2}',
                     headers={**ADMIN, "Content-Type": "application/json"})
    assert_oauth_error(response, 400, "invalid_request")
    response = https(server, "POST", REGISTER, json={**pkjwt(rsa_key()), "jwks": rsa_1024_jwks()}, headers=ADMIN)
    assert_oauth_error(response, 400, "invalid_client_metadata")
    response = https(server, "POST", REGISTER, json={"redirect_uris": ["http://evil.example/cb"]}, headers=ADMIN)
    assert_oauth_error(response, 400, "invalid_redirect_uri")
    response = https(server, "POST", REGISTER, data=b"{" + b" " * 70000 + b"}",
                     headers={**ADMIN, "Content-Type": "application/json"})
    assert_oauth_error(response, 413, "invalid_request")
    response = https(server, "GET", REGISTER, headers=ADMIN)
    assert_oauth_error(response, 405, "invalid_request")

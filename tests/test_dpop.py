"""DPoP (RFC 9449) and resource indicators (RFC 8707) end to end through the app, in-process:
bound access tokens from every grant, their introspection and use at the userinfo endpoint,
clients that must use DPoP or nonces, the server-wide nonce, which refresh tokens are bound,
discovery metadata, and `resource` at the authorization and token endpoints.

The refusals of malformed, replayed or racing proofs over real HTTP are the hostile catalogue's
(tests/hostile/test_dpop_proofs.py)."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from oidc_support import ALICE_CLAIMS, CODE_GRANTS, FORM, REDIRECT, make_oidc, verifier_pair
from support import (ASSERTION_TYPE, assert_oauth_error, authorize_in_process, dpop_proof, ec_key, ed_key, jkt_of,
                     rsa_key)

BASE = "https://localhost:9443"   # support.write_config's port; the app's base URL
TOKEN = BASE + "/oauth2/token"
USERINFO = BASE + "/oauth2/userinfo"
PASSWORD = "correct horse battery"
API = "https://api.example.com/"
OTHER_API = "https://other.example.com/v1"
THIRD_API = "urn:example:third"
DPOP_ALGS = ["ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "EdDSA", "RS256"]
NONCE = re.compile(r"[A-Za-z0-9_-]{32}")
PROFILE = ("preferred_username", "name", "given_name", "family_name")


@pytest.fixture(scope="module")
def key():
    return ec_key()


@pytest.fixture(scope="module")
def other_key():
    return ed_key()


def setup_clients(oidc):
    env = oidc.env
    env.register("client-1")
    env.register("bound-client", dpop_bound_access_tokens=True)
    env.register("nonce-client", require_dpop_nonce=True)
    env.register("res-client", resources=(API, OTHER_API))
    env.register("web-res", grant_types=CODE_GRANTS, scopes=("openid", "profile"), redirect_uris=(REDIRECT,),
                 resources=(API, OTHER_API, THIRD_API))
    return oidc


@pytest.fixture
def oidc(tmp_path):
    return setup_clients(make_oidc(tmp_path))


# --- requests ---------------------------------------------------------------------------------------

def send(oidc, path: str, pairs: list[tuple[str, str]], headers: dict | None = None):
    return oidc.app.test_client().post(path, data=urlencode(pairs), content_type=FORM, headers=headers or {})


def auth_pairs(oidc, client_id: str, assertion: str | None = None) -> list[tuple[str, str]]:
    if client_id == "public-app":
        return [("client_id", client_id)]
    return [("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", assertion or oidc.env.assertion(client_id))]


def token(oidc, client_id: str = "client-1", proof: str | None = None, resources=(), assertion: str | None = None,
          **form):
    """A token request (client_credentials unless `form` names another grant) with the DPoP
    header `proof` and one `resource` parameter per resource."""
    pairs = [*{"grant_type": "client_credentials", **form}.items(), *auth_pairs(oidc, client_id, assertion),
             *(("resource", r) for r in resources)]
    return send(oidc, "/oauth2/token", pairs, {"DPoP": proof} if proof else {})


def redeem(oidc, code: str, client_id: str = "web-app", proof: str | None = None, resources=(), **form):
    return token(oidc, client_id, proof, resources, grant_type="authorization_code", code=code,
                 redirect_uri=REDIRECT, **form)


def refresh(oidc, refresh_token: str, client_id: str = "web-app", proof: str | None = None, resources=()):
    return token(oidc, client_id, proof, resources, grant_type="refresh_token", refresh_token=refresh_token)


def introspect(oidc, access_token: str) -> dict:
    r = send(oidc, "/oauth2/introspect", [("token", access_token), *auth_pairs(oidc, "web-app")])
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.json


def ok(response, token_type: str = "DPoP") -> dict:
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Cache-Control"] == "no-store"
    assert response.json["token_type"] == token_type, response.json
    return response.json


def proof(private_key, **changes) -> str:
    return dpop_proof(private_key, TOKEN, **changes)


# --- bound access tokens ------------------------------------------------------------------------------

def test_client_credentials_with_a_proof_is_dpop_bound(oidc, key):
    body = ok(token(oidc, proof=proof(key)))
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    described = introspect(oidc, body["access_token"])
    assert described["active"] is True and described["client_id"] == "client-1"
    assert described["token_type"] == "DPoP"
    assert described["cnf"] == {"jkt": jkt_of(key)}


def test_client_credentials_without_a_proof_is_a_bearer_token(oidc):
    body = ok(token(oidc), "Bearer")
    described = introspect(oidc, body["access_token"])
    assert described["token_type"] == "Bearer"
    assert "cnf" not in described


@pytest.mark.parametrize("make_key", [ec_key, ed_key, rsa_key], ids=["ES256", "EdDSA", "RS256"])
def test_each_key_type_binds(oidc, make_key):
    private_key = make_key()
    body = ok(token(oidc, proof=proof(private_key)))
    assert introspect(oidc, body["access_token"])["cnf"] == {"jkt": jkt_of(private_key)}


def user_token(oidc, key, scopes=("openid", "profile")) -> dict:
    return ok(redeem(oidc, oidc.code(scopes=scopes), proof=proof(key)))


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_userinfo_with_the_dpop_scheme(oidc, key, method):
    access_token = user_token(oidc, key)["access_token"]
    headers = {"Authorization": "DPoP " + access_token,
               "DPoP": dpop_proof(key, USERINFO, method, access_token=access_token)}
    r = oidc.app.test_client().open("/oauth2/userinfo", method=method, headers=headers)
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.json == {"sub": oidc.alice.sub, **{k: ALICE_CLAIMS[k] for k in PROFILE}}


def test_userinfo_refuses_a_bound_token_in_the_form_body(oidc, key):
    """RFC 6750 §2.2 presents a bearer token; a bound one is not (RFC 9449 §7.2)."""
    access_token = user_token(oidc, key)["access_token"]
    r = send(oidc, "/oauth2/userinfo", [("access_token", access_token)],
             {"DPoP": dpop_proof(key, USERINFO, access_token=access_token)})
    assert_oauth_error(r, 401, "invalid_token")
    assert r.headers["WWW-Authenticate"] == f'DPoP error="invalid_token", algs="{" ".join(DPOP_ALGS)}"'


def test_a_client_that_must_use_dpop(oidc, key):
    """RFC 9449 §5.2 dpop_bound_access_tokens: no proof, no token."""
    assert_oauth_error(token(oidc, "bound-client"), 400, "invalid_dpop_proof")
    ok(token(oidc, "bound-client", proof=proof(key)))


# --- nonces (RFC 9449 §8) ------------------------------------------------------------------------------

def test_a_client_that_requires_nonces(oidc, key):
    assertion = oidc.env.assertion("nonce-client")
    asked = token(oidc, "nonce-client", proof(key), assertion=assertion)
    assert_oauth_error(asked, 400, "use_dpop_nonce")
    nonce = asked.headers["DPoP-Nonce"]
    assert NONCE.fullmatch(nonce)
    done = token(oidc, "nonce-client", proof(key, nonce=nonce), assertion=assertion)
    ok(done)
    assert NONCE.fullmatch(done.headers["DPoP-Nonce"])
    # The other clients are not asked; every answer to a proof carries the nonce all the same
    # (RFC 9449 §8.2), an answer to a request without one does not.
    other = token(oidc, proof=proof(key))
    ok(other)
    assert NONCE.fullmatch(other.headers["DPoP-Nonce"])
    assert "DPoP-Nonce" not in token(oidc).headers


def test_an_error_after_authentication_carries_the_nonce_too(oidc, key):
    """RFC 9449 §8.2: the answer to a proof offers the current nonce, an error answer included."""
    r = token(oidc, proof=proof(key), resources=("https://unregistered.example/",))
    assert_oauth_error(r, 400, "invalid_target")
    assert NONCE.fullmatch(r.headers["DPoP-Nonce"])


def test_a_nonce_requiring_client_without_dpop_gets_a_bearer_token(oidc):
    """The nonce is a rule for proofs; a request with none is not asked for one."""
    r = token(oidc, "nonce-client")
    ok(r, "Bearer")
    assert "DPoP-Nonce" not in r.headers


@pytest.fixture
def nonce_oidc(tmp_path):
    return setup_clients(make_oidc(tmp_path, extra="[oauth.dpop]\nrequire_nonce = true\n"))


def test_server_wide_nonce(nonce_oidc, key):
    oidc = nonce_oidc
    assertion = oidc.env.assertion("client-1")
    asked = token(oidc, proof=proof(key), assertion=assertion)
    assert_oauth_error(asked, 400, "use_dpop_nonce")
    done = token(oidc, proof=proof(key, nonce=asked.headers["DPoP-Nonce"]), assertion=assertion)
    ok(done)
    assert NONCE.fullmatch(done.headers["DPoP-Nonce"])
    # A forged nonce is asked again.
    again = token(oidc, proof=proof(key, nonce="A" * 32))
    assert_oauth_error(again, 400, "use_dpop_nonce")


def test_server_wide_nonce_at_userinfo(nonce_oidc, key):
    oidc = nonce_oidc
    asked = redeem(oidc, oidc.code(), proof=proof(key))
    nonce = asked.headers["DPoP-Nonce"]
    access_token = ok(redeem(oidc, oidc.code(), proof=proof(key, nonce=nonce)))["access_token"]
    headers = {"Authorization": "DPoP " + access_token,
               "DPoP": dpop_proof(key, USERINFO, "GET", access_token=access_token)}
    r = oidc.app.test_client().get("/oauth2/userinfo", headers=headers)
    assert_oauth_error(r, 401, "use_dpop_nonce")
    assert r.headers["WWW-Authenticate"] == f'DPoP error="use_dpop_nonce", algs="{" ".join(DPOP_ALGS)}"'
    headers["DPoP"] = dpop_proof(key, USERINFO, "GET", access_token=access_token, nonce=r.headers["DPoP-Nonce"])
    r = oidc.app.test_client().get("/oauth2/userinfo", headers=headers)
    assert r.status_code == 200 and r.json["sub"] == oidc.alice.sub, r.get_data(as_text=True)


# --- refresh tokens (RFC 9449 §5) ---------------------------------------------------------------------------

def test_confidential_clients_refresh_token_is_not_bound(oidc, key, other_key):
    first = user_token(oidc, key)
    second = ok(refresh(oidc, first["refresh_token"], proof=proof(other_key)))
    assert introspect(oidc, second["access_token"])["cnf"] == {"jkt": jkt_of(other_key)}
    third = ok(refresh(oidc, second["refresh_token"]), "Bearer")
    assert "cnf" not in introspect(oidc, third["access_token"])


def test_public_clients_refresh_token_is_bound(oidc, key, other_key):
    verifier, challenge = verifier_pair()
    first = ok(redeem(oidc, oidc.code("public-app", challenge=challenge), "public-app", proof(key),
                      code_verifier=verifier))
    for attempt in (proof(other_key), None):
        body = assert_oauth_error(refresh(oidc, first["refresh_token"], "public-app", attempt), 400, "invalid_grant")
        assert "DPoP" in body["error_description"]
    second = ok(refresh(oidc, first["refresh_token"], "public-app", proof(key)))
    assert introspect(oidc, second["access_token"])["cnf"] == {"jkt": jkt_of(key)}


def test_public_clients_refresh_token_without_dpop_is_not_bound(oidc, key):
    verifier, challenge = verifier_pair()
    first = ok(redeem(oidc, oidc.code("public-app", challenge=challenge), "public-app", code_verifier=verifier),
               "Bearer")
    ok(refresh(oidc, first["refresh_token"], "public-app", proof(key)))


# --- discovery (RFC 9449 §5.1) -------------------------------------------------------------------------------

def test_discovery_lists_the_proof_algorithms(oidc):
    metadata = oidc.app.test_client().get("/.well-known/openid-configuration").json
    assert metadata["dpop_signing_alg_values_supported"] == DPOP_ALGS


def test_configured_proof_algorithms(tmp_path, key):
    oidc = setup_clients(make_oidc(tmp_path, extra='[oauth.dpop]\nsigning_algorithms = ["EdDSA", "ES256"]\n'))
    metadata = oidc.app.test_client().get("/.well-known/openid-configuration").json
    assert metadata["dpop_signing_alg_values_supported"] == ["EdDSA", "ES256"]
    assert_oauth_error(token(oidc, proof=proof(rsa_key(), alg="PS256")), 400, "invalid_dpop_proof")
    ok(token(oidc, proof=proof(key)))


# --- resource indicators (RFC 8707) ------------------------------------------------------------------------

def audience(oidc, access_token: str):
    return introspect(oidc, access_token).get("aud")


def test_resource_becomes_the_audience(oidc):
    body = ok(token(oidc, "res-client", resources=(API,)), "Bearer")
    assert audience(oidc, body["access_token"]) == API
    body = ok(token(oidc, "res-client", resources=(OTHER_API, API, OTHER_API)), "Bearer")
    assert audience(oidc, body["access_token"]) == [OTHER_API, API]
    body = ok(token(oidc, "res-client"), "Bearer")
    assert audience(oidc, body["access_token"]) is None


@pytest.mark.parametrize("client_id, resource", [
    ("res-client", "https://unregistered.example.com/"),
    ("res-client", API.rstrip("/")),                 # compared exactly
    ("client-1", API),                               # a client registered for none
])
def test_resource_not_registered(oidc, client_id, resource):
    body = assert_oauth_error(token(oidc, client_id, resources=(resource,)), 400, "invalid_target")
    assert "registered" in body["error_description"]


@pytest.mark.parametrize("resource", ["/api", "api.example.com", API + "#part", "https://api.example.com/ x",
                                      "https://api.example.com/\u00e9"])
def test_malformed_resource(oidc, resource):
    """Checked before the client authenticates: the assertion stays usable."""
    assertion = oidc.env.assertion("res-client")
    assert_oauth_error(token(oidc, "res-client", resources=(resource,), assertion=assertion), 400, "invalid_target")
    ok(token(oidc, "res-client", resources=(API,), assertion=assertion), "Bearer")


def authorization_query(**extra) -> tuple[dict, str]:
    verifier, challenge = verifier_pair()
    return {"response_type": "code", "client_id": "web-res", "redirect_uri": REDIRECT, "scope": "openid profile",
            "state": "st", "code_challenge": challenge, "code_challenge_method": "S256", **extra}, verifier


def authorize(oidc, resources) -> tuple[str, str]:
    """A code of alice's for web-res through /oauth2/authorize, naming `resources`; and its verifier."""
    query, verifier = authorization_query()
    values = authorize_in_process(oidc.app, [*query.items(), *(("resource", r) for r in resources)], "alice",
                                  PASSWORD)
    assert "code" in values, values
    return values["code"], verifier


@pytest.mark.parametrize("resource", ["https://unregistered.example.com/", "/relative"])
def test_authorize_refuses_a_resource(oidc, resource):
    query, _ = authorization_query(resource=resource)
    r = oidc.app.test_client().get("/oauth2/authorize?" + urlencode(query), base_url=BASE)
    assert r.status_code == 302, r.get_data(as_text=True)
    location = r.headers["Location"]
    assert location.startswith(REDIRECT + "?")
    values = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert values["error"] == "invalid_target" and values["state"] == "st"
    assert "code" not in values


def test_resources_of_the_code_flow(oidc):
    code, verifier = authorize(oidc, (API, OTHER_API))
    # Narrower at the token endpoint.
    first = ok(redeem(oidc, code, "web-res", resources=(OTHER_API,), code_verifier=verifier), "Bearer")
    assert audience(oidc, first["access_token"]) == OTHER_API
    # The refresh token keeps the whole grant: the other resource, or both.
    second = ok(refresh(oidc, first["refresh_token"], "web-res", resources=(API,)), "Bearer")
    assert audience(oidc, second["access_token"]) == API
    third = ok(refresh(oidc, second["refresh_token"], "web-res"), "Bearer")
    assert audience(oidc, third["access_token"]) == [API, OTHER_API]
    # Registered for the client, but not part of the grant.
    body = assert_oauth_error(refresh(oidc, third["refresh_token"], "web-res", resources=(THIRD_API,)), 400,
                              "invalid_target")
    assert "grant" in body["error_description"]


def test_code_redeemed_with_a_resource_outside_the_authorization(oidc):
    code, verifier = authorize(oidc, (API,))
    body = assert_oauth_error(redeem(oidc, code, "web-res", resources=(OTHER_API,), code_verifier=verifier), 400,
                              "invalid_target")
    assert "grant" in body["error_description"]


def test_code_without_resources_takes_the_token_requests(oidc):
    code, verifier = authorize(oidc, ())
    body = ok(redeem(oidc, code, "web-res", resources=(THIRD_API,), code_verifier=verifier), "Bearer")
    assert audience(oidc, body["access_token"]) == THIRD_API


def drop_registered_resource(oidc, client_id: str, keep: tuple[str, ...]) -> None:
    """An administrator replaces the client's registered resources by `keep`."""
    import dataclasses
    from storage import clients
    with oidc.app.app_context():
        client = clients.get(client_id)
        fields = {f.name: getattr(client, f.name) for f in dataclasses.fields(client)
                  if f.name not in ("client_id", "auth_method", "secret_hash", "created_at", "updated_at")}
        clients.update(client_id, client.auth_method, **{**fields, "resources": keep})
        assert clients.get(client_id).resources == keep


def test_resource_unregistered_after_the_grant_is_refused_when_named(oidc):
    code, verifier = authorize(oidc, (API, OTHER_API))
    first = ok(redeem(oidc, code, "web-res", code_verifier=verifier), "Bearer")
    drop_registered_resource(oidc, "web-res", (OTHER_API, THIRD_API))
    assert_oauth_error(refresh(oidc, first["refresh_token"], "web-res", resources=(API,)), 400, "invalid_target")


def grant_then_unregister(oidc, grant: str, resources: tuple[str, ...]):
    """A grant naming `resources`; API is then removed from web-res's registration; the answer
    to redeeming the code, or to refreshing, with no resource named."""
    code, verifier = authorize(oidc, resources)
    if grant == "refresh_token":
        first = ok(redeem(oidc, code, "web-res", code_verifier=verifier), "Bearer")
        drop_registered_resource(oidc, "web-res", (OTHER_API, THIRD_API))
        return refresh(oidc, first["refresh_token"], "web-res")
    drop_registered_resource(oidc, "web-res", (OTHER_API, THIRD_API))
    return redeem(oidc, code, "web-res", code_verifier=verifier)


@pytest.mark.parametrize("grant", ["refresh_token", "authorization_code"])
def test_resource_unregistered_after_the_grant_leaves_the_audience(oidc, grant):
    """Like a scope the client is no longer registered for, the resource is dropped."""
    body = ok(grant_then_unregister(oidc, grant, (API, OTHER_API)), "Bearer")
    assert audience(oidc, body["access_token"]) == OTHER_API


@pytest.mark.parametrize("grant", ["refresh_token", "authorization_code"])
def test_grant_with_no_resource_left_is_invalid_target(oidc, grant):
    assert_oauth_error(grant_then_unregister(oidc, grant, (API,)), 400, "invalid_target")

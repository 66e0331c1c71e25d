"""Pushed authorization requests (RFC 9126): POST /oauth2/par, then /oauth2/authorize with the
request_uri it returned.

In-process through the Flask test client at https://localhost:9443 (the `__Host-` cookies are
Secure), the authorization endpoint driven like a browser; then over HTTPS against the real
server, where 20 concurrent uses of one request_uri across two workers let exactly one through.
"""

from __future__ import annotations

import hashlib
import html
import re
import threading
import time
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from oidc_support import b64url_json, verifier_pair
from support import (ASSERTION_TYPE, Server, assert_oauth_error, authorize_in_process, authorize_over_https, claims_for,
                     dpop_proof, ec_key, free_port, jkt_of, jwks_of, rsa_key, shared_keystore, sign, write_config)

BASE = "https://localhost:9443"
ISSUER = BASE + "/oauth2/token"
PAR_URL = BASE + "/oauth2/par"
TOKEN_URL = BASE + "/oauth2/token"
REDIRECT = "https://app.example/cb"
OTHER_REDIRECT = "https://app.example/other"
API = "https://api.example/"
PASSWORD = "correct horse battery"
GRANTS = ("authorization_code", "refresh_token")
SCOPES = ("openid", "profile", "email")
PREFIX = "urn:ietf:params:oauth:request_uri:"
FORM = "application/x-www-form-urlencoded"
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]*)" value="([^"]*)">')


def register(env) -> None:
    from storage import users
    with env.app.app_context():
        users.create("alice", PASSWORD)
    env.register("web", grant_types=GRANTS, scopes=SCOPES, redirect_uris=(REDIRECT,), resources=(API,))
    env.register("other", grant_types=GRANTS, scopes=SCOPES, redirect_uris=(REDIRECT,))
    env.register("two-uris", grant_types=GRANTS, scopes=SCOPES, redirect_uris=(REDIRECT, OTHER_REDIRECT))
    env.register("machine", grant_types=("client_credentials",), scopes=SCOPES, redirect_uris=(REDIRECT,))
    env.register("pushing", grant_types=GRANTS, scopes=SCOPES, redirect_uris=(REDIRECT,),
                 require_pushed_authorization_requests=True)
    env.register("spa", auth_method="none", grant_types=GRANTS, scopes=SCOPES, redirect_uris=(REDIRECT,))


@pytest.fixture
def env(make_idp):
    env = make_idp()
    register(env)
    return env


def request_params(client_id: str = "web", **overrides) -> dict:
    """A valid authorization request; an override of None drops the parameter."""
    values = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT, "scope": "openid profile",
              "state": "st-1", "nonce": "n-1", "code_challenge": CHALLENGE, "code_challenge_method": "S256"}
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


VERIFIER, CHALLENGE = verifier_pair()


def credentials(env, client_id: str, aud: str | None = None, alg: str = "RS256") -> dict:
    if client_id == "spa":
        return {}
    return {"client_assertion_type": ASSERTION_TYPE,
            "client_assertion": env.assertion(client_id, alg=alg, **({"aud": aud} if aud else {}))}


def push(env, client_id: str = "web", body: str | list | None = None, headers: dict | None = None,
         aud: str | None = None, alg: str = "RS256", **overrides):
    """POST /oauth2/par: the request's parameters and the client's credentials (a fresh assertion)."""
    if body is None:
        body = urlencode({**request_params(client_id, **overrides), **credentials(env, client_id, aud, alg)})
    elif isinstance(body, list):
        body = urlencode(body)
    return env.app.test_client().post("/oauth2/par", data=body, content_type=FORM, headers=headers or {},
                                      base_url=BASE)


def pushed(env, client_id: str = "web", **overrides) -> str:
    response = push(env, client_id, **overrides)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.json["request_uri"]


def authorize(env, client=None, **query):
    client = client or env.app.test_client()
    return client.get("/oauth2/authorize?" + urlencode(query), base_url=BASE)


def hidden(response) -> list[tuple[str, str]]:
    return [(html.unescape(n), html.unescape(v)) for n, v in _HIDDEN.findall(response.get_data(as_text=True))]


def assert_page(response, status: int, text: str) -> None:
    """An HTML page, never a redirect (RFC 6749 §4.1.2.1)."""
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True)[:300])
    assert "Location" not in response.headers
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-store"
    assert text in response.get_data(as_text=True)


def redirect_values(response, status: int = 302, redirect_uri: str = REDIRECT) -> dict:
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True)[:300])
    location = response.headers["Location"]
    assert location.startswith(redirect_uri + "?"), location
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def redeem(env, code: str, client_id: str = "web", headers: dict | None = None, alg: str = "RS256", **extra):
    """The token request for a code; an `extra` of None drops the parameter."""
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "code_verifier": VERIFIER,
            **(credentials(env, client_id, alg=alg) if client_id != "spa" else {"client_id": "spa"}), **extra}
    form = {k: v for k, v in form.items() if v is not None}
    return env.app.test_client().post("/oauth2/token", data=urlencode(form), content_type=FORM,
                                      headers=headers or {}, base_url=BASE)


def row_of(env, request_uri: str):
    from storage.models import PushedAuthorizationRequest
    with env.app.app_context():
        return PushedAuthorizationRequest.get_or_none(
            PushedAuthorizationRequest.request_uri_hash == hashlib.sha256(request_uri.encode()).hexdigest())


INVALID_REQUEST_URI = "(invalid_request_uri)"


# --- the push and the authorization request it stands for ----------------------------------------------

def test_private_key_jwt_push_then_authorize_then_token(env):
    response = push(env, resource=API)
    assert response.status_code == 201
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    assert set(response.json) == {"request_uri", "expires_in"}
    assert response.json["expires_in"] == 60
    request_uri = response.json["request_uri"]
    # §2.2 and §7.1: a URN, at least 128 bits of randomness (here 256: 43 base64url characters).
    assert request_uri.startswith(PREFIX) and re.fullmatch(r"[A-Za-z0-9_-]{43}", request_uri[len(PREFIX):])
    row = row_of(env, request_uri)   # stored by its SHA-256 only
    assert row.client_id == "web" and not row.used and request_uri not in row.parameters
    assert int(time.time()) + 55 <= row.expires_at <= int(time.time()) + 60

    values = authorize_in_process(env.app, {"client_id": "web", "request_uri": request_uri}, "alice", PASSWORD)
    assert set(values) == {"code", "state", "iss"}
    assert values["state"] == "st-1" and values["iss"] == ISSUER
    assert row_of(env, request_uri).used

    tokens = redeem(env, values["code"], resource=API)
    assert tokens.status_code == 200, tokens.get_data(as_text=True)
    assert tokens.json["scope"] == "openid profile"
    id_token = b64url_json(tokens.json["id_token"].split(".")[1])
    assert id_token["nonce"] == "n-1" and id_token["aud"] == "web"


def test_a_public_client_pushes_with_pkce(env):
    request_uri = pushed(env, "spa")
    values = authorize_in_process(env.app, {"client_id": "spa", "request_uri": request_uri}, "alice", PASSWORD)
    tokens = redeem(env, values["code"], "spa")
    assert tokens.status_code == 200 and tokens.json["token_type"] == "Bearer"
    # PKCE is what protects a public client's push (RFC 9700 §2.1.1).
    body = assert_oauth_error(push(env, "spa", code_challenge=None, code_challenge_method=None), 400,
                              "invalid_request")
    assert body["error_description"] == "PKCE is required: send code_challenge with code_challenge_method=S256"


def test_the_pages_carry_the_pushed_parameters_not_the_request_uri(env):
    browser = env.app.test_client()
    request_uri = pushed(env, "pushing", resource=None, scope="openid email", state="pushed-state")
    page = authorize(env, browser, client_id="pushing", request_uri=request_uri)
    assert page.status_code == 200 and 'id="signin"' in page.get_data(as_text=True)
    fields = dict(hidden(page))
    assert "request_uri" not in fields
    assert fields["scope"] == "openid email" and fields["state"] == "pushed-state"
    # expiry . the request_uri's SHA-256 . the HMAC
    assert re.fullmatch(r"[0-9]+\.[0-9a-f]{64}\.[A-Za-z0-9_-]{43}", fields["pushed_request"])
    # The client requires pushed requests: the pages posted back as they were go through...
    signin = [*hidden(page), ("action", "signin"), ("username", "alice"), ("password", PASSWORD)]
    consent = browser.post("/oauth2/authorize", data=urlencode(signin), content_type=FORM, base_url=BASE)
    assert consent.status_code == 200 and 'id="allow"' in consent.get_data(as_text=True)
    # ...and altered, they are no longer the pushed request: refused.
    for name, value in (("scope", "openid"), ("state", "other"), ("redirect_uri", None), ("pushed_request", None)):
        altered = [(n, v) for n, v in hidden(consent) if n != name] + ([(name, value)] if value else [])
        refused = browser.post("/oauth2/authorize", data=urlencode([*altered, ("action", "allow")]),
                               content_type=FORM, base_url=BASE)
        values = redirect_values(refused, 303)
        assert values["error"] == "invalid_request", (name, values)
        assert values["error_description"] == ("A pushed authorization request is required: push the request "
                                               "(RFC 9126) and send its request_uri")
    allowed = browser.post("/oauth2/authorize", data=urlencode([*hidden(consent), ("action", "allow")]),
                           content_type=FORM, base_url=BASE)
    values = redirect_values(allowed, 303)
    assert values["state"] == "pushed-state" and "code" in values
    assert redeem(env, values["code"], "pushing").json["scope"] == "openid email"
    # One pushed request, one code (RFC 9126 §4): its consent page posted again gives none.
    again = browser.post("/oauth2/authorize", data=urlencode([*hidden(consent), ("action", "allow")]),
                         content_type=FORM, base_url=BASE)
    assert again.status_code == 400 and "(invalid_request_uri)" in again.get_data(as_text=True)
    assert "Location" not in again.headers


def test_the_mark_is_bound_to_the_browser(env):
    """The pushed_request field verifies with the CSRF token of the browser it was made for only."""
    first, second = env.app.test_client(), env.app.test_client()
    page = authorize(env, first, client_id="pushing", request_uri=pushed(env, "pushing"))
    other_page = authorize(env, second, client_id="pushing", request_uri=pushed(env, "pushing"))
    csrf = dict(hidden(other_page))["csrf_token"]
    moved = [(n, csrf if n == "csrf_token" else v) for n, v in hidden(page)]
    response = second.post("/oauth2/authorize", data=urlencode([*moved, ("action", "signin"), ("username", "alice"),
                                                                ("password", PASSWORD)]),
                           content_type=FORM, base_url=BASE)
    assert redirect_values(response, 303)["error"] == "invalid_request"


def test_the_urls_other_parameters_are_ignored(env):
    request_uri = pushed(env, "two-uris", redirect_uri=OTHER_REDIRECT, scope="openid email", state="pushed")
    query = {"client_id": "two-uris", "request_uri": request_uri, "redirect_uri": REDIRECT, "scope": "openid profile",
             "state": "from-url", "response_type": "token", "prompt": "none"}
    client = env.app.test_client()
    page = authorize(env, client, **query)
    fields = dict(hidden(page))
    assert (fields["redirect_uri"], fields["scope"], fields["state"], fields["response_type"]) == \
        (OTHER_REDIRECT, "openid email", "pushed", "code")
    assert "prompt" not in fields


# --- a request_uri that cannot be used: a page, never a redirect ---------------------------------------

def test_a_request_uri_is_used_once(env):
    request_uri = pushed(env)
    assert authorize(env, client_id="web", request_uri=request_uri).status_code == 200
    assert_page(authorize(env, client_id="web", request_uri=request_uri), 400, INVALID_REQUEST_URI)


def test_an_expired_request_uri_is_refused(env):
    from storage.models import PushedAuthorizationRequest
    request_uri = pushed(env)
    with env.app.app_context():
        PushedAuthorizationRequest.update(expires_at=int(time.time()) - 1).execute()
    assert_page(authorize(env, client_id="web", request_uri=request_uri), 400, INVALID_REQUEST_URI)
    assert not row_of(env, request_uri).used


def test_another_clients_request_uri_is_refused_and_not_used_up(env):
    request_uri = pushed(env, "web")
    assert_page(authorize(env, client_id="other", request_uri=request_uri), 400, INVALID_REQUEST_URI)
    assert not row_of(env, request_uri).used
    assert authorize(env, client_id="web", request_uri=request_uri).status_code == 200


@pytest.mark.parametrize("query, text", [
    ({"client_id": "web", "request_uri": PREFIX + "A" * 43}, INVALID_REQUEST_URI),          # unknown
    ({"client_id": "web", "request_uri": PREFIX}, INVALID_REQUEST_URI),
    ({"client_id": "web", "request_uri": PREFIX + "A" * 300}, INVALID_REQUEST_URI),
    ({"request_uri": PREFIX + "A" * 43}, "the client_id parameter is missing"),
    ({"client_id": "nobody", "request_uri": PREFIX + "A" * 43}, "not registered with this server"),
])
def test_unknown_request_uris_and_clients_are_pages(env, query, text):
    assert_page(authorize(env, **query), 400, text)


def test_a_malformed_url_with_a_request_uri_is_a_page(env):
    request_uri = pushed(env)
    response = env.app.test_client().get(f"/oauth2/authorize?client_id=web&request_uri={request_uri}&state=a&state=b",
                                         base_url=BASE)
    assert_page(response, 400, "A parameter was sent more than once")
    assert not row_of(env, request_uri).used


def test_a_request_uri_that_is_not_ours_is_a_request_object_reference(env):
    """OIDC Core §6.2 (request objects by reference) stays unsupported."""
    values = redirect_values(authorize(env, **request_params(request_uri="https://app.example/request.jwt")))
    assert values["error"] == "request_uri_not_supported"


def test_a_pushed_request_is_no_bigger_than_a_url_would_carry(env):
    """A public client's push needs no secret: what it stores is bounded (a login_hint too long to
    be used is still stored), and a too large one is refused before it reaches the database."""
    from storage.models import PushedAuthorizationRequest
    with env.app.app_context():
        before = PushedAuthorizationRequest.select().count()
    response = push(env, "spa", login_hint="\x01" * 8000)
    assert_oauth_error(response, 400, "invalid_request")
    assert response.json["error_description"] == "The pushed request exceeds 8000 characters"
    with env.app.app_context():
        assert PushedAuthorizationRequest.select().count() == before


def test_purge_deletes_expired_rows_only(env):
    from storage import par
    from storage.models import PushedAuthorizationRequest
    old, fresh = pushed(env), pushed(env)
    with env.app.app_context():
        PushedAuthorizationRequest.update(expires_at=int(time.time()) - 1).where(
            PushedAuthorizationRequest.request_uri_hash == hashlib.sha256(old.encode()).hexdigest()).execute()
        assert par.purge_every(env.app.extensions["idp"].services.db) == 1
    assert row_of(env, old) is None and row_of(env, fresh) is not None


# --- when pushing is required ---------------------------------------------------------------------------

def test_par_required_for_the_server(make_idp):
    env = make_idp(extra="[oauth.par]\nrequired = true\n")
    register(env)
    values = redirect_values(authorize(env, **request_params()))
    assert values["error"] == "invalid_request" and values["state"] == "st-1" and values["iss"] == ISSUER
    assert values["error_description"] == ("A pushed authorization request is required: push the request "
                                           "(RFC 9126) and send its request_uri")
    # Until the redirect URI is verified, a page.
    assert_page(authorize(env, **request_params(redirect_uri="https://evil.example/cb")), 400, "not registered")
    metadata = env.app.test_client().get("/.well-known/openid-configuration").json
    assert metadata["require_pushed_authorization_requests"] is True
    assert "code" in authorize_in_process(env.app, {"client_id": "web", "request_uri": pushed(env)}, "alice",
                                          PASSWORD)


def test_par_required_for_one_client(env):
    values = redirect_values(authorize(env, **request_params("pushing")))
    assert values["error"] == "invalid_request"
    assert authorize(env, **request_params("web")).status_code == 200   # others are not held to it
    assert env.app.test_client().get("/.well-known/openid-configuration").json[
        "require_pushed_authorization_requests"] is False


def test_fapi2_client_must_push_with_s256_pkce(env):
    from storage.models import Client
    with env.app.app_context():
        Client.update(profile="fapi2").where(Client.client_id == "web").execute()
    assert redirect_values(authorize(env, **request_params()))["error"] == "invalid_request"
    # FAPI 2.0 Security Profile §5.3.2.2: PKCE with S256 for a confidential client too.
    body = assert_oauth_error(push(env, alg="PS256", code_challenge=None, code_challenge_method=None), 400,
                              "invalid_request")
    assert body["error_description"] == "PKCE is required: send code_challenge with code_challenge_method=S256"
    assert "code" in authorize_in_process(env.app, {"client_id": "web", "request_uri": pushed(env, alg="PS256")},
                                          "alice", PASSWORD)
    # Another client of the same server is not.
    assert push(env, "other", code_challenge=None, code_challenge_method=None).status_code == 201


def test_fapi2_server_requires_pushing(make_idp):
    env = make_idp(extra='[oauth]\nprofile = "fapi2"\n')
    register(env)
    assert redirect_values(authorize(env, **request_params("other")))["error"] == "invalid_request"
    assert_oauth_error(push(env, "other", alg="PS256", code_challenge=None, code_challenge_method=None), 400,
                       "invalid_request")
    assert push(env, "other", alg="PS256").status_code == 201
    assert env.app.test_client().get("/.well-known/openid-configuration").json[
        "require_pushed_authorization_requests"] is True


def test_discovery_names_the_endpoint(env):
    metadata = env.app.test_client().get("/.well-known/oauth-authorization-server").json
    assert metadata["pushed_authorization_request_endpoint"] == PAR_URL
    assert metadata["require_pushed_authorization_requests"] is False
    assert metadata["request_uri_parameter_supported"] is False   # request objects by reference


# --- client authentication ------------------------------------------------------------------------------

def test_the_assertion_audience_under_the_strict_policy(env):
    assert_oauth_error(push(env, aud=PAR_URL), 401, "invalid_client")
    assert push(env, aud=ISSUER).status_code == 201


def test_the_assertion_audience_under_the_legacy_policy(make_idp):
    env = make_idp(pkjwt={"AudiencePolicy": "legacy"})
    register(env)
    assert push(env, aud=PAR_URL).status_code == 201          # the receiving endpoint
    assert push(env, aud=ISSUER).status_code == 201
    assert push(env, aud=TOKEN_URL).status_code == 201
    assert_oauth_error(push(env, aud=BASE + "/oauth2/introspect"), 401, "invalid_client")


def test_failed_authentication_counts_in_the_rate_limiter(make_idp):
    env = make_idp(rate_limit={"failures_per_address": 2})
    register(env)
    wrong = rsa_key()

    def forged():
        assertion = sign(wrong, claims_for("web", ISSUER), headers={"kid": "k1"})
        return push(env, body=urlencode({**request_params(), "client_assertion_type": ASSERTION_TYPE,
                                         "client_assertion": assertion}))
    for _ in range(2):
        assert_oauth_error(forged(), 401, "invalid_client")
    limited = assert_oauth_error(forged(), 429, "invalid_client")
    assert limited["error_description"] == "Too many failed client authentications; retry later"
    # The same budget as the token endpoint's.
    token = env.post({"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
                      "client_assertion": sign(wrong, claims_for("machine", ISSUER), headers={"kid": "k1"})})
    assert_oauth_error(token, 429, "invalid_client")
    # A credential that verifies is still served.
    assert push(env).status_code == 201


def test_no_credentials_and_unknown_public_client(env):
    assert_oauth_error(push(env, body=urlencode(request_params())), 401, "invalid_client")   # web: confidential
    assert_oauth_error(push(env, body=urlencode(request_params("nobody"))), 401, "invalid_client")


# --- the request's form and parameters: exact JSON errors --------------------------------------------

@pytest.mark.parametrize("overrides, status, error, description", [
    ({"redirect_uri": "https://evil.example/cb"}, 400, "invalid_request",
     "The redirect_uri is not registered for the client"),
    ({"redirect_uri": REDIRECT + "#x"}, 400, "invalid_request", "The redirect_uri is not registered for the client"),
    ({"scope": None}, 400, "invalid_scope", "The scope parameter is missing"),
    ({"scope": "openid admin"}, 400, "invalid_scope", "A requested scope is not registered for the client"),
    ({"scope": "openid  profile"}, 400, "invalid_scope", "The scope parameter is malformed"),
    ({"resource": "https://other.example/"}, 400, "invalid_target",
     "A requested resource is not registered for the client"),
    ({"resource": "not a uri"}, 400, "invalid_target", "A resource must be an absolute URI without a fragment"),
    ({"code_challenge_method": "plain"}, 400, "invalid_request", "The code_challenge_method must be S256"),
    ({"code_challenge": CHALLENGE[:42]}, 400, "invalid_request",
     "The code_challenge must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~"),
    ({"code_challenge": None}, 400, "invalid_request", "code_challenge_method was sent without code_challenge"),
    ({"response_type": "token"}, 400, "unsupported_response_type", "Only response_type=code is supported"),
    ({"response_type": None}, 400, "invalid_request", "The response_type parameter is missing"),
    ({"response_mode": "fragment"}, 400, "invalid_request", "Only response_mode=query is supported"),
    ({"prompt": "none login"}, 400, "invalid_request", "prompt=none cannot be combined with other values"),
    ({"max_age": "ten"}, 400, "invalid_request", "The max_age parameter must be a number of seconds"),
    ({"state": "s" * 513}, 400, "invalid_request",
     "The state parameter must be at most 512 printable ASCII characters"),
    ({"dpop_jkt": "not-a-thumbprint"}, 400, "invalid_request",
     "The dpop_jkt parameter must be a JWK SHA-256 thumbprint (RFC 7638)"),
    ({"request": "eyJhbGciOiJub25lIn0.e30."}, 400, "request_not_supported", "The request parameter is not supported"),
    # RFC 9126 §2.1.
    ({"request_uri": PREFIX + "A" * 43}, 400, "invalid_request", "The request_uri parameter cannot be pushed"),
    # A client_id that is not the assertion's: private_key_jwt refuses it first (RFC 7523 §3 item 2).
    ({"client_id": "other"}, 401, "invalid_client", "The client_id parameter does not match the client assertion"),
])
def test_invalid_pushed_requests(env, overrides, status, error, description):
    body = {**request_params(**overrides), **credentials(env, "web")}
    response = push(env, body=urlencode(body))
    assert assert_oauth_error(response, status, error)["error_description"] == description
    from storage.models import PushedAuthorizationRequest
    with env.app.app_context():
        assert PushedAuthorizationRequest.select().count() == 0


def test_client_id_must_be_the_authenticated_clients(env):
    """RFC 9126 §2.1: each built-in method already refuses a client_id that is not its client's (the
    endpoint checks it again for handlers dropped into handlers/)."""
    import base64
    _, secret = env.register("secret", auth_method="client_secret_basic", grant_types=GRANTS, scopes=SCOPES,
                             redirect_uris=(REDIRECT,))
    basic = {"Authorization": "Basic " + base64.b64encode(f"secret:{secret}".encode()).decode()}
    response = push(env, body=urlencode(request_params("web")), headers=basic)
    body = assert_oauth_error(response, 401, "invalid_client")
    assert body["error_description"] == "The client_id parameter does not match the Authorization header"
    assert push(env, body=urlencode(request_params("secret")), headers=basic).status_code == 201
    without = {k: v for k, v in request_params("secret").items() if k != "client_id"}
    assert push(env, body=urlencode(without), headers=basic).status_code == 201   # client_id is optional


def test_client_specific_refusals(env):
    body = assert_oauth_error(push(env, "machine"), 400, "unauthorized_client")
    assert body["error_description"] == "The client is not registered for the authorization code grant"
    body = assert_oauth_error(push(env, "two-uris", redirect_uri=None), 400, "invalid_request")
    assert body["error_description"] == ("The redirect_uri parameter is missing and the client has not registered "
                                         "exactly one redirect URI")
    # With one redirect URI registered, it may be left out (and the token request then too).
    request_uri = pushed(env, redirect_uri=None)
    values = authorize_in_process(env.app, {"client_id": "web", "request_uri": request_uri}, "alice", PASSWORD)
    assert redeem(env, values["code"], redirect_uri=None).status_code == 200


def test_the_form_is_parsed_strictly(env):
    params = [*request_params().items(), *credentials(env, "web").items()]
    body = assert_oauth_error(push(env, body=[*params, ("state", "again")]), 400, "invalid_request")
    assert body["error_description"] == "A parameter was sent more than once"
    # `resource` may repeat (RFC 8707 §2).
    env.register("apis", grant_types=GRANTS, scopes=SCOPES, redirect_uris=(REDIRECT,),
                 resources=(API, "https://api2.example/"))
    params = [*request_params("apis").items(), *credentials(env, "apis").items()]
    response = push(env, body=[*params, ("resource", API), ("resource", "https://api2.example/")])
    assert response.status_code == 201
    client = env.app.test_client()
    fields = hidden(authorize(env, client, client_id="apis", request_uri=response.json["request_uri"]))
    assert [v for n, v in fields if n == "resource"] == [API, "https://api2.example/"]
    in_url = env.app.test_client().post("/oauth2/par?scope=openid", data=urlencode(params), content_type=FORM,
                                        base_url=BASE)
    assert assert_oauth_error(in_url, 400, "invalid_request")["error_description"] == \
        "Parameters must be sent in the request body, not the URL"
    as_json = env.app.test_client().post("/oauth2/par", json=dict(params), base_url=BASE)
    assert_oauth_error(as_json, 400, "invalid_request")
    get = env.app.test_client().get("/oauth2/par", base_url=BASE)
    assert_oauth_error(get, 405, "invalid_request")
    assert get.headers["Allow"] == "POST"


# --- DPoP (RFC 9449 §10.1) ------------------------------------------------------------------------------

def test_a_dpop_proof_at_par_binds_the_code(env):
    key, other = ec_key(), ec_key()
    response = push(env, headers={"DPoP": dpop_proof(key, PAR_URL)})
    assert response.status_code == 201 and response.headers["DPoP-Nonce"]
    fields = dict(hidden(authorize(env, client_id="web", request_uri=response.json["request_uri"])))
    assert fields["dpop_jkt"] == jkt_of(key)
    values = authorize_in_process(env.app, {"client_id": "web", "request_uri": pushed(
        env, headers={"DPoP": dpop_proof(key, PAR_URL)})}, "alice", PASSWORD)
    wrong = redeem(env, values["code"], headers={"DPoP": dpop_proof(other, TOKEN_URL)})
    assert_oauth_error(wrong, 400, "invalid_grant")
    # The code was used up by that attempt (a stolen code is not retried): a fresh one for the key.
    values = authorize_in_process(env.app, {"client_id": "web", "request_uri": pushed(
        env, headers={"DPoP": dpop_proof(key, PAR_URL)})}, "alice", PASSWORD)
    tokens = redeem(env, values["code"], headers={"DPoP": dpop_proof(key, TOKEN_URL)})
    assert tokens.status_code == 200 and tokens.json["token_type"] == "DPoP"


def test_dpop_jkt_and_the_proof_must_agree(env):
    key = ec_key()
    same = push(env, dpop_jkt=jkt_of(key), headers={"DPoP": dpop_proof(key, PAR_URL)})
    assert same.status_code == 201
    other = push(env, dpop_jkt=jkt_of(ec_key()), headers={"DPoP": dpop_proof(key, PAR_URL)})
    body = assert_oauth_error(other, 400, "invalid_dpop_proof")
    assert body["error_description"] == "The dpop_jkt parameter is not the thumbprint of the DPoP proof's key"
    assert other.headers["DPoP-Nonce"]


def test_dpop_proofs_are_checked_like_the_token_endpoints(env):
    key = ec_key()
    assert_oauth_error(push(env, headers={"DPoP": dpop_proof(key, TOKEN_URL)}), 400, "invalid_dpop_proof")  # htu
    assert_oauth_error(push(env, headers={"DPoP": dpop_proof(key, PAR_URL, method="GET")}), 400,
                       "invalid_dpop_proof")
    proof = dpop_proof(key, PAR_URL)
    assert push(env, headers={"DPoP": proof}).status_code == 201
    replayed = assert_oauth_error(push(env, headers={"DPoP": proof}), 400, "invalid_dpop_proof")
    assert replayed["error_description"] == "The DPoP proof was used before"


# --- over HTTPS against the real server -------------------------------------------------------------------

@pytest.fixture(scope="module")
def live(tmp_path_factory):
    from storage import clients, users
    from storage.database import open_database
    directory = tmp_path_factory.mktemp("par-live")
    port = free_port()
    shared_keystore(directory)
    server = Server(write_config(directory, port, workers=2), port).start()
    key = rsa_key()
    db = open_database("sqlite:///var/identity.db", directory)
    try:
        users.create("alice", PASSWORD)
        clients.create("live-web", "private_key_jwt", grant_types=GRANTS, scopes=SCOPES, redirect_uris=(REDIRECT,),
                       jwks=jwks_of((key, "k1")))
    finally:
        db.close()
    server.key = key
    try:
        yield server
    finally:
        server.stop()


def live_push(server: Server, **overrides) -> requests.Response:
    assertion = sign(server.key, claims_for("live-web", server.base + "/oauth2/token"), headers={"kid": "k1"})
    form = {**request_params("live-web", **overrides), "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion}
    return server.post("/oauth2/par", data=form)


def test_the_whole_flow_over_https(live):
    response = live_push(live)
    assert response.status_code == 201 and response.headers["Cache-Control"] == "no-store"
    request_uri = response.json()["request_uri"]
    values = authorize_over_https(live, {"client_id": "live-web", "request_uri": request_uri}, "alice", PASSWORD)
    assert values["state"] == "st-1"
    assertion = sign(live.key, claims_for("live-web", live.base + "/oauth2/token"), headers={"kid": "k1"})
    tokens = live.post(data={"grant_type": "authorization_code", "code": values["code"], "redirect_uri": REDIRECT,
                             "code_verifier": VERIFIER, "client_assertion_type": ASSERTION_TYPE,
                             "client_assertion": assertion})
    assert tokens.status_code == 200, tokens.text
    again = live.get("/oauth2/authorize", params={"client_id": "live-web", "request_uri": request_uri},
                     allow_redirects=False)
    assert again.status_code == 400 and INVALID_REQUEST_URI in again.text and "Location" not in again.headers


def test_concurrent_uses_of_one_request_uri_let_one_through(live):
    request_uri = live_push(live).json()["request_uri"]
    barrier = threading.Barrier(20)
    statuses: list[int] = []
    lock = threading.Lock()

    def use():
        session = requests.Session()   # a connection each: both workers serve them
        barrier.wait()
        response = session.get(live.base + "/oauth2/authorize",
                               params={"client_id": "live-web", "request_uri": request_uri},
                               verify=live.ca, timeout=30, allow_redirects=False)
        assert response.status_code == 200 and 'id="signin"' in response.text or \
            response.status_code == 400 and INVALID_REQUEST_URI in response.text, response.text[:300]
        with lock:
            statuses.append(response.status_code)

    threads = [threading.Thread(target=use) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] + [400] * 19

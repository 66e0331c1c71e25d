"""The authorization endpoint (/oauth2/authorize) and sign-out (/oauth2/logout).

Every rule of RFC 6749 §4.1.1–4.1.2.1, OpenID Connect Core §3.1.2, RFC 7636 and RFC 9207 is
driven in-process through the Flask test client the way a browser drives it (cookies, hidden
form fields, redirects), at https://localhost:9443 so that the `__Host-` Secure cookies are
kept; the whole flow is then run over HTTPS against the real server with requests.
"""

from __future__ import annotations

import html
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from browser import chromium, wait_for_element, wait_for_url, wait_until
from support import Server, assert_oauth_error, free_port, shared_keystore, write_config

BASE = "https://localhost:9443"
ISSUER = BASE + "/oauth2/token"
REDIRECT = "https://app.example/cb"
OTHER_REDIRECT = "https://app.example/other"
SPA_REDIRECT = "https://spa.example/callback"
PORTAL_REDIRECT = "https://portal.example/cb?tenant=a"
PASSWORD = "correct horse battery"
# RFC 7636 Appendix B.
VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
GRANTS = ("authorization_code", "refresh_token")
SCOPES = ("openid", "profile", "email", "offline_access")
SESSION_COOKIE = "__Host-idp_session"
CSRF_COOKIE = "__Host-idp_csrf"
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]*)" value="([^"]*)">')


def register(env) -> None:
    from storage import clients, users
    with env.app.app_context():
        users.create("alice", PASSWORD, claims={"name": "Alice", "email": "alice@example.com"})
        users.create("bob", PASSWORD)
        clients.create("web", "client_secret_basic", client_name="Example App", grant_types=GRANTS,
                       redirect_uris=(REDIRECT, OTHER_REDIRECT), scopes=SCOPES + ("orders:read",))
        clients.create("spa", "none", grant_types=GRANTS, redirect_uris=(SPA_REDIRECT,), scopes=SCOPES)
        clients.create("portal", "client_secret_basic", client_name="Portal", grant_types=GRANTS,
                       redirect_uris=(PORTAL_REDIRECT,), scopes=SCOPES, first_party=True)
        clients.create("machine", "client_secret_basic", grant_types=("client_credentials",),
                       redirect_uris=("https://machine.example/cb",), scopes=("openid",))


@pytest.fixture
def env(make_idp):
    env = make_idp()
    register(env)
    return env


@pytest.fixture
def browser(env):
    return Browser(env.app)


def params(**overrides) -> dict[str, str]:
    """A valid authorization request for client "web"; an override of None drops the parameter."""
    values = {"response_type": "code", "client_id": "web", "redirect_uri": REDIRECT, "scope": "openid profile",
              "state": "st-1", "nonce": "n-1", "code_challenge": CHALLENGE, "code_challenge_method": "S256"}
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def hidden(page) -> dict[str, str]:
    text = page if isinstance(page, str) else page.get_data(as_text=True)
    return {html.unescape(name): html.unescape(value) for name, value in _HIDDEN.findall(text)}


class Browser:
    """The test client used as a browser at BASE: it keeps cookies and posts the pages' forms."""

    def __init__(self, app) -> None:
        self.app = app
        self.client = app.test_client()

    def get(self, path: str, **kwargs):
        return self.client.get(path, base_url=BASE, **kwargs)

    def post(self, path: str, data, **kwargs):
        if isinstance(data, dict):
            data = urlencode({k: v for k, v in data.items() if v is not None})
        return self.client.post(path, data=data, base_url=BASE, content_type="application/x-www-form-urlencoded",
                                **kwargs)

    def authorize(self, **overrides):
        return self.get("/oauth2/authorize?" + urlencode(params(**overrides)))

    def submit(self, page, action: str | None, **fields):
        """Post the page's form as the button `action` would (hidden fields and CSRF token included)."""
        assert page.status_code in (200, 429), (page.status_code, page.get_data(as_text=True)[:300])
        return self.post("/oauth2/authorize", {**hidden(page), "action": action, **fields})

    def sign_in(self, page, username: str = "alice", password: str = PASSWORD):
        assert 'id="signin"' in page.get_data(as_text=True)
        return self.submit(page, "signin", username=username, password=password)

    def cookie(self, name: str) -> str | None:
        cookie = self.client.get_cookie(name, domain="localhost")
        return cookie.value if cookie else None

    def code(self, expect: str | None = None, **overrides) -> dict[str, str]:
        """Sign in (when needed), consent (when asked) and return the parameters of the redirect
        to `expect` (default: the redirect_uri sent)."""
        response = self.authorize(**overrides)
        if 'id="signin"' in response.get_data(as_text=True):
            response = self.sign_in(response)
        if 'id="allow"' in response.get_data(as_text=True):
            response = self.submit(response, "allow")
        return callback(response, status=response.status_code,
                        redirect_uri=expect or overrides.get("redirect_uri") or REDIRECT)


def callback(response, status: int = 302, redirect_uri: str = REDIRECT) -> dict[str, str]:
    """The parameters of a redirect to the client, each exactly once."""
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True)[:500])
    location = response.headers["Location"]
    assert location.startswith(redirect_uri + ("&" if "?" in redirect_uri else "?")), location
    values = parse_qs(urlsplit(location).query, keep_blank_values=True, strict_parsing=True)
    assert all(len(v) == 1 for v in values.values()), values
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "same-origin"   # a cross-origin redirect sends none
    return {k: v[0] for k, v in values.items()}


def assert_redirect_error(response, error: str, state: str | None = "st-1", status: int = 302,
                          redirect_uri: str = REDIRECT) -> dict[str, str]:
    """RFC 6749 §4.1.2.1 and RFC 9207: error, error_description, state as sent, iss; never a code."""
    values = callback(response, status, redirect_uri)
    assert values["error"] == error, values
    assert values.get("state") == state
    assert values["iss"] == ISSUER
    assert "code" not in values
    description = values["error_description"]
    assert description and all(0x20 <= ord(c) <= 0x7E and c not in '"\\' for c in description)
    return values


def assert_page(response, status: int, text: str | None = None) -> str:
    """An HTML page with the security headers, and never a redirect."""
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True)[:500])
    assert "Location" not in response.headers
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert "script-src" not in response.headers["Content-Security-Policy"]   # default-src 'none': no script
    body = response.get_data(as_text=True)
    assert "<script" not in body
    if text is not None:
        assert text in body, body
    return body


def session_cookie_header(response) -> str | None:
    for header in response.headers.getlist("Set-Cookie"):
        if header.startswith(SESSION_COOKIE + "="):
            return header
    return None


def redeem(env, code: str):
    from storage import codes
    from storage.models import AuthorizationCode
    with env.app.app_context():
        # As the client the code was issued to (the token endpoint passes the authenticated one).
        row = AuthorizationCode.get(AuthorizationCode.code_hash == codes.code_hash(code))
        return codes.redeem(code, row.client_id)


def account(env, username: str):
    from storage import users
    with env.app.app_context():
        return users.get_by_username(username)


# --- the client and its redirect URI: errors are pages, never redirects ------------------------------

@pytest.mark.parametrize("query, title", [
    ({"client_id": "nobody"}, "Unknown application"),
    ({"client_id": "WEB"}, "Unknown application"),                 # client ids compare exactly
    ({"client_id": "w" * 300}, "Unknown application"),
    ({"client_id": None}, "client_id parameter is missing"),
    ({"redirect_uri": "https://evil.example/cb"}, "not registered"),
    ({"redirect_uri": "https://APP.example/cb"}, "not registered"),  # a different case
    ({"redirect_uri": "https://app.example/cb/"}, "not registered"),  # an extra slash
    ({"redirect_uri": "https://app.example/cb?x=1"}, "not registered"),
    ({"redirect_uri": "https://app.example/cb#frag"}, "not registered"),
    ({"redirect_uri": "https://app.example"}, "not registered"),
    ({"redirect_uri": " https://app.example/cb"}, "not registered"),
    ({"redirect_uri": None}, "has no redirect_uri"),                 # two are registered
])
def test_unknown_client_or_redirect_uri_is_a_page_not_a_redirect(browser, query, title):
    assert_page(browser.authorize(**query), 400, title)
    # Errors that would otherwise go to the client are not sent anywhere either.
    assert_page(browser.authorize(response_type="token", **query), 400)


def test_repeated_client_id_or_redirect_uri_is_a_page(browser):
    query = urlencode(params())
    assert_page(browser.get(f"/oauth2/authorize?{query}&client_id=web"), 400)
    assert_page(browser.get(f"/oauth2/authorize?{query}&redirect_uri={REDIRECT}"), 400)


def test_registered_redirect_uri_that_is_malformed_is_never_used(env, browser):
    from storage import clients
    with env.app.app_context():
        clients.create("odd", "client_secret_basic", grant_types=GRANTS, scopes=SCOPES,
                       redirect_uris=("https://odd.example/cb#fragment", "javascript:alert(1)"))
    for uri in ("https://odd.example/cb#fragment", "javascript:alert(1)"):
        assert_page(browser.authorize(client_id="odd", redirect_uri=uri), 400, "not a valid absolute URI")


def test_redirect_uri_may_be_omitted_when_exactly_one_is_registered(env, browser):
    values = browser.code(PORTAL_REDIRECT, client_id="portal", redirect_uri=None)   # first party: no consent page
    grant = redeem(env, values["code"])
    assert grant.redirect_uri == PORTAL_REDIRECT   # the token request may repeat only this value
    assert grant.redirect_uri_sent is False        # ... or omit it too (RFC 6749 §4.1.3)


def test_query_of_the_registered_redirect_uri_is_kept(env, browser):
    response = browser.sign_in(browser.authorize(client_id="portal", redirect_uri=PORTAL_REDIRECT))
    assert redeem(env, parse_qs(urlsplit(response.headers["Location"]).query)["code"][0]).redirect_uri_sent is True
    location = response.headers["Location"]
    assert location.startswith(PORTAL_REDIRECT + "&code=")
    values = callback(response, 303, PORTAL_REDIRECT)
    assert values["tenant"] == "a" and values["state"] == "st-1" and values["iss"] == ISSUER


NATIVE_REDIRECTS = ("http://127.0.0.1/cb", "http://[::1]:8400/cb?app=1", "http://localhost:8400/cb")


@pytest.fixture
def native(env):
    """A native app with loopback redirect URIs (RFC 8252 §7.3)."""
    from storage import clients
    with env.app.app_context():
        clients.create("native", "none", grant_types=GRANTS, redirect_uris=NATIVE_REDIRECTS, scopes=SCOPES)
    return {"client_id": "native"}


@pytest.mark.parametrize("sent", ["http://127.0.0.1:53127/cb", "http://127.0.0.1:1/cb", "http://127.0.0.1:65535/cb",
                                  "http://127.0.0.1/cb", "http://127.0.0.1:80/cb", "http://[::1]:50123/cb?app=1",
                                  "http://[::1]/cb?app=1", "http://localhost:8400/cb"])
def test_loopback_redirect_uri_matches_any_port(env, browser, native, sent):
    # RFC 8252 §7.3, RFC 9700 §4.1.1: the app listens on a port it picks when it runs.
    values = browser.code(redirect_uri=sent, **native)
    assert redeem(env, values["code"]).redirect_uri == sent   # recorded as sent, for the token request


@pytest.mark.parametrize("sent", [
    "http://127.0.0.1:53127/cb/", "http://127.0.0.1:53127/cb2", "http://127.0.0.1:53127/CB",   # another path
    "http://127.0.0.1:53127/cb?x=1", "http://127.0.0.1:53127/cb?",                            # another query
    "http://[::1]:50123/cb", "http://[::1]:50123/cb?app=2",
    "http://127.0.0.2:53127/cb", "http://127.1:53127/cb", "http://[::2]:53127/cb",             # another host
    "http://[0:0:0:0:0:0:0:1]:53127/cb", "http://0x7f000001:53127/cb",
    "https://127.0.0.1:53127/cb", "HTTP://127.0.0.1:53127/cb",                                 # another scheme
    "http://127.0.0.1:0/cb", "http://127.0.0.1:65536/cb", "http://127.0.0.1:/cb",              # not a port
    "http://127.0.0.1:123456/cb", "http://127.0.0.1:-1/cb", "http://127.0.0.1:53127@evil.example/cb",
    "http://user@127.0.0.1:53127/cb", "http://127.0.0.1:53127/cb#frag",
    "http://localhost:8401/cb", "http://localhost/cb",                                        # RFC 8252 §8.3
])
def test_loopback_redirect_uri_differing_in_more_than_the_port_is_refused(browser, native, sent):
    assert_page(browser.authorize(redirect_uri=sent, **native), 400, "not registered")


def test_only_loopback_redirect_uris_match_any_port(browser):
    assert_page(browser.authorize(redirect_uri="https://app.example:8443/cb"), 400, "not registered")


# --- errors sent back to the client ------------------------------------------------------------------

@pytest.mark.parametrize("overrides, error", [
    ({"response_type": None}, "invalid_request"),
    ({"response_type": "token"}, "unsupported_response_type"),
    ({"response_type": "code id_token"}, "unsupported_response_type"),
    ({"response_type": "CODE"}, "unsupported_response_type"),
    ({"response_mode": "fragment"}, "invalid_request"),
    ({"response_mode": "form_post"}, "invalid_request"),
    ({"scope": None}, "invalid_scope"),
    ({"scope": "openid admin"}, "invalid_scope"),                   # not registered for the client
    ({"scope": "openid  profile"}, "invalid_scope"),                # RFC 6749 §3.3: one space between
    ({"scope": " openid"}, "invalid_scope"),
    ({"scope": 'openid "profile"'}, "invalid_scope"),               # %x22 is not a scope character
    ({"scope": "openid\\profile"}, "invalid_scope"),
    ({"request": "eyJhbGciOiJub25lIn0.e30."}, "request_not_supported"),
    ({"request_uri": "https://app.example/request.jwt"}, "request_uri_not_supported"),
    ({"registration": '{"logo_uri":"https://app.example/logo.png"}'}, "registration_not_supported"),
    ({"nonce": "n" * 513}, "invalid_request"),
    ({"nonce": "n\x00"}, "invalid_request"),                       # would reach PostgreSQL as a 500
    ({"nonce": "n\nx"}, "invalid_request"),
    ({"prompt": "none login"}, "invalid_request"),                  # OIDC Core §3.1.2.1
    ({"prompt": "none consent"}, "invalid_request"),
    ({"prompt": "always"}, "invalid_request"),
    ({"prompt": "login  consent"}, "invalid_request"),
    ({"max_age": "-1"}, "invalid_request"),
    ({"max_age": "ten"}, "invalid_request"),
    ({"max_age": "1" * 11}, "invalid_request"),
    # RFC 7636: S256 only; plain (also when the method is absent, §4.3) is refused by default.
    ({"code_challenge_method": None}, "invalid_request"),
    ({"code_challenge_method": "plain"}, "invalid_request"),
    ({"code_challenge_method": "S512"}, "invalid_request"),
    ({"code_challenge_method": "s256"}, "invalid_request"),
    ({"code_challenge": CHALLENGE[:42]}, "invalid_request"),        # 42 characters
    ({"code_challenge": "a" * 129}, "invalid_request"),
    ({"code_challenge": CHALLENGE[:-2] + "+/"}, "invalid_request"),  # base64, not base64url
    ({"code_challenge": CHALLENGE[:-1] + "="}, "invalid_request"),
    ({"code_challenge": None}, "invalid_request"),                  # a method without a challenge
])
def test_invalid_request_goes_back_to_the_client(browser, overrides, error):
    assert_redirect_error(browser.authorize(**overrides), error)


def test_state_is_sent_back_exactly_and_may_be_absent(browser):
    state = "a b+c/=&?%~"
    assert_redirect_error(browser.authorize(response_type="token", state=state), "unsupported_response_type",
                          state=state)
    assert_redirect_error(browser.authorize(response_type="token", state=None), "unsupported_response_type",
                          state=None)


@pytest.mark.parametrize("state", ["s" * 513, "caf\u00e9", "tab\there"])
def test_state_too_long_or_not_printable_ascii_is_refused_and_not_echoed(browser, state):
    assert_redirect_error(browser.authorize(state=state), "invalid_request", state=None)


def test_repeated_parameter_is_invalid_request(browser):
    # RFC 6749 §3.1: parameters must not be included more than once.
    query = urlencode(params())
    values = assert_redirect_error(browser.get(f"/oauth2/authorize?{query}&scope=openid"), "invalid_request")
    assert "more than once" in values["error_description"]
    # A repeated state is not sent back.
    assert_redirect_error(browser.get(f"/oauth2/authorize?{query}&state=other"), "invalid_request", state=None)
    # An empty repetition is a repetition too.
    assert_redirect_error(browser.get(f"/oauth2/authorize?{query}&nonce="), "invalid_request")


@pytest.mark.parametrize("raw", ["nonce=%ZZ", "nonce=%ff%fe"])
def test_bad_encoding_is_invalid_request(browser, raw):
    query = urlencode(params(nonce=None))
    assert_redirect_error(browser.get(f"/oauth2/authorize?{query}&{raw}"), "invalid_request")


def test_client_not_registered_for_the_code_grant_is_unauthorized_client(browser):
    assert_redirect_error(browser.authorize(client_id="machine", redirect_uri="https://machine.example/cb",
                                            scope="openid"),
                          "unauthorized_client", redirect_uri="https://machine.example/cb")


def test_unknown_parameters_are_ignored(browser):
    # RFC 6749 §3.1; OIDC parameters this server does not use (display, ui_locales, claims…) likewise.
    page = browser.authorize(display="page", ui_locales="en", acr_values="1", foo="bar")
    assert_page(page, 200, 'id="signin"')
    assert set(hidden(page)) == {"csrf_token", "response_type", "client_id", "redirect_uri", "scope", "state",
                                 "nonce", "code_challenge", "code_challenge_method"}


# --- PKCE ------------------------------------------------------------------------------------------

def test_public_client_must_send_pkce(browser):
    spa = {"client_id": "spa", "redirect_uri": SPA_REDIRECT}
    assert_redirect_error(browser.authorize(code_challenge=None, code_challenge_method=None, **spa),
                          "invalid_request", redirect_uri=SPA_REDIRECT)
    assert_page(browser.authorize(**spa), 200, 'id="signin"')


def test_confidential_client_without_pkce_by_default(env, browser):
    values = browser.code(code_challenge=None, code_challenge_method=None)
    grant = redeem(env, values["code"])
    assert grant.code_challenge is None and grant.code_challenge_method is None


def test_pkce_mandatory_for_every_client(make_idp):
    env = make_idp(extra="[oauth.pkce]\nmandatory = true\n")
    register(env)
    browser = Browser(env.app)
    assert_redirect_error(browser.authorize(code_challenge=None, code_challenge_method=None), "invalid_request")
    assert_page(browser.authorize(), 200, 'id="signin"')


def test_plain_pkce_when_allowed(make_idp):
    env = make_idp(extra="[oauth.pkce]\nallow_plain = true\n")
    register(env)
    browser = Browser(env.app)
    values = browser.code(code_challenge=VERIFIER, code_challenge_method=None)   # absent means plain
    grant = redeem(env, values["code"])
    assert (grant.code_challenge, grant.code_challenge_method) == (VERIFIER, "plain")
    values = browser.code(code_challenge=VERIFIER, code_challenge_method="plain")
    assert redeem(env, values["code"]).code_challenge_method == "plain"
    assert_redirect_error(browser.authorize(code_challenge_method="S384"), "invalid_request")


# --- sign-in -----------------------------------------------------------------------------------------

def test_sign_in_page(browser):
    page = browser.authorize(login_hint="alice")
    body = assert_page(page, 200, 'id="signin"')
    assert "Example App" in body
    assert 'name="username" value="alice"' in body              # login_hint prefills the user name
    fields = hidden(page)
    assert fields["csrf_token"] == browser.cookie(CSRF_COOKIE)
    assert {k: v for k, v in fields.items() if k != "csrf_token"} == params(login_hint="alice")
    assert browser.cookie(SESSION_COOKIE) is None


def test_sign_in_sets_a_host_only_secure_session_cookie(env, browser):
    response = browser.sign_in(browser.authorize())
    header = session_cookie_header(response)
    assert header is not None
    attributes = [part.strip().lower() for part in header.split(";")[1:]]
    assert "secure" in attributes and "httponly" in attributes and "samesite=lax" in attributes
    assert "path=/" in attributes
    assert not any(a.startswith("domain=") for a in attributes)   # __Host-: host-only
    assert f"max-age={env.settings.session_lifetime}" in attributes
    # The CSRF cookie was set with the first page and is kept.
    assert not any(h.startswith(CSRF_COOKIE) for h in response.headers.getlist("Set-Cookie"))


@pytest.mark.parametrize("username, password", [("alice", "wrong password"), ("mallory", PASSWORD),
                                                ("Alice", PASSWORD), ("alice", PASSWORD.upper())])
def test_wrong_credentials_give_one_generic_message(browser, username, password):
    response = browser.sign_in(browser.authorize(), username=username, password=password)
    body = assert_page(response, 200, "The user name or password is incorrect.")
    assert session_cookie_header(response) is None
    assert f'name="username" value="{username}"' in body
    assert hidden(response)["state"] == "st-1"           # the form still carries the request


def test_missing_credentials_ask_again_without_counting(browser):
    response = browser.submit(browser.authorize(), "signin", username="alice")
    assert_page(response, 200, "Enter your user name and password.")
    assert session_cookie_header(response) is None


def test_sign_in_failures_are_rate_limited(make_idp):
    env = make_idp(rate_limit={"signin_failures_per_user": 2})
    register(env)
    browser = Browser(env.app)
    page = browser.authorize()
    for _ in range(2):
        page = browser.sign_in(page, password="wrong password")
        assert_page(page, 200, "The user name or password is incorrect.")
    # Now even the right password is refused until the window has passed.
    response = browser.sign_in(page)
    assert_page(response, 429, "Too many failed sign-ins. Try again in")
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert session_cookie_header(response) is None
    # Another user at the same address is not affected by this user's limit.
    assert session_cookie_header(browser.sign_in(browser.authorize(), username="bob")) is not None


def test_csrf_token_missing_or_wrong_is_refused(browser):
    page = browser.authorize()
    fields = {**hidden(page), "action": "signin", "username": "alice", "password": PASSWORD}
    cookie = browser.cookie(CSRF_COOKIE)
    for csrf in (None, "", "x" * 43, cookie[:-1] + ("B" if cookie.endswith("A") else "A")):
        response = browser.post("/oauth2/authorize", {**fields, "csrf_token": csrf})
        assert_page(response, 400, "The form expired")
        assert session_cookie_header(response) is None
    # The consent and deny buttons are checked alike.
    for action in ("allow", "deny"):
        assert_page(browser.post("/oauth2/authorize", {**fields, "action": action, "csrf_token": None}), 400)


def test_form_from_another_site_is_refused(browser):
    page = browser.authorize()
    response = browser.post("/oauth2/authorize", {**hidden(page), "action": "signin", "username": "alice",
                                                  "password": PASSWORD},
                            headers={"Origin": "https://evil.example"})
    assert_page(response, 403)
    assert session_cookie_header(response) is None


def test_csrf_cookie_is_host_only_secure(browser):
    response = browser.authorize()
    header = next(h for h in response.headers.getlist("Set-Cookie") if h.startswith(CSRF_COOKIE + "="))
    attributes = [part.strip().lower() for part in header.split(";")[1:]]
    assert {"secure", "httponly", "samesite=lax", "path=/"} <= set(attributes)


def test_every_post_is_validated_again(browser):
    page = browser.authorize()
    # A redirect URI changed in the hidden fields: a page, no sign-in, no redirect.
    response = browser.submit(page, "signin", username="alice", password=PASSWORD,
                              redirect_uri="https://evil.example/cb")
    assert_page(response, 400)
    assert session_cookie_header(response) is None
    # A scope added in the consent form's hidden fields: refused back to the client.
    consent = browser.sign_in(page)
    assert 'id="allow"' in consent.get_data(as_text=True)
    assert_redirect_error(browser.submit(consent, "allow", scope="openid admin"), "invalid_scope", status=303)
    assert_redirect_error(browser.submit(consent, "allow", code_challenge_method="plain"), "invalid_request",
                          status=303)


def test_unknown_form_action_is_a_page(browser):
    assert_page(browser.submit(browser.authorize(), "grant-everything"), 400)


def test_post_with_query_or_wrong_media_type_is_a_page(browser):
    page = browser.authorize()
    response = browser.client.post("/oauth2/authorize?client_id=web", data=urlencode(hidden(page)), base_url=BASE,
                                   content_type="application/x-www-form-urlencoded")
    assert_page(response, 400)
    response = browser.client.post("/oauth2/authorize", json=hidden(page), base_url=BASE)
    assert_page(response, 400)


class AuditEvents:
    """The events the audit log listener wrote to standard error so far, decoded."""

    def __init__(self, capfd) -> None:
        self.capfd, self.events = capfd, []

    def _read(self) -> list[dict]:
        err = self.capfd.readouterr().err
        self.events += [json.loads(line) for line in err.splitlines() if line.startswith('{"ts":')]
        return self.events

    def __len__(self) -> int:
        return len(self._read())

    def __getitem__(self, index):
        return self._read()[index]


@pytest.fixture
def audit_events(capfd):
    return AuditEvents(capfd)


def test_head_is_405_and_issues_nothing(env, browser, audit_events):
    browser.code()                                   # signed in and consented: a GET would give a code
    from storage.models import AuthorizationCode
    with env.app.app_context():
        codes_before = AuthorizationCode.select().count()
    events_before = len(audit_events)
    for query in (params(state="head"), params(response_type="token")):    # a code, or an error redirect
        response = browser.client.head("/oauth2/authorize?" + urlencode(query), base_url=BASE)
        assert response.status_code == 405 and "Location" not in response.headers
        assert response.headers["Allow"] == "GET, POST"                    # RFC 9110 §15.5.6
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        assert response.headers["Cache-Control"] == "no-store"
    with env.app.app_context():
        assert AuthorizationCode.select().count() == codes_before
    assert audit_events[events_before:] == []
    callback(browser.authorize(state="get"))         # GET still answers
    assert [e["event"] for e in audit_events[events_before:]] == ["authorization_code_issued"]


def test_head_of_logout_only_asks(env, browser):
    # GET /oauth2/logout has no side effect (it shows the form), so neither has its HEAD.
    browser.code()
    session = browser.cookie(SESSION_COOKIE)
    response = browser.client.head("/oauth2/logout", base_url=BASE)
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    from storage import users
    with env.app.app_context():
        assert users.session_account(session) is not None
    callback(browser.authorize(prompt="none"))


def test_other_methods_are_405(browser):
    response = browser.client.put("/oauth2/authorize", base_url=BASE)
    assert response.status_code == 405 and "Location" not in response.headers
    assert set(response.headers["Allow"].replace(" ", "").split(",")) == {"GET", "HEAD", "POST"}
    assert_page(response, 405)  # a browser page: HTML, like the endpoint's other errors
    response = browser.client.delete("/oauth2/logout", base_url=BASE)
    assert_page(response, 405)


# --- consent -----------------------------------------------------------------------------------------

def test_consent_page_lists_the_scopes_in_plain_words(browser):
    consent = browser.sign_in(browser.authorize(scope="openid profile email offline_access orders:read"))
    body = assert_page(consent, 200, 'id="allow"')
    assert 'id="deny"' in body and "Example App" in body
    for words in ("Sign you in with your account", "See your profile", "See your email address",
                  "Keep access while you are not using it", "Use the permission <code>orders:read</code>"):
        assert words in body
    assert '<strong id="username">alice</strong>' in body
    assert "https://app.example" in body          # where the person is sent afterwards


def test_allow_issues_a_code_bound_to_the_request(env, browser):
    before = int(time.time())
    values = browser.code(scope="openid profile offline_access", nonce="n-42")
    after = int(time.time())
    assert set(values) == {"code", "state", "iss"}
    assert values["state"] == "st-1" and values["iss"] == ISSUER == env.issuer
    from storage import codes
    from storage.models import AuthorizationCode
    with env.app.app_context():
        row = AuthorizationCode.get()
        assert row.code_hash == codes.code_hash(values["code"]) != values["code"]   # stored hashed
    grant = redeem(env, values["code"])
    assert grant.client_id == "web"
    assert grant.user_sub == account(env, "alice").sub
    assert grant.redirect_uri == REDIRECT
    assert grant.scopes == ("openid", "profile", "offline_access")
    assert grant.nonce == "n-42"
    assert (grant.code_challenge, grant.code_challenge_method) == (CHALLENGE, "S256")
    assert before <= grant.auth_time <= after
    validity = env.settings.validity["authorization_code_validity"]
    assert before + validity <= grant.expires_at <= after + validity
    with pytest.raises(codes.CodeError) as excinfo:
        redeem(env, values["code"])
    assert excinfo.value.reason == "reused"


def test_second_redirect_uri_is_bound_to_the_code(env, browser):
    values = browser.code(redirect_uri=OTHER_REDIRECT)
    assert redeem(env, values["code"]).redirect_uri == OTHER_REDIRECT


def test_consent_is_remembered_and_asked_for_new_scopes(env, browser):
    browser.code(scope="openid profile")
    # The same scopes (or fewer): straight back to the client, no page.
    values = callback(browser.authorize(scope="profile openid"))
    assert redeem(env, values["code"]).scopes == ("profile", "openid")
    callback(browser.authorize(scope="openid"))
    # A new scope: asked again, and the approval covers both from then on.
    consent = browser.authorize(scope="openid email")
    assert_page(consent, 200, 'id="allow"')
    callback(browser.submit(consent, "allow"), 303)
    callback(browser.authorize(scope="openid profile email"))
    from storage import consents
    with env.app.app_context():
        assert consents.granted(account(env, "alice").sub, "web") == {"openid", "profile", "email"}
        assert consents.granted(account(env, "bob").sub, "web") == frozenset()
        consents.revoke(account(env, "alice").sub, "web")
    assert_page(browser.authorize(), 200, 'id="allow"')


def test_consent_is_per_user(env, browser):
    browser.code()
    other = Browser(env.app)
    consent = other.sign_in(other.authorize(), username="bob")
    assert_page(consent, 200, 'id="allow"')


def test_deny_is_access_denied_and_remembers_nothing(env, browser):
    consent = browser.sign_in(browser.authorize())
    assert_redirect_error(browser.submit(consent, "deny"), "access_denied", status=303)
    from storage.models import AuthorizationCode, Consent
    with env.app.app_context():
        assert AuthorizationCode.select().count() == 0
        assert Consent.select().count() == 0
    assert_page(browser.authorize(), 200, 'id="allow"')


def test_first_party_client_skips_consent(env, browser):
    response = browser.sign_in(browser.authorize(client_id="portal", redirect_uri=PORTAL_REDIRECT))
    values = callback(response, 303, PORTAL_REDIRECT)
    assert redeem(env, values["code"]).client_id == "portal"


def test_prompt_consent_asks_again(browser):
    browser.code()
    assert_page(browser.authorize(prompt="consent"), 200, 'id="allow"')
    page = browser.authorize(client_id="portal", redirect_uri=PORTAL_REDIRECT, prompt="consent")
    assert_page(page, 200, 'id="allow"')     # even a first-party client, when the client asks
    callback(browser.submit(page, "allow"), 303, PORTAL_REDIRECT)


def test_allow_after_the_session_ended_asks_to_sign_in(browser):
    consent = browser.sign_in(browser.authorize())
    logout = browser.get("/oauth2/logout")
    browser.post("/oauth2/logout", {"csrf_token": hidden(logout)["csrf_token"]})
    response = browser.submit(consent, "allow")
    assert_page(response, 200, "Your session ended")
    assert 'id="signin"' in response.get_data(as_text=True)
    callback(browser.submit(browser.sign_in(response), "allow"), 303)


# --- prompt, max_age, existing sessions --------------------------------------------------------------

def test_prompt_none_without_a_session_is_login_required(browser):
    assert_redirect_error(browser.authorize(prompt="none"), "login_required")


def test_prompt_none_without_consent_is_consent_required(browser):
    browser.sign_in(browser.authorize())          # signed in, consent page not answered
    assert_redirect_error(browser.authorize(prompt="none"), "consent_required")


def test_prompt_none_with_session_and_consent_gives_a_code(env, browser):
    browser.code()
    values = callback(browser.authorize(prompt="none", state="silent"))
    assert values["state"] == "silent" and redeem(env, values["code"]).user_sub == account(env, "alice").sub


def test_prompt_login_signs_in_again_with_a_new_session(env, browser):
    browser.code()
    old = browser.cookie(SESSION_COOKIE)
    page = browser.authorize(prompt="login")
    assert_page(page, 200, 'name="username" value="alice"')   # prefilled with the signed-in user
    response = browser.sign_in(page)
    values = callback(response, 303)                          # consent is remembered
    assert session_cookie_header(response) is not None
    new = browser.cookie(SESSION_COOKIE)
    assert new != old
    from storage import users
    with env.app.app_context():
        assert users.session_account(old) is None             # the previous sign-in ended
        assert users.session_account(new)[1] == redeem(env, values["code"]).auth_time


def test_prompt_login_as_someone_else(env, browser):
    browser.code()
    response = browser.sign_in(browser.authorize(prompt="login"), username="bob")
    consent = assert_page(response, 200, 'id="allow"')        # bob has not approved the client
    assert '<strong id="username">bob</strong>' in consent


def test_prompt_select_account_shows_the_sign_in_page_empty(browser):
    browser.code()
    assert_page(browser.authorize(prompt="select_account"), 200, 'name="username" value=""')


def test_max_age(env, browser):
    browser.code()
    from storage.models import UserSession
    with env.app.app_context():
        UserSession.update(auth_time=int(time.time()) - 600).execute()
    callback(browser.authorize(max_age="3600"))
    assert_page(browser.authorize(max_age="300"), 200, 'id="signin"')
    assert_redirect_error(browser.authorize(max_age="300", prompt="none"), "login_required")
    # max_age=0 always asks (OIDC Core §3.1.2.1), and the sign-in that follows satisfies it.
    response = browser.sign_in(browser.authorize(max_age="0"))
    values = callback(response, 303)
    assert redeem(env, values["code"]).auth_time >= int(time.time()) - 5


def test_deleted_user_session_ends(env, browser):
    browser.code()
    from storage import users
    with env.app.app_context():
        users.delete("alice")
    assert_redirect_error(browser.authorize(prompt="none"), "login_required")


def as_get(response) -> str:
    """The GET a client's POSTed authorization request is sent on as (a 303 with the pages' headers)."""
    assert response.status_code == 303, (response.status_code, response.get_data(as_text=True)[:300])
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers.getlist("Set-Cookie") == []   # no fresh CSRF cookie for other tabs' forms
    location = response.headers["Location"]
    assert location.startswith("/oauth2/authorize?")
    return location


def test_client_post_of_the_authorization_request_is_sent_on_as_a_get(env, browser):
    # OIDC Core §3.1.2.1: the request may be a form POST by the client's page. That POST is
    # cross-site and carries no SameSite=Lax cookie, so it is answered with a 303 to the same
    # request as a GET, which does.
    location = as_get(browser.post("/oauth2/authorize", params(login_hint="alice", foo="bar")))
    assert parse_qs(urlsplit(location).query, strict_parsing=True) == {
        name: [value] for name, value in params(login_hint="alice", foo="bar").items()}
    page = browser.get(location)
    assert_page(page, 200, 'name="username" value="alice"')
    callback(browser.submit(browser.sign_in(page), "allow"), 303)
    # Signed in and consented: the GET the POST leads to gives the code, also with prompt=none.
    values = callback(browser.get(as_get(browser.post("/oauth2/authorize", params(state="posted", prompt="none")))))
    assert values["state"] == "posted"
    assert redeem(env, values["code"]).user_sub == account(env, "alice").sub
    # Nothing is checked before the GET but the form itself: an unknown client is the GET's page.
    assert_page(browser.get(as_get(browser.post("/oauth2/authorize", params(client_id="nobody")))), 400,
                "Unknown application")


def test_client_post_without_cookies_sets_none(env):
    # A browser with no cookie at all (the first visit): the 303 mints no CSRF cookie either.
    as_get(Browser(env.app).post("/oauth2/authorize", params()))


def test_client_post_refused_by_the_strict_parser_goes_back_to_the_client(browser):
    body = urlencode(params()) + "&scope=openid"
    values = assert_redirect_error(browser.post("/oauth2/authorize", body), "invalid_request", status=303)
    assert "more than once" in values["error_description"]
    assert_page(browser.post("/oauth2/authorize", urlencode(params(client_id=None)) + "&state=x&state=y"), 400)


def test_client_post_too_large_for_a_url_is_a_page(browser):
    response = browser.post("/oauth2/authorize", params(foo="x" * 8000))
    assert_page(response, 413, "too large")
    # The body bound of every form holds as before.
    assert_page(browser.post("/oauth2/authorize", params(foo="x" * 70000)), 413)


def test_input_is_escaped_everywhere(env, browser):
    from storage import clients
    with env.app.app_context():
        clients.create("evil", "client_secret_basic", client_name="<b>Evil</b><script>x()</script>",
                       description="<img src=x onerror=y()>", grant_types=GRANTS, redirect_uris=(REDIRECT,),
                       scopes=SCOPES)
    state = '"><script>alert(1)</script>'
    page = browser.authorize(client_id="evil", state=state, login_hint='"><script>alert(2)</script>')
    body = assert_page(page, 200)
    assert "<script>" not in body and "&lt;b&gt;Evil&lt;/b&gt;" in body
    assert hidden(page)["state"] == state
    consent = browser.sign_in(page)
    body = assert_page(consent, 200, 'id="allow"')
    assert "<img" not in body and "&lt;img src=x" in body
    values = callback(browser.submit(consent, "allow"), 303)
    assert values["state"] == state


# --- signing out -------------------------------------------------------------------------------------

def test_logout(env, browser):
    assert_page(browser.get("/oauth2/logout"), 200, 'id="not-signed-in"')
    browser.code()
    page = browser.get("/oauth2/logout")
    assert_page(page, 200, 'id="signout"')
    old = browser.cookie(SESSION_COOKIE)
    # Without the CSRF token nothing happens.
    assert_page(browser.post("/oauth2/logout", {}), 400, "The form expired")
    assert_page(browser.post("/oauth2/logout", {"csrf_token": "y" * 43}), 400)
    callback(browser.authorize(prompt="none"))
    response = browser.post("/oauth2/logout", {"csrf_token": hidden(page)["csrf_token"]})
    assert_page(response, 200, 'id="signed-out"')
    assert session_cookie_header(response).startswith(SESSION_COOKIE + "=;")   # deleted
    assert browser.cookie(SESSION_COOKIE) is None
    from storage import users
    with env.app.app_context():
        assert users.session_account(old) is None
    assert_redirect_error(browser.authorize(prompt="none"), "login_required")


# --- consent storage -----------------------------------------------------------------------------------

def test_consent_storage(any_db):
    from storage import consents
    assert consents.granted("sub-1", "c") == frozenset()
    assert consents.grant("sub-1", "c", ("openid",)) == {"openid"}
    assert consents.grant("sub-1", "c", ("openid",)) == {"openid"}      # the same again, same second
    assert consents.grant("sub-1", "c", ("email", "profile")) == {"openid", "email", "profile"}
    consents.grant("sub-1", "C", ("offline_access",))
    consents.grant("sub-2", "c", ("openid",))
    assert consents.granted("sub-1", "c") == {"openid", "email", "profile"}
    assert consents.granted("sub-1", "C") == {"offline_access"}
    assert consents.revoke("sub-1", "c") is True
    assert consents.revoke("sub-1", "c") is False
    assert consents.granted("sub-1", "c") == frozenset()
    assert consents.granted("sub-2", "c") == {"openid"}


# --- over HTTPS against the real server --------------------------------------------------------------

@pytest.fixture(scope="module")
def live(tmp_path_factory):
    directory = tmp_path_factory.mktemp("authorize-live")
    port = free_port()
    shared_keystore(directory)
    server = Server(write_config(directory, port), port).start()
    try:
        server.cli("users", "create", "--username", "carol", "--password-stdin", "--email", "carol@example.com",
                   input=PASSWORD + "\n")
        server.cli("clients", "create", "--client-id", "live-web", "--auth-method", "client_secret_basic",
                   "--client-name", "Live App", "--grant-type", "authorization_code", "--grant-type",
                   "refresh_token", "--redirect-uri", REDIRECT, *[a for s in SCOPES for a in ("--scope", s)])
        server.cli("clients", "create", "--client-id", "live-native", "--auth-method", "none",
                   "--grant-type", "authorization_code", "--redirect-uri", "http://127.0.0.1/cb", "--scope", "openid")
        yield server
    finally:
        server.stop()


def live_redeem(server: Server, code: str):
    from app import build_app
    from storage import codes
    from storage.models import AuthorizationCode
    app = build_app(str(server.config_path))
    with app.app_context():
        row = AuthorizationCode.get(AuthorizationCode.code_hash == codes.code_hash(code))
        return codes.redeem(code, row.client_id)


def test_authorization_code_flow_over_https(live):
    session = requests.Session()
    # Per request: a Session's own `verify` loses to REQUESTS_CA_BUNDLE (requests#3829).
    options = {"verify": live.ca, "allow_redirects": False, "timeout": 15}
    url = live.base + "/oauth2/authorize"
    query = params(client_id="live-web", scope="openid email offline_access", state="live-state")
    page = session.get(url, params=query, **options)
    assert page.status_code == 200 and 'id="signin"' in page.text
    assert page.headers["X-Frame-Options"] == "DENY" and page.headers["Cache-Control"] == "no-store"

    wrong = session.post(url, data={**hidden(page.text), "action": "signin", "username": "carol",
                                    "password": "not the password"}, **options)
    assert wrong.status_code == 200 and "The user name or password is incorrect." in wrong.text

    consent = session.post(url, data={**hidden(page.text), "action": "signin", "username": "carol",
                                      "password": PASSWORD}, **options)
    assert consent.status_code == 200 and 'id="allow"' in consent.text, consent.text[:500]
    cookie = next(h for h in consent.raw.headers.getlist("Set-Cookie") if h.startswith(SESSION_COOKIE + "="))
    assert {"secure", "httponly", "samesite=lax", "path=/"} <= {a.strip().lower() for a in cookie.split(";")[1:]}

    response = session.post(url, data={**hidden(consent.text), "action": "allow"}, **options)
    assert response.status_code == 303
    assert response.headers["Cache-Control"] == "no-store"
    location = response.headers["Location"]
    assert location.startswith(REDIRECT + "?")
    values = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert values["state"] == "live-state" and values["iss"] == live.base + "/oauth2/token"
    grant = live_redeem(live, values["code"])
    assert grant.client_id == "live-web" and grant.scopes == ("openid", "email", "offline_access")
    assert grant.redirect_uri == REDIRECT and grant.code_challenge == CHALLENGE and grant.nonce == "n-1"

    # The session and the consent hold on the next request (another worker, maybe): no page at all.
    again = session.get(url, params={**query, "state": "again"}, **options)
    assert again.status_code == 302
    assert "code=" in again.headers["Location"] and "state=again" in again.headers["Location"]

    # Signed out, prompt=none is login_required.
    logout = session.get(live.base + "/oauth2/logout", **options)
    assert 'id="signout"' in logout.text
    out = session.post(live.base + "/oauth2/logout", data={"csrf_token": hidden(logout.text)["csrf_token"]},
                       **options)
    assert out.status_code == 200 and 'id="signed-out"' in out.text
    silent = session.get(url, params={**query, "prompt": "none"}, **options)
    assert silent.status_code == 302 and "error=login_required" in silent.headers["Location"]


def test_errors_over_https(live):
    url = live.base + "/oauth2/authorize"
    page = live.get("/oauth2/authorize", params=params(client_id="live-web", redirect_uri="https://evil.example/cb"),
                    allow_redirects=False)
    assert page.status_code == 400 and "Location" not in page.headers
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    unknown = live.get("/oauth2/authorize", params=params(client_id="nobody"), allow_redirects=False)
    assert unknown.status_code == 400 and "Unknown application" in unknown.text
    scope = requests.get(url, params=params(client_id="live-web", scope="openid admin"), verify=live.ca,
                         allow_redirects=False, timeout=15)
    assert scope.status_code == 302
    values = {k: v[0] for k, v in parse_qs(urlsplit(scope.headers["Location"]).query).items()}
    assert values["error"] == "invalid_scope" and values["state"] == "st-1"
    csrf = requests.post(url, data={**params(client_id="live-web"), "action": "signin", "username": "carol",
                                    "password": PASSWORD}, verify=live.ca, allow_redirects=False, timeout=15)
    assert csrf.status_code == 400 and "The form expired" in csrf.text
    assert SESSION_COOKIE not in csrf.headers.get("Set-Cookie", "")


def test_posted_request_head_and_loopback_port_over_https(live):
    session = requests.Session()
    options = {"verify": live.ca, "allow_redirects": False, "timeout": 15}
    url = live.base + "/oauth2/authorize"
    query = params(client_id="live-web", scope="openid", state="posted")
    # A client's POSTed request: 303 to the same request by GET, no cookie set.
    posted = session.post(url, data=query, **options)
    assert posted.status_code == 303 and "Set-Cookie" not in posted.headers
    assert posted.headers["Cache-Control"] == "no-store"
    location = posted.headers["Location"]
    assert location.startswith("/oauth2/authorize?")
    assert {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()} == query
    page = session.get(live.base + location, **options)
    assert page.status_code == 200 and 'id="signin"' in page.text
    done = session.post(url, data={**hidden(page.text), "action": "signin", "username": "carol",
                                   "password": PASSWORD}, **options)
    if done.status_code == 200:   # the consent page, unless an earlier test approved the client
        assert 'id="allow"' in done.text
        done = session.post(url, data={**hidden(done.text), "action": "allow"}, **options)
    assert done.status_code == 303 and done.headers["Location"].startswith(REDIRECT + "?code=")
    # Signed in: the session is seen by the GET a POST with prompt=none leads to.
    posted = session.post(url, data={**query, "prompt": "none", "state": "silent"}, **options)
    silent = session.get(live.base + posted.headers["Location"], **options)
    assert silent.status_code == 302 and "code=" in silent.headers["Location"]
    assert "state=silent" in silent.headers["Location"]

    # HEAD would run the GET: 405, no code.
    head = session.head(url, params={**query, "state": "head"}, **options)
    assert head.status_code == 405 and head.headers["Allow"] == "GET, POST" and "Location" not in head.headers

    # A loopback redirect URI on the port the native app picked.
    native = session.get(url, params=params(client_id="live-native", scope="openid",
                                            redirect_uri="http://127.0.0.1:49152/cb"), **options)
    assert native.status_code == 200 and 'id="allow"' in native.text
    back = session.post(url, data={**hidden(native.text), "action": "allow"}, **options)
    assert back.status_code == 303 and back.headers["Location"].startswith("http://127.0.0.1:49152/cb?code=")
    other = session.get(url, params=params(client_id="live-native", scope="openid",
                                           redirect_uri="http://127.0.0.1:49152/other"), **options)
    assert other.status_code == 400 and "Location" not in other.headers


def test_revoke_consent_over_https(live):
    """`flask users revoke-consent` against the running server: the client's refresh and access
    tokens for the user stop working at once, and the consent page is shown again."""
    created = live.cli("clients", "create", "--client-id", "live-revoke", "--auth-method", "client_secret_basic",
                       "--grant-type", "authorization_code", "--grant-type", "refresh_token",
                       "--redirect-uri", REDIRECT, "--scope", "openid", "--scope", "offline_access")
    secret = json.loads(created.stdout)["client_secret"]
    session = requests.Session()
    options = {"verify": live.ca, "allow_redirects": False, "timeout": 15}
    url = live.base + "/oauth2/authorize"
    query = params(client_id="live-revoke", scope="openid offline_access")
    page = session.get(url, params=query, **options)
    consent = session.post(url, data={**hidden(page.text), "action": "signin", "username": "carol",
                                      "password": PASSWORD}, **options)
    assert 'id="allow"' in consent.text
    back = session.post(url, data={**hidden(consent.text), "action": "allow"}, **options)
    code = parse_qs(urlsplit(back.headers["Location"]).query)["code"][0]
    tokens = requests.post(live.base + "/oauth2/token", auth=("live-revoke", secret), verify=live.ca, timeout=15,
                           data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                                 "code_verifier": VERIFIER})
    assert tokens.status_code == 200, tokens.text
    access, refresh = tokens.json()["access_token"], tokens.json()["refresh_token"]
    bearer = {"Authorization": f"Bearer {access}"}
    assert live.get("/oauth2/userinfo", headers=bearer).status_code == 200

    done = live.cli("users", "revoke-consent", "--username", "carol", "--client-id", "live-revoke")
    assert done.stdout == ("withdrew the consent of carol for live-revoke; revoked 1 refresh tokens, "
                           "1 access tokens and 0 authorization codes\n")
    refused = requests.post(live.base + "/oauth2/token", auth=("live-revoke", secret), verify=live.ca, timeout=15,
                            data={"grant_type": "refresh_token", "refresh_token": refresh})
    assert_oauth_error(refused, 400, "invalid_grant")
    assert live.get("/oauth2/userinfo", headers=bearer).status_code == 401
    again = session.get(url, params=query, **options)
    assert again.status_code == 200 and 'id="allow"' in again.text
    nothing = live.cli("users", "revoke-consent", "--username", "carol", "--client-id", "live-revoke", check=False)
    assert nothing.returncode == 1 and "carol has no consent and no live tokens" in nothing.stderr


class NativeApp:
    """A web page on another site (http://127.0.0.1:PORT) that POSTs an authorization request to the
    server (OIDC Core §3.1.2.1) and is its loopback redirect URI: it records the callbacks."""

    def __init__(self, authorize_url: str, client_id: str) -> None:
        app = self
        self.callbacks: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                path = urlsplit(self.path)
                if path.path == "/cb":
                    app.callbacks.append(self.path)
                    body = '<p id="callback">back at the app</p>'
                else:   # /post?state=…&prompt=…: the form, sent by a click
                    extra = {k: v[0] for k, v in parse_qs(path.query).items()}
                    fields = params(client_id=client_id, scope="openid", redirect_uri=app.redirect_uri, **extra)
                    inputs = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                                     for k, v in fields.items())
                    body = (f'<form method="post" action="{html.escape(authorize_url)}">{inputs}'
                            f'<button type="submit" id="go">Sign in</button></form>')
                data = f"<!doctype html><title>app</title>{body}".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self._server.server_port}"
        self.redirect_uri = self.base + "/cb"   # registered as http://127.0.0.1/cb: any port (RFC 8252 §7.3)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def test_cross_site_post_of_the_request_in_chromium(live, tmp_path):
    """The SameSite=Lax session cookie is not sent with a cross-site POST: only the GET the server
    answers it with sees the session, so a signed-in user is not asked again and prompt=none works."""
    app = NativeApp(live.base + "/oauth2/authorize", "live-native")
    try:
        with chromium(tmp_path, trust_cert=live.ca) as driver:
            driver.get(app.base + "/post?state=first")
            driver.find_element("id", "go").click()
            assert wait_for_url(driver, live.base + "/oauth2/authorize?").startswith(
                live.base + "/oauth2/authorize?response_type=code&client_id=live-native")
            wait_for_element(driver, "username").send_keys("carol")
            driver.find_element("id", "password").send_keys(PASSWORD)
            driver.find_element("id", "signin").click()
            wait_until(driver, lambda d: d.current_url.startswith(app.redirect_uri)
                       or d.find_elements("id", "allow"), "neither the consent page nor the callback")
            if not driver.current_url.startswith(app.redirect_uri):
                driver.find_element("id", "allow").click()
            first = parse_qs(urlsplit(wait_for_url(driver, app.redirect_uri + "?")).query)
            assert first["state"] == ["first"] and "code" in first

            # Signed in now: a cross-site POST with prompt=none gives a code without any page.
            driver.get(app.base + "/post?state=silent&prompt=none")
            driver.find_element("id", "go").click()
            wait_for_url(driver, app.redirect_uri + "?code=")
            silent = parse_qs(urlsplit(driver.current_url).query)
            assert silent["state"] == ["silent"] and "error" not in silent
            assert live_redeem(live, silent["code"][0]).redirect_uri == app.redirect_uri
    finally:
        app.close()

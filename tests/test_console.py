"""The management console (/console): access control, CSRF, every page and action, the refusals of
the public key forms, the keystore as keytool sees it, recorded failures, and the end-to-end flow
(service provider created and given a certificate in the console, then a token) — in-process with
Flask's test client and over HTTPS against the real server."""

from __future__ import annotations

import base64
import datetime
import html
import io
import json
import re
import hashlib
import secrets
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from support import make_in_process
from support import (KEYSTORE_PASSWORD, JWKSServer, Server, assert_oauth_error, claims_for, ec_key, free_port, jwks_of, pem,
                     rsa_key, sign, token_form, write_config)

BASE = "https://localhost:9443"
ADMIN, ADMIN_PASSWORD = "admin", "admin-password-1"
USER, USER_PASSWORD = "alice", "alice-password-1"
KEYTOOL = shutil.which("keytool")
needs_keytool = pytest.mark.skipif(KEYTOOL is None, reason="keytool (a JDK) is not installed")

# Every page but the sign-in, with a method: none of them may show anything without an admin.
PAGES = [
    ("GET", "/console/"),
    ("GET", "/console/service-providers"),
    ("GET", "/console/report"),
    ("GET", "/console/service-providers?sort=failures"),
    ("GET", "/console/service-providers?q=x"),
    ("GET", "/console/service-providers/add"),
    ("POST", "/console/service-providers/add"),
    ("GET", "/console/service-providers/edit?client_id=client-1"),
    ("POST", "/console/service-providers/edit"),
    ("POST", "/console/service-providers/regenerate-secret"),
    ("GET", "/console/service-providers/keys?client_id=client-1"),
    ("POST", "/console/service-providers/keys"),
    ("GET", "/console/service-providers/delete?client_id=client-1"),
    ("POST", "/console/service-providers/delete"),
    ("GET", "/console/keystore"),
    ("POST", "/console/keystore/import"),
    ("GET", "/console/keystore/entry?alias=wso2carbon"),
    ("GET", "/console/keystore/delete?alias=wso2carbon"),
    ("POST", "/console/keystore/delete"),
    ("POST", "/console/logout"),
]
POSTS = [path for method, path in PAGES if method == "POST" and path != "/console/logout"] + ["/console/logout",
                                                                                               "/console/login"]


# --- helpers ---------------------------------------------------------------------------------

def certificate(key, cn: str = "client", days: int = 30, not_before_days: int = -1) -> x509.Certificate:
    """A self-signed certificate for `key`, valid from `not_before_days` to `days` from now."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now + datetime.timedelta(days=not_before_days))
            .not_valid_after(now + datetime.timedelta(days=days)).sign(key, hashes.SHA256()))


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def cert_der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def by_id(page: str, element_id: str) -> str | None:
    """The text of the element with this id (markup removed, entities decoded), or None."""
    match = re.search(rf'<(\w+)[^>]*\bid="{re.escape(element_id)}"[^>]*>(.*?)</\1>', page, re.S)
    if match is None:
        return None
    return html.unescape(re.sub(r"<[^>]+>", "", match.group(2))).strip()


def all_by_class(page: str, css_class: str) -> list[str]:
    return [html.unescape(re.sub(r"<[^>]+>", "", m)).strip()
            for m in re.findall(rf'<\w+[^>]*class="[^"]*\b{re.escape(css_class)}\b[^"]*"[^>]*>(.*?)</', page, re.S)]


def error_text(page: str) -> str:
    found = re.search(r'class="error"[^>]*>(.*?)</p>', page, re.S)
    return html.unescape(re.sub(r"<[^>]+>", "", found.group(1))).strip() if found else ""


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def assert_page_headers(response) -> None:
    headers = response.headers
    assert headers["Cache-Control"] == "no-store"
    assert headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"


def basic(client_id: str, secret: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


class Browser:
    """A browser on the in-process console: Flask's test client over https (for __Host- cookies)."""

    def __init__(self, env) -> None:
        self.env = env
        self.client = env.app.test_client()
        self.csrf = ""

    def get(self, path: str, **kwargs):
        response = self.client.get(path, base_url=BASE, **kwargs)
        if response.status_code == 200 and 'name="csrf_token"' in response.text:
            self.csrf = csrf_of(response.text)
        return response

    def post(self, path: str, data: dict | None = None, files: dict | None = None, csrf: bool = True, **kwargs):
        """A form POST: urlencoded, or multipart when `files` ({name: (bytes, filename)}) is given."""
        if not self.csrf:
            self.get("/console/login")
        form = {**({"csrf_token": self.csrf} if csrf else {}), **(data or {})}
        if files is not None:
            form.update({name: (io.BytesIO(content), filename) for name, (content, filename) in files.items()})
            return self.client.post(path, base_url=BASE, data=form, content_type="multipart/form-data", **kwargs)
        return self.client.post(path, base_url=BASE, data=form, **kwargs)

    def login(self, username: str = ADMIN, password: str = ADMIN_PASSWORD):
        self.get("/console/login")
        return self.post("/console/login", {"username": username, "password": password})

    # --- actions

    def add_sp(self, name: str = "My application", method: str = "private_key_jwt", **extra) -> tuple[str, str | None]:
        response = self.post("/console/service-providers/add", {"client_name": name, "description": "An app",
                                                                "token_endpoint_auth_method": method, **extra})
        assert response.status_code == 200, error_text(response.text)
        return by_id(response.text, "client-id"), by_id(response.text, "client-secret")

    def save_keys(self, client_id: str, data: dict | None = None, files: dict | None = None):
        return self.post("/console/service-providers/keys", {"client_id": client_id, **(data or {})},
                         files=files or {})


@pytest.fixture
def env(tmp_path):
    env = make_in_process(tmp_path)
    from storage import users
    with env.app.app_context():
        users.create(ADMIN, ADMIN_PASSWORD, is_admin=True)
        users.create(USER, USER_PASSWORD)
    return env


@pytest.fixture
def browser(env) -> Browser:
    b = Browser(env)
    response = b.login()
    assert response.status_code == 303, response.text
    return b


def stored(env, client_id: str):
    from storage import clients
    with env.app.app_context():
        return clients.get(client_id)


def register(env, client_id: str, method: str = "private_key_jwt", **kwargs):
    from storage import clients
    with env.app.app_context():
        return clients.create(client_id, method, grant_types=("client_credentials",), scopes=("openid",), **kwargs)


def token_with(env, client_id: str, key, **claims):
    return env.post(token_form(sign(key, claims_for(client_id, env.issuer, **claims))))


# --- access -------------------------------------------------------------------------------------

@pytest.mark.parametrize("method,path", PAGES)
def test_without_a_session_every_page_redirects_to_sign_in_and_shows_nothing(env, method, path):
    register(env, "client-1")
    response = env.app.test_client().open(path, method=method, base_url=BASE)
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert location.path == "/console/login"
    assert response.data == b""
    assert response.headers["Cache-Control"] == "no-store"


def test_redirect_to_sign_in_remembers_the_console_page(env):
    response = env.app.test_client().get("/console/keystore/entry?alias=wso2carbon", base_url=BASE)
    assert parse_qs(urlsplit(response.headers["Location"]).query) == {"next": ["/console/keystore/entry?alias=wso2carbon"]}
    b = Browser(env)
    page = b.get(response.headers["Location"])
    assert 'name="next" value="/console/keystore/entry?alias=wso2carbon"' in page.text
    signed_in = b.post("/console/login", {"username": ADMIN, "password": ADMIN_PASSWORD,
                                          "next": "/console/keystore/entry?alias=wso2carbon"})
    assert signed_in.status_code == 303
    assert signed_in.headers["Location"] == "/console/keystore/entry?alias=wso2carbon"


@pytest.mark.parametrize("next_url", ["https://evil.example/", "//evil.example/console/", "/oauth2/token",
                                      "/console/../oauth2/token", "/console/x\\y"])
def test_sign_in_never_redirects_outside_the_console(env, next_url):
    b = Browser(env)
    b.get("/console/login")
    response = b.post("/console/login", {"username": ADMIN, "password": ADMIN_PASSWORD, "next": next_url})
    assert response.status_code == 303
    assert response.headers["Location"] == "/console/service-providers"


def test_sign_in_page_and_session_cookie(env):
    b = Browser(env)
    page = b.get("/console/login")
    assert page.status_code == 200
    assert_page_headers(page)
    assert 'action="/console/login"' in page.text and 'id="signin"' in page.text
    response = b.post("/console/login", {"username": ADMIN, "password": ADMIN_PASSWORD})
    assert response.status_code == 303
    assert response.headers["Location"] == "/console/service-providers"
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("__Host-idp_session="))
    assert "Secure" in cookie and "HttpOnly" in cookie and "Path=/" in cookie and "SameSite=Lax" in cookie
    home = b.get("/console/service-providers")
    assert home.status_code == 200
    assert by_id(home.text, "signed-in-user") == ADMIN
    # Signed in, the sign-in page goes straight to the console.
    assert b.get("/console/login").headers["Location"] == "/console/service-providers"


@pytest.mark.parametrize("username,password", [(ADMIN, "wrong-password"), ("nobody", "whatever-pw"),
                                               (USER, USER_PASSWORD)])
def test_sign_in_refusals_are_generic_and_start_no_session(env, username, password):
    b = Browser(env)
    b.get("/console/login")
    response = b.post("/console/login", {"username": username, "password": password})
    assert response.status_code == 401
    assert_page_headers(response)
    assert by_id(response.text, "signin-error") == "The user name or password is incorrect."
    assert not any(c.startswith("__Host-idp_session=") for c in response.headers.getlist("Set-Cookie"))
    assert b.get("/console/service-providers").status_code == 302


def test_sign_in_is_rate_limited_per_user(make_idp):
    env = make_idp(rate_limit={"signin_failures_per_user": 2})
    from storage import users
    with env.app.app_context():
        users.create(ADMIN, ADMIN_PASSWORD, is_admin=True)
    b = Browser(env)
    b.get("/console/login")
    for _ in range(2):
        assert b.post("/console/login", {"username": ADMIN, "password": "wrong-password"}).status_code == 401
    blocked = b.post("/console/login", {"username": ADMIN, "password": ADMIN_PASSWORD})
    assert blocked.status_code == 429
    assert int(blocked.headers["Retry-After"]) > 0
    assert "Too many failed sign-ins" in by_id(blocked.text, "signin-error")
    assert not any(c.startswith("__Host-idp_session=") for c in blocked.headers.getlist("Set-Cookie"))


@pytest.mark.parametrize("method,path", [p for p in PAGES if p[1] != "/console/"])
def test_a_signed_in_user_who_is_not_an_admin_gets_403(env, method, path):
    register(env, "client-1")
    b = Browser(env)
    # A user signed in at the authorization endpoint has a session, but no admin rights.
    from server.web import SESSION_COOKIE
    from storage import users
    with env.app.app_context():
        value = users.start_session(users.get_by_username(USER), 3600)
    b.client.set_cookie(SESSION_COOKIE, value, domain="localhost", secure=True)
    b.get("/console/login")
    response = b.client.open(path, method=method, base_url=BASE, data={"csrf_token": b.csrf})
    assert response.status_code == 403
    assert_page_headers(response)
    assert response.content_type == "text/html; charset=utf-8"
    assert "client-1" not in response.text and "wso2carbon" not in response.text


def test_sign_out_ends_the_session(browser):
    response = browser.post("/console/logout")
    assert response.status_code == 303
    assert response.headers["Location"] == "/console/login"
    assert browser.get("/console/service-providers").status_code == 302


@pytest.mark.parametrize("path", POSTS)
@pytest.mark.parametrize("token", ["missing", "wrong"])
def test_every_post_needs_the_csrf_token(browser, path, token):
    register(browser.env, "client-1")
    data = {"client_id": "client-1", "alias": "x", "client_name": "CSRF", "username": ADMIN,
            "password": ADMIN_PASSWORD}
    if token == "wrong":
        data["csrf_token"] = "A" * 43
    response = browser.post(path, data, csrf=False)
    assert response.status_code == 400
    assert_page_headers(response)
    assert "The form expired or came from another site" in response.text
    assert stored(browser.env, "client-1") is not None
    assert browser.get("/console/service-providers?q=CSRF").text.count("sp-link") == 0


def test_multipart_posts_need_the_csrf_token_too(browser):
    cid, _ = browser.add_sp()
    response = browser.post("/console/service-providers/keys", {"client_id": cid, "key_source": "keystore"},
                            files={"certificate_file": (b"", "")}, csrf=False)
    assert response.status_code == 400
    assert "The form expired" in response.text


def test_a_form_from_another_site_is_refused(browser):
    response = browser.post("/console/service-providers/add", {"client_name": "Cross-site"},
                            headers={"Origin": "https://evil.example"})
    assert response.status_code == 403
    assert browser.get("/console/service-providers?q=Cross").text.count("sp-link") == 0


def test_unknown_console_page_is_an_html_404(browser):
    response = browser.get("/console/nothing-here")
    assert response.status_code == 404
    assert response.content_type == "text/html; charset=utf-8"


# --- service providers --------------------------------------------------------------------------

def test_list_and_search_by_name_or_client_id(browser):
    env = browser.env
    register(env, "billing-service", client_name="Billing")
    register(env, "shop-frontend", client_name="Web shop")
    page = browser.get("/console/service-providers")
    assert page.status_code == 200
    assert_page_headers(page)
    assert all_by_class(page.text, "sp-client-id") == ["billing-service", "shop-frontend"]
    assert all_by_class(browser.get("/console/service-providers?q=SHOP").text, "sp-client-id") == ["shop-frontend"]
    assert all_by_class(browser.get("/console/service-providers?q=billing").text, "sp-client-id") == \
        ["billing-service"]
    assert all_by_class(browser.get("/console/service-providers?q=web").text, "sp-client-id") == ["shop-frontend"]
    none = browser.get("/console/service-providers?q=<nothing>")
    assert "sp-client-id" not in none.text
    assert "<nothing>" in by_id(none.text, "no-results")
    assert "<nothing>" not in none.text  # escaped in the page


def test_add_private_key_jwt_service_provider(browser):
    page = browser.get("/console/service-providers/add")
    assert page.status_code == 200 and 'id="sp-add-form"' in page.text
    client_id, secret = browser.add_sp("Reporting")
    assert re.fullmatch(r"[a-z0-9]{24}", client_id)
    assert secret is None
    client = stored(browser.env, client_id)
    assert (client.client_name, client.description, client.auth_method) == ("Reporting", "An app", "private_key_jwt")
    assert client.grant_types == ("client_credentials",)
    assert client.jwks is None and client.jwks_uri is None
    # Another one gets another id.
    assert browser.add_sp("Reporting 2")[0] != client_id


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_secret_is_shown_once_and_works(browser, method):
    client_id, secret = browser.add_sp("Secret app", method)
    assert secret and len(secret) >= 43
    env = browser.env
    register_scope(browser, client_id, "openid")
    if method == "client_secret_basic":
        response = env.post({"grant_type": "client_credentials"}, headers=basic(client_id, secret))
    else:
        response = env.post({"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret})
    assert response.status_code == 200, response.json
    page = browser.get(f"/console/service-providers/edit?client_id={client_id}")
    assert secret not in page.text
    assert by_id(page.text, "client-secret") is None
    assert by_id(page.text, "client-secret-hidden") is not None


def register_scope(browser: Browser, client_id: str, scope: str) -> None:
    client = stored(browser.env, client_id)
    response = browser.post("/console/service-providers/edit", {
        "client_id": client_id, "client_name": client.client_name, "scope": scope,
        "grant_type.client_credentials": "on", "token_endpoint_auth_method": client.auth_method})
    assert response.status_code == 303, error_text(response.text)


@pytest.mark.parametrize("data,message", [
    ({"client_name": ""}, "Give the service provider a name."),
    ({"client_name": "x", "token_endpoint_auth_method": "none"}, "Choose private_key_jwt"),
    ({"client_name": "x", "token_endpoint_auth_method": "password"}, "Choose private_key_jwt"),
    ({"client_name": "x" * 256}, "client_name must be at most 255"),
])
def test_add_refusals(browser, data, message):
    before = stored_ids(browser.env)
    response = browser.post("/console/service-providers/add", data)
    assert response.status_code == 400
    assert message in error_text(response.text)
    assert stored_ids(browser.env) == before


def stored_ids(env) -> list[str]:
    from storage import clients
    with env.app.app_context():
        return [c.client_id for c in clients.all_clients()]


def test_oauth_configuration_is_saved_and_used_by_the_token_endpoint(browser):
    env = browser.env
    key = rsa_key()
    register(env, "app-1", jwks=jwks_of((key, "k1")))
    page = browser.get("/console/service-providers/edit?client_id=app-1")
    assert page.status_code == 200
    assert by_id(page.text, "client-id") == "app-1"
    assert 'id="oauth-form"' in page.text
    # The token endpoint refuses a scope that is not registered ...
    assert_oauth_error(env.post(token_form(sign(key, claims_for("app-1", env.issuer), headers={"kid": "k1"}),
                                           scope="reports")), 400, "invalid_scope")
    response = browser.post("/console/service-providers/edit", {
        "client_id": "app-1", "client_name": "Reports", "description": "Line one\r\nline two",
        "redirect_uris": "https://app.example.com/cb\r\n\r\nhttp://127.0.0.1:8080/cb\r\n",
        "grant_type.authorization_code": "on", "grant_type.refresh_token": "on",
        "grant_type.client_credentials": "on", "scope": "openid  reports",
        "token_endpoint_auth_method": "private_key_jwt", "token_endpoint_auth_signing_alg": "PS256",
        "audience_policy": "legacy", "token_reuse": "allow", "access_token_lifetime": "600",
        "refresh_token_lifetime": "86400", "id_token_lifetime": "300", "first_party": "on"})
    assert response.status_code == 303, error_text(response.text)
    assert response.headers["Location"] == "/console/service-providers/edit?client_id=app-1&saved=1"
    client = stored(env, "app-1")
    assert client.client_name == "Reports" and client.description == "Line one\nline two"
    assert client.redirect_uris == ("https://app.example.com/cb", "http://127.0.0.1:8080/cb")
    assert client.grant_types == ("authorization_code", "refresh_token", "client_credentials")
    assert client.scopes == ("openid", "reports")
    assert (client.signing_alg, client.audience_policy, client.token_reuse) == ("PS256", "legacy", "allow")
    assert (client.access_token_lifetime, client.refresh_token_lifetime, client.id_token_lifetime) == (600, 86400, 300)
    assert client.first_party is True
    assert client.jwks is not None  # the keys stay as registered
    page = browser.get(response.headers["Location"])
    assert by_id(page.text, "notice").startswith("Saved.")
    assert 'name="first_party" checked' in page.text or 'id="first_party" name="first_party" checked' in page.text
    # ... and takes the new registration from the next request: PS256 only now, scope reports allowed.
    assert env.post(token_form(sign(key, claims_for("app-1", env.issuer), "PS256", {"kid": "k1"}),
                               scope="reports")).status_code == 200
    assert_oauth_error(env.post(token_form(sign(key, claims_for("app-1", env.issuer), "RS256", {"kid": "k1"}))),
                       401, "invalid_client")
    # Emptied fields return to the server defaults.
    response = browser.post("/console/service-providers/edit", {
        "client_id": "app-1", "client_name": "Reports", "grant_type.client_credentials": "on",
        "token_endpoint_auth_method": "private_key_jwt"})
    assert response.status_code == 303, error_text(response.text)
    client = stored(env, "app-1")
    assert (client.signing_alg, client.audience_policy, client.token_reuse, client.access_token_lifetime,
            client.first_party, client.redirect_uris) == (None, None, None, None, False, ())


@pytest.mark.parametrize("value,stored_value", [("true", True), ("false", False), ("", None)])
def test_require_explicit_typ_is_saved_shown_and_used(browser, value, stored_value):
    """The client's own RequireExplicitTyp: set on the form, stored, selected again on the page,
    applied by the token endpoint; empty returns to the server's (false here)."""
    env = browser.env
    key = rsa_key()
    register(env, "app-1", jwks=jwks_of((key, "k1")), require_explicit_typ=not stored_value)
    response = browser.post("/console/service-providers/edit", {
        "client_id": "app-1", "client_name": "App", "grant_type.client_credentials": "on",
        "token_endpoint_auth_method": "private_key_jwt", "require_explicit_typ": value})
    assert response.status_code == 303, error_text(response.text)
    assert stored(env, "app-1").require_explicit_typ is stored_value
    page = browser.get(response.headers["Location"]).text
    select = re.search(r'<select id="require_explicit_typ" name="require_explicit_typ">(.*?)</select>', page, re.S)
    assert re.findall(r'<option value="([^"]*)" selected>', select.group(1)) == ([value] if value else [])
    untyped = env.post(token_form(sign(key, claims_for("app-1", env.issuer), headers={"kid": "k1"})))
    if stored_value:
        assert_oauth_error(untyped, 401, "invalid_client")
    else:
        assert untyped.status_code == 200, untyped.text
    typed = sign(key, claims_for("app-1", env.issuer), headers={"kid": "k1", "typ": "client-authentication+jwt"})
    assert env.post(token_form(typed)).status_code == 200


def test_token_settings_are_saved_and_shown(browser):
    """DPoP binding and nonce (RFC 9449), the access token format (RFC 9068) and the RFC 8707
    resources: set on the configuration form, stored, shown again, and cleared."""
    env = browser.env
    register(env, "app-1", jwks=jwks_of((rsa_key(), "k1")))
    page = browser.get("/console/service-providers/edit?client_id=app-1")
    assert 'id="dpop_bound_access_tokens" name="dpop_bound_access_tokens">' in page.text   # unchecked
    assert '<option value="jwt" selected>' not in page.text and by_id(page.text, "resources") == ""
    response = browser.post("/console/service-providers/edit", {
        "client_id": "app-1", "client_name": "Reports", "grant_type.client_credentials": "on",
        "token_endpoint_auth_method": "private_key_jwt", "dpop_bound_access_tokens": "on",
        "require_dpop_nonce": "on", "access_token_format": "jwt",
        "resources": "https://api.example.com/\r\n\r\n  urn:example:payments \r\n"})
    assert response.status_code == 303, error_text(response.text)
    client = stored(env, "app-1")
    assert (client.dpop_bound_access_tokens, client.require_dpop_nonce, client.access_token_format,
            client.resources) == (True, True, "jwt", ("https://api.example.com/", "urn:example:payments"))
    page = browser.get(response.headers["Location"])
    assert 'id="dpop_bound_access_tokens" name="dpop_bound_access_tokens" checked' in page.text
    assert 'id="require_dpop_nonce" name="require_dpop_nonce" checked' in page.text
    assert '<option value="jwt" selected>' in page.text
    assert by_id(page.text, "resources") == "https://api.example.com/\nurn:example:payments"
    # Saving the keys keeps them (the key form goes through the same metadata).
    assert browser.save_keys("app-1", {"key_source": "jwks", "jwks": jwks_of((rsa_key(), "k2"))}).status_code == 200
    assert stored(env, "app-1").resources == client.resources
    assert stored(env, "app-1").access_token_format == "jwt"
    response = browser.post("/console/service-providers/edit", {
        "client_id": "app-1", "client_name": "Reports", "grant_type.client_credentials": "on",
        "token_endpoint_auth_method": "private_key_jwt", "access_token_format": "opaque"})
    assert response.status_code == 303, error_text(response.text)
    client = stored(env, "app-1")
    assert (client.dpop_bound_access_tokens, client.require_dpop_nonce, client.access_token_format,
            client.resources) == (False, False, "opaque", ())
    response = browser.post("/console/service-providers/edit", {
        "client_id": "app-1", "client_name": "Reports", "grant_type.client_credentials": "on",
        "token_endpoint_auth_method": "private_key_jwt"})
    assert response.status_code == 303 and stored(env, "app-1").access_token_format is None


def test_mtls_par_and_profile_on_the_configuration_form(browser):
    """tls_client_auth (RFC 8705 §2.1.2) named by a subject DN or a SAN, certificate-bound tokens
    (§3.4), PAR (RFC 9126 §6) and the FAPI 2.0 profile: set, stored, shown again, and cleared."""
    env = browser.env
    register(env, "app-1", jwks=jwks_of((rsa_key(), "k1")))
    page = browser.get("/console/service-providers/edit?client_id=app-1")
    assert 'id="require_pushed_authorization_requests" name="require_pushed_authorization_requests">' in page.text
    assert ('id="tls_client_certificate_bound_access_tokens" name="tls_client_certificate_bound_access_tokens">'
            in page.text)
    assert '<option value="fapi2">' in page.text and '<option value="tls_client_auth">' in page.text
    assert '<option value="self_signed_tls_client_auth">' in page.text
    assert 'id="tls_client_auth_value" name="tls_client_auth_value" value=""' in page.text
    form = {"client_id": "app-1", "client_name": "Payments", "grant_type.client_credentials": "on",
            "token_endpoint_auth_method": "tls_client_auth", "tls_client_auth_kind": "tls_client_auth_subject_dn",
            "tls_client_auth_value": "  cn=Payments, o=Example  ", "require_pushed_authorization_requests": "on",
            "tls_client_certificate_bound_access_tokens": "on", "profile": "fapi2"}
    response = browser.post("/console/service-providers/edit", form)
    assert response.status_code == 303, error_text(response.text)
    client = stored(env, "app-1")
    assert (client.auth_method, client.tls_client_auth_subject_dn, client.tls_client_auth_san, client.jwks,
            client.secret_hash) == ("tls_client_auth", "CN=Payments,O=Example", None, None, None)
    assert (client.require_pushed_authorization_requests, client.tls_client_certificate_bound_access_tokens,
            client.profile) == (True, True, "fapi2")
    page = browser.get(response.headers["Location"])
    assert 'id="require_pushed_authorization_requests" name="require_pushed_authorization_requests" checked' in page.text
    assert 'name="tls_client_certificate_bound_access_tokens" checked' in page.text
    assert '<option value="fapi2" selected>' in page.text
    assert '<option value="tls_client_auth_subject_dn" selected>' in page.text
    assert 'name="tls_client_auth_value" value="CN=Payments,O=Example"' in page.text
    assert 'id="configure-keys"' not in page.text and 'id="client-secret-hidden"' not in page.text
    # A SAN instead; the profile and the booleans back to the server's defaults.
    response = browser.post("/console/service-providers/edit", {
        **form, "tls_client_auth_kind": "tls_client_auth_san_ip", "tls_client_auth_value": "2001:DB8:0::5",
        "require_pushed_authorization_requests": "", "tls_client_certificate_bound_access_tokens": "",
        "profile": ""})
    assert response.status_code == 303, error_text(response.text)
    client = stored(env, "app-1")
    assert (client.tls_client_auth_subject_dn, client.tls_client_auth_san) == (None, "ip:2001:db8::5")
    assert (client.require_pushed_authorization_requests, client.tls_client_certificate_bound_access_tokens,
            client.profile) == (False, False, None)
    page = browser.get(response.headers["Location"])
    assert '<option value="tls_client_auth_san_ip" selected>' in page.text
    assert 'name="tls_client_auth_value" value="2001:db8::5"' in page.text


def test_self_signed_tls_client_auth_keys_on_the_public_key_page(browser):
    """RFC 8705 §2.2: the self-signed certificate is registered on the public key page, which may
    switch a private_key_jwt client to self_signed_tls_client_auth; the keystore is no source for it."""
    env = browser.env
    client_id, _ = browser.add_sp("Self-signed")
    page = browser.get(f"/console/service-providers/keys?client_id={client_id}")
    assert '<option value="self_signed_tls_client_auth">' in page.text
    # Without keys (the keystore is private_key_jwt's fallback only) it is refused, and nothing changes.
    before = stored(env, client_id)
    response = browser.save_keys(client_id, {"key_source": "keystore",
                                             "token_endpoint_auth_method": "self_signed_tls_client_auth"})
    assert response.status_code == 400
    assert "self_signed_tls_client_auth needs the client certificate's public key" in error_text(response.text)
    assert '<option value="self_signed_tls_client_auth" selected>' in response.text
    assert stored(env, client_id) == before
    cert = certificate(ec_key(), client_id)
    response = browser.save_keys(client_id, {"key_source": "certificate", "certificate_pem": cert_pem(cert).decode(),
                                             "token_endpoint_auth_method": "self_signed_tls_client_auth"})
    assert response.status_code == 200, error_text(response.text)
    client = stored(env, client_id)
    assert client.auth_method == "self_signed_tls_client_auth" and client.jwks and client.secret_hash is None
    assert all_by_class(response.text, "key-kty") == ["EC"]
    # The configuration form keeps the keys while the method keeps them.
    page = browser.get(f"/console/service-providers/edit?client_id={client_id}")
    assert 'id="configure-keys"' in page.text and "certificate uploaded" in by_id(page.text, "key-source")
    response = browser.post("/console/service-providers/edit", {
        "client_id": client_id, "client_name": "Renamed", "grant_type.client_credentials": "on",
        "token_endpoint_auth_method": "self_signed_tls_client_auth"})
    assert response.status_code == 303, error_text(response.text)
    assert stored(env, client_id).jwks == client.jwks
    # A secret client cannot become self-signed without keys.
    secret_id, _ = browser.add_sp("Secret", "client_secret_basic")
    response = browser.post("/console/service-providers/edit", {
        "client_id": secret_id, "client_name": "Secret", "grant_type.client_credentials": "on",
        "token_endpoint_auth_method": "self_signed_tls_client_auth"})
    assert response.status_code == 400
    assert "needs the client certificate's public key" in error_text(response.text)
    assert stored(env, secret_id).auth_method == "client_secret_basic"


@pytest.mark.parametrize("fields,message", [
    ({"redirect_uris": "http://app.example.com/cb", "grant_type.authorization_code": "on"}, "must use https"),
    ({"redirect_uris": "https://app.example.com/cb#x", "grant_type.authorization_code": "on"}, "fragment"),
    ({"grant_type.authorization_code": "on"}, "needs at least one redirect URI"),
    ({"grant_type.refresh_token": "on", "grant_type.client_credentials": "on"}, "needs the authorization_code"),
    ({}, "at least one grant type"),
    ({"grant_type.client_credentials": "on", "access_token_lifetime": "10"}, "from 60 to 86400"),
    ({"grant_type.client_credentials": "on", "access_token_lifetime": "ten"}, "whole number of seconds"),
    ({"grant_type.client_credentials": "on", "scope": "open\"id"}, "scope must be scope values"),
    ({"grant_type.client_credentials": "on", "token_endpoint_auth_signing_alg": "ES256"},
     "can verify token_endpoint_auth_signing_alg ES256"),
    ({"grant_type.client_credentials": "on", "token_endpoint_auth_signing_alg": "HS256"},
     "token_endpoint_auth_signing_alg must be one of"),
    ({"grant_type.client_credentials": "on", "audience_policy": "loose"}, "audience_policy must be one of"),
    ({"grant_type.client_credentials": "on", "require_explicit_typ": "yes"},
     "require_explicit_typ must be true, false or null"),
    ({"grant_type.client_credentials": "on", "token_endpoint_auth_method": "none"}, "only for authorization_code"),
    ({"grant_type.client_credentials": "on", "access_token_format": "reference"},
     "access_token_format must be one of opaque, jwt"),
    ({"grant_type.client_credentials": "on", "resources": "/relative"},
     "A resource in resources must be an absolute URI"),
    ({"grant_type.client_credentials": "on", "resources": "https://api.example.com/#x"},
     "A resource in resources must not contain a fragment"),
    ({"grant_type.client_credentials": "on", "resources": "urn:example:a\r\nurn:example:a"},
     "resources lists a value twice"),
    ({"grant_type.client_credentials": "on", "token_endpoint_auth_method": "tls_client_auth"},
     "token_endpoint_auth_method tls_client_auth needs exactly one of tls_client_auth_subject_dn"),
    ({"grant_type.client_credentials": "on", "tls_client_auth_kind": "tls_client_auth_subject_dn",
      "tls_client_auth_value": "CN=app"}, "tls_client_auth_subject_dn applies to token_endpoint_auth_method "
                                          "tls_client_auth only"),
    ({"grant_type.client_credentials": "on", "token_endpoint_auth_method": "tls_client_auth",
      "tls_client_auth_kind": "tls_client_auth_subject_dn", "tls_client_auth_value": "CN=app;O=x"},
     "tls_client_auth_subject_dn must be a distinguished name in RFC 4514 string form"),
    ({"grant_type.client_credentials": "on", "token_endpoint_auth_method": "tls_client_auth",
      "tls_client_auth_kind": "tls_client_auth_san_ip", "tls_client_auth_value": "192.0.2.999"},
     "tls_client_auth_san_ip must be an IPv4 or IPv6 address"),
    ({"grant_type.client_credentials": "on", "token_endpoint_auth_method": "tls_client_auth",
      "tls_client_auth_kind": "tls_client_auth_san_x", "tls_client_auth_value": "x"},
     "Choose what names the client's certificate."),
    ({"grant_type.client_credentials": "on", "token_endpoint_auth_method": "self_signed_tls_client_auth",
      "token_endpoint_auth_signing_alg": "PS256"},
     "token_endpoint_auth_signing_alg applies to token_endpoint_auth_method private_key_jwt only"),
    ({"grant_type.client_credentials": "on", "profile": "fapi2", "token_endpoint_auth_signing_alg": "RS256"},
     "FAPI 2.0: token_endpoint_auth_signing_alg must be PS256, ES256 or EdDSA"),
    ({"grant_type.client_credentials": "on", "profile": "fapi2", "token_endpoint_auth_method": "client_secret_basic"},
     "FAPI 2.0: token_endpoint_auth_method must be private_key_jwt, tls_client_auth or self_signed_tls_client_auth"),
    ({"grant_type.client_credentials": "on", "profile": "oauth2"},
     "profile must be fapi2, or absent for the server's profile"),
    ({"grant_type.client_credentials": "on", "require_pushed_authorization_requests": "on", "profile": "fapi2",
      "redirect_uris": "com.example.app:/cb", "grant_type.authorization_code": "on"},
     "FAPI 2.0: a redirect URI must use https"),
])
def test_oauth_configuration_refusals_save_nothing(browser, fields, message):
    register(browser.env, "app-1", jwks=jwks_of((rsa_key(), "k1")))
    before = stored(browser.env, "app-1")
    form = {"client_id": "app-1", "client_name": "Changed", "token_endpoint_auth_method": "private_key_jwt", **fields}
    response = browser.post("/console/service-providers/edit", form)
    assert response.status_code == 400
    assert_page_headers(response)
    assert message in error_text(response.text), error_text(response.text)
    assert stored(browser.env, "app-1") == before
    # The form keeps what was typed.
    assert 'value="Changed"' in response.text


def test_edit_unknown_client_is_404(browser):
    assert browser.get("/console/service-providers/edit?client_id=nope").status_code == 404
    assert browser.get("/console/service-providers/edit").status_code == 404
    assert browser.post("/console/service-providers/edit", {"client_id": "nope"}).status_code == 404
    assert browser.get("/console/service-providers/keys?client_id=nope").status_code == 404


def test_switching_to_a_secret_method_shows_the_new_secret_once(browser):
    env = browser.env
    client_id, _ = browser.add_sp("Switcher")
    response = browser.post("/console/service-providers/edit", {
        "client_id": client_id, "client_name": "Switcher", "grant_type.client_credentials": "on",
        "token_endpoint_auth_method": "client_secret_post"})
    assert response.status_code == 200
    secret = by_id(response.text, "client-secret")
    assert secret
    assert env.post({"grant_type": "client_credentials", "client_id": client_id,
                     "client_secret": secret}).status_code == 200
    # Saving again keeps the secret and does not show it.
    again = browser.post("/console/service-providers/edit", {
        "client_id": client_id, "client_name": "Switcher 2", "grant_type.client_credentials": "on",
        "token_endpoint_auth_method": "client_secret_basic"})
    assert again.status_code == 303
    assert env.post({"grant_type": "client_credentials"}, headers=basic(client_id, secret)).status_code == 200


def test_regenerate_secret(browser):
    env = browser.env
    client_id, old = browser.add_sp("Rotating", "client_secret_basic")
    page = browser.get(f"/console/service-providers/edit?client_id={client_id}")
    assert 'id="regenerate-secret"' in page.text
    response = browser.post("/console/service-providers/regenerate-secret", {"client_id": client_id})
    assert response.status_code == 200
    new = by_id(response.text, "client-secret")
    assert new and new != old
    assert "previous one no longer works" in by_id(response.text, "notice")
    assert env.post({"grant_type": "client_credentials"}, headers=basic(client_id, new)).status_code == 200
    assert_oauth_error(env.post({"grant_type": "client_credentials"}, headers=basic(client_id, old)),
                       401, "invalid_client")


def test_regenerate_secret_of_a_private_key_jwt_client_is_refused(browser):
    client_id, _ = browser.add_sp("Keys only")
    assert 'id="regenerate-secret"' not in browser.get(f"/console/service-providers/edit?client_id={client_id}").text
    response = browser.post("/console/service-providers/regenerate-secret", {"client_id": client_id})
    assert response.status_code == 400
    assert stored(browser.env, client_id).secret_hash is None


def test_delete_service_provider(browser):
    env = browser.env
    key = rsa_key()
    register(env, "doomed", jwks=jwks_of((key, "k1")), client_name="Doomed")
    issued = token_with(env, "doomed", key)
    assert issued.status_code == 200
    bad = env.post(token_form(sign(rsa_key(), claims_for("doomed", env.issuer), headers={"kid": "k1"})))
    assert bad.status_code == 401
    confirm = browser.get("/console/service-providers/delete?client_id=doomed")
    assert confirm.status_code == 200
    assert 'id="confirm-delete"' in confirm.text
    assert stored(env, "doomed") is not None  # the confirmation page deletes nothing
    response = browser.post("/console/service-providers/delete", {"client_id": "doomed"})
    assert response.status_code == 303
    assert response.headers["Location"] == "/console/service-providers?deleted=doomed"
    assert stored(env, "doomed") is None
    listing = browser.get(response.headers["Location"])
    assert "doomed" in by_id(listing.text, "notice")
    # Its tokens are revoked and its recorded failures gone.
    with env.app.app_context():
        assert env.app.extensions["idp"].services.access_tokens.active(issued.json["access_token"]) is None
        from handlers import failure_log
        assert failure_log.recent("doomed") == []
    assert browser.post("/console/service-providers/delete", {"client_id": "doomed"}).status_code == 404


# --- a client's public key -------------------------------------------------------------------

def test_upload_certificate_then_the_client_gets_a_token(browser):
    env = browser.env
    client_id, _ = browser.add_sp("Cert client")
    key = rsa_key()
    cert = certificate(key, client_id)
    page = browser.get(f"/console/service-providers/keys?client_id={client_id}")
    assert page.status_code == 200
    assert 'id="keys-form"' in page.text and 'enctype="multipart/form-data"' in page.text
    assert "no certificate" in by_id(page.text, "keystore-status")
    assert_oauth_error(token_with(env, client_id, key), 401, "invalid_client")
    response = browser.save_keys(client_id, {"key_source": "certificate"},
                                 {"certificate_file": (cert_pem(cert), "client.pem")})
    assert response.status_code == 200, error_text(response.text)
    assert by_id(response.text, "notice").startswith("Saved.")
    from keystore.jwk import PublicKey
    thumbprint = PublicKey.from_cryptography(key.public_key()).thumbprint
    assert all_by_class(response.text, "key-thumbprint") == [thumbprint]
    assert all_by_class(response.text, "key-kid") == [thumbprint]
    assert all_by_class(response.text, "key-kty") == ["RSA"]
    assert all_by_class(response.text, "key-size") == ["2048 bits"]
    jwks = json.loads(stored(env, client_id).jwks)
    assert jwks["keys"][0]["x5c"] == [base64.b64encode(cert_der(cert)).decode()]
    assert token_with(env, client_id, key).status_code == 200
    # The keys page shows the registered keys afterwards too.
    again = browser.get(f"/console/service-providers/keys?client_id={client_id}")
    assert all_by_class(again.text, "key-thumbprint") == [thumbprint]
    current = by_id(again.text, "current-source")
    assert f"CN={client_id}" in current and cert.fingerprint(hashes.SHA256()).hex(":").upper() in current
    assert "certificate uploaded" in by_id(browser.get(f"/console/service-providers/edit?client_id={client_id}").text,
                                           "key-source")


@pytest.mark.parametrize("how", ["der_file", "pasted_pem"])
def test_certificate_as_der_file_or_pasted_pem(browser, how):
    client_id, _ = browser.add_sp()
    key = ec_key()
    cert = certificate(key, client_id)
    if how == "der_file":
        response = browser.save_keys(client_id, {"key_source": "certificate"},
                                     {"certificate_file": (cert_der(cert), "client.der")})
    else:
        response = browser.save_keys(client_id, {"key_source": "certificate",
                                                 "certificate_pem": cert_pem(cert).decode()})
    assert response.status_code == 200, error_text(response.text)
    assert all_by_class(response.text, "key-kty") == ["EC"]
    assert all_by_class(response.text, "key-size") == ["P-256"]
    assert browser.env.post(token_form(sign(key, claims_for(client_id, browser.env.issuer), "ES256"))).status_code == 200


def test_jwks_pasted_or_uploaded(browser):
    client_id, _ = browser.add_sp()
    k1, k2 = rsa_key(), ec_key()
    document = jwks_of((k1, "first"), (k2, "second"))
    response = browser.save_keys(client_id, {"key_source": "jwks", "jwks": document})
    assert response.status_code == 200, error_text(response.text)
    assert all_by_class(response.text, "key-kid") == ["first", "second"]
    assert all_by_class(response.text, "key-kty") == ["RSA", "EC"]
    assert browser.env.post(token_form(sign(k2, claims_for(client_id, browser.env.issuer), "ES256",
                                            {"kid": "second"}))).status_code == 200
    k3 = rsa_key()
    response = browser.save_keys(client_id, {"key_source": "jwks"},
                                 {"jwks_file": (jwks_of((k3, "third")).encode(), "keys.json")})
    assert response.status_code == 200, error_text(response.text)
    assert all_by_class(response.text, "key-kid") == ["third"]
    assert_oauth_error(browser.env.post(token_form(sign(k1, claims_for(client_id, browser.env.issuer),
                                                        headers={"kid": "first"}))), 401, "invalid_client")


@pytest.fixture
def key_server():
    key = rsa_key()
    server = JWKSServer(jwks_of((key, "remote")))
    server.key = key
    yield server
    server.close()


def test_jwks_uri_is_fetched_once_and_its_keys_shown(browser, key_server):
    env = browser.env
    client_id, _ = browser.add_sp()
    response = browser.save_keys(client_id, {"key_source": "jwks_uri", "jwks_uri": key_server.url()})
    assert response.status_code == 200, error_text(response.text)
    assert key_server.hits == 1
    assert all_by_class(response.text, "key-kid") == ["remote"]
    client = stored(env, client_id)
    assert client.jwks_uri == key_server.url() and client.jwks is None
    assert env.post(token_form(sign(key_server.key, claims_for(client_id, env.issuer),
                                    headers={"kid": "remote"}))).status_code == 200
    # Back to the keystore certificate: the URI is dropped (and leaves the fetcher's cache).
    back = browser.save_keys(client_id, {"key_source": "keystore"})
    assert back.status_code == 200, error_text(back.text)
    assert stored(env, client_id).jwks_uri is None
    assert key_server.url() not in env.app.extensions["idp"].services.jwks_fetcher._entries


def rsa_1024_certificate() -> bytes:
    return cert_pem(certificate(rsa_key(1024)))


def oct_jwks() -> str:
    return json.dumps({"keys": [{"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"}]})


def private_jwks() -> str:
    key = rsa_key()
    public = json.loads(jwks_of((key, "k1")))["keys"][0]
    d = key.private_numbers().d
    public["d"] = base64.urlsafe_b64encode(d.to_bytes((d.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()
    return json.dumps({"keys": [public]})


REFUSALS = {
    "rsa_1024_certificate": (lambda: ({"key_source": "certificate"},
                                      {"certificate_file": (rsa_1024_certificate(), "weak.pem")}), "2048"),
    "private_key_as_certificate": (lambda: ({"key_source": "certificate"},
                                            {"certificate_file": (pem(rsa_key()), "client.key")}),
                                   "This is a private key"),
    "pasted_private_key": (lambda: ({"key_source": "certificate", "certificate_pem": pem(rsa_key()).decode()}, None),
                           "This is a private key"),
    "expired_certificate": (lambda: ({"key_source": "certificate"},
                                     {"certificate_file": (cert_pem(certificate(rsa_key(), days=-1,
                                                                                not_before_days=-30)), "old.pem")}),
                            "The certificate has expired"),
    "not_a_certificate": (lambda: ({"key_source": "certificate"}, {"certificate_file": (b"hello", "x.pem")}),
                          "not a PEM or DER X.509 certificate"),
    "no_certificate_given": (lambda: ({"key_source": "certificate"}, None), "Choose a certificate file"),
    "symmetric_jwk": (lambda: ({"key_source": "jwks", "jwks": oct_jwks()}, None), "The JWK Set was refused"),
    "private_jwk": (lambda: ({"key_source": "jwks", "jwks": private_jwks()}, None), "The JWK Set was refused"),
    "jwks_not_json": (lambda: ({"key_source": "jwks", "jwks": "{keys: []"}, None), "The JWK Set was refused"),
    "jwks_and_uri_both": (lambda: ({"key_source": "jwks", "jwks": jwks_of((rsa_key(), "k")),
                                    "jwks_uri": "https://client.example.com/jwks"}, None),
                          "Give a JWKS or a JWKS URI, not both."),
    "certificate_and_jwks": (lambda: ({"key_source": "jwks", "jwks": jwks_of((rsa_key(), "k")),
                                       "certificate_pem": cert_pem(certificate(rsa_key())).decode()}, None),
                             "Give only one of"),
    "fields_of_another_source": (lambda: ({"key_source": "jwks_uri", "jwks": jwks_of((rsa_key(), "k"))}, None),
                                 "do not belong to the chosen key source"),
    "no_source": (lambda: ({}, None), "Choose where the client's public key is found."),
    "jwks_uri_private_address": (lambda: ({"key_source": "jwks_uri", "jwks_uri": "http://10.1.2.3/jwks"}, None),
                                 "The jwks_uri was refused"),
    "jwks_uri_unreachable": (lambda: ({"key_source": "jwks_uri",
                                       "jwks_uri": f"http://127.0.0.1:{free_port()}/jwks"}, None),
                             "The jwks_uri could not be used"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_key_refusals_say_why_and_save_nothing(browser, case):
    env = browser.env
    key = rsa_key()
    register(env, "keyed", jwks=jwks_of((key, "k1")))
    before = stored(env, "keyed")
    build, message = REFUSALS[case]
    data, files = build()
    response = browser.save_keys("keyed", data, files)
    assert response.status_code == 400
    assert_page_headers(response)
    assert message in error_text(response.text), error_text(response.text)
    assert stored(env, "keyed") == before
    assert env.post(token_form(sign(key, claims_for("keyed", env.issuer), headers={"kid": "k1"}))).status_code == 200


def test_a_pasted_private_key_is_never_echoed_back(browser):
    register(browser.env, "keyed", jwks=jwks_of((rsa_key(), "k1")))
    private = pem(rsa_key()).decode()
    body = private.splitlines()[1]
    response = browser.save_keys("keyed", {"key_source": "certificate", "certificate_pem": private})
    assert response.status_code == 400
    assert body not in response.text
    imported = browser.post("/console/keystore/import", {"alias": "x", "certificate_pem": private}, files={})
    assert imported.status_code == 400
    assert body not in imported.text


def test_signing_alg_pin_must_fit_the_new_keys(browser):
    env = browser.env
    register(env, "pinned", jwks=jwks_of((rsa_key(), "k1")), signing_alg="RS256")
    before = stored(env, "pinned")
    response = browser.save_keys("pinned", {"key_source": "jwks", "jwks": jwks_of((ec_key(), "ec"))})
    assert response.status_code == 400
    assert "can verify token_endpoint_auth_signing_alg RS256" in error_text(response.text)
    assert stored(env, "pinned") == before


def test_keys_of_a_secret_client_are_refused(browser):
    client_id, _ = browser.add_sp("Secret", "client_secret_basic")
    page = browser.get(f"/console/service-providers/keys?client_id={client_id}")
    assert 'id="not-private-key-jwt"' in page.text and 'id="keys-form"' not in page.text
    response = browser.save_keys(client_id, {"key_source": "jwks", "jwks": jwks_of((rsa_key(), "k"))})
    assert response.status_code == 400
    assert stored(browser.env, client_id).jwks is None


def test_keystore_key_source_shows_whether_the_keystore_has_the_certificate(browser):
    env = browser.env
    client_id, _ = browser.add_sp()
    key = rsa_key()
    page = browser.get(f"/console/service-providers/edit?client_id={client_id}")
    assert "None yet" in by_id(page.text, "key-source")
    keys = browser.get(f"/console/service-providers/keys?client_id={client_id}")
    assert "no certificate" in by_id(keys.text, "keystore-status")
    assert f'/console/keystore?alias={client_id}' in keys.text
    imported = browser.post("/console/keystore/import", {"alias": client_id},
                            files={"certificate_file": (cert_pem(certificate(key, client_id)), "c.pem")})
    assert imported.status_code == 303, error_text(imported.text)
    keys = browser.get(f"/console/service-providers/keys?client_id={client_id}")
    status = by_id(keys.text, "keystore-status")
    assert f"CN={client_id}" in status and "no certificate" not in status
    page = browser.get(f"/console/service-providers/edit?client_id={client_id}")
    assert "certificate in the keystore" in by_id(page.text, "key-source")
    assert token_with(env, client_id, key).status_code == 200


def test_expired_keystore_certificate_is_flagged(browser):
    client_id, _ = browser.add_sp()
    old = cert_pem(certificate(rsa_key(), client_id, days=-1, not_before_days=-30))
    assert browser.post("/console/keystore/import", {"alias": client_id},
                        files={"certificate_file": (old, "old.pem")}).status_code == 303
    keys = browser.get(f"/console/service-providers/keys?client_id={client_id}")
    assert by_id(keys.text, "keystore-problem") == "The certificate has expired"


def test_uploaded_certificate_past_its_validity_is_flagged_and_refused(browser):
    """Uploaded while valid, expired since: the key list and the service provider page say so,
    and the token endpoint refuses it as it refuses an expired keystore certificate."""
    env = browser.env
    client_id, _ = browser.add_sp()
    key = rsa_key()
    from server.client_metadata import keys_from_certificate
    jwks, infos = keys_from_certificate(cert_pem(certificate(key, client_id, days=-1, not_before_days=-30)),
                                        now=datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=2))
    with env.app.app_context():
        from storage import clients
        clients.update(client_id, "private_key_jwt", client_name="Expired", grant_types=("client_credentials",),
                       jwks=jwks)
    keys = browser.get(f"/console/service-providers/keys?client_id={client_id}")
    assert all_by_class(keys.text, "key-kid") == [infos[0].kid]
    assert all_by_class(keys.text, "key-certificate-status") == ["expired"]
    page = browser.get(f"/console/service-providers/edit?client_id={client_id}")
    assert by_id(page.text, "uploaded-certificate-status") == "expired"
    assert_oauth_error(env.post(token_form(sign(key, claims_for(client_id, env.issuer), headers={"kid": infos[0].kid}))),
                       401, "invalid_client")
    page = browser.get(f"/console/service-providers/edit?client_id={client_id}")
    assert all_by_class(page.text, "failure-reason") == ["certificate_expired"]


def test_a_valid_uploaded_certificate_is_not_flagged(browser):
    client_id, _ = browser.add_sp()
    response = browser.save_keys(client_id, {"key_source": "certificate"},
                                 {"certificate_file": (cert_pem(certificate(rsa_key(), client_id)), "client.pem")})
    assert response.status_code == 200, error_text(response.text)
    assert len(all_by_class(response.text, "key-certificate")) == 1
    assert all_by_class(response.text, "key-certificate-status") == []
    assert by_id(browser.get(f"/console/service-providers/edit?client_id={client_id}").text,
                 "uploaded-certificate-status") is None


def test_multipart_limits(browser):
    client_id, _ = browser.add_sp()
    big = browser.save_keys(client_id, {"key_source": "certificate"},
                            {"certificate_file": (b"A" * (65 * 1024), "big.pem")})
    assert big.status_code == 413
    assert_page_headers(big)
    body = (f'--b\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n{browser.csrf}\r\n'
            f'--b\r\nContent-Disposition: form-data; name="client_id"\r\n\r\n{client_id}\r\n'
            f'--b\r\nContent-Disposition: form-data; name="client_id"\r\n\r\nother\r\n--b--\r\n')
    twice = browser.client.post("/console/service-providers/keys", base_url=BASE, data=body,
                                content_type="multipart/form-data; boundary=b")
    assert twice.status_code == 400
    assert "more than once" in twice.text


@pytest.mark.parametrize("content_type", ["Multipart/Form-Data; boundary=b", "MULTIPART/FORM-DATA; boundary=b"])
def test_multipart_media_type_is_case_insensitive(browser, content_type):
    # RFC 9110 §8.3.1: type and subtype are case-insensitive.
    cert = certificate(rsa_key(), "partner")
    browser.get("/console/keystore")
    body = (f'--b\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n{browser.csrf}\r\n'
            f'--b\r\nContent-Disposition: form-data; name="alias"\r\n\r\ncased\r\n'
            f'--b\r\nContent-Disposition: form-data; name="certificate_file"; filename="c.pem"\r\n'
            f'Content-Type: application/x-pem-file\r\n\r\n{cert_pem(cert).decode()}\r\n--b--\r\n')
    response = browser.client.post("/console/keystore/import", base_url=BASE, data=body.encode(),
                                   content_type=content_type)
    assert response.status_code == 303, error_text(response.text)
    assert response.headers["Location"] == "/console/keystore/entry?alias=cased&imported=1"
    entry = browser.get(response.headers["Location"])
    assert by_id(entry.text, "entry-sha256") == cert.fingerprint(hashes.SHA256()).hex(":").upper()


# --- keystore ---------------------------------------------------------------------------------

def keytool_aliases(path: Path) -> dict[str, str]:
    done = subprocess.run([KEYTOOL, "-J-XX:TieredStopAtLevel=1", "-list", "-keystore", str(path), "-storetype",
                           "PKCS12", "-storepass", KEYSTORE_PASSWORD], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return dict(re.findall(r"^([^,\n]+), [^,]+, [^,]+, (PrivateKeyEntry|trustedCertEntry),", done.stdout, re.M))


def test_keystore_lists_the_server_key(browser):
    page = browser.get("/console/keystore")
    assert page.status_code == 200
    assert_page_headers(page)
    assert all_by_class(page.text, "keystore-alias") == ["wso2carbon"]
    assert "the server's key" in page.text
    entry = browser.get("/console/keystore/entry?alias=wso2carbon")
    assert entry.status_code == 200
    assert by_id(entry.text, "entry-subject") == "CN=localhost"
    assert "PrivateKeyEntry" in by_id(entry.text, "entry-kind")
    assert 'id="delete-entry"' not in entry.text
    assert browser.get("/console/keystore/entry?alias=nope").status_code == 404


@needs_keytool
def test_keystore_import_view_delete_as_keytool_sees_it(browser):
    key = rsa_key()
    cert = certificate(key, "partner")
    response = browser.post("/console/keystore/import", {"alias": "Partner-App"},
                            files={"certificate_file": (cert_der(cert), "partner.der")})
    assert response.status_code == 303, error_text(response.text)
    assert response.headers["Location"] == "/console/keystore/entry?alias=Partner-App&imported=1"
    entry = browser.get(response.headers["Location"])
    assert by_id(entry.text, "entry-alias") == "Partner-App"
    assert by_id(entry.text, "entry-subject") == "CN=partner"
    assert by_id(entry.text, "entry-sha256") == cert.fingerprint(hashes.SHA256()).hex(":").upper()
    store = browser.env.tmp / "var" / "primary.p12"
    listed = keytool_aliases(store)
    assert listed.get("partner-app") == "trustedCertEntry" or listed.get("Partner-App") == "trustedCertEntry"
    assert "Partner-App" in all_by_class(browser.get("/console/keystore").text, "keystore-alias")
    # Pasted PEM works the same way.
    pasted = browser.post("/console/keystore/import", {"alias": "pasted",
                                                       "certificate_pem": cert_pem(certificate(rsa_key())).decode()},
                          files={})
    assert pasted.status_code == 303, error_text(pasted.text)
    confirm = browser.get("/console/keystore/delete?alias=Partner-App")
    assert confirm.status_code == 200 and 'id="confirm-delete"' in confirm.text
    deleted = browser.post("/console/keystore/delete", {"alias": "Partner-App"})
    assert deleted.status_code == 303
    assert deleted.headers["Location"] == "/console/keystore?deleted=Partner-App"
    listed = keytool_aliases(store)
    assert set(k.lower() for k in listed) == {"wso2carbon", "pasted"}
    assert browser.post("/console/keystore/delete", {"alias": "Partner-App"}).status_code == 404


def test_keystore_never_deletes_the_server_key(browser):
    assert browser.get("/console/keystore/delete?alias=wso2carbon").status_code == 400
    response = browser.post("/console/keystore/delete", {"alias": "wso2carbon"})
    assert response.status_code == 400
    assert "Key entries cannot be deleted" in response.text
    assert "wso2carbon" in all_by_class(browser.get("/console/keystore").text, "keystore-alias")


def test_keystore_delete_warns_about_the_client_using_the_certificate(browser):
    client_id, _ = browser.add_sp("User of the keystore")
    browser.post("/console/keystore/import", {"alias": client_id},
                 files={"certificate_file": (cert_pem(certificate(rsa_key())), "c.pem")})
    confirm = browser.get(f"/console/keystore/delete?alias={client_id}")
    assert "User of the keystore" in by_id(confirm.text, "delete-warning")


@pytest.mark.parametrize("alias,files,pasted,message", [
    ("wso2carbon", "cert", None, "already has an entry with this alias"),
    ("WSO2CARBON", "cert", None, "already has an entry with this alias"),
    ("", "cert", None, "An alias has 1 to 255 characters."),
    (" padded", "cert", None, "no leading or trailing spaces"),
    ("a" * 256, "cert", None, "An alias has 1 to 255 characters."),
    ("fine", None, None, "Choose a certificate file or paste"),
    ("fine", "garbage", None, "This is not an X.509 certificate"),
    ("fine", "key", None, "This is a private key"),
    ("fine", "cert", "pem", "not both"),
])
def test_keystore_import_refusals(browser, alias, files, pasted, message):
    cert = cert_pem(certificate(rsa_key()))
    content = {"cert": cert, "garbage": b"\x30\x03\x02\x01\x01", "key": pem(rsa_key())}
    data = {"alias": alias, **({"certificate_pem": cert.decode()} if pasted else {})}
    response = browser.post("/console/keystore/import", data,
                            files={"certificate_file": (content[files], "f.pem")} if files else {})
    assert response.status_code == 400
    assert message in error_text(response.text), error_text(response.text)
    assert all_by_class(browser.get("/console/keystore").text, "keystore-alias") == ["wso2carbon"]


# --- recorded failures ------------------------------------------------------------------------

def test_failures_are_listed_on_the_service_provider_page(browser):
    env = browser.env
    key = rsa_key()
    register(env, "failing", jwks=jwks_of((key, "k1")))
    page = browser.get("/console/service-providers/edit?client_id=failing")
    assert by_id(page.text, "no-failures") is not None
    assert_oauth_error(env.post(token_form(sign(rsa_key(), claims_for("failing", env.issuer), "RS384",
                                                {"kid": "k1"}))), 401, "invalid_client")
    assert_oauth_error(env.post(token_form(sign(key, claims_for("failing", "https://elsewhere.example/"),
                                                headers={"kid": "k1"}))), 401, "invalid_client")
    assert_oauth_error(env.post(token_form(sign(key, claims_for("someone-else", env.issuer)))), 401, "invalid_client")
    page = browser.get("/console/service-providers/edit?client_id=failing")
    rows = re.findall(r'<tr class="auth-failure">(.*?)</tr>', page.text, re.S)
    cells = [[html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
             for row in rows]
    assert [(c[1], c[2], c[3], c[4]) for c in cells] == [("aud", "private_key_jwt", "RS256", "k1"),
                                                         ("signature", "private_key_jwt", "RS384", "k1")]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", c[0]) for c in cells)
    from storage.models import AuthFailure
    with env.app.app_context():
        assert AuthFailure.select().where(AuthFailure.client_id == "someone-else").count() == 0  # unknown client


def test_a_failure_detail_is_listed_for_the_operator_only(browser):
    """Why a jwks_uri could not be used is the operator's to read (failure list), not the caller's."""
    env = browser.env
    register(env, "remote-keys", jwks_uri=f"http://127.0.0.1:{free_port()}/jwks.json")
    response = env.post(token_form(sign(rsa_key(), claims_for("remote-keys", env.issuer), headers={"kid": "k1"})))
    body = assert_oauth_error(response, 401, "invalid_client")
    assert body["error_description"] == "The client's keys could not be obtained"
    assert "refused" not in response.text
    page = browser.get("/console/service-providers/edit?client_id=remote-keys")
    assert all_by_class(page.text, "failure-reason") == ["jwks_uri"]
    assert all_by_class(page.text, "failure-detail") == ["jwks_uri connection refused"]


def test_a_failing_failure_log_never_changes_the_token_response(env):
    key = rsa_key()
    register(env, "client-1", jwks=jwks_of((key, "k1")))
    from storage.models import AuthFailure
    with env.app.app_context():
        env.app.extensions["idp"].services.db.drop_tables([AuthFailure])
    assert_oauth_error(env.post(token_form(sign(rsa_key(), claims_for("client-1", env.issuer), headers={"kid": "k1"}))),
                       401, "invalid_client")
    assert env.post(token_form(sign(key, claims_for("client-1", env.issuer), headers={"kid": "k1"}))).status_code == 200


def test_failure_log_stays_bounded(env):
    from handlers import failure_log
    from storage.models import AuthFailure
    now = int(time.time())
    with env.app.app_context():
        rows = [{"client_id": "busy", "time": now - 100 + i, "reason": f"r{i}"} for i in range(30)]
        rows += [{"client_id": "quiet", "time": now - 8 * 86400, "reason": "old"},
                 {"client_id": "quiet", "time": now, "reason": "new"}]
        AuthFailure.insert_many(rows).execute()
        assert failure_log.purge(7 * 86400, 10) == 21
        assert [r.reason for r in failure_log.recent("busy")] == [f"r{i}" for i in range(29, 19, -1)]
        assert [r.reason for r in failure_log.recent("quiet")] == ["new"]
        assert len(failure_log.recent("busy", limit=3)) == 3


def test_failure_log_purges_every_purge_every_rows(make_idp):
    env = make_idp(listeners="""
[[event_listener]]
id = "failures"
name = "failure_log"
[event_listener.properties]
MaxPerClient = 3
PurgeEvery = 5
""")
    key = rsa_key()
    register(env, "client-1", jwks=jwks_of((key, "k1")))
    from storage.models import AuthFailure
    for _ in range(5):
        env.post(token_form(sign(rsa_key(), claims_for("client-1", env.issuer), headers={"kid": "k1"})))
    with env.app.app_context():
        assert AuthFailure.select().where(AuthFailure.client_id == "client-1").count() == 3


# --- over HTTPS against the real server ---------------------------------------------------------

class HttpsBrowser:
    """A browser session on the real server (requests keeps the __Host- cookies over https)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.session = requests.Session()
        self.csrf = ""

    def get(self, path: str, **kwargs) -> requests.Response:
        response = self.session.get(self.server.base + path, allow_redirects=False, timeout=15,
                                    verify=self.server.ca, **kwargs)
        if response.status_code == 200 and 'name="csrf_token"' in response.text:
            self.csrf = csrf_of(response.text)
        return response

    def post(self, path: str, data: dict, files: dict | None = None, csrf: bool = True) -> requests.Response:
        form = {**({"csrf_token": self.csrf} if csrf else {}), **data}
        return self.session.post(self.server.base + path, data=form, files=files, allow_redirects=False, timeout=15,
                                 verify=self.server.ca)

    def login(self, username: str, password: str) -> requests.Response:
        self.get("/console/login")
        return self.post("/console/login", {"username": username, "password": password})


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    directory = tmp_path_factory.mktemp("console-server")
    port = free_port()
    server = Server(write_config(directory, port), port)
    server.start()
    try:
        server.cli("admin", "create", "--username", ADMIN, "--password-stdin", input=ADMIN_PASSWORD + "\n")
        server.cli("users", "create", "--username", USER, "--password-stdin", input=USER_PASSWORD + "\n")
        yield server
    finally:
        server.stop()


def test_https_access_control(real):
    anonymous = requests.get(real.base + "/console/service-providers", verify=real.ca, allow_redirects=False,
                             timeout=15)
    assert anonymous.status_code == 302
    assert urlsplit(anonymous.headers["Location"]).path == "/console/login"
    assert anonymous.content == b""
    posted = requests.post(real.base + "/console/keystore/import", data={"alias": "x"}, verify=real.ca,
                           allow_redirects=False, timeout=15)
    assert posted.status_code == 302 and posted.content == b""
    user = HttpsBrowser(real)
    assert user.login(USER, USER_PASSWORD).status_code == 401
    admin = HttpsBrowser(real)
    assert admin.login(ADMIN, "wrong-password").status_code == 401
    response = admin.login(ADMIN, ADMIN_PASSWORD)
    assert response.status_code == 303
    cookie = next(c for c in admin.session.cookies if c.name == "__Host-idp_session")
    assert cookie.secure
    missing = admin.post("/console/service-providers/add", {"client_name": "x"}, csrf=False)
    assert missing.status_code == 400
    assert missing.headers["Content-Type"] == "text/html; charset=utf-8"
    assert missing.headers["Cache-Control"] == "no-store"


def test_https_non_admin_session_gets_403(real):
    # A session of an end user, as a sign-in at the authorization endpoint leaves it (storage.users).
    value = secrets.token_urlsafe(32)
    db = sqlite3.connect(real.config_path.parent / "var" / "identity.db")
    with db:
        sub = db.execute("select sub from users where username = ?", (USER,)).fetchone()[0]
        db.execute("insert into user_session (session_hash, user_sub, auth_time, expires_at) values (?, ?, ?, ?)",
                   (hashlib.sha256(value.encode()).hexdigest(), sub, int(time.time()), int(time.time()) + 600))
    db.close()
    response = requests.get(real.base + "/console/keystore", verify=real.ca, allow_redirects=False, timeout=15,
                            headers={"Cookie": f"__Host-idp_session={value}"})
    assert response.status_code == 403
    assert "wso2carbon" not in response.text


@needs_keytool
def test_https_end_to_end_console_flow(real):
    admin = HttpsBrowser(real)
    assert admin.login(ADMIN, ADMIN_PASSWORD).status_code == 303
    assert admin.get("/console/service-providers/add").status_code == 200
    created = admin.post("/console/service-providers/add", {"client_name": "E2E app", "description": "",
                                                            "token_endpoint_auth_method": "private_key_jwt"})
    assert created.status_code == 200, error_text(created.text)
    client_id = by_id(created.text, "client-id")
    assert re.fullmatch(r"[a-z0-9]{24}", client_id)
    configured = admin.post("/console/service-providers/edit", {
        "client_id": client_id, "client_name": "E2E app", "grant_type.client_credentials": "on",
        "scope": "openid", "token_endpoint_auth_method": "private_key_jwt"})
    assert configured.status_code == 303, error_text(configured.text)
    key = rsa_key()
    admin.get(f"/console/service-providers/keys?client_id={client_id}")
    uploaded = admin.post("/console/service-providers/keys", {"client_id": client_id, "key_source": "certificate"},
                          files={"certificate_file": ("client.pem", cert_pem(certificate(key, client_id)),
                                                      "application/x-pem-file")})
    assert uploaded.status_code == 200, error_text(uploaded.text)
    assert len(all_by_class(uploaded.text, "key-thumbprint")) == 1
    issuer = real.base + "/oauth2/token"
    good = real.post(data=token_form(sign(key, claims_for(client_id, issuer)), scope="openid"))
    assert good.status_code == 200, good.text
    assert good.json()["token_type"] == "Bearer"
    bad = real.post(data=token_form(sign(rsa_key(), claims_for(client_id, issuer), headers={"kid": "nope"})))
    assert_oauth_error(bad, 401, "invalid_client")
    page = admin.get(f"/console/service-providers/edit?client_id={client_id}")
    assert all_by_class(page.text, "failure-reason") == ["no_key"]
    # The keystore: a certificate imported in the console is what keytool lists.
    admin.get("/console/keystore")
    imported = admin.post("/console/keystore/import", {"alias": "https-partner"},
                          files={"certificate_file": ("p.der", cert_der(certificate(rsa_key(), "p")))})
    assert imported.status_code == 303, error_text(imported.text)
    assert keytool_aliases(real.config_path.parent / "var" / "primary.p12").get("https-partner") == "trustedCertEntry"
    # Deleting the service provider ends its token requests at once.
    admin.get(f"/console/service-providers/delete?client_id={client_id}")
    assert admin.post("/console/service-providers/delete", {"client_id": client_id}).status_code == 303
    gone = real.post(data=token_form(sign(key, claims_for(client_id, issuer))))
    assert_oauth_error(gone, 401, "invalid_client")
    assert admin.post("/console/logout", {}).status_code == 303
    assert admin.get("/console/service-providers").status_code == 302


def test_the_client_ids_failure_budget_is_shown_as_a_signal(tmp_path):
    """Failures of a client id against its budget: shown to the operator; the key holder is served."""
    from storage import users
    env = make_in_process(tmp_path, rate_limit={"failures_per_client": 2, "window": 60})
    with env.app.app_context():
        users.create(ADMIN, ADMIN_PASSWORD, is_admin=True)
    browser = Browser(env)
    assert browser.login().status_code == 303
    key = rsa_key()
    register(env, "watched", jwks=jwks_of((key, "k1")))
    page = browser.get("/console/service-providers/edit?client_id=watched")
    assert by_id(page.text, "failure-budget") == "Failed authentications in the current window: 0 of a budget of 2."
    for _ in range(2):
        assert_oauth_error(env.post(token_form(sign(rsa_key(), claims_for("watched", env.issuer), headers={"kid": "k1"}))),
                           401, "invalid_client")
    text = by_id(browser.get("/console/service-providers/edit?client_id=watched").text, "failure-budget")
    assert text.startswith("Failed authentications in the current window: 2 of a budget of 2 — over the budget for ")
    assert "assertions that verify are served as always" in text
    assert env.post(token_form(sign(key, claims_for("watched", env.issuer), headers={"kid": "k1"}))).status_code == 200


def test_activity_charts_and_the_report_escape_what_clients_and_other_nodes_wrote(env, browser):
    """Client ids, names and the counter names another node wrote are text in the SVG, the
    tables and the links, never markup; the list's sort parameter only picks a known order."""
    import time as _time
    from storage import activity
    evil = '"><svg onload=alert(1)><script>x</script>'
    register(env, "c" + evil, client_name="n" + evil)
    hour = int(_time.time()) // 3600
    with env.app.app_context():
        activity.add({("c" + evil, hour, "issued"): (3, int(_time.time())),
                      ("c" + evil, hour, "failure:" + evil[:40]): (2, int(_time.time())),
                      ("c" + evil, hour, "aud:" + evil[:40]): (1, int(_time.time()))})
    pages = [browser.get("/console/service-providers/edit", query_string={"client_id": "c" + evil}),
             browser.get("/console/report"),
             browser.get("/console/service-providers", query_string={"sort": evil}),
             browser.get("/console/service-providers", query_string={"sort": "failures", "q": evil})]
    for page in pages:
        assert page.status_code == 200, page.text
        assert "<svg onload" not in page.text and "<script>" not in page.text
    assert "&lt;svg onload=alert(1)&gt;" in pages[0].text

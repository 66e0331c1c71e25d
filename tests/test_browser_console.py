"""Onboarding a private_key_jwt client through the management console, in headless Chromium
against the real server over HTTPS: an admin made with the CLI signs in, registers a service
provider, uploads the certificate `keytool` made for it, and the client then gets a token with a
key read from its own PKCS12 file. A wrong key is refused and the refusal shows on the console.

The screenshot of the configuration page is saved in the test's directory; with CONSOLE_SCREENSHOT
(a path relative to the repository, or absolute) it is saved there too. The README's picture:

    CONSOLE_SCREENSHOT=docs/console.png python -m pytest tests/test_browser_console.py -k onboard

The activity section of a client's page (charts and migration report) likewise, with ACTIVITY_SCREENSHOT:

    ACTIVITY_SCREENSHOT=docs/activity.png python -m pytest tests/test_browser_console.py -k activity
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import pkcs12

from browser import chromium, wait_for_element, wait_for_url, wait_until
from support import ROOT, Server, assert_oauth_error, claims_for, free_port, jwks_of, rsa_key, shared_keystore, \
    sign, token_form, write_config

ADMIN = "admin"
ADMIN_PASSWORD = "console admin passphrase"
STORE_PASSWORD = "client-store-pass"
HOME = "/console/service-providers"
WINDOW = (1280, 900)
SCOPE = "payments:read payments:write"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def require_keytool() -> str:
    """Like the browser, keytool is never a reason to skip: without it the test fails and says why."""
    keytool = shutil.which("keytool")
    if keytool is None:
        pytest.fail("keytool not found: run tests/setup-system.sh (installs a Java runtime)", pytrace=False)
    return keytool


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser-console")
    shared_keystore(tmp)
    port = free_port()
    srv = Server(write_config(tmp, port, workers=1), port).start()
    try:
        srv.cli("admin", "create", "--username", ADMIN, "--password-stdin", input=ADMIN_PASSWORD + "\n")
        metadata = srv.get("/.well-known/openid-configuration").json()
        # The assertion's audience: the issuer, which is the token endpoint URL by default.
        assert metadata["issuer"] == metadata["token_endpoint"] == srv.base + "/oauth2/token"
        srv.issuer = metadata["issuer"]
        yield srv
    finally:
        srv.stop()


# --- the client's side: keytool, its PKCS12 file, its assertions ------------------------------

def keytool_client(directory: Path, client_id: str, name: str, *, pem: bool = False) -> tuple[Path, Path]:
    """A key pair and self-signed certificate made by keytool under the client id as alias, and
    the certificate exported for the console (DER, or PEM with -rfc)."""
    keytool = require_keytool()
    store = directory / f"{name}.p12"
    cert = directory / f"{name}.{'pem' if pem else 'cer'}"

    def run(*args: str) -> None:
        result = subprocess.run([keytool, *args], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"keytool {args[0]} failed:\n{result.stdout}\n{result.stderr}"

    run("-genkeypair", "-alias", client_id, "-keyalg", "RSA", "-keysize", "2048", "-dname", f"CN={client_id}",
        "-validity", "30", "-storetype", "PKCS12", "-keystore", str(store), "-storepass", STORE_PASSWORD, "-noprompt")
    run("-exportcert", "-alias", client_id, "-keystore", str(store), "-storepass", STORE_PASSWORD,
        "-file", str(cert), *(["-rfc"] if pem else []))
    return store, cert


def client_key(store: Path, client_id: str):
    """The private key as the client holds it: read from keytool's PKCS12 file."""
    key, cert, _ = pkcs12.load_key_and_certificates(store.read_bytes(), STORE_PASSWORD.encode())
    assert cert.subject.rfc4514_string() == f"CN={client_id}"
    return key


def load_certificate(path: Path) -> x509.Certificate:
    data = path.read_bytes()
    if data.startswith(b"-----BEGIN CERTIFICATE-----"):
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def rfc7638_thumbprint(cert: x509.Certificate) -> str:
    """base64url(SHA-256) of the RSA key's required members in lexicographic order (RFC 7638 §3)."""
    numbers = cert.public_key().public_numbers()

    def b64(value: int) -> str:
        raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    members = json.dumps({"e": b64(numbers.e), "kty": "RSA", "n": b64(numbers.n)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(hashlib.sha256(members.encode()).digest()).rstrip(b"=").decode("ascii")


def request_token(server: Server, client_id: str, key, **extra: str):
    return server.post(data=token_form(sign(key, claims_for(client_id, server.issuer)), **extra))


# --- the console in the browser ----------------------------------------------------------------

def text_of(driver, element_id: str) -> str:
    return wait_for_element(driver, element_id).text


def texts_of(driver, css_selector: str) -> list[str]:
    return [element.text for element in driver.find_elements("css selector", css_selector)]


def sign_in(driver, server: Server) -> None:
    driver.get(server.base + "/console/login")
    wait_for_element(driver, "username").send_keys(ADMIN)
    driver.find_element("id", "password").send_keys(ADMIN_PASSWORD)
    driver.find_element("id", "signin").click()
    wait_for_url(driver, server.base + HOME)
    assert text_of(driver, "signed-in-user") == ADMIN


def add_service_provider(driver, name: str, description: str) -> str:
    """Register a private_key_jwt service provider from the list page; returns its client id."""
    from selenium.webdriver.support.ui import Select
    wait_for_element(driver, "add-sp").click()
    wait_for_element(driver, "client_name").send_keys(name)
    driver.find_element("id", "description").send_keys(description)
    Select(driver.find_element("id", "token_endpoint_auth_method")).select_by_value("private_key_jwt")
    driver.find_element("id", "create-sp").click()
    assert text_of(driver, "notice") == "Registered the service provider."
    client_id = text_of(driver, "client-id")
    assert re.fullmatch(r"[a-z0-9]{24}", client_id), client_id
    assert driver.find_element("tag name", "h1").text == name
    assert driver.find_elements("id", "client-secret") == []   # private_key_jwt: no secret, ever
    return client_id


def upload_certificate(driver, client_id: str, cert_file: Path) -> None:
    """From the configuration page: the public key page, the certificate source, the file, Save."""
    wait_for_element(driver, "configure-keys").click()
    wait_until(driver, lambda d: d.find_elements("id", "keys-form"), "the public key page never showed its form")
    assert text_of(driver, "client-id") == client_id
    driver.find_element("id", "key-source-certificate").click()
    driver.find_element("id", "certificate_file").send_keys(str(cert_file))
    driver.find_element("id", "save-keys").click()
    assert text_of(driver, "notice") == "Saved. The token endpoint uses these keys from its next request."
    assert driver.find_elements("id", "form-error") == []


def assert_key_shown(driver, cert: x509.Certificate) -> None:
    """The keys page lists exactly this certificate's key: kid = thumbprint (RFC 7638), RSA 2048."""
    thumbprint = rfc7638_thumbprint(cert)
    wait_for_element(driver, "keys")
    assert texts_of(driver, "#keys tr.key .key-kid") == [thumbprint]
    assert texts_of(driver, "#keys tr.key .key-thumbprint") == [thumbprint]
    assert texts_of(driver, "#keys tr.key .key-kty") == ["RSA"]
    assert texts_of(driver, "#keys tr.key .key-size") == ["2048 bits"]
    current = text_of(driver, "current-source")
    assert cert.subject.rfc4514_string() in current
    assert cert.fingerprint(hashes.SHA256()).hex(":").upper() in current


def configure(driver, *, scope: str, signing_alg: str) -> None:
    """The OAuth/OpenID Connect form of the configuration page: scopes, assertion algorithm, Save."""
    from selenium.webdriver.support.ui import Select
    field = wait_for_element(driver, "scope")
    field.clear()
    field.send_keys(scope)
    Select(driver.find_element("id", "token_endpoint_auth_signing_alg")).select_by_value(signing_alg)
    driver.find_element("id", "save-oauth").click()


def failure_rows(driver) -> list[list[str]]:
    """The cells of the configuration page's recent authentication failures, newest first."""
    return [[cell.text for cell in row.find_elements("tag name", "td")]
            for row in driver.find_elements("css selector", "#auth-failures tr.auth-failure")]


def back_to_configuration(driver, server: Server, client_id: str) -> None:
    wait_for_element(driver, "back-to-sp").click()
    wait_for_url(driver, f"{server.base}/console/service-providers/edit?client_id={client_id}")
    wait_for_element(driver, "oauth-form")


def set_viewport(driver) -> None:
    """A 1280x900 page area, whatever the browser's frame takes (DevTools Emulation domain)."""
    width, height = WINDOW
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})


def screenshot(driver, path: Path) -> None:
    """The whole page at the viewport's width (DevTools Page.captureScreenshot), as a PNG file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": WINDOW[0], "height": height, "scale": 1}})
    path.write_bytes(base64.b64decode(shot["data"]))
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000, (path, len(data))


def readme_screenshot_path(variable: str = "CONSOLE_SCREENSHOT") -> Path | None:
    value = os.environ.get(variable)
    if not value:
        return None
    path = Path(value)
    return path if path.is_absolute() else ROOT / path


# --- the tests -----------------------------------------------------------------------------------

def test_onboard_a_private_key_jwt_client_in_the_console(server, tmp_path):
    with chromium(tmp_path, trust_cert=server.ca) as driver:
        set_viewport(driver)
        sign_in(driver, server)
        client_id = add_service_provider(driver, "Payments API",
                                         "Settles card payments; signs its token requests with its own key.")
        assert text_of(driver, "key-source").startswith("None yet:")
        assert text_of(driver, "no-failures").startswith("No failed authentications")

        # The client's key pair, made where the client lives; the console only sees the certificate.
        store, cert_file = keytool_client(tmp_path, client_id, "client")
        cert = load_certificate(cert_file)
        key = client_key(store, client_id)

        upload_certificate(driver, client_id, cert_file)
        assert_key_shown(driver, cert)
        # Loaded again: what was stored, not the answer to the upload.
        driver.get(f"{server.base}/console/service-providers/keys?client_id={client_id}")
        assert_key_shown(driver, cert)
        assert driver.find_element("id", "key-source-certificate").is_selected()

        back_to_configuration(driver, server, client_id)
        assert text_of(driver, "key-source") == "A certificate uploaded for the client (stored as a JWKS)."
        configure(driver, scope=SCOPE, signing_alg="RS256")
        wait_for_url(driver, f"{server.base}/console/service-providers/edit?client_id={client_id}&saved=1")
        assert text_of(driver, "notice").startswith("Saved.")

        # The page as an operator finds it later (no notice): the README's screenshot.
        driver.get(f"{server.base}/console/service-providers/edit?client_id={client_id}")
        assert text_of(driver, "client-id") == client_id
        assert driver.find_element("id", "scope").get_attribute("value") == SCOPE
        assert driver.find_element("id", "grant-client_credentials").is_selected()
        assert driver.find_elements("id", "notice") == []
        screenshot(driver, tmp_path / "console.png")
        readme_copy = readme_screenshot_path()
        if readme_copy is not None:
            screenshot(driver, readme_copy)
            assert readme_copy.stat().st_size < 300_000, "the README's screenshot should stay small"

        # The client: its key from its PKCS12 file, an assertion for the issuer, client_credentials.
        response = request_token(server, client_id, key, scope="payments:write")
        assert response.status_code == 200, response.text
        assert response.headers["Cache-Control"] == "no-store"
        body = response.json()
        assert body["token_type"] == "Bearer" and body["access_token"] and body["expires_in"] > 0
        assert body["scope"] == "payments:write"
        assert "refresh_token" not in body   # RFC 6749 §4.4.3
        assert request_token(server, client_id, key).json()["scope"] == SCOPE   # RFC 6749 §3.3: the registered ones
        assert_oauth_error(request_token(server, client_id, key, scope="payments:refund"), 400, "invalid_scope")

        # Signed with another key: refused, and the console lists the failure after a reload.
        assert_oauth_error(request_token(server, client_id, rsa_key()), 401, "invalid_client")
        driver.refresh()
        wait_until(driver, lambda d: d.find_elements("css selector", "tr.auth-failure"),
                   "the configuration page lists no authentication failure")
        rows = failure_rows(driver)
        assert len(rows) == 1, rows   # an invalid_scope is not a failed authentication
        when, reason, method, alg, kid, address, detail = rows[0]
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", when), when
        assert (reason, method, alg, kid, address, detail) == ("signature", "private_key_jwt", "RS256", "", "127.0.0.1", "")
        assert driver.find_elements("id", "no-failures") == []
        screenshot(driver, tmp_path / "console-failure.png")

    # The refusal changed nothing: the client's own key still works.
    assert request_token(server, client_id, key).status_code == 200


def test_rotate_the_key_with_a_pem_certificate(server, tmp_path):
    """A new certificate (keytool -exportcert -rfc) replaces the old one: the old key stops working
    at the token endpoint's next request, the new one works."""
    with chromium(tmp_path, trust_cert=server.ca) as driver:
        set_viewport(driver)
        sign_in(driver, server)
        client_id = add_service_provider(driver, "Ledger service", "Books settled payments.")
        old_store, old_cert = keytool_client(tmp_path, client_id, "old")
        old_key = client_key(old_store, client_id)
        # Before a key is registered: no certificate under the client id, so nothing can verify it.
        assert_oauth_error(request_token(server, client_id, old_key), 401, "invalid_client")
        upload_certificate(driver, client_id, old_cert)
        assert_key_shown(driver, load_certificate(old_cert))
        assert request_token(server, client_id, old_key).status_code == 200

        new_store, new_cert = keytool_client(tmp_path, client_id, "new", pem=True)
        assert new_cert.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
        back_to_configuration(driver, server, client_id)
        upload_certificate(driver, client_id, new_cert)
        assert_key_shown(driver, load_certificate(new_cert))

        assert_oauth_error(request_token(server, client_id, old_key), 401, "invalid_client")
        response = request_token(server, client_id, client_key(new_store, client_id))
        assert response.status_code == 200, response.text
        assert response.json()["access_token"]

        back_to_configuration(driver, server, client_id)
        assert [row[1] for row in failure_rows(driver)] == ["signature", "no_certificate"]   # newest first


# --- per-client activity -------------------------------------------------------------------------

def seeded_week(client_id: str, now_hour: int) -> dict:
    """Six days and 23 hours of history before the current hour: more tokens in working hours (UTC),
    a few failures, assertions sent to the token endpoint URL without typ."""
    counts = {}
    for hour in range(now_hour - 7 * 24 + 1, now_hour):
        busy = 8 <= hour % 24 < 18
        issued = (40 if busy else 12) + (hour * 7) % 9
        failed = (hour * 5) % 4 if busy else 0
        for name, count in (("issued", issued), ("binding:bearer", issued), ("aud:token_endpoint", issued),
                            ("typ:absent", issued), ("alg:RS256", issued), ("lifetime:300", issued),
                            ("failure:expired", failed)):
            if count:
                counts[(client_id, hour, name)] = (count, hour * 3600 + 1800)
    return counts


def section_screenshot(driver, first_id: str, last_id: str, path: Path) -> None:
    """The part of the page from one element's top to another's bottom, as a PNG file."""
    top, bottom = driver.execute_script(
        "const a = document.getElementById(arguments[0]).getBoundingClientRect();"
        "const b = document.getElementById(arguments[1]).getBoundingClientRect();"
        "return [a.top + window.scrollY - 16, b.bottom + window.scrollY + 16];", first_id, last_id)
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": top, "width": WINDOW[0], "height": bottom - top, "scale": 1}})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))
    assert path.read_bytes().startswith(PNG_SIGNATURE) and path.stat().st_size > 10_000


def test_client_activity_charts(tmp_path):
    """A client's week of activity (the history written to the table, the last minutes by real
    token requests to two workers), drawn as SVG charts with the figures in tables."""
    import time
    from storage import activity
    from storage.database import close_all, open_database

    shared_keystore(tmp_path)
    port = free_port()
    listener = ('[[event_listener]]\nid = "client_activity"\nname = "client_activity"\n'
                '[event_listener.properties]\nFlushIntervalInSeconds = 1\n')
    server = Server(write_config(tmp_path, port, workers=2, listeners=listener), port).start()
    try:
        server.cli("admin", "create", "--username", ADMIN, "--password-stdin", input=ADMIN_PASSWORD + "\n")
        issuer = server.get("/.well-known/openid-configuration").json()["issuer"]
        server.issuer = issuer
        key = rsa_key()
        (tmp_path / "jwks.json").write_text(jwks_of((key, "k1")))
        server.cli("clients", "create", "--client-id", "billing-batch", "--client-name", "Billing batch",
                   "--auth-method", "private_key_jwt", "--jwks-file", str(tmp_path / "jwks.json"))
        now_hour = int(time.time()) // 3600
        seeded = seeded_week("billing-batch", now_hour)
        db = open_database("sqlite:///var/identity.db", tmp_path)
        try:
            activity.add(seeded)
        finally:
            close_all(db)
        for _ in range(5):
            assert request_token(server, "billing-batch", key).status_code == 200
        for _ in range(2):
            assert_oauth_error(request_token(server, "billing-batch", rsa_key()), 401, "invalid_client")

        def seeded_sum(name: str, since_hour: int) -> int:
            return sum(count for (_, hour, counter), (count, _) in seeded.items()
                       if counter == name and hour >= since_hour)
        issued_24h = seeded_sum("issued", now_hour - 23) + 5
        failures_24h = seeded_sum("failure:expired", now_hour - 23) + 2

        with chromium(tmp_path, trust_cert=server.ca) as driver:
            set_viewport(driver)
            sign_in(driver, server)
            page = f"{server.base}/console/service-providers/edit?client_id=billing-batch"
            driver.get(page)
            for _ in range(20):  # until both workers have flushed
                shown = int(text_of(driver, "issued-24h")), int(text_of(driver, "failures-24h"))
                if shown[0] >= issued_24h and shown[1] >= failures_24h:
                    break
                time.sleep(0.5)
                driver.get(page)
            if int(time.time()) // 3600 == now_hour:   # the figures, unless an hour has just begun
                assert text_of(driver, "issued-24h") == str(issued_24h)
                assert text_of(driver, "failures-24h") == str(failures_24h)
            assert len(driver.find_elements("css selector", "svg.chart")) == 2
            assert len(driver.find_elements("css selector", "#chart-24h rect.bar-issued")) == 24
            assert len(driver.find_elements("css selector", "#chart-7d rect.bar-issued")) == 7
            assert texts_of(driver, "#failure-reasons tr.failure-reason-row th")[0] in ("expired", "signature")
            refusals = text_of(driver, "client-refusals")
            assert "AudiencePolicy=strict would refuse it" in refusals
            assert "RequireExplicitTyp=true would refuse it" in refusals
            section_screenshot(driver, "activity", "client-refusals", tmp_path / "activity.png")
            readme_copy = readme_screenshot_path("ACTIVITY_SCREENSHOT")
            if readme_copy is not None:
                section_screenshot(driver, "activity", "client-refusals", readme_copy)
                assert readme_copy.stat().st_size < 300_000, "the README's screenshot should stay small"
    finally:
        server.stop()

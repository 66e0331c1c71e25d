"""The authorization code flow in a real browser: headless Chromium, the real server over HTTPS,
the playground (`flask playground`) as the client. And the WSO2 documentation's curl request,
with a code obtained through the browser and a fresh client assertion."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from jose import jwt as jose_jwt

from browser import RedirectCatcher, chromium, wait_for_element, wait_for_url
from support import PYTHON, ROOT, Server, free_port, jwks_of, pem, rsa_key, shared_keystore, write_config

USERNAME = "alice"
PASSWORD = "correct horse battery staple"
WSO2_REDIRECT_URI = "http://localhost:8080/playground2/oauth2client"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser-flow")
    shared_keystore(tmp)
    port = free_port()
    srv = Server(write_config(tmp, port, workers=1), port).start()
    created = srv.cli("users", "create", "--username", USERNAME, "--password-stdin", "--name", "Alice Example",
                      "--email", "alice@example.com", "--email-verified", input=PASSWORD + "\n")
    srv.sub = json.loads(created.stdout)["sub"]
    srv.issuer = srv.get("/.well-known/openid-configuration").json()["issuer"]
    yield srv
    srv.stop()


class Playground:
    """`flask --app app playground --port PORT` against the server's deployment.toml."""

    def __init__(self, server: Server, port: int, log_path: Path) -> None:
        self.port = port
        self.url = f"http://localhost:{port}/playground2/oauth2client"
        self.log_path = log_path
        self.proc = subprocess.Popen([PYTHON, "-m", "flask", "--app", str(ROOT / "app.py"), "playground",
                                      "--port", str(port)], cwd=ROOT, env=server.env,
                                     stdout=open(log_path, "wb"), stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("the playground exited:\n" + self.log())
            try:
                if requests.get(self.url, timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("the playground did not start:\n" + self.log())

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)


@pytest.fixture(scope="module")
def playground(server, tmp_path_factory):
    pg = Playground(server, free_port(), tmp_path_factory.mktemp("playground") / "playground.log")
    yield pg
    pg.stop()


def sign_in(driver, server: Server, username: str = USERNAME, password: str = PASSWORD) -> None:
    wait_for_url(driver, server.base + "/oauth2/authorize")
    wait_for_element(driver, "username").send_keys(username)
    driver.find_element("id", "password").send_keys(password)
    driver.find_element("id", "signin").click()


def sign_in_and_allow(driver, server: Server) -> None:
    """The server's pages: sign in as the test user, then allow on the consent page."""
    sign_in(driver, server)
    wait_for_element(driver, "allow").click()


def verify_id_token(server: Server, id_token: str, *, client_id: str, nonce: str, access_token: str) -> dict:
    """Independently of the server's code: python-jose with the keys of /oauth2/jwks."""
    jwks = server.get("/oauth2/jwks").json()
    claims = jose_jwt.decode(id_token, jwks, algorithms=["RS256"], audience=client_id, issuer=server.issuer,
                             access_token=access_token)
    assert claims["sub"] == server.sub
    assert claims["nonce"] == nonce
    assert claims["exp"] > time.time()
    aud = claims["aud"]
    assert aud == client_id or (isinstance(aud, list) and client_id in aud)
    return claims


def test_playground_registers_itself_on_first_run(server, playground):
    log = playground.log()
    assert "registered client playground: private_key_jwt" in log, log
    assert f"redirect URI {playground.url}" in log
    assert "trusting the server certificate in " in log
    registered = json.loads(server.cli("clients", "show", "playground").stdout)
    assert registered["redirect_uris"] == [playground.url]
    assert registered["token_endpoint_auth_method"] == "private_key_jwt"
    assert sorted(registered["grant_types"]) == ["authorization_code", "refresh_token"]
    assert registered["scope"] == "openid profile email offline_access"


def test_authorization_code_flow_in_the_browser(server, playground, tmp_path):
    with chromium(tmp_path, trust_cert=server.ca) as driver:
        driver.get(playground.url)
        wait_for_element(driver, "start").click()
        # The authorization request the playground built, as the browser received it.
        authorize_url = wait_for_url(driver, server.base + "/oauth2/authorize?")
        request = {k: v[0] for k, v in parse_qs(urlsplit(authorize_url).query).items()}
        assert request["response_type"] == "code"
        assert request["client_id"] == "playground"
        assert request["redirect_uri"] == playground.url
        assert request["scope"] == "openid profile email offline_access"
        assert request["code_challenge_method"] == "S256"
        assert len(request["state"]) >= 43 and len(request["nonce"]) >= 43 and len(request["code_challenge"]) == 43

        sign_in_and_allow(driver, server)
        wait_for_url(driver, playground.url + "?")
        verdict = wait_for_element(driver, "verdict").text
        driver.save_screenshot(str(tmp_path / "playground-tokens.png"))
        id_token = driver.find_element("id", "id-token").text
        access_token = driver.find_element("id", "access-token").text
        refresh_token = driver.find_element("id", "refresh-token").text
        checks = {row.find_element("tag name", "th").text: row.find_element("css selector", "td").text
                  for row in driver.find_elements("css selector", "#id-token-checks tr")}

    assert (tmp_path / "playground-tokens.png").stat().st_size > 1000
    assert verdict == "The ID token is valid: signature and claims verified.", checks
    assert {name: checks[name] for name in ("signature", "iss", "aud", "nonce", "exp")} == dict.fromkeys(
        ("signature", "iss", "aud", "nonce", "exp"), "ok")
    verify_id_token(server, id_token, client_id="playground", nonce=request["nonce"], access_token=access_token)
    assert refresh_token and refresh_token != "(none)"

    # The access token is the user's and is active; the refresh token works, with the playground's key.
    key = (server.config_path.parent / "var" / "playground" / "private-key.pem").read_bytes()
    introspection = server.post("/oauth2/introspect", data={
        "token": access_token, **assertion_form(server, "playground", key)})
    assert introspection.status_code == 200 and introspection.json()["active"] is True, introspection.text
    refreshed = server.post(data={"grant_type": "refresh_token", "refresh_token": refresh_token,
                                  **assertion_form(server, "playground", key)})
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["access_token"] != access_token


def assertion_form(server: Server, client_id: str, key_pem: bytes) -> dict:
    key_file = server.config_path.parent / f"{client_id}-assertion.key"
    key_file.write_bytes(key_pem)
    key_file.chmod(0o600)
    jwt = server.cli("assertion", "create", "--client-id", client_id, "--key", str(key_file)).stdout.strip()
    return {"client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": jwt}


def test_denied_consent_is_shown_by_the_playground(server, playground, tmp_path):
    server.cli("users", "create", "--username", "bob", "--password-stdin", input="bob's long password\n")
    with chromium(tmp_path, trust_cert=server.ca) as driver:
        driver.get(playground.url)
        wait_for_element(driver, "start").click()
        sign_in(driver, server, "bob", "bob's long password")
        wait_for_element(driver, "deny").click()
        wait_for_url(driver, playground.url + "?")
        error = wait_for_element(driver, "error").text
        table = driver.find_element("id", "authorization-error").text
    assert error == "access_denied"   # RFC 6749 §4.1.2.1
    assert "matches the request started in this browser" in table


def test_wso2_curl_request_with_a_code_from_the_browser(server, tmp_path):
    """The request of the WSO2 documentation, as written, with a code the browser received at
    the playground's redirect URI (captured before anything there could redeem it)."""
    curl = shutil.which("curl")
    assert curl, "curl not found: run tests/setup-system.sh"
    key = rsa_key()
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(jwks_of((key, "wso2-key")))
    server.cli("clients", "create", "--client-id", "wso2-playground", "--auth-method", "private_key_jwt",
               "--grant-type", "authorization_code", "--grant-type", "refresh_token", "--scope", "openid",
               "--redirect-uri", WSO2_REDIRECT_URI, "--jwks-file", str(jwks_file))
    state, nonce = "st-" + "a" * 40, "n-" + "b" * 40
    authorize_url = server.base + "/oauth2/authorize?" + urlencode({
        "response_type": "code", "client_id": "wso2-playground", "redirect_uri": WSO2_REDIRECT_URI,
        "scope": "openid", "state": state, "nonce": nonce})

    with RedirectCatcher() as catcher, \
            chromium(tmp_path, trust_cert=server.ca, http_proxy=catcher.address) as driver:
        driver.get(authorize_url)
        sign_in_and_allow(driver, server)
        wait_for_url(driver, WSO2_REDIRECT_URI + "?")
        wait_for_element(driver, "captured")
        captured = catcher.first(WSO2_REDIRECT_URI + "?")
    response = {k: v[0] for k, v in parse_qs(urlsplit(captured).query).items()}
    assert response["state"] == state and response["iss"] == server.issuer
    code = response["code"]

    key_file = tmp_path / "client.key"
    key_file.write_bytes(pem(key))

    def curl_token(code: str) -> tuple[str, dict]:
        jwt = server.cli("assertion", "create", "--client-id", "wso2-playground", "--key", str(key_file),
                         "--kid", "wso2-key").stdout.strip()
        result = subprocess.run([
            curl, "-v", "-H", "Content-Type: application/x-www-form-urlencoded;charset=UTF-8", "-k",
            "-d", f"grant_type=authorization_code&code={code}&scope=openid&client_assertion_type=urn%3Aietf%3A"
                  f"params%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={jwt}"
                  f"&redirect_uri={WSO2_REDIRECT_URI}",
            f"https://localhost:{server.port}/oauth2/token"], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        status = re.search(r"^< HTTP/[\d.]+ (\d{3})", result.stderr, re.M).group(1)
        return status, json.loads(result.stdout)

    status, body = curl_token(code)
    assert status == "200", body
    assert body["token_type"] == "Bearer" and body["scope"] == "openid"
    assert body["access_token"] and body["refresh_token"] and body["id_token"]
    claims = verify_id_token(server, body["id_token"], client_id="wso2-playground", nonce=nonce,
                             access_token=body["access_token"])
    assert claims["sub"] == server.sub

    # The same code again, with a fresh assertion: used up (RFC 6749 §4.1.2).
    status, body = curl_token(code)
    assert status == "400" and body["error"] == "invalid_grant", body


def test_without_chromium_the_browser_tests_fail_and_say_what_to_run(monkeypatch):
    import browser
    monkeypatch.setattr(browser, "CHROMEDRIVER", "/nonexistent/chromedriver")
    with pytest.raises(pytest.fail.Exception, match=r"/nonexistent/chromedriver not found: run tests/setup-system.sh"):
        browser.require_chromium()

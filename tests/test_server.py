"""The real server end to end: `python app.py deployment.toml` under gunicorn with HTTPS, a real
SQLite file and keystore, the real CLI and (where installed) the JDK's keytool and curl.

The rules themselves are covered in-process by test_token_endpoint.py; these tests cover what
only a running deployment shows: the exact bytes of a documented request, several worker
processes racing on one jti, keystore files changed by other programs, fetched key sets, handler
modules dropped into handlers/, start-up errors and the log.

One server per module serves every test that can share its configuration; the others start
their own. Servers are always stopped in fixture teardown or in a `finally`.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import re
import shutil
import ssl
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from support import (KEYSTORE_PASSWORD, PYTHON, ROOT, JWKSServer, Server, assert_oauth_error, claims_for, free_port, jwks_of,
                     pem, rsa_key, sign, token_form, write_config)

KEYTOOL = shutil.which("keytool")
CURL = shutil.which("curl")
needs_keytool = pytest.mark.skipif(KEYTOOL is None, reason="keytool (a JDK) is not installed")

SECRET_AUTHENTICATOR = "org.wso2.carbon.identity.oauth2.client.authentication.BasicAuthClientAuthenticator"
SECRET_DISABLED = f"""
[[event_listener]]
id = "x"
name = "{SECRET_AUTHENTICATOR}"
enable = false
"""
ALL_METHODS = ["private_key_jwt", "client_secret_basic", "client_secret_post", "none"]


# --- servers ---------------------------------------------------------------------------------

@contextlib.contextmanager
def running(directory: Path, *, cwd: Path = ROOT, edit=None, **config):
    """A started server for write_config(directory, <free port>, **config); stopped on exit.

    `edit` rewrites the generated deployment.toml text before start-up."""
    port = free_port()
    path = write_config(directory, port, **config)
    if edit is not None:
        path.write_text(edit(path.read_text()))
    server = Server(path, port, cwd)
    try:
        yield server.start()
    finally:
        server.stop()


def issuer(server: Server) -> str:
    return server.base + "/oauth2/token"


def keystore_file(server: Server, name: str = "primary.p12") -> Path:
    return server.config_path.parent / "var" / name


def cli_all(server: Server, *commands: tuple[str, ...]) -> list[subprocess.CompletedProcess]:
    """Several CLI commands at once (each is its own process; SQLite serialises the writes)."""
    with ThreadPoolExecutor(len(commands)) as pool:
        return list(pool.map(lambda args: server.cli(*args), commands))


# --- clients, assertions, responses ------------------------------------------------------------

@dataclass
class Client:
    client_id: str
    key: object
    kid: str | None = "k1"
    pem_file: Path | None = None
    jwks_file: Path | None = None

    def assertion(self, server: Server, key=None, kid=..., alg: str = "RS256", headers: dict | None = None,
                  **claims) -> str:
        kid = self.kid if kid is ... else kid
        header = {**({"kid": kid} if kid else {}), **(headers or {})}
        return sign(key or self.key, claims_for(self.client_id, issuer(server), **claims), alg, header)


def client_files(directory: Path, client_id: str, kid: str | None = "k1", key=None) -> Client:
    """A key pair for a client: the private key as PEM and the public key as a JWKS file."""
    directory.mkdir(parents=True, exist_ok=True)
    key = key or rsa_key()
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", client_id)
    pem_file = directory / f"{safe}.pem"
    jwks_file = directory / f"{safe}.jwks.json"
    pem_file.write_bytes(pem(key))
    jwks_file.write_text(jwks_of((key, kid)))
    return Client(client_id, key, kid, pem_file, jwks_file)


def create_args(client: Client, *extra: str) -> tuple[str, ...]:
    return ("clients", "create", "--client-id", client.client_id, "--auth-method", "private_key_jwt",
            "--jwks-file", str(client.jwks_file), *extra)


def register(server: Server, client_id: str, *extra: str, kid: str | None = "k1") -> Client:
    """A private_key_jwt client with an inline JWKS, registered with the real CLI."""
    client = client_files(server.config_path.parent / "clients", client_id, kid)
    server.cli(*create_args(client, *(extra or ("--scope", "openid"))))
    return client


def token(server: Server, assertion: str, **extra) -> requests.Response:
    return server.post(data=token_form(assertion, **extra))


def assert_token(response: requests.Response, scope: str | None = "openid") -> dict:
    assert response.status_code == 200, (response.status_code, response.text)
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"
    body = response.json()
    assert isinstance(body["access_token"], str) and len(body["access_token"]) >= 20
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body.get("scope") == scope
    return body


def assert_json_error(response: requests.Response, status: int, error: str) -> dict:
    """An HTTP-level error: JSON, never an HTML error page."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["Content-Type"] == "application/json"
    assert "<" not in response.text
    body = response.json()
    assert body["error"] == error
    return body


def basic_header(client_id: str, secret: str) -> dict:
    """RFC 6749 §2.3.1: both parts form-urlencoded before Base64."""
    raw = f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def b64url_uint(value: int) -> str:
    return base64.urlsafe_b64encode(value.to_bytes((value.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()


# --- certificates and keytool ----------------------------------------------------------------

def self_signed(key, common_name: str, *, valid_from: datetime.datetime | None = None,
                valid_to: datetime.datetime | None = None) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(valid_from or now - datetime.timedelta(minutes=5))
            .not_valid_after(valid_to or now + datetime.timedelta(days=30))
            .sign(key, hashes.SHA256()))


def write_cert(path: Path, cert: x509.Certificate) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def keytool(*args: str, cwd: Path | None = None) -> str:
    result = subprocess.run([KEYTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise AssertionError(f"keytool {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout + result.stderr


def keytool_list(path: Path, store_type: str) -> str:
    return keytool("-list", "-keystore", str(path), "-storetype", store_type, "-storepass", KEYSTORE_PASSWORD)


# =================================================================================================
# jwks_uri. The server refetches on an unknown kid at most once per refresh_interval after its
# last fetch; the rotation server sets it to REFRESH seconds.
# =================================================================================================

REFRESH = 3


@dataclass
class Rotation:
    server: Server
    jwks: JWKSServer
    client: Client
    k2: object
    first: requests.Response
    first_fetch: float

    def rotate(self) -> None:
        """The client now publishes only k2."""
        self.jwks.default = json.loads(jwks_of((self.k2, "k2")))

    def paths(self) -> list[str]:
        return [path for _, _, path in self.jwks.requests]


@pytest.fixture(scope="module")
def rotation(tmp_path_factory):
    k1, k2 = rsa_key(), rsa_key()
    # max-age well beyond the test: a key set refreshed later is refreshed by the unknown-kid
    # refetch, never by the cached copy expiring.
    jwks = JWKSServer(json.loads(jwks_of((k1, "k1"))), cache_control="max-age=3600")
    try:
        # One worker process: one key-set cache, so the fetch count is exact.
        with running(tmp_path_factory.mktemp("rotation"), workers=1,
                     jwks_fetch_extra=f"refresh_interval = {REFRESH}") as server:
            server.cli("clients", "create", "--client-id", "rotating-client", "--auth-method", "private_key_jwt",
                       "--jwks-uri", jwks.url("/jwks.json"), "--scope", "openid")
            assert jwks.requests == []  # registering checks the URL but fetches nothing
            client = Client("rotating-client", k1, "k1")
            first = token(server, client.assertion(server))
            first_fetch = jwks.requests[0][0] if jwks.requests else time.monotonic()
            yield Rotation(server, jwks, client, k2, first, first_fetch)
    finally:
        jwks.close()


def test_jwks_uri_keys_are_fetched_once_and_cached(rotation):
    r = rotation
    assert_token(r.first)
    for _ in range(3):
        assert_token(token(r.server, r.client.assertion(r.server)))
    assert r.paths() == ["/jwks.json"]  # one fetch, not one per request

    # The client rotates to k2 and uses it at once: within REFRESH s of the last fetch the server
    # does not fetch again (an unknown kid cannot make it fetch on every request).
    r.rotate()
    body = assert_oauth_error(token(r.server, r.client.assertion(r.server, key=r.k2, kid="k2")), 401,
                              "invalid_client")
    assert "kid" in body["error_description"]
    assert r.paths() == ["/jwks.json"]


def test_jwks_uri_unknown_kid_refetches_after_the_rate_limit(rotation):
    r = rotation
    r.rotate()
    wait = r.first_fetch + REFRESH + 0.3 - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    # k2 is unknown to the cached set (still fresh for an hour): the unknown kid makes the server
    # fetch the set again, and k2 is found.
    assert_token(token(r.server, r.client.assertion(r.server, key=r.k2, kid="k2")))
    assert r.paths() == ["/jwks.json", "/jwks.json"]
    # k1 is no longer published: an assertion claiming kid k1 fails, whoever signed it, and
    # does not make the server fetch again.
    assert_oauth_error(token(r.server, r.client.assertion(r.server, key=rsa_key(), kid="k1")), 401,
                       "invalid_client")
    assert_oauth_error(token(r.server, r.client.assertion(r.server)), 401, "invalid_client")
    assert r.paths() == ["/jwks.json", "/jwks.json"]


# =================================================================================================
# 1. The WSO2 documentation's request, byte for byte
# =================================================================================================

@pytest.fixture(scope="module")
def main(tmp_path_factory):
    with running(tmp_path_factory.mktemp("main")) as server:
        yield server


WSO2_CONTENT_TYPE = "application/x-www-form-urlencoded;charset=ISO-8859-1"


def wso2_body(assertion: str) -> str:
    return ("grant_type=client_credentials&scope=openid"
            "&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"
            f"&client_assertion={assertion}&redirect_uri=http://localhost:8080/playground2/oauth2client")


def test_the_server_says_where_it_serves_once_it_listens(main):
    directory = main.config_path.parent
    lines = [line for line in main.log().splitlines() if line.startswith(("serving on", "  "))]
    assert lines[:6] == [
        f"serving on https://127.0.0.1:{main.port} (2 workers, 4 threads each)",
        f"  issuer     https://localhost:{main.port}/oauth2/token",
        f"  console    https://localhost:{main.port}/console",
        f"  keystore   {directory / 'var' / 'primary.p12'}",
        f"  database   {directory / 'var' / 'identity.db'}",
        f"  config     {main.config_path}",
    ]


@pytest.mark.parametrize("url, shown", [
    ("sqlite:///var/identity.db", "{dir}/var/identity.db"),
    ("sqlite://localhost/var/identity.db", "{dir}/var/identity.db"),
    ("sqlite:////srv/idp/identity.db", "/srv/idp/identity.db"),
    ("postgresql://idp:secret@db.internal:5432/identity?max_connections=4", "postgresql://db.internal:5432/identity"),
    ("mysql://idp@db.internal/identity", "mysql://db.internal/identity"),
])
def test_the_database_is_named_without_credentials(tmp_path, url, shown):
    from storage.database import describe
    assert describe(url, tmp_path) == shown.format(dir=tmp_path)


@pytest.fixture(scope="module")
def wso2_client(main):
    client = client_files(main.config_path.parent / "clients", "wso2-doc-client", "k1")
    main.cli("clients", "create", "--client-id", client.client_id, "--auth-method", "private_key_jwt",
             "--jwks-file", str(client.jwks_file), "--scope", "openid")
    return client


def cli_assertion(server: Server, client: Client) -> str:
    out = server.cli("assertion", "create", "--client-id", client.client_id, "--key", str(client.pem_file),
                     "--kid", client.kid).stdout.strip()
    assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", out), out
    return out


def test_wso2_documented_request(main, wso2_client):
    assertion = cli_assertion(main, wso2_client)
    response = requests.post(main.base + "/oauth2/token", data=wso2_body(assertion),
                             headers={"Content-Type": WSO2_CONTENT_TYPE}, verify=main.ca, timeout=15)
    assert_token(response, scope="openid")


@pytest.mark.skipif(CURL is None, reason="curl is not installed")
def test_wso2_documented_request_with_curl(main, wso2_client):
    assertion = cli_assertion(main, wso2_client)
    result = subprocess.run([CURL, "-s", "-k", "-i", "-H", f"Content-Type: {WSO2_CONTENT_TYPE}",
                             "-d", wso2_body(assertion), main.base + "/oauth2/token"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    head, _, body = result.stdout.replace("\r\n", "\n").partition("\n\n")
    status_line, *header_lines = head.split("\n")
    assert re.match(r"HTTP/\S+ 200\b", status_line), result.stdout
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines)}
    assert headers["content-type"] == "application/json"
    assert headers["cache-control"] == "no-store"
    assert headers["pragma"] == "no-cache"
    data = json.loads(body)
    assert data["token_type"] == "Bearer" and data["scope"] == "openid" and data["expires_in"] == 3600
    assert data["access_token"]


# =================================================================================================
# 2. keytool: certificates in the primary keystore
# =================================================================================================

@needs_keytool
def test_keytool_documented_flow_with_restart(tmp_path_factory):
    base = tmp_path_factory.mktemp("keytool")
    work = base / "client"
    work.mkdir()
    # The client's side, as the WSO2 documentation has it.
    keytool("-genkey", "-alias", "TodayApp", "-keyalg", "RSA", "-keysize", "2048", "-keystore", "TodayApp.jks",
            "-storepass", "secret123", "-keypass", "secret123", "-dname", "CN=TodayApp", "-validity", "30",
            "-noprompt", cwd=work)
    keytool("-export", "-alias", "TodayApp", "-file", "TodayApp", "-keystore", "TodayApp.jks",
            "-storepass", "secret123", cwd=work)
    keytool("-importkeystore", "-srckeystore", "TodayApp.jks", "-srcstorepass", "secret123",
            "-srcalias", "TodayApp", "-destkeystore", "TodayApp.p12", "-deststoretype", "PKCS12",
            "-deststorepass", "secret123", "-destkeypass", "secret123", "-noprompt", cwd=work)
    key, cert, _ = pkcs12.load_key_and_certificates((work / "TodayApp.p12").read_bytes(), b"secret123")
    exported = x509.load_der_x509_certificate((work / "TodayApp").read_bytes())
    assert exported.public_key().public_numbers() == key.public_key().public_numbers()
    today = Client("TodayApp", key, kid=None)

    expired_key = rsa_key()
    now = datetime.datetime.now(datetime.timezone.utc)
    expired_pem = write_cert(work / "expired.pem", self_signed(
        expired_key, "ExpiredApp", valid_from=now - datetime.timedelta(days=10),
        valid_to=now - datetime.timedelta(days=1)))
    expired = Client("ExpiredApp", expired_key, kid=None)

    with running(base / "idp") as server:
        created = cli_all(server,
                          ("clients", "create", "--client-id", "TodayApp", "--auth-method", "private_key_jwt",
                           "--scope", "openid"),
                          ("clients", "create", "--client-id", "ExpiredApp", "--auth-method", "private_key_jwt",
                           "--scope", "openid"))
        assert json.loads(created[0].stdout)["key_source"] == "keystore"
        assert "no certificate with alias TodayApp" in created[0].stderr

        # No certificate with the client's alias yet.
        body = assert_oauth_error(token(server, today.assertion(server)), 401, "invalid_client")
        assert "certificate" in body["error_description"]

        server.stop()
        keytool("-import", "-alias", "TodayApp", "-file", str(work / "TodayApp"),
                "-keystore", str(keystore_file(server)), "-storepass", KEYSTORE_PASSWORD, "-noprompt")
        keytool("-import", "-alias", "ExpiredApp", "-file", str(expired_pem),
                "-keystore", str(keystore_file(server)), "-storepass", KEYSTORE_PASSWORD, "-noprompt")
        server.start()

        assert_token(token(server, today.assertion(server)))
        body = assert_oauth_error(token(server, expired.assertion(server)), 401, "invalid_client")
        assert "expired" in body["error_description"]
        # The server's own key entry survived keytool's rewrite of the file: TLS still works and
        # the CLI still lists the primary entry.
        kinds = {e["alias"].lower(): e["kind"] for e in json.loads(server.cli("keystore", "list").stdout)}
        assert kinds == {"wso2carbon": "PrivateKeyEntry", "todayapp": "trustedCertEntry",
                         "expiredapp": "trustedCertEntry"}


def jks_primary(text: str) -> str:
    old = 'file_name = "var/primary.p12"'
    assert old in text
    return text.replace(old, 'file_name = "var/primary.jks"\ntype = "JKS"')


@needs_keytool
def test_client_id_with_capitals_in_jks_keystore(tmp_path_factory):
    base = tmp_path_factory.mktemp("jks")
    key = rsa_key()
    cert_file = write_cert(base / "certs" / "MixedCaseApp.pem", self_signed(key, "MixedCaseApp"))
    client = Client("MixedCaseApp", key, kid=None)
    with running(base / "idp", edit=jks_primary) as server:
        server.cli("clients", "create", "--client-id", "MixedCaseApp", "--auth-method", "private_key_jwt",
                   "--scope", "openid")
        server.stop()
        store = keystore_file(server, "primary.jks")
        keytool("-import", "-alias", "MixedCaseApp", "-file", str(cert_file), "-keystore", str(store),
                "-storetype", "JKS", "-storepass", KEYSTORE_PASSWORD, "-noprompt")
        listing = keytool_list(store, "JKS")
        assert re.search(r"^mixedcaseapp, .*trustedCertEntry", listing, re.M), listing  # JKS lower-cases
        server.start()
        assert_token(token(server, client.assertion(server)))


# =================================================================================================
# 3. One jti, many worker processes
# =================================================================================================

@pytest.fixture(scope="class")
def replay_server(tmp_path_factory):
    with running(tmp_path_factory.mktemp("replay"), workers=4) as server:
        yield server, register(server, "racing-client")


def race(server: Server, data: dict, n: int = 40) -> list[requests.Response]:
    """n POSTs released together, each on its own session (its own TLS connection)."""
    barrier = threading.Barrier(n)

    def one(_):
        with requests.Session() as session:
            barrier.wait(timeout=30)
            return session.post(server.base + "/oauth2/token", data=data, verify=server.ca, timeout=60)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


class TestReplayAcrossWorkers:
    @pytest.mark.parametrize("round_", range(3))
    def test_concurrent_replay_accepts_exactly_one(self, replay_server, round_):
        server, client = replay_server
        responses = race(server, token_form(client.assertion(server)))
        outcomes = Counter((r.status_code, r.json().get("error")) for r in responses)
        assert outcomes == Counter({(200, None): 1, (401, "invalid_client"): 39}), outcomes
        for response in responses:
            if response.status_code == 200:
                assert_token(response)
            else:
                body = assert_oauth_error(response, 401, "invalid_client")
                assert "already been used" in body["error_description"]


@pytest.fixture(scope="class")
def relaxed(tmp_path_factory):
    """PreventTokenReuse off, PS256 only, client secrets disabled."""
    with running(tmp_path_factory.mktemp("relaxed"), pkjwt={"PreventTokenReuse": False,
                                                            "SigningAlgorithms": ["PS256"]},
                 listeners=SECRET_DISABLED) as server:
        client = client_files(server.config_path.parent / "clients", "relaxed-client")
        _, basic = cli_all(server, create_args(client, "--scope", "openid"),
                           ("clients", "create", "--client-id", "relaxed-basic", "--auth-method",
                            "client_secret_basic"))
        yield server, client, json.loads(basic.stdout)["client_secret"]


class TestRelaxedConfiguration:
    def test_same_assertion_twice_when_reuse_is_allowed(self, relaxed):
        server, client, _ = relaxed
        assertion = client.assertion(server, alg="PS256")
        first = assert_token(token(server, assertion))
        second = assert_token(token(server, assertion))
        assert first["access_token"] != second["access_token"]

    def test_metadata_and_requests_follow_the_configuration(self, relaxed):
        """9: the secret authenticator disabled, SigningAlgorithms = ["PS256"]."""
        server, client, basic_secret = relaxed
        metadata = metadata_of(server)
        assert metadata["token_endpoint_auth_methods_supported"] == ["private_key_jwt", "none"]
        assert metadata["token_endpoint_auth_signing_alg_values_supported"] == ["PS256"]
        # The disabled authenticator authenticates nobody, even a registered client_secret_basic client.
        response = server.post(data={"grant_type": "client_credentials"},
                               headers=basic_header("relaxed-basic", basic_secret))
        assert_oauth_error(response, 401, "invalid_client")
        # Only PS256 is accepted.
        assert_oauth_error(token(server, client.assertion(server, alg="RS256")), 401, "invalid_client")
        assert_token(token(server, client.assertion(server, alg="PS256")))


# =================================================================================================
# 5. Keys named in the assertion's header are never fetched or trusted
# =================================================================================================

def test_header_keys_are_never_fetched_or_used(main):
    canary = JWKSServer()
    try:
        victim = register(main, "canary-victim")
        cert_client = "canary-keystore-client"  # keystore mode, no certificate imported
        main.cli("clients", "create", "--client-id", cert_client, "--auth-method", "private_key_jwt",
                 "--scope", "openid")
        attacker = rsa_key()
        cert = self_signed(attacker, "canary-victim")
        from keystore.jwk import PublicKey
        jwk = PublicKey.from_cryptography(attacker.public_key()).to_jwk()
        x5c = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
        variants = [
            {"jku": canary.url("/jku.json")},
            {"x5u": canary.url("/x5u.pem")},
            {"jwk": jwk},
            {"x5c": x5c},
            {"jku": canary.url("/jku.json"), "x5u": canary.url("/x5u.pem"), "jwk": jwk, "x5c": x5c},
        ]
        for headers in variants:
            for kid in ("k1", "attacker", None):
                response = token(main, victim.assertion(main, key=attacker, kid=kid, headers=headers))
                assert_oauth_error(response, 401, "invalid_client")
            keystore_client = Client(cert_client, attacker, kid=None)
            assert_oauth_error(token(main, keystore_client.assertion(main, headers=headers)), 401, "invalid_client")
        assert canary.requests == []
        # The legitimate key still works, so the refusals were about the header keys.
        assert_token(token(main, victim.assertion(main)))
    finally:
        canary.close()


# =================================================================================================
# 6. Handler modules dropped into handlers/
# =================================================================================================

def readme_example() -> tuple[str, str, str]:
    """The README's "Adding a handler" example as written: the module's file name, its Python
    code and the [[event_listener]] entry that names it."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Adding a handler"):]
    section = section[:section.index("\n## ")]
    file_name = re.search(r"`handlers/(\w+\.py)`", section).group(1)
    python = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    toml = re.search(r"```toml\n(.*?)```", section, re.S).group(1)
    return file_name, python, toml


def copy_project(destination: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", ".venv", "var", "tests", "*.pyc")
    destination.mkdir(parents=True)
    shutil.copy2(ROOT / "app.py", destination / "app.py")
    for package in ("handlers", "server", "core", "storage", "keystore", "playground"):
        shutil.copytree(ROOT / package, destination / package, ignore=ignore)
    return destination


def test_drop_in_grant_handler(tmp_path_factory):
    base = tmp_path_factory.mktemp("dropin")
    tree = copy_project(base / "project")
    file_name, python, listener = readme_example()
    assert python.splitlines()[0] == "from handlers.base import Grant, GrantHandler, unauthorized_client"
    (tree / "handlers" / file_name).write_text(python)
    with running(base / "idp", cwd=tree, listeners=listener) as server:
        client = client_files(base / "clients", "ping-client")
        plain = client_files(base / "clients", "plain-client")
        cli_all(server, create_args(client, "--grant-type", "urn:example:ping", "--scope", "ping"),
                create_args(plain, "--scope", "openid"))
        assert_token(token(server, client.assertion(server), grant_type="urn:example:ping"), scope="ping")
        assert_oauth_error(token(server, plain.assertion(server), grant_type="urn:example:ping"), 400,
                           "unauthorized_client")
        metadata = server.get("/.well-known/openid-configuration").json()
        assert metadata["grant_types_supported"] == ["authorization_code", "client_credentials", "refresh_token",
                                                     "urn:example:ping"]
    # The handler came from the copy, not from this checkout.
    assert not (ROOT / "handlers" / file_name).exists()


# =================================================================================================
# 7. A broken deployment.toml stops start-up with one line
# =================================================================================================

def line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


def _drop_password(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.startswith("password ="))


BROKEN = {
    # case: (write_config arguments, edit, line marker, text the message names)
    "unknown_key": (dict(server_extra="prot = 1"), None, "prot = 1", "server.prot: unknown key"),
    "port_not_integer": (dict(), lambda t: re.sub(r"(?m)^port = \d+$", 'port = "abc"', t), 'port = "abc"',
                         "server.port: the value must be an integer"),
    "missing_password": (dict(), _drop_password, "[keystore.primary]", "keystore.primary.password: is required"),
    "toml_syntax": (dict(server_extra="tls = yes"), None, "tls = yes", "not valid TOML"),
    "unknown_property": (dict(pkjwt={"PreventTokenReus": True}), None, "PreventTokenReus = true",
                         "event_listener[0].properties.PreventTokenReus: unknown property"),
    "unknown_handler_module": (dict(listeners='\n[[event_listener]]\nid = "foo"\nname = "nosuch_module.Foo"\n'),
                               None, 'name = "nosuch_module.Foo"', "event_listener[1].name: no module"),
}


@pytest.fixture(scope="module")
def start_ups(tmp_path_factory):
    """Every broken file started at once: {case: (result, text, seconds)}."""
    base = tmp_path_factory.mktemp("broken")

    def start(case: str):
        config, edit, _, _ = BROKEN[case]
        path = write_config(base / case, free_port(), **config)
        if edit is not None:
            path.write_text(edit(path.read_text()))
        started = time.monotonic()
        result = subprocess.run([PYTHON, str(ROOT / "app.py"), str(path)], cwd=ROOT, capture_output=True,
                                text=True, timeout=20)
        return case, (result, path.read_text(), time.monotonic() - started)

    with ThreadPoolExecutor(3) as pool:
        return dict(pool.map(start, BROKEN))


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_deployment_toml_stops_start_up_with_one_line(start_ups, case):
    result, text, seconds = start_ups[case]
    _, _, marker, names = BROKEN[case]
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert seconds < 10
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"configuration error: deployment.toml:{line_of(text, marker)}: "), lines[0]
    assert names in lines[0]
    assert "Traceback" not in result.stderr


# =================================================================================================
# 8. Errors over HTTP are JSON
# =================================================================================================

def test_get_on_token_endpoint_is_405_json(main):
    response = main.get("/oauth2/token")
    assert_oauth_error(response, 405, "invalid_request")
    assert response.headers["Allow"] == "POST"
    assert "<" not in response.text


def test_oversized_body_is_413_json(main):
    body = "grant_type=client_credentials&padding=" + "a" * (100 * 1024)
    response = main.post(data=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert_oauth_error(response, 413, "invalid_request")
    assert "<" not in response.text


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_unknown_path_is_404_json(main, method):
    response = requests.request(method, main.base + "/no/such/path", verify=main.ca, timeout=15)
    assert_json_error(response, 404, "not_found")


def test_oversized_chunked_body_is_413_json(main, wso2_client):
    """Without a Content-Length the limit must hold too: the body is refused, never cut at 64 KiB
    and processed (the first 64 KiB here are a complete, valid token request)."""
    body = (urlencode(token_form(wso2_client.assertion(main))) + "&padding=" + "a" * (100 * 1024)).encode()
    chunks = (body[i:i + 4096] for i in range(0, len(body), 4096))  # Transfer-Encoding: chunked
    response = main.post(data=chunks, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert_oauth_error(response, 413, "invalid_request")


@pytest.mark.parametrize("path, headers, status", [
    ("/oauth2/token?x=" + "a" * 9000, {}, 414),                    # request line over limit_request_line
    ("/oauth2/jwks", {"X-Big": "v" * 9000}, 431),                # one header over limit_request_field_size
    ("/oauth2/jwks", {f"X-H{i}": "v" for i in range(120)}, 431),  # more than limit_request_fields
], ids=["request_line_too_long", "header_too_large", "too_many_headers"])
def test_errors_answered_by_gunicorn_are_json(main, path, headers, status):
    response = requests.get(main.base + path, headers=headers, verify=main.ca, timeout=15)
    assert_oauth_error(response, status, "invalid_request")
    assert "<" not in response.text


# =================================================================================================
# 9. Discovery metadata and the server's JWKS
# =================================================================================================

METADATA_PATHS = ["/oauth2/token/.well-known/openid-configuration", "/.well-known/openid-configuration",
                  "/.well-known/oauth-authorization-server"]


def metadata_of(server: Server) -> dict:
    documents = []
    for path in METADATA_PATHS:
        response = server.get(path)
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "application/json"
        documents.append(response.json())
    assert documents[0] == documents[1] == documents[2]
    return documents[0]


def test_metadata(main):
    metadata = metadata_of(main)
    assert metadata["issuer"] == f"https://localhost:{main.port}/oauth2/token"
    assert metadata["token_endpoint"] == metadata["issuer"]
    assert metadata["jwks_uri"] == f"https://localhost:{main.port}/oauth2/jwks"
    assert metadata["token_endpoint_auth_methods_supported"] == ALL_METHODS
    assert metadata["grant_types_supported"] == ["authorization_code", "client_credentials", "refresh_token"]
    assert metadata["token_endpoint_auth_signing_alg_values_supported"] == [
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA", "Ed25519"]


def test_server_jwks_is_the_tls_key(main):
    response = main.get("/oauth2/jwks")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    keys = response.json()["keys"]
    assert len(keys) == 1
    cert = x509.load_pem_x509_certificate(Path(main.ca).read_bytes())
    numbers = cert.public_key().public_numbers()
    assert keys[0]["kty"] == "RSA"
    assert keys[0]["n"] == b64url_uint(numbers.n)
    assert keys[0]["e"] == b64url_uint(numbers.e)
    assert "d" not in keys[0] and "p" not in keys[0]
    # The certificate in cert.pem is the one the server presents on its TLS connections.
    presented = ssl.get_server_certificate(("127.0.0.1", main.port))
    assert x509.load_pem_x509_certificate(presented.encode()) == cert


# =================================================================================================
# 10. client_secret_basic and client_secret_post, registered with the CLI
# =================================================================================================

@pytest.fixture(scope="module")
def secret_clients(main):
    basic, post = cli_all(
        main,
        ("clients", "create", "--client-id", "secret-basic-client", "--auth-method", "client_secret_basic",
         "--scope", "read"),
        ("clients", "create", "--client-id", "secret-post-client", "--auth-method", "client_secret_post",
         "--scope", "read"))
    return json.loads(basic.stdout)["client_secret"], json.loads(post.stdout)["client_secret"]


def post_form(client_id: str, secret: str) -> dict:
    return {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}


GRANT = {"grant_type": "client_credentials"}


def test_client_secret_basic(main, secret_clients):
    secret, _ = secret_clients
    assert_token(main.post(data=GRANT, headers=basic_header("secret-basic-client", secret)), scope="read")
    assert_oauth_error(main.post(data=GRANT, headers=basic_header("secret-basic-client", secret + "x")), 401,
                       "invalid_client")
    # The right secret with the other method.
    assert_oauth_error(main.post(data=post_form("secret-basic-client", secret)), 401, "invalid_client")


def test_client_secret_post(main, secret_clients):
    _, secret = secret_clients
    assert_token(main.post(data=post_form("secret-post-client", secret)), scope="read")
    assert_oauth_error(main.post(data=post_form("secret-post-client", secret[:-1])), 401, "invalid_client")
    assert_oauth_error(main.post(data=GRANT, headers=basic_header("secret-post-client", secret)), 401,
                       "invalid_client")


def test_failed_basic_authentication_is_challenged_with_basic(main, secret_clients):
    secret, _ = secret_clients
    response = main.post(data=GRANT, headers=basic_header("secret-basic-client", secret + "x"))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].split(" ", 1)[0].lower() == "basic"


def test_cli_never_prints_secret_or_its_hash(main, secret_clients):
    from storage.clients import hash_secret
    for client_id, secret in zip(("secret-basic-client", "secret-post-client"), secret_clients):
        show, listing = cli_all(main, ("clients", "show", client_id), ("clients", "list"))
        shown = json.loads(show.stdout)
        assert shown["client_id"] == client_id
        assert "client_secret" not in shown and "secret_hash" not in shown
        for output in (show.stdout + show.stderr, listing.stdout + listing.stderr):
            assert secret not in output
            assert hash_secret(secret) not in output


# =================================================================================================
# 11. The CLI against a running server
# =================================================================================================

def test_cli_clients_list_show_delete(main):
    client = register(main, "short-lived-client")
    listing, show = cli_all(main, ("clients", "list"), ("clients", "show", "short-lived-client"))
    assert "short-lived-client" in [c["client_id"] for c in json.loads(listing.stdout)]
    shown = json.loads(show.stdout)
    assert shown["token_endpoint_auth_method"] == "private_key_jwt"
    assert shown["key_source"] == "jwks" and shown["scope"] == "openid"
    assert_token(token(main, client.assertion(main)))

    assert main.cli("clients", "delete", "short-lived-client").stdout.strip() == "deleted short-lived-client"
    # No restart: the next request is refused.
    assert_oauth_error(token(main, client.assertion(main)), 401, "invalid_client")
    missing = main.cli("clients", "show", "short-lived-client", check=False)
    assert missing.returncode != 0 and "no such client" in missing.stderr


def test_cli_clients_create_token_settings(main):
    """--dpop-bound-access-tokens, --require-dpop-nonce, --access-token-format and --resource go
    through the registration API's rules; `clients show` prints them."""
    client = client_files(main.config_path.parent / "clients", "token-settings-client")
    created = main.cli(*create_args(client, "--dpop-bound-access-tokens", "--require-dpop-nonce",
                                    "--access-token-format", "jwt", "--resource", "https://api.example.com/",
                                    "--resource", "urn:example:payments"))
    shown = json.loads(main.cli("clients", "show", client.client_id).stdout)
    for view in (json.loads(created.stdout), shown):
        assert (view["dpop_bound_access_tokens"], view["require_dpop_nonce"], view["access_token_format"],
                view["resources"]) == (True, True, "jwt", ["https://api.example.com/", "urn:example:payments"])
    plain = client_files(main.config_path.parent / "clients", "token-defaults-client")
    view = json.loads(main.cli(*create_args(plain)).stdout)
    assert (view["dpop_bound_access_tokens"], view["require_dpop_nonce"], view["access_token_format"],
            view["resources"]) == (False, False, None, [])
    for extra, words in ((("--resource", "/relative"), "--resource: A resource in resources must be an absolute URI"),
                         (("--resource", "https://api.example.com/#x"),
                          "--resource: A resource in resources must not contain a fragment"),
                         (("--resource", "urn:a", "--resource", "urn:a"), "--resource: resources lists a value twice"),
                         (("--access-token-format", "reference"), "'reference' is not one of 'opaque', 'jwt'")):
        refused = main.cli(*create_args(client_files(main.config_path.parent / "clients", "refused-client"), *extra),
                           check=False)
        assert refused.returncode == 2 and words in refused.stderr, refused.stderr
    assert main.cli("clients", "show", "refused-client", check=False).returncode != 0


def test_cli_clients_create_mtls_par_and_profile(main):
    """--auth-method tls_client_auth with --tls-subject-dn or a --tls-san-*, self_signed_tls_client_auth
    with --jwks-file, --require-par, --tls-bound-tokens and --profile: the registration API's rules."""
    keys = client_files(main.config_path.parent / "clients", "self-signed-cli-client")
    dn, ip, self_signed = cli_all(
        main,
        ("clients", "create", "--client-id", "mtls-dn-cli-client", "--auth-method", "tls_client_auth",
         "--tls-subject-dn", "cn=Payments, O=Example\\2C Inc.", "--require-par", "--tls-bound-tokens",
         "--profile", "fapi2"),
        ("clients", "create", "--client-id", "mtls-ip-cli-client", "--auth-method", "tls_client_auth",
         "--tls-san-ip", "2001:DB8:0::9"),
        ("clients", "create", "--client-id", "self-signed-cli-client", "--auth-method", "self_signed_tls_client_auth",
         "--jwks-file", str(keys.jwks_file)))
    view = json.loads(dn.stdout)
    assert (view["token_endpoint_auth_method"], view["tls_client_auth_subject_dn"], view["tls_client_auth_san"]) == \
        ("tls_client_auth", "CN=Payments,O=Example\\, Inc.", None)
    assert (view["require_pushed_authorization_requests"], view["tls_client_certificate_bound_access_tokens"],
            view["profile"], view["key_source"]) == (True, True, "fapi2", None)
    assert "client_secret" not in view
    view = json.loads(ip.stdout)
    assert (view["tls_client_auth_subject_dn"], view["tls_client_auth_san"], view["profile"]) == \
        (None, "ip:2001:db8::9", None)
    assert (view["require_pushed_authorization_requests"], view["tls_client_certificate_bound_access_tokens"]) == \
        (False, False)
    view = json.loads(self_signed.stdout)
    assert (view["token_endpoint_auth_method"], view["key_source"]) == ("self_signed_tls_client_auth", "jwks")
    assert "client_secret" not in view and "note:" not in self_signed.stderr
    assert json.loads(main.cli("clients", "show", "mtls-dn-cli-client").stdout)["tls_client_auth_subject_dn"] == \
        "CN=Payments,O=Example\\, Inc."
    refusals = [
        (("--auth-method", "tls_client_auth"),
         "--auth-method: token_endpoint_auth_method tls_client_auth needs exactly one of tls_client_auth_subject_dn"),
        (("--auth-method", "tls_client_auth", "--tls-subject-dn", "CN=a", "--tls-san-dns", "a.example.com"),
         "--tls-san-dns: token_endpoint_auth_method tls_client_auth needs exactly one of"),
        (("--auth-method", "private_key_jwt", "--tls-subject-dn", "CN=a"),
         "--tls-subject-dn: tls_client_auth_subject_dn applies to token_endpoint_auth_method tls_client_auth only"),
        (("--auth-method", "tls_client_auth", "--tls-san-ip", "192.0.2.300"),
         "--tls-san-ip: tls_client_auth_san_ip must be an IPv4 or IPv6 address"),
        (("--auth-method", "self_signed_tls_client_auth"),
         "--jwks-file: token_endpoint_auth_method self_signed_tls_client_auth needs the client certificate's public key"),
        (("--auth-method", "client_secret_basic", "--profile", "fapi2"),
         "--auth-method: FAPI 2.0: token_endpoint_auth_method must be private_key_jwt, tls_client_auth or "
         "self_signed_tls_client_auth"),
        (("--auth-method", "private_key_jwt", "--profile", "oauth2"), "'oauth2' is not 'fapi2'"),
    ]
    with ThreadPoolExecutor(len(refusals)) as pool:
        results = list(pool.map(lambda case: main.cli("clients", "create", "--client-id", f"refused-mtls-{case[0]}",
                                                      *case[1][0], check=False), enumerate(refusals)))
    for (args, words), result in zip(refusals, results):
        assert result.returncode == 2 and words in result.stderr, (args, result.stderr)
    assert not [c for c in json.loads(main.cli("clients", "list").stdout) if c["client_id"].startswith("refused-mtls")]


def test_cli_keystore_list_shows_primary_key_entry(main):
    entries = json.loads(main.cli("keystore", "list").stdout)
    primary = next(e for e in entries if e["alias"] == "wso2carbon")
    assert primary["kind"] == "PrivateKeyEntry"
    assert primary["subject"] == "CN=localhost"


@needs_keytool
def test_cli_import_cert_is_a_keytool_trusted_cert_entry(main, tmp_path):
    cert_file = write_cert(tmp_path / "cert.pem", self_signed(rsa_key(), "cli-imported"))
    out = main.cli("keystore", "import-cert", "--alias", "cli-imported-cert", "--file", str(cert_file)).stdout
    assert out.startswith("imported cli-imported-cert (CN=cli-imported)")
    listing = keytool_list(keystore_file(main), "PKCS12")
    assert re.search(r"^cli-imported-cert, .*trustedCertEntry", listing, re.M), listing
    assert re.search(r"^wso2carbon, .*PrivateKeyEntry", listing, re.M), listing


def test_cli_import_certs_imports_a_directory_at_once_or_nothing(main, tmp_path):
    keys = {f"batch-{i}": rsa_key() for i in range(3)}
    certs = tmp_path / "certs"
    certs.mkdir()
    for name, key in keys.items():
        write_cert(certs / f"{name}.pem", self_signed(key, name))
    (certs / "README.txt").write_text("not a certificate file name: ignored")
    assert main.cli("keystore", "import-certs", str(certs)).stdout.strip() == "imported 3 certificates"
    listed = {e["alias"]: e["subject"] for e in json.loads(main.cli("keystore", "list").stdout)}
    assert {name: listed[name] for name in keys} == {name: f"CN={name}" for name in keys}
    # One alias already taken (a second run), or one file that is no certificate: nothing is imported.
    write_cert(certs / "batch-new.pem", self_signed(rsa_key(), "batch-new"))
    again = main.cli("keystore", "import-certs", str(certs), check=False)
    assert again.returncode == 1 and "alias 'batch-0' already exists" in again.stderr
    other = tmp_path / "other"
    other.mkdir()
    write_cert(other / "batch-good.pem", self_signed(rsa_key(), "batch-good"))
    (other / "batch-junk.crt").write_text("junk")
    refused = main.cli("keystore", "import-certs", str(other), check=False)
    assert refused.returncode == 1 and "alias 'batch-junk' is not an X.509 certificate" in refused.stderr
    listed = {e["alias"] for e in json.loads(main.cli("keystore", "list").stdout)}
    assert not listed & {"batch-new", "batch-good", "batch-junk"}
    empty = main.cli("keystore", "import-certs", str(tmp_path / "certs" / ".."), check=False)
    assert empty.returncode == 1 and "no certificate files" in empty.stderr


def test_cli_import_certs_skips_hidden_files_and_refuses_what_cannot_be_a_certificate(main, tmp_path):
    certs = tmp_path / "certs"
    certs.mkdir()
    write_cert(certs / "shown-1.pem", self_signed(rsa_key(), "shown-1"))
    (certs / "._shown-1.pem").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")   # copied from a Mac
    (certs / ".#shown-1.pem").write_text("an editor's lock file")
    assert main.cli("keystore", "import-certs", str(certs)).stdout.strip() == "imported 1 certificates"
    other = tmp_path / "other"
    other.mkdir()
    write_cert(other / "big-1.pem", self_signed(rsa_key(), "big-1"))
    with open(other / "big-2.pem", "wb") as handle:
        handle.truncate(1 << 30)   # sparse: nothing is written, nothing should be read either
    refused = main.cli("keystore", "import-certs", str(other), check=False)
    assert refused.returncode == 1 and "big-2.pem is larger than 65536 bytes" in refused.stderr
    names = tmp_path / "names"
    names.mkdir()
    write_cert(names / "tab\there.pem", self_signed(rsa_key(), "tab"))
    refused = main.cli("keystore", "import-certs", str(names), check=False)
    assert refused.returncode == 1 and "invalid alias 'tab\\there'" in refused.stderr
    listed = {e["alias"] for e in json.loads(main.cli("keystore", "list").stdout)}
    assert "shown-1" in listed and not listed & {"._shown-1", ".#shown-1", "big-1", "big-2", "tab\there"}


def test_certificate_imported_with_cli_is_used_without_restart(main, tmp_path):
    key = rsa_key()
    cert_file = write_cert(tmp_path / "live.pem", self_signed(key, "live-cert-client"))
    client = Client("live-cert-client", key, kid=None)
    main.cli("clients", "create", "--client-id", client.client_id, "--auth-method", "private_key_jwt",
             "--scope", "openid")
    assert_oauth_error(token(main, client.assertion(main)), 401, "invalid_client")

    main.cli("keystore", "import-cert", "--alias", client.client_id, "--file", str(cert_file))
    imported = time.monotonic()
    while True:
        response = token(main, client.assertion(main))
        if response.status_code == 200 or time.monotonic() - imported > 5:
            break
        assert_oauth_error(response, 401, "invalid_client")
        time.sleep(0.2)
    assert_token(response)
    # Each worker process re-reads a changed keystore file at most every 2 seconds; after that
    # every worker uses the new certificate.
    from core.services import KEYSTORE_RECHECK_SECONDS
    time.sleep(max(0.0, imported + KEYSTORE_RECHECK_SECONDS + 0.5 - time.monotonic()))
    for _ in range(6):
        assert_token(token(main, client.assertion(main)))


def test_cli_jti_purge_prints_a_count(main):
    out = main.cli("jti", "purge").stdout.strip()
    assert re.fullmatch(r"deleted \d+ expired rows", out), out


# =================================================================================================
# 12. The audit log
# =================================================================================================

def audit_records(server: Server) -> list[dict]:
    records = []
    for line in server.log().splitlines():
        if '"event":' in line and "{" in line:
            with contextlib.suppress(ValueError):
                records.append(json.loads(line[line.index("{"):]))
    return records


def wait_for_record(server: Server, predicate, timeout: float = 3.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        found = [r for r in audit_records(server) if predicate(r)]
        if found or time.monotonic() > deadline:
            assert len(found) == 1, found
            return found[0]
        time.sleep(0.1)


def test_audit_log_records_failure_without_the_assertion(main):
    client = register(main, "audited-client")
    forged = client.assertion(main, key=rsa_key())  # kid k1, signed by another key
    assert_oauth_error(token(main, forged), 401, "invalid_client")
    record = wait_for_record(main, lambda r: r.get("event") == "client_authentication"
                             and r.get("client_id") == "audited-client" and r.get("outcome") == "failure")
    assert record["reason"] == "signature"
    assert record["method"] == "private_key_jwt"
    assert record["alg"] == "RS256" and record["kid"] == "k1"

    good = client.assertion(main)
    issued = assert_token(token(main, good))
    wait_for_record(main, lambda r: r.get("event") == "token_issued" and r.get("client_id") == "audited-client")
    log = main.log()
    for text in (forged, good):
        assert text not in log
        assert text.split(".")[1] not in log  # nor its claims
        assert text.split(".")[2] not in log  # nor its signature
    assert issued["access_token"] not in log

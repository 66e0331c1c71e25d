"""Test support: deployment files, client keys and assertions, the app in-process, the real server.

Nothing here replaces a part of the product: the in-process app is build_app() on a real
SQLite file and keystore; the server is `python app.py` (gunicorn, HTTPS) in a subprocess.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import requests
from requests.adapters import HTTPAdapter
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jose import jwt as jose_jwt

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
KEYSTORE_PASSWORD = "test-store-pass"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def toml_value(value) -> str:
    return json.dumps(value) if not isinstance(value, bool) else ("true" if value else "false")


def write_config(directory: Path, port: int = 9443, *, pkjwt: dict | None = None, extra: str = "",
                 workers: int = 2, database_url: str = "sqlite:///var/identity.db",
                 listeners: str = "", server_extra: str = "", jwks_fetch_extra: str = "",
                 rate_limit: dict | None = None) -> Path:
    """A deployment.toml for a test: our own port, keystore and database inside `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    props = "\n".join(f"{k} = {toml_value(v)}" for k, v in (pkjwt or {}).items())
    # Off unless a test is about it: the catalogues send hundreds of failures from one address.
    limits = {"failures_per_client": 0, "failures_per_client_address": 0, "failures_per_address": 0,
              **(rate_limit or {})}
    limits_toml = "\n".join(f"{k} = {toml_value(v)}" for k, v in limits.items())
    text = f"""
[server]
hostname = "localhost"
port = {port}
workers = {workers}
threads = 4
{server_extra}

[database.identity_db]
url = "{database_url}"

[keystore.primary]
file_name = "var/primary.p12"
password = "{KEYSTORE_PASSWORD}"
alias = "wso2carbon"

[oauth.jwks_fetch]
require_https = false
allowed_hosts = ["127.0.0.1"]
timeout = 2.0
{jwks_fetch_extra}

[oauth.rate_limit]
{limits_toml}

[[event_listener]]
id = "private_key_jwt_authenticator"
type = "org.wso2.carbon.identity.core.handler.AbstractIdentityHandler"
name = "org.wso2.carbon.identity.oauth2.token.handler.clientauth.jwt.PrivateKeyJWTClientAuthenticator"
order = "899"
[event_listener.properties]
{props}
{listeners}
{extra}
"""
    path = directory / "deployment.toml"
    path.write_text(text)
    return path


# --- keys and assertions ---------------------------------------------------------------------

def rsa_key(bits: int = 2048):
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def ec_key(curve=ec.SECP256R1):
    return ec.generate_private_key(curve())


def ed_key():
    return ed25519.Ed25519PrivateKey.generate()


def pem(private_key) -> bytes:
    return private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())


def jwks_of(*pairs) -> str:
    """A JWKS document for (private_key, kid) pairs, public parts only."""
    from keystore.jwk import PublicKey
    keys = [{**PublicKey.from_cryptography(k.public_key()).to_jwk(), **({"kid": kid} if kid else {})}
            for k, kid in pairs]
    return json.dumps({"keys": keys})


def claims_for(client_id: str, aud: str, **overrides) -> dict:
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": aud, "jti": str(uuid.uuid4()),
              "iat": now, "exp": now + 300}
    if aud is ...:
        del claims["aud"]
    for key, value in overrides.items():
        if value is ... :
            claims.pop(key, None)
        else:
            claims[key] = value
    return claims


def sign(private_key, claims: dict, alg: str = "RS256", headers: dict | None = None) -> str:
    """RS*/ES* with python-jose (independent of the server's own signer); PS*/EdDSA with cryptography."""
    if alg[:2] in ("RS", "ES"):
        return jose_jwt.encode(claims, pem(private_key).decode(), algorithm=alg, headers=headers)
    from keystore.signing import sign as raw_sign
    return raw_sign(private_key, alg, claims, headers)


def token_form(assertion: str, **extra) -> dict:
    return {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion, **extra}


_KEYSTORE: list[Path] = []


def shared_keystore(tmp: Path) -> None:
    """Copy one primary keystore into `tmp` instead of generating an RSA key per test."""
    if not _KEYSTORE:
        from keystore.store import Keystore
        path = Path(tmp.parent / f"shared-primary-{uuid.uuid4().hex[:8]}.p12")
        Keystore.create(str(path), "PKCS12", KEYSTORE_PASSWORD, "wso2carbon", "localhost")
        _KEYSTORE.append(path)
    (tmp / "var").mkdir(parents=True, exist_ok=True)
    shutil.copy(_KEYSTORE[0], tmp / "var" / "primary.p12")


# --- the real server ---------------------------------------------------------------------------

class Server:
    """`python app.py deployment.toml` under gunicorn with HTTPS, in a subprocess."""

    def __init__(self, config_path: Path, port: int, cwd: Path = ROOT) -> None:
        self.config_path = config_path
        self.port = port
        self.cwd = cwd
        self.base = f"https://localhost:{port}"
        self.log_path = config_path.parent / "server.log"
        self.proc: subprocess.Popen | None = None

    @property
    def env(self) -> dict:
        return {**os.environ, "DEPLOYMENT_TOML": str(self.config_path), "PYTHONDONTWRITEBYTECODE": "1"}

    @property
    def ca(self) -> str:
        return str(self.config_path.parent / "var" / "tls" / "cert.pem")

    def start(self, timeout: float = 30) -> "Server":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([PYTHON, str(self.cwd / "app.py"), str(self.config_path)], cwd=self.cwd,
                                     stdout=log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited:\n" + self.log())
            try:
                requests.get(self.base + "/oauth2/jwks", verify=self.ca, timeout=1)
                return self
            except (requests.ConnectionError, requests.Timeout, OSError):
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("server did not start:\n" + self.log())

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> "Server":
        self.stop()
        return self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def post(self, path: str = "/oauth2/token", data=None, headers: dict | None = None, **kwargs) -> requests.Response:
        return requests.post(self.base + path, data=data, headers=headers, verify=self.ca, timeout=15, **kwargs)

    def get(self, path: str, **kwargs) -> requests.Response:
        return requests.get(self.base + path, verify=self.ca, timeout=15, **kwargs)

    def cli(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        """`flask --app app …` against this server's deployment.toml."""
        result = subprocess.run([PYTHON, "-m", "flask", "--app", str(self.cwd / "app.py"), *args], cwd=self.cwd,
                                env=self.env, capture_output=True, text=True, input=input, timeout=60)
        if check and result.returncode != 0:
            raise AssertionError(f"flask {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result


class SourceAddress(HTTPAdapter):
    """Connections from a chosen loopback address (127.0.0.0/8 is all on the loopback interface),
    so that one machine can play several clients for the per-address failure budgets."""

    def __init__(self, address: str, pool_size: int = 4) -> None:
        self.address = address
        super().__init__(pool_connections=pool_size, pool_maxsize=pool_size)

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        return super().init_poolmanager(*args, **kwargs)


def session_from(address: str) -> requests.Session:
    session = requests.Session()
    adapter = SourceAddress(address)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def audit_records(log_text: str, **match) -> list[dict]:
    """The client_authentication lines of a server's audit log (bare JSON objects among the other
    log lines) whose members equal `match`."""
    records = []
    for line in log_text.splitlines():
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") == "client_authentication" and all(record.get(k) == v for k, v in match.items()):
            records.append(record)
    return records


def assert_oauth_error(response, status: int, error: str) -> dict:
    """The shape every error must have: status, JSON body, error code, safe description, no-store."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json() if callable(response.json) else response.json
    assert body["error"] == error, body
    assert "access_token" not in body
    description = body.get("error_description", "")
    assert all(0x20 <= ord(c) <= 0x7E and c not in '"\\' for c in description), description
    if error == "invalid_client" and status == 401:  # RFC 6749 §5.2: a challenge with every 401
        assert response.headers["WWW-Authenticate"] == 'Basic realm="oauth2", error="invalid_client"'
    return body


# --- the app in-process ----------------------------------------------------------------------

@dataclass
class InProcess:
    app: object
    tmp: Path
    key: object = field(default_factory=rsa_key)

    @property
    def settings(self):
        return self.app.extensions["idp"].services.settings

    @property
    def issuer(self) -> str:
        return self.settings.issuer

    def register(self, client_id: str = "client-1", keys=None, auth_method: str = "private_key_jwt",
                 grant_types=("client_credentials",), scopes=("openid", "read"), **kwargs):
        from storage import clients
        jwks = kwargs.pop("jwks", None)
        if auth_method == "private_key_jwt" and jwks is None and "jwks_uri" not in kwargs and keys is not False:
            jwks = jwks_of(*(keys or [(self.key, "k1")]))
        with self.app.app_context():
            return clients.create(client_id, auth_method, grant_types=grant_types, scopes=scopes,
                                  jwks=jwks, **kwargs)

    def assertion(self, client_id: str = "client-1", key=None, alg: str = "RS256", headers=None, **claims) -> str:
        headers = {"kid": "k1", **(headers or {})}
        headers = {k: v for k, v in headers.items() if v is not ...}
        return sign(key or self.key, claims_for(client_id, claims.pop("aud", self.issuer), **claims), alg, headers)

    def post(self, data, headers=None, content_type="application/x-www-form-urlencoded", **kwargs):
        if isinstance(data, dict):
            data = urlencode(data)
        client = self.app.test_client()
        return client.post("/oauth2/token", data=data, headers=headers or {}, content_type=content_type, **kwargs)

    def token(self, assertion: str, **extra):
        return self.post(token_form(assertion, **extra))


def make_in_process(tmp: Path, **config) -> InProcess:
    from app import build_app
    from storage.schema import upgrade
    shared_keystore(tmp)
    app = build_app(str(write_config(tmp, **config)))
    upgrade(app.extensions["idp"].services.db)
    return InProcess(app, tmp)


# --- a client's jwks_uri -----------------------------------------------------------------------

class JWKSServer:
    """A client's jwks_uri over plain HTTP on 127.0.0.1 (the test configurations allow it in
    [oauth.jwks_fetch]): `documents` maps a path to a JWK Set (dict, str or bytes), any other path
    serves `default`; `requests` records (monotonic time, method, path) of every request, of any
    method — so it also serves as a canary that nothing is fetched."""

    def __init__(self, default=None, cache_control: str | None = None) -> None:
        self.default = {"keys": []} if default is None else default
        self.documents: dict[str, object] = {}
        self.cache_control = cache_control
        self.requests: list[tuple[float, str, str]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _serve(self) -> None:
                outer.requests.append((time.monotonic(), self.command, self.path))
                document = outer.documents.get(self.path, outer.default)
                body = (document if isinstance(document, bytes) else
                        document.encode() if isinstance(document, str) else json.dumps(document).encode())
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                if outer.cache_control:
                    self.send_header("Cache-Control", outer.cache_control)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_POST = do_HEAD = _serve

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def hits(self) -> int:
        return len(self.requests)

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def url(self, path: str = "/jwks.json") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# --- DPoP (RFC 9449), computed here independently of keystore.dpop -----------------------------

def b64url(data: bytes) -> str:
    import base64
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def public_jwk(private_key) -> dict:
    from keystore.jwk import PublicKey
    return PublicKey.from_cryptography(private_key.public_key()).to_jwk()


def jwk_thumbprint(jwk: dict) -> str:
    """RFC 7638 §3: SHA-256 over the required members, sorted, no whitespace."""
    import hashlib
    required = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"), "OKP": ("crv", "kty", "x")}[jwk["kty"]]
    text = json.dumps({name: jwk[name] for name in required}, sort_keys=True, separators=(",", ":"))
    return b64url(hashlib.sha256(text.encode("utf-8")).digest())


def jkt_of(private_key) -> str:
    return jwk_thumbprint(public_jwk(private_key))


def ath_of(access_token: str) -> str:
    """RFC 9449 §4.2: base64url(SHA-256(ASCII(access_token)))."""
    import hashlib
    return b64url(hashlib.sha256(access_token.encode("ascii")).digest())


def dpop_proof(private_key, url: str, method: str = "POST", *, alg: str | None = None,
               access_token: str | None = None, nonce: str | None = None, header: dict | None = None,
               **claims) -> str:
    """A DPoP proof (RFC 9449 §4.2) for a `method` request to `url`: typ dpop+jwt, the public jwk,
    a fresh jti and iat now. `claims` override or add payload members (htu, htm too), `header`
    header members; `...` drops one (typ cannot be dropped here: keystore.signing.sign adds its own)."""
    from keystore.signing import default_alg, sign as raw_sign
    payload = {"jti": str(uuid.uuid4()), "htm": method, "htu": url, "iat": int(time.time())}
    if access_token is not None:
        payload["ath"] = ath_of(access_token)
    if nonce is not None:
        payload["nonce"] = nonce
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not ...}
    head = {"typ": "dpop+jwt", "jwk": public_jwk(private_key), **(header or {})}
    head = {k: v for k, v in head.items() if v is not ...}
    return raw_sign(private_key, alg or default_alg(private_key), payload, head)


# --- the authorization endpoint driven like a browser ------------------------------------------

def authorization_redirect(get, post, query: dict | list, username: str, password: str) -> dict:
    """Run /oauth2/authorize as a browser does: the request, sign-in and consent (each shown only
    when needed), and return the parameters of the final redirect. `query` is a dict or a list of
    pairs (for repeated parameters such as `resource`). `get(query)` and `post(form)` (a list of
    pairs) send to /oauth2/authorize keeping cookies, and return (status, text, Location or None)."""
    import html
    import re
    from urllib.parse import parse_qs, urlsplit
    hidden = re.compile(r'<input type="hidden" name="([^"]*)" value="([^"]*)">')

    def fields(text: str) -> list[tuple[str, str]]:  # pairs: `resource` may repeat
        return [(html.unescape(n), html.unescape(v)) for n, v in hidden.findall(text)]

    status, text, location = get(query)
    if status == 200 and 'id="signin"' in text:
        status, text, location = post([*fields(text), ("action", "signin"), ("username", username),
                                       ("password", password)])
    if status == 200 and 'id="allow"' in text:
        status, text, location = post([*fields(text), ("action", "allow")])
    assert status in (302, 303) and location, (status, text[:500])
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def authorize_over_https(server: "Server", query: dict | list, username: str, password: str) -> dict:
    """authorization_redirect against a running server, with a fresh cookie jar."""
    session = requests.Session()
    options = {"verify": server.ca, "allow_redirects": False, "timeout": 15}
    url = server.base + "/oauth2/authorize"

    def answer(r):
        return r.status_code, r.text, r.headers.get("Location")
    return authorization_redirect(lambda q: answer(session.get(url, params=q, **options)),
                                  lambda f: answer(session.post(url, data=f, **options)), query, username, password)


def authorize_in_process(app, query: dict | list, username: str, password: str,
                         base_url: str = "https://localhost:9443") -> dict:
    """authorization_redirect through the Flask test client at `base_url` (https: the __Host-
    cookies are Secure)."""
    client = app.test_client()

    def answer(r):
        return r.status_code, r.get_data(as_text=True), r.headers.get("Location")
    return authorization_redirect(
        lambda q: answer(client.get("/oauth2/authorize?" + urlencode(q), base_url=base_url)),
        lambda f: answer(client.post("/oauth2/authorize", data=urlencode(f), base_url=base_url,
                                     content_type="application/x-www-form-urlencoded")),
        query, username, password)


# --- mutual TLS (RFC 8705): a test CA, client certificates, clients written into a server's database ---

def x509_name(dn: str):
    from cryptography import x509
    return x509.Name.from_rfc4514_string(dn)


def certificate_authority(dn: str = "CN=Test Client CA,O=Example"):
    """A CA's (private key, certificate), valid from yesterday for a year."""
    import datetime
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    key = ec_key()
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(x509_name(dn)).issuer_name(x509_name(dn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def tls_client_certificate(dn: str, ca=None, *, sans=(), key=None, days: tuple[float, float] = (-1, 30)):
    """A TLS client certificate's (private key, certificate): issued by `ca` (a certificate_authority pair), or
    self-signed without one; `sans` are cryptography GeneralName objects; valid from `days[0]` to
    `days[1]` days from now."""
    import datetime
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID
    key = key or ec_key()
    now = datetime.datetime.now(datetime.timezone.utc)
    issuer_key, issuer = (ca[0], ca[1].subject) if ca else (key, x509_name(dn))
    builder = (x509.CertificateBuilder().subject_name(x509_name(dn)).issuer_name(issuer)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now + datetime.timedelta(days=days[0]))
               .not_valid_after(now + datetime.timedelta(days=days[1]))
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return key, builder.sign(issuer_key, hashes.SHA256())


def cert_der(cert) -> bytes:
    from cryptography.hazmat.primitives import serialization
    return cert.public_bytes(serialization.Encoding.DER)


def cert_pem(cert) -> bytes:
    from cryptography.hazmat.primitives import serialization
    return cert.public_bytes(serialization.Encoding.PEM)


def write_tls_pair(directory: Path, name: str, key, cert) -> tuple[str, str]:
    """The certificate and key as PEM files, for `requests`' cert=(certfile, keyfile)."""
    directory.mkdir(parents=True, exist_ok=True)
    certfile, keyfile = directory / f"{name}.crt", directory / f"{name}.key"
    certfile.write_bytes(cert_pem(cert))
    keyfile.write_bytes(pem(key))
    return str(certfile), str(keyfile)


def x5t_s256_of(cert) -> str:
    """RFC 8705 §3.1, computed here independently of keystore.certificates."""
    import hashlib
    return b64url(hashlib.sha256(cert_der(cert)).digest())


def client_cert_header(cert) -> str:
    """RFC 9440 §2.2: the DER certificate as a structured-field byte sequence."""
    import base64
    return ":" + base64.b64encode(cert_der(cert)).decode("ascii") + ":"


def register_in_database(directory: Path, client_id: str, auth_method: str, **fields):
    """Write a client straight into the database of the server configured in `directory` (clients
    are read per request: no restart). `fields` are storage.clients.create arguments and columns of
    the client table it does not take (tls_client_auth_subject_dn, tls_client_auth_san,
    tls_client_certificate_bound_access_tokens, profile…). Returns (client, secret)."""
    from storage import clients
    from storage.database import open_database
    from storage.models import Client
    columns = {k: fields.pop(k) for k in list(fields) if k.startswith("tls_") or k == "profile"}
    db = open_database("sqlite:///var/identity.db", directory)
    try:
        client, secret = clients.create(client_id, auth_method, **fields)
        if columns:
            Client.update(**columns).where(Client.client_id == client_id).execute()
        return clients.get(client_id), secret
    finally:
        db.close()

"""`flask check` (server.preflight), run as an operator runs it: `flask --app app check` in a
subprocess against a deployment.toml, keystore and SQLite database in a temporary directory."""

from __future__ import annotations

import datetime
import http.server
import json
import sqlite3
import subprocess
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from keystore.store import Keystore
from server.client_metadata import keys_from_certificate
from storage.database import open_database
from storage.schema import SCHEMA_VERSION, upgrade
from support import (KEYSTORE_PASSWORD, PYTHON, ROOT, JWKSServer, ec_key, free_port, jwks_of, register_in_database,
                     rsa_key, shared_keystore, write_config)
from x509_support import DAY, certificate

NOW = datetime.datetime.now(datetime.timezone.utc)


class Setup:
    """A deployment directory: deployment.toml, the primary keystore, a database at the current
    schema version."""

    def __init__(self, tmp: Path, keystore: bool = True, **config) -> None:
        self.tmp = tmp
        self.port = free_port()
        if keystore:
            shared_keystore(tmp)
        self.config = write_config(tmp, self.port, **config).resolve()
        self.database = (tmp / "var" / "identity.db").resolve()

    def upgrade(self) -> "Setup":
        db = open_database("sqlite:///var/identity.db", self.tmp)
        try:
            upgrade(db)
        finally:
            db.close()
        return self

    @property
    def keystore(self) -> Keystore:
        return Keystore.load(str(self.tmp / "var" / "primary.p12"), "PKCS12", KEYSTORE_PASSWORD, "wso2carbon")

    def primary_until(self) -> str:
        return self.keystore.certificate.not_valid_after_utc.date().isoformat()

    def import_certificate(self, alias: str, cert: x509.Certificate) -> None:
        self.keystore.import_certificate(alias, cert.public_bytes(serialization.Encoding.PEM))

    def check(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([PYTHON, "-m", "flask", "--app", str(ROOT / "app.py"), "check", *args], cwd=ROOT,
                              env={"PATH": "/usr/bin:/bin", "DEPLOYMENT_TOML": str(self.config),
                                   "PYTHONDONTWRITEBYTECODE": "1"},
                              capture_output=True, text=True, timeout=60)

    def server_lines(self) -> list[str]:
        """The lines about the server's own key and TLS certificate (the shared keystore's)."""
        until = self.primary_until()
        return [f"OK     keystore.primary_key  the primary key's certificate is valid until {until} (alias wso2carbon)",
                f"OK     tls.certificate  the TLS certificate served on port {self.port} is valid until {until} "
                "(alias wso2carbon; self-signed, as the server generates it with a new keystore)",
                f"OK     database.schema  the database schema is version {SCHEMA_VERSION} ({self.database})"]

    def summary(self, errors: int, warnings: int, ok: int) -> str:
        return (f"{errors} error{'' if errors == 1 else 's'}, {warnings} warning{'' if warnings == 1 else 's'}, "
                f"{ok} ok ({self.config})")


def lines(result: subprocess.CompletedProcess) -> list[str]:
    return result.stdout.splitlines()


def keystore_client(setup: Setup, client_id: str, not_after: datetime.datetime) -> x509.Certificate:
    """A private_key_jwt client whose key is the certificate stored under its client id."""
    cert = certificate(rsa_key(), not_before=NOW - 400 * DAY, not_after=not_after, cn=client_id)
    setup.import_certificate(client_id, cert)
    register_in_database(setup.tmp, client_id, "private_key_jwt")
    return cert


def test_a_clean_setup_passes_with_the_ok_lines(tmp_path):
    setup = Setup(tmp_path).upgrade()
    keystore_client(setup, "acme", NOW + 400 * DAY)
    result = setup.check()
    assert result.returncode == 0, result.stdout + result.stderr
    assert lines(result) == setup.server_lines() + [
        "OK     keystore.client_certificate  1 client certificate in the keystore valid for more than 30 days",
        "OK     clients.auth_method  1 client registered for a method and algorithm the chain accepts",
        setup.summary(0, 0, 5)]


def test_a_client_certificate_expiring_soon_is_a_warning(tmp_path):
    setup = Setup(tmp_path).upgrade()
    cert = keystore_client(setup, "acme", NOW + 10 * DAY)
    result = setup.check()
    assert result.returncode == 0, result.stdout + result.stderr
    until = cert.not_valid_after_utc.date().isoformat()
    warning = f"WARN   keystore.client_certificate  the certificate of client acme expires on {until}, in 10 days " \
              "(alias acme)"
    assert lines(result) == setup.server_lines() + [
        warning,
        "OK     clients.auth_method  1 client registered for a method and algorithm the chain accepts",
        setup.summary(0, 1, 4)]
    strict = setup.check("--strict")
    assert strict.returncode == 1
    assert warning in lines(strict)


def test_an_expired_client_certificate_is_an_error(tmp_path):
    setup = Setup(tmp_path).upgrade()
    cert = keystore_client(setup, "acme", NOW - 2 * DAY)
    keystore_client(setup, "fine", NOW + 90 * DAY)
    register_in_database(setup.tmp, "no-cert", "private_key_jwt")
    result = setup.check()
    assert result.returncode == 1
    expired = cert.not_valid_after_utc.date().isoformat()
    assert lines(result) == setup.server_lines() + [
        f"ERROR  keystore.client_certificate  the certificate of client acme expired on {expired} (alias acme)",
        "ERROR  keystore.client_certificate  client no-cert has no certificate in the keystore: import it with "
        "`flask --app app keystore import-cert --alias no-cert --file CERT` (alias no-cert)",
        "OK     keystore.client_certificate  1 client certificate in the keystore valid for more than 30 days",
        "OK     clients.auth_method  3 clients registered for a method and algorithm the chain accepts",
        setup.summary(2, 0, 5)]


def test_an_uploaded_certificate_expiring_soon_is_a_warning(tmp_path):
    setup = Setup(tmp_path).upgrade()
    cert = certificate(rsa_key(), not_after=NOW + 10 * DAY)
    jwks, infos = keys_from_certificate(cert.public_bytes(serialization.Encoding.PEM))
    register_in_database(setup.tmp, "uploaded", "private_key_jwt", jwks=jwks)
    result = setup.check()
    assert result.returncode == 0, result.stdout + result.stderr
    until = cert.not_valid_after_utc.date().isoformat()
    kid = json.loads(jwks)["keys"][0]["kid"]
    assert lines(result) == setup.server_lines() + [
        f"WARN   clients.certificate  the certificate uploaded for client uploaded expires on {until}, in 10 days "
        f"(key {kid})",
        "OK     clients.auth_method  1 client registered for a method and algorithm the chain accepts",
        setup.summary(0, 1, 4)]


class FailingJWKS:
    """A jwks_uri on 127.0.0.1 that answers 500 to everything."""

    def __init__(self) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_error(500)

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/jwks.json"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_a_jwks_uri_that_fails_or_is_down_names_the_client(tmp_path):
    setup = Setup(tmp_path).upgrade()
    good, failing = JWKSServer(default=json.loads(jwks_of((rsa_key(), "k1")))), FailingJWKS()
    down = f"http://127.0.0.1:{free_port()}/jwks.json"
    try:
        register_in_database(setup.tmp, "good", "private_key_jwt", jwks_uri=good.url())
        register_in_database(setup.tmp, "failing", "private_key_jwt", jwks_uri=failing.url)
        register_in_database(setup.tmp, "gone", "private_key_jwt", jwks_uri=down)
        result = setup.check()
    finally:
        good.close()
        failing.close()
    assert result.returncode == 0, result.stdout + result.stderr
    assert lines(result) == setup.server_lines() + [
        "OK     clients.auth_method  3 clients registered for a method and algorithm the chain accepts",
        f"WARN   clients.jwks_uri  the jwks_uri of client failing does not answer with keys: responded with an "
        f"error status ({failing.url})",
        f"WARN   clients.jwks_uri  the jwks_uri of client gone does not answer with keys: connection refused ({down})",
        "OK     clients.jwks_uri  the jwks_uri of 1 client answered with keys",
        setup.summary(0, 2, 5)]
    assert good.hits == 1


def test_clients_the_chain_no_longer_accepts_are_errors(tmp_path):
    setup = Setup(tmp_path, pkjwt={"SigningAlgorithms": "RS256"}).upgrade()
    register_in_database(setup.tmp, "pinned", "private_key_jwt", jwks=jwks_of((rsa_key(), "k1")), signing_alg="PS256")
    register_in_database(setup.tmp, "ec-only", "private_key_jwt", jwks=jwks_of((ec_key(), "k1")))
    register_in_database(setup.tmp, "mtls", "tls_client_auth", tls_client_auth_subject_dn="CN=mtls")
    register_in_database(setup.tmp, "fine", "private_key_jwt", jwks=jwks_of((rsa_key(), "k1")), signing_alg="RS256")
    result = setup.check()
    assert result.returncode == 1
    assert lines(result) == setup.server_lines() + [
        "ERROR  clients.keys  none of the keys of client ec-only can sign an algorithm the chain allows (RS256)",
        "ERROR  clients.auth_method  client mtls authenticates with tls_client_auth, which the token endpoint does "
        'not accept: [server] client_certificates = "off"',
        "ERROR  clients.signing_alg  client pinned is pinned to PS256 (token_endpoint_auth_signing_alg), which the "
        "chain no longer allows (SigningAlgorithms: RS256)",
        "OK     clients.auth_method  1 client registered for a method and algorithm the chain accepts",
        setup.summary(3, 0, 4)]


@pytest.mark.parametrize("offset", [-1, 1])
def test_a_schema_version_mismatch_is_an_error(tmp_path, offset):
    setup = Setup(tmp_path).upgrade()
    with sqlite3.connect(setup.database) as db:
        db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + offset,))
    db.close()
    result = setup.check()
    assert result.returncode == 1
    stored = SCHEMA_VERSION + offset
    message = (f"the database schema is version {stored}, this release needs version {SCHEMA_VERSION}: run "
               "`flask --app app db upgrade`" if offset < 0 else
               f"the database schema is version {stored}, newer than this release's version {SCHEMA_VERSION}: "
               "run the release that upgraded it")
    assert lines(result) == setup.server_lines()[:2] + [
        f"ERROR  database.schema  {message} ({setup.database})",
        "OK     clients.auth_method  no client is registered",
        setup.summary(1, 0, 3)]


def test_a_database_without_schema_is_an_error(tmp_path):
    setup = Setup(tmp_path)
    result = setup.check()
    assert result.returncode == 1
    assert lines(result) == setup.server_lines()[:2] + [
        f"ERROR  database.schema  the database has no schema yet: run `flask --app app db upgrade` ({setup.database})",
        "WARN   clients  clients not checked: the client table cannot be read",
        setup.summary(1, 1, 2)]


def test_redis_that_does_not_answer_is_an_error(tmp_path):
    port = free_port()
    setup = Setup(tmp_path, rate_limit={"store": f"redis://user:secret@127.0.0.1:{port}/0"}).upgrade()
    result = setup.check()
    assert result.returncode == 1
    assert lines(result) == setup.server_lines() + [
        "OK     clients.auth_method  no client is registered",
        "ERROR  rate_limit.store  the Redis of [oauth.rate_limit] store does not answer (ConnectionError): each "
        f"process would count failures on its own (redis://127.0.0.1:{port}/0)",
        setup.summary(1, 0, 4)]
    assert "secret" not in result.stdout + result.stderr


def test_a_broken_deployment_toml_prints_the_start_up_message(tmp_path):
    setup = Setup(tmp_path, server_extra="colour = \"blue\"")
    result = setup.check()
    start_up = subprocess.run([PYTHON, str(ROOT / "app.py"), str(setup.config)], cwd=ROOT, capture_output=True,
                              text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert start_up.returncode == 2
    assert start_up.stderr == "configuration error: deployment.toml:7: server.colour: unknown key\n"
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == start_up.stderr


def _expiring_primary_keystore(path: Path, days: int) -> x509.Certificate:
    """A PKCS12 keystore whose primary entry (RSA, named localhost) expires in `days` days."""
    key = rsa_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(NOW - 300 * DAY)
            .not_valid_after(NOW + days * DAY)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pkcs12.serialize_key_and_certificates(
        b"wso2carbon", key, cert, None, serialization.BestAvailableEncryption(KEYSTORE_PASSWORD.encode())))
    return cert


def test_a_primary_key_expiring_within_30_days_is_an_error_as_json(tmp_path):
    setup = Setup(tmp_path, keystore=False)
    cert = _expiring_primary_keystore(tmp_path / "var" / "primary.p12", 20)
    setup.upgrade()
    result = setup.check("--json")
    assert result.returncode == 1, result.stdout + result.stderr
    until = cert.not_valid_after_utc
    date, iso = until.date().isoformat(), until.isoformat()
    assert json.loads(result.stdout) == {
        "config": str(setup.config),
        "status": "error",
        "exit_status": 1,
        "summary": {"error": 2, "warning": 0, "ok": 2},
        "findings": [
            {"severity": "error", "code": "keystore.primary_key", "alias": "wso2carbon", "not_after": iso,
             "message": f"the primary key's certificate expires on {date}, in 20 days (alias wso2carbon)"},
            {"severity": "error", "code": "tls.certificate", "alias": "wso2carbon", "not_after": iso,
             "message": f"the TLS certificate served on port {setup.port} expires on {date}, in 20 days (alias "
                        "wso2carbon; self-signed, as the server generates it with a new keystore)"},
            {"severity": "ok", "code": "database.schema", "database": str(setup.database),
             "message": f"the database schema is version {SCHEMA_VERSION} ({setup.database})"},
            {"severity": "ok", "code": "clients.auth_method", "message": "no client is registered"},
        ]}


def test_json_with_strict_reports_a_warning_as_failing(tmp_path):
    setup = Setup(tmp_path).upgrade()
    cert = keystore_client(setup, "acme", NOW + 10 * DAY)
    result = setup.check("--json", "--strict")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert (report["status"], report["exit_status"], report["summary"]) == ("warning", 1,
                                                                          {"error": 0, "warning": 1, "ok": 4})
    until = cert.not_valid_after_utc
    assert report["findings"][3] == {
        "severity": "warning", "code": "keystore.client_certificate", "client_id": "acme", "alias": "acme",
        "not_after": until.isoformat(),
        "message": f"the certificate of client acme expires on {until.date().isoformat()}, in 10 days (alias acme)"}


def test_client_ca_certificates_expiring_soon_are_warnings(tmp_path):
    ca_key = ec_key()
    soon = certificate(ca_key, not_after=NOW + 10 * DAY, cn="Expiring CA")
    later = certificate(ec_key(), not_after=NOW + 400 * DAY, cn="Lasting CA")
    (tmp_path / "ca.pem").write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (soon, later)))
    setup = Setup(tmp_path, server_extra='client_certificates = "optional"\nclient_ca_file = "ca.pem"').upgrade()
    register_in_database(setup.tmp, "mtls", "tls_client_auth", tls_client_auth_subject_dn="CN=mtls")
    result = setup.check()
    assert result.returncode == 0, result.stdout + result.stderr
    soon_date, later_date = (c.not_valid_after_utc.date().isoformat() for c in (soon, later))
    assert lines(result) == setup.server_lines()[:2] + [
        f"WARN   tls.client_ca  the client CA certificate CN=Expiring CA expires on {soon_date}, in 10 days "
        "(client_ca_file ca.pem)",
        f"OK     tls.client_ca  the client CA certificate CN=Lasting CA is valid until {later_date} "
        "(client_ca_file ca.pem)",
        setup.server_lines()[2],
        "OK     clients.auth_method  1 client registered for a method and algorithm the chain accepts",
        setup.summary(0, 1, 5)]


def test_a_database_that_does_not_answer_is_an_error(tmp_path):
    port = free_port()
    setup = Setup(tmp_path, database_url=f"postgresql://idp:secret@127.0.0.1:{port}/identity")
    result = setup.check()
    assert result.returncode == 1
    found = lines(result)
    assert found[:2] == setup.server_lines()[:2]
    assert found[2].startswith("ERROR  database.connection  the database does not answer: OperationalError: ")
    assert found[2].endswith(f" (postgresql://127.0.0.1:{port}/identity)")
    assert found[3:] == ["WARN   clients  clients not checked: the client table cannot be read",
                         setup.summary(1, 1, 2)]
    assert "secret" not in result.stdout + result.stderr


def test_under_fapi2_a_client_secret_client_is_an_error(tmp_path):
    setup = Setup(tmp_path, extra='[oauth]\nprofile = "fapi2"').upgrade()
    register_in_database(setup.tmp, "secret-app", "client_secret_basic")
    register_in_database(setup.tmp, "rs256-app", "private_key_jwt", jwks=jwks_of((rsa_key(), "k1")),
                         signing_alg="RS256")
    result = setup.check()
    assert result.returncode == 1, result.stdout + result.stderr
    assert lines(result)[3:] == [
        "ERROR  clients.signing_alg  client rs256-app is pinned to RS256 (token_endpoint_auth_signing_alg), which the "
        "chain no longer allows (FAPI 2.0 allows PS256, ES256 and EdDSA)",
        "ERROR  clients.auth_method  client secret-app authenticates with client_secret_basic, which the token "
        'endpoint does not accept: not allowed under [oauth] profile = "fapi2"',
        setup.summary(2, 0, 3)]


@pytest.mark.parametrize("url, shown", [
    ("redis://user:secret@127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ("rediss://:secret@[::1]:6380/2", "rediss://[::1]:6380/2"),
    # A password with a character URLs give a meaning to (not percent-encoded): never part of it shown.
    ("redis://:sec/ret@127.0.0.1:6379/0", "redis://"),
    ("redis://:sec?ret@127.0.0.1:6379/0", "redis://"),
    ("unix://:sec/ret@/run/redis.sock?db=1", "unix://"),
    ("unix:///run/redis/redis.sock?password=secret", "unix:///run/redis/redis.sock"),
])
def test_the_redis_address_is_shown_without_credentials(url, shown):
    from core.ratelimit import redis_location
    assert redis_location(url) == shown


@pytest.mark.parametrize("url, shown", [
    ("postgresql://idp:secret@db:5432/identity?max_connections=8", "postgresql://db:5432/identity"),
    ("postgresql://idp:sec/ret@db/identity", "postgresql://db/identity"),
    ("mysql://idp:sec#ret@db/identity", "mysql://db/identity"),
    ("mysql://idp:sec?ret@db/identity?charset=utf8mb4", "mysql://db/identity"),
])
def test_the_database_is_named_without_credentials(url, shown, tmp_path):
    """What check_database (and the start-up message) print of [database.identity_db] url."""
    from storage.database import describe
    assert describe(url, tmp_path) == shown

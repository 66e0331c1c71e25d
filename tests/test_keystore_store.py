"""Keystore reading/writing, checked against the JDK's keytool in both directions."""

from __future__ import annotations

import os
import re
import shutil
import ssl
import stat
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.x509.oid import NameOID
from OpenSSL import crypto

from keystore.store import Entry, Keystore, KeystoreError

PASSWORD = "wso2carbon-pw"
PRIMARY = "wso2carbon"
TYPES = ["PKCS12", "JKS"]
KEYTOOL = shutil.which("keytool")
needs_keytool = pytest.mark.skipif(KEYTOOL is None, reason="keytool (JDK) not installed")


def keytool(*args: str, cwd=None) -> str:
    # C1-only JIT roughly halves the CPU a short keytool run costs.
    done = subprocess.run(
        [KEYTOOL, "-J-XX:TieredStopAtLevel=1", *args],
        cwd=cwd, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def listing(path: str, store_type: str) -> dict[str, str]:
    """alias -> entry kind, from ``keytool -list``."""
    out = keytool("-list", "-keystore", path, "-storetype", store_type, "-storepass", PASSWORD)
    return dict(re.findall(r"^([^,\n]+), [^,]+, [^,]+, (PrivateKeyEntry|trustedCertEntry),", out, re.M))


def suffix(store_type: str) -> str:
    return ".p12" if store_type == "PKCS12" else ".jks"


@pytest.fixture(scope="module")
def client_cert(tmp_path_factory):
    """A client certificate made with cryptography (no keytool needed): (PEM, DER)."""
    store = Keystore.create(
        str(tmp_path_factory.mktemp("client") / "c.p12"), "PKCS12", PASSWORD, "client", "client.example"
    )
    cert = store.certificate
    return cert.public_bytes(serialization.Encoding.PEM), cert.public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def other_cert(tmp_path_factory):
    store = Keystore.create(
        str(tmp_path_factory.mktemp("other") / "o.p12"), "PKCS12", PASSWORD, "other", "other.example"
    )
    return store.certificate.public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def keytool_files(tmp_path_factory):
    """Keystores and a certificate produced by keytool, shared by the interop tests.

    Follows the WSO2 documentation for the client side: generate TodayApp.jks, export its certificate.
    """
    if KEYTOOL is None:
        pytest.skip("keytool (JDK) not installed")
    d = tmp_path_factory.mktemp("keytool")
    common = ["-keyalg", "RSA", "-keysize", "2048", "-storepass", PASSWORD, "-noprompt"]
    steps = [
        [
            ["-genkey", "-alias", "TodayApp", "-keystore", "TodayApp.jks", "-dname", "CN=TodayApp", *common],
            ["-export", "-alias", "TodayApp", "-file", "TodayApp", "-keystore", "TodayApp.jks",
             "-storepass", PASSWORD],
        ],
        [
            ["-genkeypair", "-alias", PRIMARY, "-dname", "CN=localhost", "-storetype", "PKCS12",
             "-keystore", "primary.p12", *common],
            # A second key entry (EC): every key entry must survive our rewrite.
            ["-genkeypair", "-alias", "second", "-keyalg", "EC", "-dname", "CN=second",
             "-keystore", "primary.p12", "-storepass", PASSWORD, "-noprompt"],
        ],
        [
            ["-genkeypair", "-alias", PRIMARY, "-dname", "CN=localhost", "-storetype", "JKS",
             "-keystore", "primary.jks", *common],
        ],
    ]
    # Independent sequences run in parallel threads to keep the JVM start-ups off the critical path.
    with ThreadPoolExecutor(len(steps)) as pool:
        for future in [pool.submit(lambda seq: [keytool(*args, cwd=d) for args in seq], seq) for seq in steps]:
            future.result()
    return d


@pytest.fixture(params=TYPES)
def store_type(request):
    return request.param


@pytest.fixture
def created(tmp_path, store_type):
    return Keystore.create(str(tmp_path / "sub" / f"primary{suffix(store_type)}"), store_type, PASSWORD, PRIMARY,
                           "localhost")


# --- create / load -------------------------------------------------------------------------------------

def test_create_then_load_round_trip(created, store_type):
    assert stat.S_IMODE(os.stat(created.path).st_mode) == 0o600
    loaded = Keystore.load(created.path, store_type.lower(), PASSWORD, PRIMARY)
    assert loaded.store_type == store_type and loaded.alias == PRIMARY
    assert loaded.certificate == created.certificate
    assert loaded.private_key.private_numbers() == created.private_key.private_numbers()
    assert loaded.entries() == [Entry(PRIMARY, "PrivateKeyEntry", created.certificate)]
    assert loaded.trusted_certificate(PRIMARY) is None  # the key entry never counts as trusted


def test_created_certificate_names_the_host(created):
    cert = created.certificate
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "localhost"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert 700 <= (cert.not_valid_after_utc - cert.not_valid_before_utc).days <= 740
    assert created.private_key.key_size == 2048
    cert.public_key().verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), hashes.SHA256())


def test_create_other_hostname(tmp_path):
    store = Keystore.create(str(tmp_path / "k.p12"), "PKCS12", PASSWORD, PRIMARY, "idp.example.com")
    san = store.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["idp.example.com"]
    assert san.get_values_for_type(x509.IPAddress) == []


def test_create_refuses_to_overwrite(created, store_type):
    with pytest.raises(KeystoreError, match="already exists"):
        Keystore.create(created.path, store_type, PASSWORD, PRIMARY, "localhost")


def test_wrong_password(created, store_type):
    with pytest.raises(KeystoreError) as info:
        Keystore.load(created.path, store_type, "not-the-password", PRIMARY)
    assert created.path in str(info.value) and "not-the-password" not in str(info.value)


def test_missing_primary_alias(created, store_type):
    with pytest.raises(KeystoreError, match="'nosuchalias'"):
        Keystore.load(created.path, store_type, PASSWORD, "nosuchalias")


def test_primary_alias_must_be_key_entry(created, store_type, client_cert):
    created.import_certificate("client", client_cert[1])
    with pytest.raises(KeystoreError, match="not a key entry"):
        Keystore.load(created.path, store_type, PASSWORD, "client")


def test_missing_file_unknown_type_mismatch_and_corrupt(tmp_path, created, store_type):
    with pytest.raises(KeystoreError, match="does not exist"):
        Keystore.load(str(tmp_path / "absent.p12"), store_type, PASSWORD, PRIMARY)
    with pytest.raises(KeystoreError, match="unsupported keystore type"):
        Keystore.load(created.path, "JCEKS", PASSWORD, PRIMARY)
    other = "JKS" if store_type == "PKCS12" else "PKCS12"
    with pytest.raises(KeystoreError, match="configured type"):
        Keystore.load(created.path, other, PASSWORD, PRIMARY)
    damaged = tmp_path / "damaged"
    data = bytearray(open(created.path, "rb").read())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    with pytest.raises(KeystoreError, match=re.escape(str(damaged))):
        Keystore.load(str(damaged), store_type, PASSWORD, PRIMARY)
    truncated = tmp_path / "truncated"
    truncated.write_bytes(bytes(data[:40]))
    with pytest.raises(KeystoreError, match=re.escape(str(truncated))):
        Keystore.load(str(truncated), store_type, PASSWORD, PRIMARY)


# --- certificate entries -----------------------------------------------------------------------------

def test_import_pem_and_der(created, store_type, client_cert, other_cert):
    pem, der = client_cert
    entry = created.import_certificate("pem-client", pem)
    assert entry.kind == "trustedCertEntry" and entry.certificate.public_bytes(serialization.Encoding.DER) == der
    created.import_certificate("der-client", other_cert)
    loaded = Keystore.load(created.path, store_type, PASSWORD, PRIMARY)
    assert {e.alias: e.kind for e in loaded.entries()} == {
        PRIMARY: "PrivateKeyEntry", "pem-client": "trustedCertEntry", "der-client": "trustedCertEntry"}
    found = loaded.trusted_certificate("pem-client")
    assert isinstance(found, crypto.X509)
    assert crypto.dump_certificate(crypto.FILETYPE_ASN1, found) == der
    assert crypto.dump_certificate(crypto.FILETYPE_ASN1, loaded.trusted_certificate("der-client")) == other_cert
    assert loaded.trusted_certificate("unknown") is None


def test_alias_lookup_folds_case_only_for_jks(created, store_type, client_cert):
    entry = created.import_certificate("MyApp", client_cert[1])
    assert entry.alias == ("myapp" if store_type == "JKS" else "MyApp")  # JKS lower-cases aliases
    loaded = Keystore.load(created.path, store_type, PASSWORD, PRIMARY)
    assert loaded.trusted_certificate("MyApp") is not None
    # PKCS12 keeps the alias's case: "myapp" is another client id and must not get MyApp's key.
    for alias in ("myapp", "MYAPP"):
        assert (loaded.trusted_certificate(alias) is not None) == (store_type == "JKS")
    # Only ASCII is folded: the Kelvin sign lower-cases to "k" in Unicode, never here.
    created.import_certificate("key", client_cert[1])
    assert Keystore.load(created.path, store_type, PASSWORD, PRIMARY).trusted_certificate("\u212aey") is None


def test_a_non_ascii_alias_is_stored_as_it_is_looked_up(created, store_type, client_cert):
    """JKS stores aliases lower-cased, and lookups fold ASCII only: an alias folded by Unicode
    rules when stored ("\u212aey", Kelvin sign, becomes "key") would hand its certificate to
    another client id and none to its own."""
    created.import_certificates([("\u212aey", client_cert[1]), ("\u00c4pp", client_cert[0])])
    loaded = Keystore.load(created.path, store_type, PASSWORD, PRIMARY)
    assert [e.alias for e in loaded.entries()] == [PRIMARY, "\u212aey", "\u00c4pp"]
    assert loaded.trusted_certificate("\u212aey") is not None and loaded.trusted_certificate("\u00c4pp") is not None
    assert loaded.trusted_certificate("key") is None and loaded.trusted_certificate("\u00e4pp") is None


def test_primary_alias_case_insensitive(created, store_type):
    assert Keystore.load(created.path, store_type, PASSWORD, PRIMARY.upper()).certificate == created.certificate


def test_duplicate_and_invalid_imports_refused(created, client_cert, other_cert):
    created.import_certificate("MyApp", client_cert[0])
    for alias in ("MyApp", "MYAPP", PRIMARY.upper()):
        with pytest.raises(KeystoreError, match="already exists"):
            created.import_certificate(alias, other_cert)
    with pytest.raises(KeystoreError, match="not an X.509 certificate"):
        created.import_certificate("junk", b"this is not a certificate")
    with pytest.raises(KeystoreError, match="not an X.509 certificate"):
        created.import_certificate("junk", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    assert [e.alias.lower() for e in created.entries()] == [PRIMARY, "myapp"]


def test_import_many_at_once_all_or_none(created, store_type, client_cert, other_cert):
    """One rewrite for many certificates (registering a thousand keystore clients); one refused
    alias or certificate, wherever it is in the list, and nothing is imported."""
    entries = created.import_certificates([("a", client_cert[0]), ("b", other_cert), ("c", client_cert[1])])
    assert [e.alias for e in entries] == ["a", "b", "c"]
    for bad, match in (([("d", other_cert), ("A", other_cert)], "alias 'A' already exists"),
                       ([("d", other_cert), ("d", client_cert[1])], "alias 'd' already exists"),
                       ([("d", other_cert), ("e", b"junk")], "alias 'e' is not an X.509 certificate"),
                       ([("d", other_cert), (" e", other_cert)], "invalid alias")):
        with pytest.raises(KeystoreError, match=match):
            created.import_certificates(bad)
    for store in (created, Keystore.load(created.path, store_type, PASSWORD, PRIMARY)):
        assert [e.alias for e in store.entries()] == [PRIMARY, "a", "b", "c"]


def test_a_change_by_another_process_is_read_before_the_next_edit(created, store_type, client_cert, other_cert):
    """The file is read again only when it changed since this process read or wrote it; a change
    made by another writer (here a second Keystore object) is never lost."""
    other = Keystore.load(created.path, store_type, PASSWORD, PRIMARY)
    created.import_certificate("first", client_cert[1])
    other.import_certificate("second", other_cert)   # reads "first" before writing
    created.import_certificate("third", client_cert[0])   # reads "second" before writing
    loaded = Keystore.load(created.path, store_type, PASSWORD, PRIMARY)
    assert [e.alias for e in loaded.entries()] == [PRIMARY, "first", "second", "third"]


def test_an_edit_in_place_with_the_same_size_and_time_is_read(created, store_type, tmp_path, client_cert):
    """keytool rewrites the file in place: same inode, and on a file system with coarse times the
    same modification time; an alias renamed to one of the same length keeps the size too. The
    next edit must start from that content, not from what this process wrote last."""
    created.import_certificate("aa", client_cert[1])
    copy = str(tmp_path / f"copy{suffix(store_type)}")
    shutil.copy(created.path, copy)
    other = Keystore.load(copy, store_type, PASSWORD, PRIMARY)
    other.delete_entry("aa")
    other.import_certificate("bb", client_cert[1])   # what `keytool -changealias` makes of it
    with open(copy, "rb") as handle:
        edited = handle.read()
    before = os.stat(created.path)
    assert len(edited) == before.st_size
    with open(created.path, "r+b") as handle:   # in place, as keytool writes
        handle.write(edited)
    os.utime(created.path, ns=(before.st_atime_ns, before.st_mtime_ns))
    created.import_certificate("cc", client_cert[0])
    loaded = Keystore.load(created.path, store_type, PASSWORD, PRIMARY)
    assert [e.alias for e in loaded.entries()] == [PRIMARY, "bb", "cc"]


def test_a_primary_entry_replaced_meanwhile_is_taken_whole(created, store_type, tmp_path, client_cert):
    """The server's key pair renewed by another writer: after the next edit this object's primary
    record, key and certificate are all the new ones (never the new certificate with the old key)."""
    renewed = Keystore.create(str(tmp_path / f"renewed{suffix(store_type)}"), store_type, PASSWORD, PRIMARY,
                              "localhost")
    shutil.copy(renewed.path, created.path)
    created.import_certificate("client", client_cert[1])
    assert created.certificate == renewed.certificate
    assert created.private_keys()[0][1].private_numbers() == renewed.private_key.private_numbers()
    tls_cert, tls_key = created.write_tls_files(str(tmp_path))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls_cert, tls_key)   # refuses a key that does not match the certificate


def test_a_failed_rewrite_changes_nothing_in_memory(created, store_type, client_cert):
    """An import whose rewrite fails is not trusted by this process either, whatever the failure."""
    os.rename(created.path, created.path + ".moved")
    with pytest.raises(KeystoreError):
        created.import_certificates([("x", client_cert[1])])
    assert created.trusted_certificate("x") is None and len(created.entries()) == 1
    os.rename(created.path + ".moved", created.path)
    for alias in ("bad\udcff", "new\nline", "tab\there"):
        with pytest.raises(KeystoreError, match="invalid alias"):
            created.import_certificates([("ok", client_cert[1]), (alias, client_cert[1])])
    assert created.trusted_certificate("ok") is None and len(created.entries()) == 1
    created.import_certificate("y", client_cert[1])
    os.rename(created.path, created.path + ".moved")
    with pytest.raises(KeystoreError):
        created.delete_entry("y")
    assert created.trusted_certificate("y") is not None


def test_delete_entry(created, store_type, client_cert):
    created.import_certificate("client", client_cert[1])
    created.delete_entry("CLIENT")
    loaded = Keystore.load(created.path, store_type, PASSWORD, PRIMARY)
    assert loaded.trusted_certificate("client") is None and len(loaded.entries()) == 1
    with pytest.raises(KeystoreError, match="no certificate entry"):
        loaded.delete_entry("client")
    with pytest.raises(KeystoreError, match="no certificate entry"):
        loaded.delete_entry(PRIMARY)  # key entries cannot be deleted this way
    assert Keystore.load(created.path, store_type, PASSWORD, PRIMARY).certificate == created.certificate


def test_rewrite_keeps_file_mode(created, client_cert):
    os.chmod(created.path, 0o640)
    created.import_certificate("client", client_cert[1])
    assert stat.S_IMODE(os.stat(created.path).st_mode) == 0o640
    assert [p for p in os.listdir(os.path.dirname(created.path)) if p.startswith(".")] == []


def test_concurrent_imports_from_two_processes_are_all_kept(created, store_type, client_cert):
    """Two processes (two workers, or the console and the CLI) importing into the same file at
    the same time: every alias is there afterwards, none lost to the other's write."""
    import multiprocessing
    context = multiprocessing.get_context("spawn")
    ready = context.Barrier(2)
    count = 12
    workers = [context.Process(target=_import_many, args=(created.path, store_type, f"w{n}-", count,
                                                          client_cert[1], ready))
               for n in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    aliases = {entry.alias for entry in Keystore.load(created.path, store_type, PASSWORD, PRIMARY).entries()}
    assert aliases == {PRIMARY} | {f"w{n}-{i}" for n in range(2) for i in range(count)}
    lock = created.path + ".lock"
    assert stat.S_IMODE(os.stat(lock).st_mode) == 0o600


def _import_many(path: str, store_type: str, prefix: str, count: int, cert: bytes, ready) -> None:
    store = Keystore.load(path, store_type, PASSWORD, PRIMARY)   # each worker its own object, as in gunicorn
    ready.wait(60)
    for i in range(count):
        store.import_certificate(f"{prefix}{i}", cert)


# --- TLS files ---------------------------------------------------------------------------------------------

def _handshake(server: ssl.SSLContext, client: ssl.SSLContext, hostname: str) -> None:
    """Run a TLS handshake in memory (no sockets)."""
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client_side = client.wrap_bio(c_in, c_out, server_hostname=hostname)
    server_side = server.wrap_bio(s_in, s_out, server_side=True)
    done = {"c": False, "s": False}
    for _ in range(20):
        for name, side in (("c", client_side), ("s", server_side)):
            if not done[name]:
                try:
                    side.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            return
    raise AssertionError("handshake did not finish")


def test_write_tls_files(created, tmp_path):
    cert_path, key_path = created.write_tls_files(str(tmp_path / "tls"))
    assert os.path.basename(cert_path) == "cert.pem" and os.path.basename(key_path) == "key.pem"
    for path in (cert_path, key_path):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_path, key_path)
    client = ssl.create_default_context(cafile=cert_path)
    client.verify_flags |= ssl.VERIFY_X509_STRICT
    _handshake(server, client, "localhost")


# --- keytool interoperability ------------------------------------------------------------------------------

@needs_keytool
def test_keytool_generated_keystores_load(keytool_files, store_type):
    path = str(keytool_files / f"primary{suffix(store_type)}")
    store = Keystore.load(path, store_type, PASSWORD, PRIMARY)
    assert store.certificate.subject.rfc4514_string() == "CN=localhost"
    assert store.private_key.key_size == 2048
    expected = {PRIMARY: "PrivateKeyEntry"}
    if store_type == "PKCS12":
        expected["second"] = "PrivateKeyEntry"
    assert {e.alias: e.kind for e in store.entries()} == expected


@needs_keytool
def test_keytool_import_is_seen_by_load(keytool_files, created, store_type):
    """The WSO2 flow: keytool -import -alias TodayApp -file TodayApp -keystore <primary>."""
    keytool("-import", "-alias", "TodayApp", "-file", str(keytool_files / "TodayApp"), "-keystore", created.path,
            "-storetype", store_type, "-storepass", PASSWORD, "-noprompt")
    loaded = Keystore.load(created.path, store_type, PASSWORD, PRIMARY)
    found = loaded.trusted_certificate("TodayApp")
    assert found is not None
    assert crypto.dump_certificate(crypto.FILETYPE_ASN1, found) == (keytool_files / "TodayApp").read_bytes()
    assert loaded.private_key.private_numbers() == created.private_key.private_numbers()


@needs_keytool
def test_our_import_is_listed_by_keytool(created, store_type, client_cert):
    created.import_certificate("MyClient", client_cert[0])
    assert listing(created.path, store_type) == {PRIMARY: "PrivateKeyEntry", "myclient": "trustedCertEntry"}
    # keytool can decrypt our private key: a CSR needs a signature from it.
    csr = keytool("-certreq", "-alias", PRIMARY, "-keystore", created.path, "-storetype", store_type,
                  "-storepass", PASSWORD)
    request = x509.load_pem_x509_csr(csr.encode())
    assert request.is_signature_valid and request.public_key() == created.certificate.public_key()


@needs_keytool
def test_our_rewrite_of_keytool_keystore_keeps_entries(keytool_files, tmp_path, store_type, client_cert):
    path = str(tmp_path / f"copy{suffix(store_type)}")
    shutil.copy(keytool_files / f"primary{suffix(store_type)}", path)
    store = Keystore.load(path, store_type, PASSWORD, PRIMARY)
    store.import_certificate("TodayApp", (keytool_files / "TodayApp").read_bytes())
    expected = {PRIMARY: "PrivateKeyEntry", "todayapp": "trustedCertEntry"}
    if store_type == "PKCS12":
        expected["second"] = "PrivateKeyEntry"
    assert listing(path, store_type) == expected

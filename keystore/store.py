"""The primary keystore: the server's key pair plus trusted client certificates, in PKCS12 or JKS.

Files must stay interchangeable with the JDK's ``keytool`` (the WSO2 way of registering a client
certificate is ``keytool -import -alias <client_id> -file <cert> -keystore <primary keystore>``), so
PKCS12 is written with the same bag layout Java uses (RFC 7292 plus Oracle's trusted-cert attribute)
and JKS is handled by :mod:`keystore.jks`.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import hmac
import ipaddress
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from OpenSSL import crypto

from . import jks
from .jks import BMP_STRING, NULL, OCTET_STRING, OID, der, der_children, der_explicit, der_int
from .jks import der_oid, der_oid_text, der_read, der_seq, der_set

PRIVATE_KEY_ENTRY = "PrivateKeyEntry"
TRUSTED_CERT_ENTRY = "trustedCertEntry"
STORE_TYPES = ("PKCS12", "JKS")

# RFC 7292 and RFC 2985 identifiers.
_ID_DATA = "1.2.840.113549.1.7.1"
_KEY_BAG = "1.2.840.113549.1.12.10.1.1"
_SHROUDED_KEY_BAG = "1.2.840.113549.1.12.10.1.2"
_CERT_BAG = "1.2.840.113549.1.12.10.1.3"
_X509_CERTIFICATE = "1.2.840.113549.1.9.22.1"
_FRIENDLY_NAME = "1.2.840.113549.1.9.20"
_LOCAL_KEY_ID = "1.2.840.113549.1.9.21"
_SHA256 = "2.16.840.1.101.3.4.2.1"
# The JDK only treats a lone certificate bag as a trustedCertEntry when it carries Oracle's
# "trusted key usage" attribute; the value is the permitted extended key usage (any, here).
_ORACLE_TRUSTED_KEY_USAGE = "2.16.840.1.113894.746875.1.1"
_ANY_EXTENDED_KEY_USAGE = "2.5.29.37.0"
_MAC_ITERATIONS = 10000  # keytool's default for the PKCS12 MAC


class KeystoreError(Exception):
    """Safe, operator-facing message (names the file, never includes the password)."""


@dataclass(frozen=True)
class Entry:
    """One keystore entry as ``keytool -list`` describes it."""

    alias: str
    kind: str
    certificate: x509.Certificate


@dataclass
class _Record:
    """In-memory form of one entry, rich enough to write either format back."""

    alias: str
    certificates: list[x509.Certificate]  # leaf first
    key: PrivateKeyTypes | None = None
    timestamp_ms: int = field(default_factory=lambda: int(time.time() * 1000))

    @property
    def kind(self) -> str:
        return PRIVATE_KEY_ENTRY if self.key is not None else TRUSTED_CERT_ENTRY


# --- PKCS12 ----------------------------------------------------------------------------------------

def _pkcs12_mac_key(password: str, salt: bytes, iterations: int) -> bytes:
    """RFC 7292 appendix B.2 key derivation with ID 3 (MAC key), SHA-256 (u = 32, v = 64).

    The MAC key is exactly one hash output long, so only A_1 is needed.
    """
    v = 64
    bmp = password.encode("utf-16-be") + b"\x00\x00"  # BMPString with terminating NUL (B.1)

    def stretch(data: bytes) -> bytes:
        # Concatenate copies of data up to the next multiple of v bytes (B.2 steps 2 and 3).
        size = v * -(-len(data) // v)
        return (data * (size // len(data) + 1))[:size] if data else b""

    block = bytes([3]) * v + stretch(salt) + stretch(bmp)
    for _ in range(iterations):
        block = hashlib.sha256(block).digest()
    return block


def _content_info_data(content: bytes) -> bytes:
    return der_seq(der_oid(_ID_DATA), der_explicit(0, der(OCTET_STRING, content)))


def _attribute(oid: str, value: bytes) -> bytes:
    return der_seq(der_oid(oid), der_set(value))


def _bag(bag_id: str, value: bytes, attributes: list[bytes]) -> bytes:
    parts = [der_oid(bag_id), der_explicit(0, value)]
    if attributes:
        parts.append(der_set(*attributes))
    return der_seq(*parts)


def _cert_bag(cert: x509.Certificate, attributes: list[bytes]) -> bytes:
    value = der_seq(der_oid(_X509_CERTIFICATE), der_explicit(0, der(OCTET_STRING, _cert_der(cert))))
    return _bag(_CERT_BAG, value, attributes)


def _write_pkcs12(records: list[_Record], password: str) -> bytes:
    """Build a PFX the way the JDK lays it out: each key with its chain, each trusted cert flagged."""
    bags = []
    for record in records:
        name = _attribute(_FRIENDLY_NAME, der(BMP_STRING, record.alias.encode("utf-16-be")))
        if record.key is None:
            trusted = _attribute(_ORACLE_TRUSTED_KEY_USAGE, der_oid(_ANY_EXTENDED_KEY_USAGE))
            bags.append(_cert_bag(record.certificates[0], [name, trusted]))
            continue
        # localKeyId ties the key bag to its certificate bag (RFC 7292 4.2); any unique value will do.
        key_id_value = hashlib.sha1(_cert_der(record.certificates[0])).digest()
        key_id = _attribute(_LOCAL_KEY_ID, der(OCTET_STRING, key_id_value))
        # PKCS#8 EncryptedPrivateKeyInfo; cryptography uses PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC).
        shrouded = record.key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(password.encode()),
        )
        bags.append(_bag(_SHROUDED_KEY_BAG, shrouded, [name, key_id]))
        bags.append(_cert_bag(record.certificates[0], [name, key_id]))
        bags.extend(_cert_bag(cert, []) for cert in record.certificates[1:])
    auth_safe = der_seq(_content_info_data(der_seq(*bags)))
    salt = os.urandom(20)
    mac = hmac.new(_pkcs12_mac_key(password, salt, _MAC_ITERATIONS), auth_safe, hashlib.sha256).digest()
    digest_info = der_seq(der_seq(der_oid(_SHA256), der(NULL, b"")), der(OCTET_STRING, mac))
    mac_data = der_seq(digest_info, der(OCTET_STRING, salt), der_int(_MAC_ITERATIONS))
    return der_seq(der_int(3), _content_info_data(auth_safe), mac_data)



def _data_content(content_info: bytes) -> bytes | None:
    """The OCTET STRING inside an ``id-data`` ContentInfo, or None for other content types."""
    oid, explicit = der_children(content_info)[:2]
    if oid[0] != OID or der_oid_text(oid[1]) != _ID_DATA:
        return None
    tag, octets, _ = der_read(explicit[1])
    if tag != OCTET_STRING:
        raise ValueError("unexpected ContentInfo encoding")
    return octets


def _friendly_name(attributes: bytes) -> str | None:
    for _, attribute in der_children(attributes):
        oid, values = der_children(attribute)[:2]
        if der_oid_text(oid[1]) == _FRIENDLY_NAME:
            tag, text, _ = der_read(values[1])
            if tag == BMP_STRING:
                return text.decode("utf-16-be")
    return None


def _key_bags(data: bytes) -> list[tuple[str | None, bytes, bool]]:
    """(friendlyName, PKCS#8 DER, is encrypted) of every key bag.

    cryptography's load_pkcs12 returns a single key, so key entries are found here instead. The
    JDK, OpenSSL and this module keep key bags in unencrypted ``data`` content (each key is itself
    encrypted), so no decryption is needed to enumerate them. Raises ValueError on odd encodings.
    """
    _, pfx, _ = der_read(data)
    auth_safe = _data_content(der_children(pfx)[1][1])
    if auth_safe is None:
        raise ValueError("public-key protected PKCS12 is not supported")
    found = []
    for _, content_info in der_children(der_read(auth_safe)[1]):
        safe_contents = _data_content(content_info)
        if safe_contents is None:
            continue  # encrypted content: certificates in every known writer
        for _, bag in der_children(der_read(safe_contents)[1]):
            parts = der_children(bag)
            bag_id = der_oid_text(parts[0][1])
            if bag_id in (_KEY_BAG, _SHROUDED_KEY_BAG):
                name = _friendly_name(parts[2][1]) if len(parts) > 2 else None
                found.append((name, parts[1][1], bag_id == _SHROUDED_KEY_BAG))
    return found


def _public_der(key) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _certificate_public_der(cert: x509.Certificate) -> bytes | None:
    """The certificate's public key as SubjectPublicKeyInfo DER, or None when cryptography cannot
    load it (an algorithm or curve it does not implement, a malformed key): such a certificate
    holds no key of a key entry, and as a trusted certificate it is refused when used, not here."""
    try:
        return _public_der(cert.public_key())
    except (UnsupportedAlgorithm, ValueError):
        return None


def _chain(leaf: x509.Certificate, pool: list[x509.Certificate]) -> list[x509.Certificate]:
    """Follow issuer names from the leaf through ``pool`` (removing what it uses)."""
    chain = [leaf]
    while chain[-1].issuer != chain[-1].subject and len(chain) < 10:
        parent = next((c for c in pool if c.subject == chain[-1].issuer), None)
        if parent is None:
            break
        pool.remove(parent)
        chain.append(parent)
    return chain


def _pkcs12_keys(data: bytes, password: str, bundle) -> list[tuple[str | None, PrivateKeyTypes]]:
    """Every key entry as (friendlyName, key); the common single-key case reuses load_pkcs12's work."""
    try:
        key_bags = _key_bags(data)
    except (ValueError, IndexError):
        key_bags = []  # unusual encoding: fall back to the one key cryptography found
    if len(key_bags) <= 1:
        name = key_bags[0][0] if key_bags else None
        return [(name, bundle.key)] if bundle.key is not None else []
    keys = []
    for name, pkcs8, encrypted in key_bags:
        try:
            secret = password.encode() if encrypted else None
            keys.append((name, serialization.load_der_private_key(pkcs8, secret)))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"private key entry {name!r} is not protected by the keystore password") from exc
    return keys


def _is_chain_certificate(cert: pkcs12.PKCS12Certificate) -> bool:
    """The JDK names CA certificates of a key's chain after their subject DN; unnamed ones are chain too.

    (cryptography does not expose the Oracle trusted attribute, so the friendly name is the clue.)
    """
    name = (cert.friendly_name or b"").decode()
    return not name or name.lower() == cert.certificate.subject.rfc4514_string().lower()


def _read_pkcs12(data: bytes, password: str) -> list[_Record]:
    """Decode a PFX into records; PermissionError when the MAC (password) check fails."""
    try:
        bundle = pkcs12.load_pkcs12(data, password.encode())
    except ValueError as exc:
        raise PermissionError("integrity check failed (wrong password) or the file is corrupt") from exc
    certs = ([bundle.cert] if bundle.cert else []) + list(bundle.additional_certs)
    records = []
    for name, key in _pkcs12_keys(data, password, bundle):
        # Pair each key with its certificate by public key, preferring the one with the same name.
        wanted = _public_der(key.public_key())
        matches = [c for c in certs if _certificate_public_der(c.certificate) == wanted]
        if not matches:
            raise ValueError(f"private key entry {name!r} has no certificate")
        leaf = next((c for c in matches if (c.friendly_name or b"").decode() == name), matches[0])
        certs.remove(leaf)
        alias = name or (leaf.friendly_name or b"").decode() or str(len(records) + 1)
        records.append(_Record(alias, [leaf.certificate], key))
    pool = [c.certificate for c in certs if _is_chain_certificate(c)]
    for record in records:
        record.certificates = _chain(record.certificates[0], pool)
    trusted = [c for c in certs if not _is_chain_certificate(c)]
    return records + [_Record(c.friendly_name.decode(), [c.certificate]) for c in trusted]


# --- JKS adapter ------------------------------------------------------------------------------------

def _read_jks(data: bytes, password: str) -> list[_Record]:
    records = []
    for entry in jks.read_jks(data, password):
        certs = [x509.load_der_x509_certificate(c) for c in entry.certificates]
        key = serialization.load_der_private_key(entry.key_pkcs8, None) if entry.key_pkcs8 else None
        records.append(_Record(entry.alias, certs, key, entry.timestamp_ms))
    return records


def _write_jks(records: list[_Record], password: str) -> bytes:
    entries = []
    for r in records:
        pkcs8 = None
        if r.key is not None:
            pkcs8 = r.key.private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        entries.append(jks.JksEntry(r.alias, r.timestamp_ms, [_cert_der(c) for c in r.certificates], pkcs8))
    return jks.write_jks(entries, password)


# --- helpers ------------------------------------------------------------------------------------------

def _cert_der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _normalise_type(store_type: str) -> str:
    normalised = (store_type or "").strip().upper()
    if normalised not in STORE_TYPES:
        raise KeystoreError(f"unsupported keystore type {store_type!r}: use PKCS12 or JKS")
    return normalised


def _atomic_write(path: str, data: bytes, mode: int) -> None:
    """Write through a temp file in the same directory and rename it over ``path``."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".keystore-", dir=directory)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _version(data: bytes) -> bytes:
    """What tells one content of the keystore file from another. Not (inode, size, mtime): keytool
    rewrites in place, an alias renamed keeps the size, and file times can be coarser than two
    edits apart; reading and hashing the bytes costs little beside decoding them."""
    return hashlib.sha256(data).digest()


@contextlib.contextmanager
def _edit_lock(path: str) -> Iterator[None]:
    """An exclusive lock on ``<path>.lock`` while a change is read, made and written, so that
    edits by several processes (workers, the console, the CLI) follow one another instead of one
    overwriting the other's (keytool does not take this lock)."""
    lock_path = path + ".lock"
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise KeystoreError(f"keystore {path}: cannot open the lock file {lock_path} ({exc.strerror})") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)   # released when fd is closed, also if the process dies
        yield
    finally:
        os.close(fd)


def _parse_certificate(data: bytes) -> x509.Certificate:
    """PEM (RFC 7468 'CERTIFICATE') or DER, like ``keytool -import`` accepts."""
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def _self_signed(key: rsa.RSAPrivateKey, hostname: str) -> x509.Certificate:
    """Server certificate usable for TLS: CN and SAN name the host (RFC 6125 checks the SAN)."""
    names: list[x509.GeneralName] = []
    try:
        names.append(x509.IPAddress(ipaddress.ip_address(hostname)))
    except ValueError:
        names.append(x509.DNSName(hostname))
    if hostname == "localhost":
        names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.timezone.utc)
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=730))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def _find(records: list[_Record], alias: str, kind: str) -> _Record | None:
    """Exact alias first, then case-insensitive (JKS lower-cases aliases; Java compares them so)."""
    candidates = [r for r in records if r.kind == kind]
    exact = next((r for r in candidates if r.alias == alias), None)
    return exact or next((r for r in candidates if r.alias.lower() == alias.lower()), None)


# --- the keystore ---------------------------------------------------------------------------------------

class Keystore:
    """A loaded keystore; every change is written back to ``path`` at once."""

    def __init__(self, path: str, store_type: str, password: str, alias: str, records: list[_Record]):
        self.path = path
        self.store_type = store_type
        self.alias = alias
        self._password = password
        self._records = records
        primary = _find(records, alias, PRIVATE_KEY_ENTRY)
        if primary is None:
            other = _find(records, alias, TRUSTED_CERT_ENTRY)
            what = "is a certificate entry, not a key entry" if other else "is not in the keystore"
            raise KeystoreError(f"keystore {path}: primary alias {alias!r} {what}")
        if not isinstance(primary.key, rsa.RSAPrivateKey):
            raise KeystoreError(f"keystore {path}: primary entry {alias!r} must hold an RSA key")
        self.private_key = primary.key
        self.certificate = primary.certificates[0]
        self._primary = primary
        self._version: bytes | None = None  # of the file content the records were read from

    def __repr__(self) -> str:
        return f"Keystore(path={self.path!r}, store_type={self.store_type!r}, alias={self.alias!r})"

    @classmethod
    def load(cls, path: str, store_type: str, password: str, alias: str) -> "Keystore":
        store_type = _normalise_type(store_type)
        data = _read_file(path)
        keystore = cls(path, store_type, password, alias, _decode_records(path, data, store_type, password))
        keystore._version = _version(data)
        return keystore

    @classmethod
    def create(cls, path: str, store_type: str, password: str, alias: str, hostname: str) -> "Keystore":
        """New keystore with a fresh RSA 2048 key and self-signed certificate; refuses to overwrite."""
        store_type = _normalise_type(store_type)
        if not password:
            raise KeystoreError(f"keystore {path}: a password is required")
        if os.path.exists(path):
            raise KeystoreError(f"keystore {path} already exists; not overwriting it")
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        keystore = cls(path, store_type, password, alias, [_Record(alias, [_self_signed(key, hostname)], key)])
        with _edit_lock(path):
            if os.path.exists(path):   # another process created it meanwhile
                raise KeystoreError(f"keystore {path} already exists; not overwriting it")
            keystore._save(keystore._records, new_file=True)
        return keystore

    def entries(self) -> list[Entry]:
        return [Entry(r.alias, r.kind, r.certificates[0]) for r in self._records]

    def private_keys(self) -> list[tuple[str, PrivateKeyTypes]]:
        """(alias, private key) of every key entry, the primary first."""
        others = [(r.alias, r.key) for r in self._records if r.kind == PRIVATE_KEY_ENTRY and r is not self._primary]
        return [(self._primary.alias, self.private_key), *others]

    def private_key_entry(self, alias: str) -> PrivateKeyTypes | None:
        """The private key of the key entry `alias` (matched as the primary alias is), or None."""
        record = _find(self._records, alias, PRIVATE_KEY_ENTRY)
        return record.key if record is not None else None

    def trusted_certificate(self, alias: str) -> crypto.X509 | None:
        """The certificate entry stored under exactly this alias. JKS keystores store aliases
        lower-cased (ASCII), so there "MyApp" is looked up as "myapp"; PKCS12 keeps the case,
        and nothing else is folded (two client ids differing in case never share a certificate)."""
        wanted = {alias}
        if self.store_type == "JKS" and alias.isascii():
            wanted.add(alias.lower())
        record = next((r for r in self._records if r.kind == TRUSTED_CERT_ENTRY and r.alias in wanted), None)
        if record is None:
            return None
        return crypto.load_certificate(crypto.FILETYPE_ASN1, _cert_der(record.certificates[0]))

    def import_certificate(self, alias: str, data: bytes) -> Entry:
        return self.import_certificates([(alias, data)])[0]

    def import_certificates(self, items: list[tuple[str, bytes]]) -> list[Entry]:
        """Import (alias, PEM or DER certificate) pairs with one rewrite of the file: all of them,
        or, when one alias or certificate is refused, none (the error names it)."""
        parsed: list[tuple[str, x509.Certificate]] = []
        for alias, data in items:
            if not alias or alias != alias.strip() or not alias.isprintable():
                raise KeystoreError(f"keystore {self.path}: invalid alias {alias!r}")
            try:
                parsed.append((alias, _parse_certificate(data)))
            except ValueError as exc:
                raise KeystoreError(f"keystore {self.path}: the input for alias {alias!r} is not an X.509 "
                                    "certificate") from exc
        with _edit_lock(self.path):
            self._reload()  # pick up entries another process (e.g. keytool) added meanwhile
            taken = {r.alias.lower() for r in self._records}
            records = []
            for alias, cert in parsed:
                if alias.lower() in taken:
                    raise KeystoreError(f"keystore {self.path}: alias {alias!r} already exists")
                taken.add(alias.lower())
                # As the JKS file will have it (keystore.jks.write_jks: ASCII aliases lower-cased).
                stored = alias.lower() if self.store_type == "JKS" and alias.isascii() else alias
                records.append(_Record(stored, [cert]))
            self._save([*self._records, *records])
        return [Entry(r.alias, r.kind, r.certificates[0]) for r in records]

    def delete_entry(self, alias: str) -> None:
        with _edit_lock(self.path):
            self._reload()
            record = _find(self._records, alias, TRUSTED_CERT_ENTRY)
            if record is None:
                raise KeystoreError(f"keystore {self.path}: no certificate entry {alias!r}")
            self._save([r for r in self._records if r is not record])

    def write_tls_files(self, directory: str) -> tuple[str, str]:
        """cert.pem (certificate chain) and key.pem (unencrypted PKCS#8), both 0600, for gunicorn."""
        cert_path = os.path.join(directory, "cert.pem")
        key_path = os.path.join(directory, "key.pem")
        chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self._primary.certificates)
        key = self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        _atomic_write(cert_path, chain, 0o600)
        _atomic_write(key_path, key, 0o600)
        return cert_path, key_path

    def _reload(self) -> None:
        """Read the file again unless it is the version the records came from (reading a large
        PKCS12 file costs far more than the change itself)."""
        data = _read_file(self.path)
        version = _version(data)
        if version != self._version:
            self._records = _decode_records(self.path, data, self.store_type, self._password)
            self._version = version
            primary = _find(self._records, self.alias, PRIVATE_KEY_ENTRY)
            if primary is not None and isinstance(primary.key, rsa.RSAPrivateKey):  # its key and certificate together
                self._primary, self.private_key, self.certificate = primary, primary.key, primary.certificates[0]

    def _save(self, records: list[_Record], new_file: bool = False) -> None:
        """Write `records` as the file's content; only once that succeeded are they this object's
        (a failed rewrite changes nothing, in the file or in memory)."""
        if not self._password:
            raise KeystoreError(f"keystore {self.path}: cannot rewrite a keystore that has no password")
        writer = _write_pkcs12 if self.store_type == "PKCS12" else _write_jks
        data = writer(records, self._password)
        try:
            mode = 0o600 if new_file else os.stat(self.path).st_mode & 0o777
            _atomic_write(self.path, data, mode)
        except OSError as exc:
            raise KeystoreError(f"keystore {self.path}: cannot write ({exc.strerror})") from exc
        self._records, self._version = records, _version(data)


def _read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        raise KeystoreError(f"keystore {path} does not exist") from None
    except OSError as exc:
        raise KeystoreError(f"keystore {path}: cannot read ({exc.strerror})") from None


def _decode_records(path: str, data: bytes, store_type: str, password: str) -> list[_Record]:
    """Decode a keystore file's content, turning every failure into a KeystoreError naming the file."""
    if jks.is_jks(data) != (store_type == "JKS"):
        actual = "JKS" if jks.is_jks(data) else "not JKS"
        raise KeystoreError(f"keystore {path} is {actual} but its configured type is {store_type}")
    try:
        return _read_jks(data, password) if store_type == "JKS" else _read_pkcs12(data, password)
    except PermissionError as exc:
        raise KeystoreError(f"keystore {path}: {exc}") from None
    except (ValueError, TypeError, IndexError) as exc:
        raise KeystoreError(f"keystore {path} is corrupt or unsupported: {exc}") from None

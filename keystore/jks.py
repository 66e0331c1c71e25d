"""Reader and writer for Sun's proprietary JKS keystore format, plus the small DER toolkit both codecs share.

The layout follows what the JDK's ``sun.security.provider.JavaKeyStore`` writes (version 2):

    u4 magic 0xFEEDFEED, u4 version, u4 entry count, then per entry
      u4 tag (1 = private key, 2 = trusted certificate), UTF alias, u8 creation time (ms since epoch)
      tag 1: u4 length + protected key, u4 chain length, per certificate: UTF type, u4 length + DER
      tag 2: UTF type, u4 length + DER
    20-byte trailer SHA1(password as UTF-16BE || b"Mighty Aphrodite" || everything before it)

"UTF" is ``java.io.DataOutput.writeUTF``: a u2 byte length followed by modified UTF-8.
Version 1 files omit the certificate type strings.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from dataclasses import dataclass, field

MAGIC = 0xFEEDFEED
TAG_PRIVATE_KEY = 1
TAG_TRUSTED_CERT = 2
_WHITENER = b"Mighty Aphrodite"
# sun.security.provider.KeyProtector's algorithm identifier.
KEY_PROTECTOR_OID = "1.3.6.1.4.1.42.2.17.1.1"
_SHA1_LEN = 20


# --- DER (ITU-T X.690), only the subset the keystore formats need -----------------------------

SEQUENCE, SET, INTEGER, OCTET_STRING, NULL, OID, BMP_STRING = 0x30, 0x31, 0x02, 0x04, 0x05, 0x06, 0x1E


def der(tag: int, content: bytes) -> bytes:
    """Encode one TLV with a definite length (X.690 8.1.3)."""
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def der_seq(*items: bytes) -> bytes:
    return der(SEQUENCE, b"".join(items))


def der_set(*items: bytes) -> bytes:
    # DER orders SET OF elements by their encodings (X.690 11.6).
    return der(SET, b"".join(sorted(items)))


def der_int(value: int) -> bytes:
    return der(INTEGER, value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True))


def der_oid(dotted: str) -> bytes:
    """Encode an OBJECT IDENTIFIER (X.690 8.19): first two arcs combined, base-128 arcs."""
    arcs = [int(a) for a in dotted.split(".")]
    out = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return der(OID, bytes(out))


def der_explicit(number: int, inner: bytes) -> bytes:
    """[number] EXPLICIT, context-specific constructed."""
    return der(0xA0 | number, inner)


def der_read(data: bytes, pos: int = 0) -> tuple[int, bytes, int]:
    """Read one TLV at ``pos``; return (tag, content, position after it). Raises ValueError."""
    if pos + 2 > len(data):
        raise ValueError("truncated DER")
    tag, first = data[pos], data[pos + 1]
    pos += 2
    if first & 0x80:
        count = first & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            raise ValueError("unsupported DER length")
        length = int.from_bytes(data[pos:pos + count], "big")
        pos += count
    else:
        length = first
    if pos + length > len(data):
        raise ValueError("truncated DER")
    return tag, data[pos:pos + length], pos + length


def der_children(content: bytes) -> list[tuple[int, bytes]]:
    """Split the content of a constructed value into its (tag, content) elements."""
    out, pos = [], 0
    while pos < len(content):
        tag, value, pos = der_read(content, pos)
        out.append((tag, value))
    return out


def der_oid_text(content: bytes) -> str:
    """Decode OBJECT IDENTIFIER content to dotted text."""
    arcs, value = [], 0
    for byte in content:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    if not arcs:
        raise ValueError("empty OID")
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in [first, arcs[0] - first * 40, *arcs[1:]])


# --- JKS entries ---------------------------------------------------------------------------------

@dataclass
class JksEntry:
    """One JKS entry; ``key_pkcs8`` is the unprotected PKCS#8 PrivateKeyInfo of a key entry."""

    alias: str
    timestamp_ms: int
    certificates: list[bytes] = field(default_factory=list)  # DER, leaf first
    key_pkcs8: bytes | None = None


def _password_bytes(password: str) -> bytes:
    # Java chars are UTF-16 code units; both the keystore digest and KeyProtector
    # feed each char as two big-endian bytes.
    return password.encode("utf-16-be")


def _store_digest(password: str, body: bytes) -> bytes:
    return hashlib.sha1(_password_bytes(password) + _WHITENER + body).digest()


def _keystream(password: bytes, salt: bytes, length: int) -> bytes:
    """KeyProtector's keystream: d0 = salt, d(i+1) = SHA1(password || d(i)), concatenated."""
    out, digest = bytearray(), salt
    while len(out) < length:
        digest = hashlib.sha1(password + digest).digest()
        out += digest
    return bytes(out[:length])


def protect_key(pkcs8: bytes, password: str) -> bytes:
    """Wrap a PKCS#8 key as KeyProtector does: EncryptedPrivateKeyInfo(salt || xored key || check)."""
    pw = _password_bytes(password)
    salt = os.urandom(_SHA1_LEN)
    body = bytes(a ^ b for a, b in zip(pkcs8, _keystream(pw, salt, len(pkcs8))))
    check = hashlib.sha1(pw + pkcs8).digest()
    algorithm = der_seq(der_oid(KEY_PROTECTOR_OID), der(NULL, b""))
    return der_seq(algorithm, der(OCTET_STRING, salt + body + check))


def recover_key(protected: bytes, password: str) -> bytes:
    """Undo :func:`protect_key`; ValueError when the check digest does not match the password."""
    tag, content, _ = der_read(protected)
    parts = der_children(content) if tag == SEQUENCE else []
    if len(parts) != 2 or parts[0][0] != SEQUENCE or parts[1][0] != OCTET_STRING:
        raise ValueError("malformed protected key")
    oid_tag, oid, _ = der_read(parts[0][1])
    if oid_tag != OID or der_oid_text(oid) != KEY_PROTECTOR_OID:
        raise ValueError("private key is not protected with the JKS key protector")
    blob = parts[1][1]
    if len(blob) <= 2 * _SHA1_LEN:
        raise ValueError("malformed protected key")
    salt, body, check = blob[:_SHA1_LEN], blob[_SHA1_LEN:-_SHA1_LEN], blob[-_SHA1_LEN:]
    pw = _password_bytes(password)
    plain = bytes(a ^ b for a, b in zip(body, _keystream(pw, salt, len(body))))
    if not hmac.compare_digest(hashlib.sha1(pw + plain).digest(), check):
        raise ValueError("the private key password differs from the keystore password")
    return plain


# --- modified UTF-8 (java.io.DataInput) ------------------------------------------------------------

def _write_utf(text: str) -> bytes:
    # Modified UTF-8: UTF-16 code units encoded individually (so supplementary characters become
    # two 3-byte sequences) and U+0000 as C0 80.
    units = text.encode("utf-16-be", "surrogatepass")
    chars = (units[i:i + 2].decode("utf-16-be", "surrogatepass") for i in range(0, len(units), 2))
    raw = b"".join(c.encode("utf-8", "surrogatepass") for c in chars).replace(b"\x00", b"\xc0\x80")
    if len(raw) > 0xFFFF:
        raise ValueError("alias too long")
    return struct.pack(">H", len(raw)) + raw


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ValueError("truncated JKS data")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def u4(self) -> int:
        return struct.unpack(">I", self.take(4))[0]

    def u8(self) -> int:
        return struct.unpack(">q", self.take(8))[0]

    def utf(self) -> str:
        raw = self.take(struct.unpack(">H", self.take(2))[0]).replace(b"\xc0\x80", b"\x00")
        text = raw.decode("utf-8", "surrogatepass")
        return text.encode("utf-16-be", "surrogatepass").decode("utf-16-be")

    def blob(self) -> bytes:
        return self.take(self.u4())


def _read_cert(reader: _Reader, version: int) -> bytes:
    if version == 2 and reader.utf() != "X.509":
        raise ValueError("only X.509 certificates are supported")
    return reader.blob()


def is_jks(data: bytes) -> bool:
    return len(data) >= 4 and struct.unpack(">I", data[:4])[0] == MAGIC


def read_jks(data: bytes, password: str) -> list[JksEntry]:
    """Parse a JKS file, verifying the integrity digest first. Raises ValueError with a safe message."""
    if not is_jks(data):
        raise ValueError("not a JKS keystore (bad magic number)")
    if len(data) < 12 + _SHA1_LEN:
        raise ValueError("truncated JKS data")
    body, trailer = data[:-_SHA1_LEN], data[-_SHA1_LEN:]
    if not hmac.compare_digest(_store_digest(password, body), trailer):
        raise PermissionError("keystore integrity check failed (wrong password or tampered file)")
    reader = _Reader(body)
    reader.take(4)
    version = reader.u4()
    if version not in (1, 2):
        raise ValueError(f"unsupported JKS version {version}")
    entries = []
    for _ in range(reader.u4()):
        tag, alias, stamp = reader.u4(), reader.utf(), reader.u8()
        if tag == TAG_PRIVATE_KEY:
            key = recover_key(reader.blob(), password)
            chain = [_read_cert(reader, version) for _ in range(reader.u4())]
            entries.append(JksEntry(alias, stamp, chain, key))
        elif tag == TAG_TRUSTED_CERT:
            entries.append(JksEntry(alias, stamp, [_read_cert(reader, version)]))
        else:
            raise ValueError(f"unsupported JKS entry type {tag} (secret keys need JCEKS)")
    if reader.pos != len(body):
        raise ValueError("trailing bytes after the last JKS entry")
    return entries


def write_jks(entries: list[JksEntry], password: str) -> bytes:
    """Serialise entries as a version 2 JKS file; aliases are lower-cased as JavaKeyStore does, but
    ASCII ones only: the server's lookups fold nothing else, and Unicode rules would make one
    client id's alias another's ("\u212aey", Kelvin sign, would be stored as "key")."""
    out = bytearray(struct.pack(">III", MAGIC, 2, len(entries)))
    for entry in entries:
        tag = TAG_PRIVATE_KEY if entry.key_pkcs8 is not None else TAG_TRUSTED_CERT
        alias = entry.alias.lower() if entry.alias.isascii() else entry.alias
        out += struct.pack(">I", tag) + _write_utf(alias) + struct.pack(">q", entry.timestamp_ms)
        certificates = entry.certificates
        if entry.key_pkcs8 is not None:
            protected = protect_key(entry.key_pkcs8, password)
            out += struct.pack(">I", len(protected)) + protected + struct.pack(">I", len(certificates))
        else:
            certificates = certificates[:1]  # a trusted entry holds exactly one certificate
        for cert in certificates:
            out += _write_utf("X.509") + struct.pack(">I", len(cert)) + cert
    return bytes(out) + _store_digest(password, bytes(out))

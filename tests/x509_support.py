"""X.509 certificates for tests: self-signed ones with a chosen validity period, and properly signed
ones holding a SubjectPublicKeyInfo that cryptography cannot load (built as DER, since no library
issues a certificate for a key it does not implement)."""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, padding
from cryptography.x509.oid import NameOID

from support import rsa_key

NOW = datetime.datetime.now(datetime.timezone.utc)
DAY = datetime.timedelta(days=1)


def certificate(key, not_before: datetime.datetime = NOW - DAY, not_after: datetime.datetime = NOW + 30 * DAY,
                cn: str = "client", signer=None) -> x509.Certificate:
    """A certificate for `key`'s public key, signed by `signer` (default: `key`, self-signed)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(not_before).not_valid_after(not_after)
            .sign(signer or key, hashes.SHA256()))


def der(tag: int, body: bytes) -> bytes:
    size = len(body)
    if size < 0x80:
        return bytes([tag, size]) + body
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(octets)]) + octets + body


def oid(dotted: str) -> bytes:
    first, second, *rest = (int(p) for p in dotted.split("."))
    body = bytes([40 * first + second])
    for arc in rest:
        chunk = [arc & 0x7F]
        while arc > 0x7F:
            arc >>= 7
            chunk.append(0x80 | (arc & 0x7F))
        body += bytes(reversed(chunk))
    return der(0x06, body)


def spki(algorithm: bytes, key: bytes) -> bytes:
    return der(0x30, der(0x30, algorithm) + der(0x03, b"\0" + key))


# GOST R 34.10-2012 (RFC 9215): a key type cryptography does not implement (UnsupportedAlgorithm).
GOST_SPKI = spki(oid("1.2.643.7.1.1.1.1") + der(0x30, oid("1.2.643.7.1.2.1.1.1") + oid("1.2.643.7.1.1.2.2")),
                 der(0x04, bytes(range(1, 65))))
# An EC P-256 point that is not on the curve (cryptography: ValueError).
OFF_CURVE_SPKI = spki(oid("1.2.840.10045.2.1") + oid("1.2.840.10045.3.1.7"), b"\x04" + b"\x01" * 64)
_SHA256_WITH_RSA = der(0x30, oid("1.2.840.113549.1.1.11") + b"\x05\x00")


def certificate_with_spki(key_info: bytes, cn: str = "client") -> bytes:
    """A certificate (DER) holding exactly this SubjectPublicKeyInfo, properly signed by an RSA key."""
    signer = rsa_key()
    template = certificate(signer, cn=cn)
    old = signer.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    tbs = template.tbs_certificate_bytes
    header = 2 + (tbs[1] & 0x7F if tbs[1] & 0x80 else 0)
    assert tbs.count(old) == 1
    tbs = der(0x30, tbs[header:].replace(old, key_info))
    signature = signer.sign(tbs, padding.PKCS1v15(), hashes.SHA256())
    return der(0x30, tbs + _SHA256_WITH_RSA + der(0x03, b"\0" + signature))


def dsa_certificate(cn: str = "client") -> bytes:
    """A DSA certificate (DER): a key cryptography loads, of a type no JWS algorithm uses."""
    cert = certificate(dsa.generate_private_key(2048), cn=cn, signer=rsa_key())
    return cert.public_bytes(serialization.Encoding.DER)

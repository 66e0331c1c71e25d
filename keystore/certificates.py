"""X.509 certificates as a client's keys: the verification key a certificate holds, its validity
period, and the certificates a registered JWK Set carries in ``x5c`` (RFC 7517 §4.7) — the form in
which a certificate uploaded for a client (console, registration API) is stored. And a TLS client
certificate as RFC 8705 reads it: its thumbprint, subject DN and subject alternative names."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm

from keystore.jwk import InvalidKey, PublicKey, parse_jwk

__all__ = ["EXPIRED", "NOT_YET_VALID", "SAN_KINDS", "Validity", "certificate_key", "normalised_dn", "normalised_san",
           "san_entries", "self_issued", "subject_dn", "x5c_problem", "x5c_validity", "x5t_s256"]

EXPIRED = "expired"
NOT_YET_VALID = "not yet valid"


@dataclass(frozen=True)
class Validity:
    """A certificate's validity period (RFC 5280 §4.1.2.5), in POSIX seconds."""

    not_before: float
    not_after: float

    @classmethod
    def of(cls, cert: x509.Certificate) -> "Validity":
        return cls(cert.not_valid_before_utc.timestamp(), cert.not_valid_after_utc.timestamp())

    def lapse(self, now: float, skew: int) -> str | None:
        """EXPIRED once notAfter has passed, NOT_YET_VALID while notBefore is more than `skew`
        seconds ahead (a certificate just issued where the clock runs fast), else None."""
        if self.not_after < now:
            return EXPIRED
        if self.not_before > now + skew:
            return NOT_YET_VALID
        return None


def certificate_key(cert: x509.Certificate) -> PublicKey:
    """The verification key a certificate holds. InvalidKey when it is refused as a JWK would be
    (a DSA key, RSA under 2048 bits, another curve) and when cryptography cannot load it at all:
    UnsupportedAlgorithm for an algorithm or curve it does not implement (GOST, SM2), ValueError
    for a malformed key (an EC point off its curve)."""
    try:
        key = cert.public_key()
    except UnsupportedAlgorithm:
        raise InvalidKey("the key algorithm or curve is not supported") from None
    except ValueError:
        raise InvalidKey("the public key is malformed") from None
    return PublicKey.from_cryptography(key)


def _leaf(chain: list) -> x509.Certificate:
    """The first x5c certificate, the one holding the key (RFC 7517 §4.7: base64, not base64url,
    DER). ValueError when it cannot be read (binascii.Error is one)."""
    return x509.load_der_x509_certificate(base64.b64decode(chain[0], validate=True))


def _chain(member: object) -> list | None:
    chain = member.get("x5c") if isinstance(member, dict) else None
    return chain if isinstance(chain, list) and chain and isinstance(chain[0], str) else None


def x5c_problem(jwks: str) -> str | None:
    """Why a JWK Set's x5c members cannot be trusted, or None: each first certificate must be
    readable and hold the very key its JWK states (RFC 7517 §4.7 "MUST"), otherwise its validity
    would be checked against another key's certificate."""
    for index, member in enumerate(json.loads(jwks).get("keys") or ()):
        if not isinstance(member, dict) or "x5c" not in member:
            continue
        chain = _chain(member)
        if chain is None:
            return f"key {index}: x5c must be a non-empty array of base64 certificates"
        try:
            cert = _leaf(chain)
            stated = parse_jwk(member)  # None: a key type this server ignores
            if stated is not None and certificate_key(cert).thumbprint != stated.thumbprint:
                return f"key {index}: the x5c certificate holds another key than the JWK"
        except ValueError:  # InvalidKey and binascii.Error included
            return f"key {index}: the x5c certificate cannot be read"
    return None


def x5c_validity(jwks: str) -> dict[str, Validity]:
    """The validity of the certificate each key of a registered JWK Set came with, by the key's
    RFC 7638 thumbprint: the first x5c certificate is the one holding the key (RFC 7517 §4.7).
    A key without x5c, or whose certificate cannot be read, has no entry."""
    try:
        members = json.loads(jwks).get("keys")
    except (ValueError, AttributeError):
        return {}
    out: dict[str, Validity] = {}
    for member in members if isinstance(members, list) else ():
        chain = _chain(member)
        if chain is None:
            continue
        try:
            cert = _leaf(chain)
            out[certificate_key(cert).thumbprint] = Validity.of(cert)
        except ValueError:  # InvalidKey included
            continue
    return out


# --- TLS client certificates (RFC 8705) ----------------------------------------------------------

def x5t_s256(der: bytes) -> str:
    """RFC 8705 §3.1: the base64url-encoded SHA-256 of the certificate's DER encoding, unpadded."""
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode("ascii")


def normalised_dn(text: str) -> str:
    """A distinguished name in the one spelling registrations and certificates are compared in:
    RFC 4514 as cryptography writes it (the attribute names it knows, its escaping, RDNs in
    RFC 4514 order). ValueError when `text` is not an RFC 4514 string."""
    return x509.Name.from_rfc4514_string(text).rfc4514_string()


def subject_dn(cert: x509.Certificate) -> str:
    """The certificate's subject in normalised_dn's spelling. ValueError when it cannot be written."""
    return normalised_dn(cert.subject.rfc4514_string())


def read_certificates(path: str) -> list[x509.Certificate]:
    """The certificates of a PEM file (a CA bundle). OSError when it cannot be read, ValueError
    when it holds no certificate."""
    with open(path, "rb") as handle:
        certificates = x509.load_pem_x509_certificates(handle.read())
    return certificates


def issued_by_one_of(cert: x509.Certificate, authorities: list[x509.Certificate]) -> bool:
    """RFC 5280 §6.1 for a chain of one: one of `authorities` (a CA: basicConstraints cA true)
    named the certificate's issuer and signed it."""
    for authority in authorities:
        if authority.subject != cert.issuer or not _is_ca(authority):
            continue
        try:
            cert.verify_directly_issued_by(authority)
            return True
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
            continue
    return False


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except (x509.ExtensionNotFound, ValueError, x509.DuplicateExtension):
        return False


def self_issued(cert: x509.Certificate) -> bool:
    """RFC 5280 §3.2: issuer and subject are the same name (a self-signed certificate is one)."""
    return cert.issuer == cert.subject


# RFC 8705 §2.1.2: the subject alternative name kinds a client may register one value of, by the
# prefix tls_client_auth_san carries ("dns:…", "uri:…", "ip:…", "email:…").
SAN_KINDS = {"dns": x509.DNSName, "uri": x509.UniformResourceIdentifier, "ip": x509.IPAddress,
             "email": x509.RFC822Name}


def normalised_san(kind: str, value: str) -> str:
    """A SAN value in the spelling compared: a DNS name and an e-mail address's domain in lower
    case (they are case-insensitive), an IP address as ipaddress writes it ("::1", never "0::1"),
    a URI exactly. ValueError for an unknown kind or an IP address that is not one."""
    if kind == "dns":
        return value.lower()
    if kind == "ip":
        return str(ipaddress.ip_address(value))
    if kind == "email":
        local, at, domain = value.rpartition("@")
        return f"{local}{at}{domain.lower()}" if at else value
    if kind == "uri":
        return value
    raise ValueError(f"unknown subject alternative name kind {kind!r}")


def san_entries(cert: x509.Certificate) -> frozenset[str]:
    """The certificate's subject alternative names of SAN_KINDS as "kind:value", normalised
    (normalised_san); an IP network (only in name constraints) is no address and is left out.
    ValueError when the extension is malformed."""
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return frozenset()
    entries = set()
    for kind, name_type in SAN_KINDS.items():
        for value in names.get_values_for_type(name_type):
            if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)) or kind != "ip":
                entries.add(f"{kind}:{normalised_san(kind, str(value))}")
    return frozenset(entries)

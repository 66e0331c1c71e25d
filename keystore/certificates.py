"""X.509 certificates as a client's keys: the verification key a certificate holds, its validity
period, and the certificates a registered JWK Set carries in ``x5c`` (RFC 7517 §4.7) — the form in
which a certificate uploaded for a client (console, registration API) is stored."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

from keystore.jwk import InvalidKey, PublicKey, parse_jwk

__all__ = ["EXPIRED", "NOT_YET_VALID", "Validity", "certificate_key", "x5c_problem", "x5c_validity"]

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

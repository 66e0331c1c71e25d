"""Strict JWS Compact Serialization parsing (RFC 7515 §7.1) and single-algorithm verification.

The assertion is parsed exactly once, strictly, into a CompactJWS; its signature is then checked
by a Verifier bound to one key and one algorithm; claims are checked afterwards by the caller on the
same parsed payload, so nothing is ever decoded twice in two different ways.

Verification backends: RS256/384/512 and ES256/384/512 go through python-jose's cryptography
backend key classes; PS256/384/512 (RFC 7518 §3.5) and EdDSA / Ed25519 (RFC 8037 §3.1, RFC 9864
§2.2), which python-jose 3.5 lacks, use `cryptography` directly.  Every Verifier has the same
interface and verify() only ever returns a bool.

ECDSA malleability: for a valid ECDSA signature (r, s) the pair (r, n - s) is valid too
(RFC 7518 §3.4 does not require low-s).  Most signers, OpenSSL included, do not normalise s, so
refusing s > n/2 would refuse about half of all legitimate ES* assertions.  Both forms are
therefore accepted, exactly as python-jose/OpenSSL decide.  The consequence -- a second, different
token text for the same claims -- is harmless because replay protection is keyed on
(client_id, jti) from the verified payload, never on the token text.  Encoding malleability is
refused here: the signature must be exactly 2 x coordinate octets (RFC 7518 §3.4), canonical
base64url, with 0 < r, s < n; DER-encoded signatures are refused.  Ed25519 signatures are not
malleable (OpenSSL enforces S < L, RFC 8032 §5.1.7).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Callable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from jose.backends.cryptography_backend import CryptographyECKey, CryptographyRSAKey

from .jwk import MAX_JSON_DEPTH, SIGNING_ALGORITHMS, PublicKey, _b64url_decode, _b64url_encode, _loads_strict, _StrictJSONError

__all__ = [
    "MalformedJWS",
    "UnsuitableKey",
    "CompactJWS",
    "Verifier",
    "parse_compact_jws",
    "verifier",
    "b64url_decode",
    "b64url_encode",
]

DEFAULT_MAX_LENGTH = 8192


class MalformedJWS(ValueError):
    """The token is not an acceptable compact JWS.  ``str(e)`` names the failed rule; it is a
    fixed string in the RFC 6749 §5.2 error_description character set and never echoes input."""


class UnsuitableKey(ValueError):
    """The key may not verify the requested algorithm (or the algorithm is not accepted at all)."""


def b64url_encode(data: bytes) -> str:
    """RFC 7515 §2 base64url without padding."""
    return _b64url_encode(data)


def b64url_decode(segment: str) -> bytes:
    """Decode canonical, unpadded base64url (RFC 7515 §2, RFC 4648 §5); raises MalformedJWS."""
    try:
        return _b64url_decode(segment)
    except ValueError:
        raise MalformedJWS("segment is not canonical base64url") from None


@dataclass(frozen=True)
class CompactJWS:
    header: dict
    payload: dict
    signing_input: bytes
    signature: bytes


# Header parameters that would change how the JWS must be processed; none is implemented.
_REFUSED_HEADER_PARAMETERS = (
    # RFC 7515 §4.1.11: we understand no extension, so any "crit" must be rejected.
    ("crit", "crit header parameter is not supported"),
    # RFC 7797 §3: unencoded payload option.
    ("b64", "b64 header parameter is not supported"),
    # RFC 7516 §4.1.3: compression is a JWE feature, never valid for a JWS.
    ("zip", "zip header parameter is not allowed in a JWS"),
    # RFC 7516 §4.1.2: "enc" marks a JWE.
    ("enc", "enc header parameter is not allowed in a JWS"),
)

_JSON_REASONS = {
    "duplicate member name": "duplicate member name",
    "non-finite number": "NaN, Infinity or an overflowing number",
    "nesting too deep": "nesting too deep",
    "unpaired surrogate": "unpaired surrogate in a string",
    "not UTF-8": "not UTF-8",
}


def _decode_json_object(segment: str, part: str) -> dict:
    try:
        raw = _b64url_decode(segment)
    except ValueError:
        raise MalformedJWS(f"{part} is not canonical base64url") from None
    try:
        value = _loads_strict(raw, MAX_JSON_DEPTH)
    except _StrictJSONError as exc:
        reason = _JSON_REASONS.get(exc.reason, "invalid JSON")
        raise MalformedJWS(f"{part} is not strict JSON: {reason}") from None
    if not isinstance(value, dict):
        raise MalformedJWS(f"{part} is not a JSON object")
    return value


def parse_compact_jws(token: str, max_length: int = DEFAULT_MAX_LENGTH) -> CompactJWS:
    """Parse a JWS in Compact Serialization (RFC 7515 §7.1) strictly; raises MalformedJWS.

    Header parameters jwk, jku, x5u, x5c and x5t are left in ``header`` but never interpreted:
    keys come only from the client's registration.
    """
    if not isinstance(token, str):
        raise MalformedJWS("token is not a string")
    if len(token) > max_length:
        raise MalformedJWS("token is too long")
    if not token:
        raise MalformedJWS("token is empty")
    if not token.isascii():
        raise MalformedJWS("token contains non-ASCII characters")
    if token.lstrip().startswith("{"):
        # RFC 7515 §7.2: JSON Serialization is not accepted here.
        raise MalformedJWS("JWS JSON serialization is not accepted")
    segments = token.split(".")
    if len(segments) == 5:
        # RFC 7516 §7.1: five segments are a JWE, never a signed assertion.
        raise MalformedJWS("token is a JWE, not a JWS")
    if len(segments) != 3:
        raise MalformedJWS("token does not have exactly three segments")
    header_b64, payload_b64, signature_b64 = segments

    header = _decode_json_object(header_b64, "header")
    # RFC 7515 §4.1.1: "alg" is required and is a string.
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise MalformedJWS("header alg is missing or not a string")
    for name, message in _REFUSED_HEADER_PARAMETERS:
        if name in header:
            raise MalformedJWS(message)
    # RFC 7515 §4.1.4, §4.1.9, §4.1.10: these are strings when present.
    for name in ("kid", "typ", "cty"):
        if name in header and not isinstance(header[name], str):
            raise MalformedJWS("header kid, typ or cty is not a string")

    payload = _decode_json_object(payload_b64, "payload")

    if not signature_b64:
        raise MalformedJWS("signature is empty")
    try:
        signature = _b64url_decode(signature_b64)
    except ValueError:
        raise MalformedJWS("signature is not canonical base64url") from None

    # RFC 7515 §5.2 step 8: the signing input is the received ASCII text, not a re-encoding.
    signing_input = token[: len(header_b64) + 1 + len(payload_b64)].encode("ascii")
    return CompactJWS(header=header, payload=payload, signing_input=signing_input, signature=signature)


# ---------------------------------------------------------------------------------------------
# Verification
# ---------------------------------------------------------------------------------------------

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}

# Group orders n (SEC 2 §2.4.2, §2.5.1, §2.6.1) for the 0 < r, s < n check.
_EC_ORDERS = {
    "secp256r1": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    "secp384r1": int(
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973", 16),
    "secp521r1": int(
        "01FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"
        "FA51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409", 16),
}


class Verifier:
    """Verifies signatures for exactly one (key, alg) pair.  verify() never raises."""

    __slots__ = ("alg", "key", "_check")

    def __init__(self, alg: str, key: PublicKey, check: Callable[[bytes, bytes], bool]) -> None:
        self.alg = alg
        self.key = key
        self._check = check

    def verify(self, signing_input: bytes, signature: bytes) -> bool:
        if not isinstance(signing_input, bytes) or not isinstance(signature, bytes) or not signature:
            return False
        try:
            return self._check(signing_input, signature) is True
        except Exception:
            return False

    def __repr__(self) -> str:
        return f"Verifier(alg={self.alg!r}, thumbprint={self.key.thumbprint!r})"


def _rsa_octets(key: PublicKey) -> int:
    return (key.key.key_size + 7) // 8


def _rs_check(key: PublicKey, alg: str) -> Callable[[bytes, bytes], bool]:
    # RFC 7518 §3.3 RSASSA-PKCS1-v1_5 through python-jose, bound to this one algorithm.
    jose_key = CryptographyRSAKey(key.key, alg)
    k = _rsa_octets(key)

    def check(message: bytes, signature: bytes) -> bool:
        # RFC 8017 §8.2.2 step 1: the signature is exactly k octets (no stripped leading zeros).
        if len(signature) != k:
            return False
        return bool(jose_key.verify(message, signature))

    return check


def _ps_check(key: PublicKey, alg: str) -> Callable[[bytes, bytes], bool]:
    # RFC 7518 §3.5: RSASSA-PSS, MGF1 with the same hash, salt length = hash output length.
    hash_type = _HASHES[alg[2:]]
    scheme = padding.PSS(mgf=padding.MGF1(hash_type()), salt_length=hash_type.digest_size)
    public = key.key
    k = _rsa_octets(key)

    def check(message: bytes, signature: bytes) -> bool:
        if len(signature) != k:
            return False
        try:
            public.verify(signature, message, scheme, hash_type())
        except InvalidSignature:
            return False
        return True

    return check


def _es_check(key: PublicKey, alg: str) -> Callable[[bytes, bytes], bool]:
    # RFC 7518 §3.4 ECDSA through python-jose, bound to this one algorithm (and, by fits(), curve).
    jose_key = CryptographyECKey(key.key, alg)
    size = math.ceil(key.key.curve.key_size / 8)
    order = _EC_ORDERS[key.key.curve.name]

    def check(message: bytes, signature: bytes) -> bool:
        # RFC 7518 §3.4: R || S, each exactly the coordinate size; anything else (DER included) fails.
        if len(signature) != 2 * size:
            return False
        r = int.from_bytes(signature[:size], "big")
        s = int.from_bytes(signature[size:], "big")
        if not (0 < r < order and 0 < s < order):
            return False
        return bool(jose_key.verify(message, signature))

    return check


def _eddsa_check(key: PublicKey, alg: str) -> Callable[[bytes, bytes], bool]:
    # RFC 8037 §3.1, RFC 9864 §2.2: pure Ed25519 (RFC 8032 §5.1.7), 64-octet signature.
    public = key.key

    def check(message: bytes, signature: bytes) -> bool:
        if len(signature) != 64:
            return False
        try:
            public.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    return check


_BUILDERS: dict[str, Callable[[PublicKey, str], Callable[[bytes, bytes], bool]]] = {
    "RS256": _rs_check, "RS384": _rs_check, "RS512": _rs_check,
    "PS256": _ps_check, "PS384": _ps_check, "PS512": _ps_check,
    "ES256": _es_check, "ES384": _es_check, "ES512": _es_check,
    "EdDSA": _eddsa_check, "Ed25519": _eddsa_check,
}
assert set(_BUILDERS) == set(SIGNING_ALGORITHMS)


@functools.lru_cache(maxsize=256)
def _cached_verifier(key: PublicKey, alg: str) -> Verifier:
    # PublicKey hashes and compares by (thumbprint, kid, use, alg, key_ops): equal keys share a Verifier.
    return Verifier(alg, key, _BUILDERS[alg](key, alg))


def verifier(key: PublicKey, alg: Any) -> Verifier:
    """A (cached) Verifier for ``alg`` with ``key``; raises UnsuitableKey when the pair is not
    acceptable: "none", HS*, anything outside SIGNING_ALGORITHMS, or a key that does not fit."""
    if not isinstance(key, PublicKey):
        raise UnsuitableKey("not a public key")
    # RFC 7518 §3.6 "none" and §3.2 HS* are never accepted; RFC 8725 §3.1.
    if not isinstance(alg, str) or alg not in SIGNING_ALGORITHMS:
        raise UnsuitableKey("algorithm is not accepted")
    if not key.fits(alg):
        raise UnsuitableKey("key does not fit the algorithm")
    return _cached_verifier(key, alg)

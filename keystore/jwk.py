"""Strict parsing of client public keys: JWK (RFC 7517), JWK parameters (RFC 7518 §6, RFC 8037 §2)
and JWK thumbprints (RFC 7638).

Only public signature-verification keys are ever accepted: RSA (>= 2048 bits), EC on P-256, P-384,
P-521 and OKP Ed25519.  Anything carrying private or symmetric key material is refused outright,
because a client that published it has leaked its secret.

Error messages are fixed strings in the RFC 6749 §5.2 error_description character set; they never
echo any part of the input.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Union

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa, x448, x25519
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

__all__ = [
    "InvalidKey",
    "SIGNING_ALGORITHMS",
    "PublicKey",
    "parse_jwk",
    "parse_jwks",
]


class InvalidKey(ValueError):
    """A key or key set was refused.  ``str(e)`` is a fixed, safe description."""


# JWS "alg" values this server verifies (RFC 7518 §3.1, RFC 8037 §3.1, RFC 9864 §2.2).
SIGNING_ALGORITHMS: tuple[str, ...] = (
    "RS256", "RS384", "RS512",
    "PS256", "PS384", "PS512",
    "ES256", "ES384", "ES512",
    "EdDSA", "Ed25519",
)

_RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
# RFC 7518 §3.4: each ESxxx value is bound to exactly one curve.
_EC_ALGORITHM_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "ES256": ec.SECP256R1,
    "ES384": ec.SECP384R1,
    "ES512": ec.SECP521R1,
}
# RFC 8037 §3.1 "EdDSA" (with an Ed25519 key) and RFC 9864 §2.2 "Ed25519" name the same operation here.
_EDDSA_ALGORITHMS = frozenset({"EdDSA", "Ed25519"})

# RFC 7518 §3.3 / §3.5 require >= 2048 bits; the upper bounds match OpenSSL's own public-key limits
# (OPENSSL_RSA_MAX_MODULUS_BITS, RSA_MAX_PUBEXP_BITS) and keep verification cheap.
RSA_MIN_BITS = 2048
RSA_MAX_BITS = 16384
RSA_MAX_EXPONENT_BITS = 64

# Members that only a private (or symmetric) JWK carries: RFC 7518 §6.2.2, §6.3.2, §6.4.1, RFC 8037 §2.
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")

# RFC 7518 §6.2.1.1 curve names -> (curve class, coordinate length in octets, field prime).
_CURVES: dict[str, tuple[type[ec.EllipticCurve], int, int]] = {
    "P-256": (ec.SECP256R1, 32, 2**256 - 2**224 + 2**192 + 2**96 - 1),
    "P-384": (ec.SECP384R1, 48, 2**384 - 2**128 - 2**96 + 2**32 - 1),
    "P-521": (ec.SECP521R1, 66, 2**521 - 1),
}
_CURVE_NAMES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}

MAX_JWKS_KEYS = 100
MAX_JWKS_BYTES = 512 * 1024
MAX_JSON_DEPTH = 16

_PublicKeyTypes = Union[RSAPublicKey, EllipticCurvePublicKey, Ed25519PublicKey]
_PRIVATE_KEY_TYPES = (
    rsa.RSAPrivateKey,
    ec.EllipticCurvePrivateKey,
    ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
    x25519.X25519PrivateKey,
    x448.X448PrivateKey,
)


# ---------------------------------------------------------------------------------------------
# Shared strict primitives (also used by keystore.jws)
# ---------------------------------------------------------------------------------------------

_B64URL_ALPHABET = re.compile(r"[A-Za-z0-9_-]*")


def _b64url_encode(data: bytes) -> str:
    # RFC 7515 §2 "Base64url Encoding": RFC 4648 §5 alphabet, trailing "=" omitted.
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: Any) -> bytes:
    """Decode canonical unpadded base64url; ValueError otherwise.

    RFC 7515 §2 / RFC 4648 §5: only A-Z a-z 0-9 - _, no padding, no whitespace; a length of 1 mod 4
    cannot occur; RFC 4648 §3.5: the unused trailing bits must be zero, i.e. re-encoding the decoded
    octets must reproduce the text exactly.
    """
    if not isinstance(text, str) or not text.isascii() or _B64URL_ALPHABET.fullmatch(text) is None:
        raise ValueError("not base64url")
    if len(text) % 4 == 1:
        raise ValueError("impossible base64url length")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64url_encode(data) != text:
        raise ValueError("non-canonical base64url")
    return data


class _StrictJSONError(ValueError):
    """Strict JSON refusal; ``reason`` is a fixed, safe phrase."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _pairs_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # RFC 7515 §5.2 step 4 / RFC 7159 §4: duplicate member names must be rejected, not "last wins".
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _StrictJSONError("duplicate member name")
    return result


def _refuse_constant(_name: str) -> Any:
    # RFC 8259 §6: NaN and Infinity are not JSON.
    raise _StrictJSONError("non-finite number")


def _finite_float(text: str) -> float:
    # "1e400" would silently become inf; RFC 8259 §6 numbers must be representable.
    value = float(text)
    if not math.isfinite(value):
        raise _StrictJSONError("non-finite number")
    return value


_SURROGATE = re.compile("[\ud800-\udfff]")
# One decoder for every call: json.loads with these options builds a new one each time.
_STRICT_DECODER = json.JSONDecoder(object_pairs_hook=_pairs_without_duplicates, parse_constant=_refuse_constant,
                                   parse_float=_finite_float)


def _check_tree(value: Any, max_depth: int) -> None:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            if depth > max_depth:
                raise _StrictJSONError("nesting too deep")
            for name, member in item.items():
                if _SURROGATE.search(name):
                    raise _StrictJSONError("unpaired surrogate")
                stack.append((member, depth + 1))
        elif isinstance(item, list):
            if depth > max_depth:
                raise _StrictJSONError("nesting too deep")
            stack.extend((member, depth + 1) for member in item)
        elif isinstance(item, str):
            # RFC 8259 §8.2: an escaped lone surrogate is not a Unicode string.
            if _SURROGATE.search(item):
                raise _StrictJSONError("unpaired surrogate")


def _loads_strict(data: str | bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """json.loads, refusing duplicate names, NaN/Infinity/overflowing numbers, deep nesting,
    invalid UTF-8 and unpaired surrogates.  Raises _StrictJSONError."""
    if isinstance(data, (bytes, bytearray)):
        try:
            # RFC 8259 §8.1: UTF-8 only.
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise _StrictJSONError("not UTF-8") from None
    elif isinstance(data, str):
        text = data
    else:
        raise _StrictJSONError("not JSON text")
    try:
        if text.startswith("\ufeff"):  # as json.loads: a byte order mark is not JSON text
            raise ValueError("byte order mark")
        value = _STRICT_DECODER.decode(text)
    except _StrictJSONError:
        raise
    except RecursionError:
        raise _StrictJSONError("nesting too deep") from None
    except (ValueError, TypeError):
        raise _StrictJSONError("invalid JSON") from None
    # The walk is needed only where the text could hold a surrogate (escaped, or raw in a str)
    # or nest deeper than max_depth, which takes more brackets than that; most texts cannot.
    if "\\u" in text or text.count("{") + text.count("[") > max_depth or _SURROGATE.search(text):
        _check_tree(value, max_depth)
    return value


# ---------------------------------------------------------------------------------------------
# Ed25519 point validation (RFC 8032 §5.1.3) -- refuse undecodable, non-canonical and small-order
# public keys, for which signatures can be produced without any private key.
# ---------------------------------------------------------------------------------------------

_ED_P = 2**255 - 19
_ED_D = (-121665 * pow(121666, _ED_P - 2, _ED_P)) % _ED_P
_ED_SQRT_M1 = pow(2, (_ED_P - 1) // 4, _ED_P)


def _ed25519_point(encoded: bytes) -> tuple[int, int] | None:
    # RFC 8032 §5.1.3 decoding, with the canonical-encoding checks.
    if len(encoded) != 32:
        return None
    y = int.from_bytes(encoded, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    if y >= _ED_P:
        return None
    u = (y * y - 1) % _ED_P
    v = (_ED_D * y * y + 1) % _ED_P
    x = (u * pow(v, 3, _ED_P) * pow(u * pow(v, 7, _ED_P), (_ED_P - 5) // 8, _ED_P)) % _ED_P
    vxx = (v * x * x) % _ED_P
    if vxx == u:
        pass
    elif vxx == (-u) % _ED_P:
        x = (x * _ED_SQRT_M1) % _ED_P
    else:
        return None
    if x == 0 and sign == 1:
        return None
    if (x & 1) != sign:
        x = _ED_P - x
    return x, y


def _ed25519_acceptable(encoded: bytes) -> bool:
    point = _ed25519_point(encoded)
    if point is None:
        return False
    # Three doublings in projective coordinates (twisted Edwards, a = -1; "dbl-2008-bbjlp").
    x, y = point
    z = 1
    for _ in range(3):
        b = (x + y) * (x + y) % _ED_P
        c = x * x % _ED_P
        d = y * y % _ED_P
        e = -c % _ED_P
        f = (e + d) % _ED_P
        j = (f - 2 * (z * z)) % _ED_P
        x, y, z = (b - c - d) * j % _ED_P, f * (e - d) % _ED_P, f * j % _ED_P
    # [8]A is the neutral element (0 : 1 : 1) exactly when A lies in the small (torsion) subgroup.
    return not (x == 0 and y == z)


# ---------------------------------------------------------------------------------------------
# PublicKey
# ---------------------------------------------------------------------------------------------

def _uint_b64(value: int, length: int | None = None) -> str:
    size = length if length is not None else max(1, (value.bit_length() + 7) // 8)
    return _b64url_encode(value.to_bytes(size, "big"))


def _validate_public_key(key: Any) -> None:
    if isinstance(key, _PRIVATE_KEY_TYPES) or hasattr(key, "private_bytes"):
        raise InvalidKey("a private key was supplied where a public key is required")
    if isinstance(key, RSAPublicKey):
        numbers = key.public_numbers()
        if numbers.n.bit_length() < RSA_MIN_BITS:
            raise InvalidKey("RSA modulus is shorter than 2048 bits")
        if numbers.n.bit_length() > RSA_MAX_BITS:
            raise InvalidKey("RSA modulus is longer than 16384 bits")
        if numbers.e.bit_length() > RSA_MAX_EXPONENT_BITS:
            raise InvalidKey("RSA public exponent is too large")
        return
    if isinstance(key, EllipticCurvePublicKey):
        if key.curve.name not in _CURVE_NAMES:
            raise InvalidKey("unsupported elliptic curve")
        return
    if isinstance(key, Ed25519PublicKey):
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        if not _ed25519_acceptable(raw):
            raise InvalidKey("Ed25519 public key is not a valid point of large order")
        return
    raise InvalidKey("unsupported key type")


def _required_members(key: _PublicKeyTypes) -> dict[str, str]:
    # RFC 7638 §3.2 (RSA, EC) and RFC 8037 §2 (OKP): the required public members only.
    if isinstance(key, RSAPublicKey):
        numbers = key.public_numbers()
        # RFC 7518 §6.3.1.1/§6.3.1.2: minimum number of octets.
        return {"e": _uint_b64(numbers.e), "kty": "RSA", "n": _uint_b64(numbers.n)}
    if isinstance(key, EllipticCurvePublicKey):
        crv = _CURVE_NAMES[key.curve.name]
        size = _CURVES[crv][1]
        numbers = key.public_numbers()
        # RFC 7518 §6.2.1.2/§6.2.1.3: full coordinate length.
        return {"crv": crv, "kty": "EC", "x": _uint_b64(numbers.x, size), "y": _uint_b64(numbers.y, size)}
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"crv": "Ed25519", "kty": "OKP", "x": _b64url_encode(raw)}


def _thumbprint(key: _PublicKeyTypes) -> str:
    # RFC 7638 §3: lexicographic member order, no whitespace, UTF-8, SHA-256, base64url.
    canonical = json.dumps(_required_members(key), sort_keys=True, separators=(",", ":"))
    return _b64url_encode(hashlib.sha256(canonical.encode("utf-8")).digest())


@dataclass(frozen=True)
class PublicKey:
    """A validated public verification key plus its JWK metadata.

    Equality and hashing use the RFC 7638 thumbprint and the metadata (the thumbprint identifies
    the key material), so instances are usable as cache keys.  ``thumbprint`` is computed on
    construction; if one is passed it must match.
    """

    key: _PublicKeyTypes = field(compare=False, repr=False)
    kid: str | None = None
    use: str | None = None
    alg: str | None = None
    key_ops: tuple[str, ...] | None = None
    thumbprint: str = field(default="", kw_only=True)

    def __post_init__(self) -> None:
        _validate_public_key(self.key)
        for name in ("kid", "use", "alg"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise InvalidKey("JWK metadata member is not a string")
        if self.key_ops is not None:
            if not isinstance(self.key_ops, tuple) or not all(isinstance(op, str) for op in self.key_ops):
                raise InvalidKey("JWK key_ops is not a list of strings")
        computed = _thumbprint(self.key)
        if self.thumbprint and self.thumbprint != computed:
            raise InvalidKey("thumbprint does not match the key")
        object.__setattr__(self, "thumbprint", computed)

    @classmethod
    def from_cryptography(cls, key: Any, kid: str | None = None, use: str | None = None,
                          alg: str | None = None) -> "PublicKey":
        """Wrap a `cryptography` public key object; private keys, RSA < 2048 bits and unsupported
        curves or key types raise InvalidKey."""
        return cls(key, kid, use, alg)

    def fits(self, alg: str) -> bool:
        """True only if this key may verify a JWS whose header says ``alg``."""
        if not isinstance(alg, str) or alg not in SIGNING_ALGORITHMS:
            return False
        # RFC 7517 §4.2: a key published for "enc" (or anything else) is not a signature key.
        if self.use is not None and self.use != "sig":
            return False
        # RFC 7517 §4.3: key_ops, when present, must allow "verify".
        if self.key_ops is not None and "verify" not in self.key_ops:
            return False
        # RFC 7517 §4.4: a JWK "alg" restricts the key to that algorithm.
        if self.alg is not None:
            if alg in _EDDSA_ALGORITHMS:
                if self.alg not in _EDDSA_ALGORITHMS:
                    return False
            elif self.alg != alg:
                return False
        key = self.key
        if alg in _RSA_ALGORITHMS:
            # RFC 7518 §3.3, §3.5.
            return isinstance(key, RSAPublicKey) and key.key_size >= RSA_MIN_BITS
        if alg in _EC_ALGORITHM_CURVES:
            # RFC 7518 §3.4: ES256 <-> P-256, ES384 <-> P-384, ES512 <-> P-521.
            return isinstance(key, EllipticCurvePublicKey) and isinstance(key.curve, _EC_ALGORITHM_CURVES[alg])
        # RFC 8037 §3.1, RFC 9864 §2.2: Ed25519 only (never Ed448).
        return isinstance(key, Ed25519PublicKey)

    def to_jwk(self) -> dict[str, Any]:
        """The public JWK (RFC 7517 §4) for this key."""
        jwk: dict[str, Any] = dict(_required_members(self.key))
        if self.kid is not None:
            jwk["kid"] = self.kid
        if self.use is not None:
            jwk["use"] = self.use
        if self.alg is not None:
            jwk["alg"] = self.alg
        if self.key_ops is not None:
            jwk["key_ops"] = list(self.key_ops)
        return jwk


# ---------------------------------------------------------------------------------------------
# JWK / JWK Set parsing
# ---------------------------------------------------------------------------------------------

def _member_bytes(member: dict[str, Any], name: str) -> bytes:
    value = member.get(name)
    if not isinstance(value, str):
        raise InvalidKey("JWK key parameter is missing or not a string")
    try:
        return _b64url_decode(value)
    except ValueError:
        raise InvalidKey("JWK key parameter is not canonical base64url") from None


def _member_uint(member: dict[str, Any], name: str) -> int:
    # RFC 7518 §6.3.1.1/§6.3.1.2: Base64urlUInt, non-empty, minimum number of octets.
    data = _member_bytes(member, name)
    if not data or data[0] == 0:
        raise InvalidKey("RSA parameter is not a minimal unsigned integer")
    return int.from_bytes(data, "big")


def _optional_str(member: dict[str, Any], name: str) -> str | None:
    value = member.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidKey("JWK metadata member is not a string")
    if name in member and value is None:
        raise InvalidKey("JWK metadata member is not a string")
    return value


def _key_ops(member: dict[str, Any]) -> tuple[str, ...] | None:
    if "key_ops" not in member:
        return None
    ops = member["key_ops"]
    # RFC 7517 §4.3: an array of unique strings.
    if not isinstance(ops, list) or not all(isinstance(op, str) for op in ops) or len(set(ops)) != len(ops):
        raise InvalidKey("JWK key_ops is not an array of unique strings")
    return tuple(ops)


def _rsa_key(member: dict[str, Any]) -> RSAPublicKey:
    n = _member_uint(member, "n")
    e = _member_uint(member, "e")
    if n.bit_length() < RSA_MIN_BITS:
        raise InvalidKey("RSA modulus is shorter than 2048 bits")
    if n.bit_length() > RSA_MAX_BITS:
        raise InvalidKey("RSA modulus is longer than 16384 bits")
    if n % 2 == 0:
        raise InvalidKey("RSA modulus is invalid")
    if e < 3 or e % 2 == 0 or e.bit_length() > RSA_MAX_EXPONENT_BITS:
        raise InvalidKey("RSA public exponent is invalid")
    try:
        return rsa.RSAPublicNumbers(e, n).public_key()
    except (ValueError, TypeError):
        raise InvalidKey("RSA public key is invalid") from None


def _ec_key(member: dict[str, Any], crv: str) -> EllipticCurvePublicKey:
    curve, size, prime = _CURVES[crv]
    x_bytes = _member_bytes(member, "x")
    y_bytes = _member_bytes(member, "y")
    # RFC 7518 §6.2.1.2/§6.2.1.3: coordinates are exactly the full coordinate size.
    if len(x_bytes) != size or len(y_bytes) != size:
        raise InvalidKey("EC coordinate has the wrong length")
    x = int.from_bytes(x_bytes, "big")
    y = int.from_bytes(y_bytes, "big")
    if x >= prime or y >= prime:
        raise InvalidKey("EC coordinate is out of range")
    try:
        # Refuses points not on the curve (invalid-curve attacks).
        return ec.EllipticCurvePublicNumbers(x, y, curve()).public_key()
    except (ValueError, TypeError):
        raise InvalidKey("EC point is not on the curve") from None


def _okp_key(member: dict[str, Any]) -> Ed25519PublicKey:
    raw = _member_bytes(member, "x")
    # RFC 8037 §2: "x" is the 32-octet RFC 8032 public key encoding.
    if len(raw) != 32:
        raise InvalidKey("Ed25519 public key has the wrong length")
    try:
        # Point validity and order are checked when the PublicKey is constructed.
        return Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, TypeError):
        raise InvalidKey("Ed25519 public key is invalid") from None


def parse_jwk(member: dict) -> PublicKey | None:
    """Parse one public JWK strictly.

    Returns None for a key this server does not understand and must ignore (RFC 7517 §5): an
    unrecognised "kty", or an EC/OKP curve outside P-256/P-384/P-521/Ed25519.  Raises InvalidKey
    for private or symmetric material, RSA keys under 2048 bits and malformed or invalid values.
    """
    if not isinstance(member, dict):
        raise InvalidKey("JWK is not a JSON object")
    # Checked before anything else, whatever the kty: a published secret must never be tolerated.
    for name in _PRIVATE_MEMBERS:
        if name in member:
            raise InvalidKey("JWK contains private key material")
    kty = member.get("kty")
    if not isinstance(kty, str):
        raise InvalidKey("JWK kty is missing or not a string")
    if kty == "oct":
        # RFC 7518 §6.4: symmetric keys are secrets, never published.
        raise InvalidKey("symmetric (oct) keys are not accepted")
    if kty not in ("RSA", "EC", "OKP"):
        return None
    kid = _optional_str(member, "kid")
    use = _optional_str(member, "use")
    alg = _optional_str(member, "alg")
    key_ops = _key_ops(member)
    key: _PublicKeyTypes
    if kty == "RSA":
        key = _rsa_key(member)
    else:
        crv = member.get("crv")
        if not isinstance(crv, str):
            raise InvalidKey("JWK crv is missing or not a string")
        if kty == "EC":
            if crv not in _CURVES:
                return None
            key = _ec_key(member, crv)
        else:
            if crv != "Ed25519":
                return None
            key = _okp_key(member)
    return PublicKey(key, kid, use, alg, key_ops)


def parse_jwks(document: dict | str | bytes) -> list[PublicKey]:
    """Parse a JWK Set (RFC 7517 §5) strictly; returns the usable keys in document order."""
    if isinstance(document, (str, bytes, bytearray)):
        if len(document) > MAX_JWKS_BYTES:
            raise InvalidKey("JWK Set document is too large")
        try:
            document = _loads_strict(document)
        except _StrictJSONError:
            raise InvalidKey("JWK Set is not strict JSON") from None
    if not isinstance(document, dict):
        raise InvalidKey("JWK Set is not a JSON object")
    members = document.get("keys")
    if not isinstance(members, list):
        raise InvalidKey("JWK Set has no keys array")
    if not members:
        raise InvalidKey("JWK Set is empty")
    if len(members) > MAX_JWKS_KEYS:
        raise InvalidKey("JWK Set has too many keys")
    seen_kids: set[str] = set()
    keys: list[PublicKey] = []
    for member in members:
        if not isinstance(member, dict):
            raise InvalidKey("JWK is not a JSON object")
        kid = member.get("kid")
        if isinstance(kid, str):
            # RFC 7517 §4.5: kid is how a JWS selects its key; two keys with one kid are ambiguous.
            if kid in seen_kids:
                raise InvalidKey("JWK Set contains a duplicate kid")
            seen_kids.add(kid)
        parsed = parse_jwk(member)
        if parsed is not None:
            keys.append(parsed)
    if not keys:
        raise InvalidKey("JWK Set contains no usable key")
    return keys

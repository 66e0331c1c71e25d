"""DPoP proof verification (RFC 9449 §4.3) and stateless server nonces (RFC 9449 §8, §9).

Pure functions over a proof text, the request's method and URL and the clock: no Flask, no
database.  The caller decides everything that needs state -- whether a nonce is required, whether
the jti was seen before (RFC 9449 §11.1), which jkt a token or code is bound to -- using what
verify_proof returns.

The proof is parsed once, strictly, by keystore.jws; its key comes from the proof's own "jwk"
header (the one place this server takes a key from a JWS header, as RFC 9449 §4.2 requires) and is
parsed by keystore.jwk, which refuses private and symmetric material and weak RSA keys.

Every refusal is a ProofError whose ``check`` names the failed rule and whose message is a fixed
sentence in the RFC 6749 §5.2 error_description character set, never echoing input.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from collections.abc import Collection
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .jwk import SIGNING_ALGORITHMS, InvalidKey, PublicKey, parse_jwk
from .jws import MalformedJWS, UnsuitableKey, b64url_decode, b64url_encode, parse_compact_jws, verifier

__all__ = [
    "MAX_PROOF_LENGTH",
    "MAX_JTI_LENGTH",
    "ProofError",
    "Proof",
    "verify_proof",
    "htu_matches",
    "ath",
    "thumbprint_format_ok",
    "Nonces",
]

# A proof carries one public key and a signature: RSA up to 4096 bits and a long URL fit easily.
MAX_PROOF_LENGTH = 4096
# Enough for any random identifier (RFC 9449 §4.2 asks for 96 bits); keeps replay-table rows small.
MAX_JTI_LENGTH = 255
_PRINTABLE = re.compile(r"[\x21-\x7e]+")

# RFC 9449 §4.2 / §5.1: the media type of a proof, "application/dpop+jwt".
_DPOP_MEDIA_TYPE = "application/dpop+jwt"


class ProofError(ValueError):
    """A refused proof.  ``check`` is a short fixed name of the failed rule (for logs and metrics);
    ``str()`` is a fixed sentence naming it, safe to use as an error_description."""

    def __init__(self, check: str, message: str) -> None:
        super().__init__(message)
        self.check = check


@dataclass(frozen=True)
class Proof:
    """What a verified proof establishes: the key (by RFC 7638 thumbprint) that signed this request,
    plus the claims the caller still has to judge with state (jti for replay, nonce)."""

    jkt: str
    jti: str
    iat: int
    alg: str
    nonce: str | None
    htm: str
    htu: str
    key: PublicKey = field(compare=False, repr=False)


# ---------------------------------------------------------------------------------------------
# RFC 9449 §4.3: checking a proof
# ---------------------------------------------------------------------------------------------

def _typ_ok(typ: object) -> bool:
    # RFC 9449 §4.2 names typ "dpop+jwt".  RFC 7515 §4.1.9 makes typ a media type, compared
    # case-insensitively (RFC 6838 §4.2), with "application/" implied when no "/" appears; so
    # "DPoP+JWT" and "application/dpop+jwt" name the same type and are accepted.  Explicit typing
    # (RFC 8725 §3.11) is kept: no other JWT type can pass.
    if not isinstance(typ, str):
        return False
    media_type = typ.lower()
    if "/" not in media_type:
        media_type = "application/" + media_type
    return media_type == _DPOP_MEDIA_TYPE


def _public_key(header: dict, alg: str) -> PublicKey:
    # RFC 9449 §4.3 items 5 and 7: a public, supported key that may verify this alg.
    member = header.get("jwk")
    if not isinstance(member, dict):
        raise ProofError("jwk", "DPoP proof header jwk is missing or not a JSON object")
    try:
        key = parse_jwk(member)
    except InvalidKey:
        # Private or symmetric material, RSA under 2048 bits, malformed parameters.
        raise ProofError("jwk", "DPoP proof header jwk is not an acceptable public key") from None
    if key is None:
        raise ProofError("jwk", "DPoP proof header jwk is of an unsupported key type or curve")
    if not key.fits(alg):
        raise ProofError("jwk", "DPoP proof header jwk does not fit the alg")
    return key


def _check_iat(payload: dict, *, now: int, lifetime: int, skew: int) -> int:
    iat = payload.get("iat")
    # RFC 7519 §2 NumericDate; an integer here (bool is an int subclass in Python, refused).
    if type(iat) is not int:
        raise ProofError("iat", "DPoP proof iat is missing or not an integer")
    # RFC 9449 §4.3 item 11, §11.1: accept only proofs created within a short window.
    if iat < now - lifetime - skew:
        raise ProofError("iat", "DPoP proof iat is too old")
    if iat > now + skew:
        raise ProofError("iat", "DPoP proof iat is in the future")
    return iat


def _check_ath(payload: dict, access_token: str) -> None:
    # RFC 9449 §4.3 item 12, §7.1: the proof must be bound to the presented access token.
    claimed = payload.get("ath")
    if not isinstance(claimed, str):
        raise ProofError("ath", "DPoP proof ath is missing or not a string")
    try:
        expected = ath(access_token)
    except (ValueError, TypeError):
        raise ProofError("ath", "DPoP proof ath does not match the access token") from None
    if not claimed.isascii() or not hmac.compare_digest(claimed.encode("ascii"), expected.encode("ascii")):
        raise ProofError("ath", "DPoP proof ath does not match the access token")


def verify_proof(token: str, *, method: str, url: str, algorithms: Collection[str], now: int,
                 lifetime: int, skew: int, access_token: str | None = None) -> Proof:
    """Verify one DPoP header value for a request of ``method`` to ``url`` (RFC 9449 §4.3).

    ``algorithms`` is the server's allow-list; ``lifetime`` and ``skew`` (seconds) bound ``iat``.
    Give ``access_token`` at a protected resource, where "ath" is then required.  The nonce is
    only returned (the caller knows whether one is required); jti replay is the caller's too.
    Raises ProofError.
    """
    # RFC 9449 §4.3 item 2: a well-formed JWS in compact form.
    try:
        jws = parse_compact_jws(token, max_length=MAX_PROOF_LENGTH)
    except MalformedJWS as exc:
        # MalformedJWS messages are fixed strings in the error_description character set.
        raise ProofError("malformed", f"DPoP proof is not a well-formed compact JWS: {exc}") from None
    header, payload = jws.header, jws.payload

    # RFC 9449 §4.3 item 4.
    if not _typ_ok(header.get("typ")):
        raise ProofError("typ", "DPoP proof header typ is not dpop+jwt")

    # RFC 9449 §4.3 item 5: asymmetric, supported, allowed; never "none" or a MAC (RFC 9449 §4.2).
    alg = header["alg"]
    if alg not in SIGNING_ALGORITHMS or alg not in algorithms:
        raise ProofError("alg", "DPoP proof alg is not accepted")

    key = _public_key(header, alg)

    # RFC 9449 §4.3 item 6.
    try:
        check = verifier(key, alg)
    except UnsuitableKey:
        raise ProofError("jwk", "DPoP proof header jwk does not fit the alg") from None
    if not check.verify(jws.signing_input, jws.signature):
        raise ProofError("signature", "DPoP proof signature is invalid")

    # RFC 9449 §4.3 item 3 with §4.2: jti, a unique identifier.
    jti = payload.get("jti")
    if not isinstance(jti, str) or not jti:
        raise ProofError("jti", "DPoP proof jti is missing or not a non-empty string")
    if len(jti) > MAX_JTI_LENGTH:
        raise ProofError("jti", "DPoP proof jti is too long")
    if not _PRINTABLE.fullmatch(jti):  # it is a database key: PostgreSQL refuses NUL in text
        raise ProofError("jti", "DPoP proof jti must be printable ASCII")

    # RFC 9449 §4.3 item 8: HTTP methods are case-sensitive (RFC 9110 §9.1).
    htm = payload.get("htm")
    if not isinstance(htm, str) or htm != method:
        raise ProofError("htm", "DPoP proof htm does not match the request method")

    # RFC 9449 §4.3 item 9.
    htu = payload.get("htu")
    if not isinstance(htu, str) or not htu_matches(htu, url):
        raise ProofError("htu", "DPoP proof htu does not match the request URL")

    iat = _check_iat(payload, now=now, lifetime=lifetime, skew=skew)

    if access_token is not None:
        _check_ath(payload, access_token)

    # RFC 9449 §4.3 item 10 is the caller's (Nonces.valid); only the type is checked here.
    nonce = payload.get("nonce")
    if "nonce" in payload and not isinstance(nonce, str):
        raise ProofError("nonce", "DPoP proof nonce is not a string")

    return Proof(jkt=key.thumbprint, jti=jti, iat=iat, alg=alg, nonce=nonce, htm=htm, htu=htu, key=key)


# ---------------------------------------------------------------------------------------------
# RFC 9449 §4.3 item 9: comparing htu with the request URL (RFC 3986 §6.2.2, §6.2.3)
# ---------------------------------------------------------------------------------------------

# RFC 3986 Appendix B, restricted to an absolute URI with an authority.
_URI = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)([^?#]*)(?:\?[^#]*)?(?:#.*)?", re.DOTALL)
# RFC 3986 §2: the only characters a URI may contain (unreserved, reserved, "%").
_URI_CHARACTERS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*")
_PCHARS = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*")
_REG_NAME = re.compile(r"[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?")
_PORT = re.compile(r"[1-9][0-9]{0,4}")
_PERCENT = re.compile(r"%(.?.?)")
_HEXDIG2 = re.compile(r"[0-9A-Fa-f]{2}")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_DEFAULT_PORTS = {"https": 443, "http": 80}


def _normalise_percent(path: str) -> str:
    # RFC 3986 §6.2.2.1 (hex digits upper-cased) and §6.2.2.2 (unreserved octets decoded).
    def replace(match: re.Match[str]) -> str:
        digits = match.group(1)
        if _HEXDIG2.fullmatch(digits) is None:
            raise ValueError("bad percent-encoding")
        char = chr(int(digits, 16))
        return char if char in _UNRESERVED else "%" + digits.upper()

    return _PERCENT.sub(replace, path)


def _remove_dot_segments(path: str) -> str:
    # RFC 3986 §5.2.4, applied by §6.2.2.3.
    output: list[str] = []
    while path:
        if path.startswith("../"):
            path = path[3:]
        elif path.startswith("./"):
            path = path[2:]
        elif path.startswith("/./"):
            path = path[2:]
        elif path == "/.":
            path = "/"
        elif path.startswith("/../"):
            path = path[3:]
            if output:
                output.pop()
        elif path == "/..":
            path = "/"
            if output:
                output.pop()
        elif path in (".", ".."):
            path = ""
        else:
            start = 1 if path.startswith("/") else 0
            end = path.find("/", start)
            end = len(path) if end < 0 else end
            output.append(path[:end])
            path = path[end:]
    return "".join(output)


def _host(host: str) -> str:
    if host.startswith("["):
        # RFC 3986 §3.2.2 IP-literal: an IPv6 address (no zone identifier, no IPvFuture).
        if not host.endswith("]"):
            raise ValueError("bad IP literal")
        ipaddress.IPv6Address(host[1:-1])
        return host
    if _REG_NAME.fullmatch(host) is None:
        # Percent-encoded or empty host names are refused rather than normalised.
        raise ValueError("bad host")
    return host


def _normalised(uri: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) after RFC 3986 §6.2.2 and §6.2.3 normalisation, query and
    fragment dropped (RFC 9449 §4.3 item 9); raises ValueError for anything else."""
    if not isinstance(uri, str) or not uri.isascii() or _URI_CHARACTERS.fullmatch(uri) is None:
        raise ValueError("not a URI")
    match = _URI.fullmatch(uri)
    if match is None:
        raise ValueError("not an absolute URI with an authority")
    scheme, authority, path = match.group(1).lower(), match.group(2).lower(), match.group(3)
    if scheme not in _DEFAULT_PORTS:
        raise ValueError("not an HTTP URI")
    if "@" in authority:
        # RFC 9110 §4.2.4: userinfo is deprecated in http(s) URIs; never equivalent to none.
        raise ValueError("userinfo")
    host, port_text = authority, ""
    if authority.startswith("["):
        close = authority.find("]")
        host, rest = authority[: close + 1], authority[close + 1:]
        if close < 0 or (rest and not rest.startswith(":")):
            raise ValueError("bad authority")
        port_text = rest[1:]
    elif ":" in authority:
        host, port_text = authority.split(":", 1)
    host = _host(host)
    # RFC 3986 §6.2.3: an empty port is the default port.
    if port_text:
        if _PORT.fullmatch(port_text) is None or int(port_text) > 65535:
            raise ValueError("bad port")
        port = int(port_text)
    else:
        port = _DEFAULT_PORTS[scheme]
    if _PCHARS.fullmatch(path) is None:
        raise ValueError("bad path")
    # RFC 3986 §6.2.3: an empty path is "/" for http(s).
    path = _remove_dot_segments(_normalise_percent(path)) or "/"
    return scheme, host, port, path


def htu_matches(claimed: str, expected: str) -> bool:
    """True if the proof's htu names the request URL ``expected`` (RFC 9449 §4.3 item 9): equal
    after syntax-based normalisation, ignoring query and fragment.  Never raises."""
    try:
        return _normalised(claimed) == _normalised(expected)
    except (ValueError, TypeError):
        return False


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------

def ath(access_token: str) -> str:
    """RFC 9449 §4.2: base64url(SHA-256(ASCII(access_token))); ValueError for non-ASCII."""
    return b64url_encode(hashlib.sha256(access_token.encode("ascii")).digest())


def thumbprint_format_ok(value: str) -> bool:
    """True for a well-formed SHA-256 JWK thumbprint (RFC 7638 §3, RFC 9449 §6.1, §10): exactly
    43 canonical base64url characters, i.e. 32 octets."""
    if not isinstance(value, str) or len(value) != 43:
        return False
    try:
        return len(b64url_decode(value)) == 32
    except MalformedJWS:
        return False


# ---------------------------------------------------------------------------------------------
# RFC 9449 §8, §9: server-provided nonces
# ---------------------------------------------------------------------------------------------

_NONCE_LABEL = b"DPoP-Nonce\x00"
_SLOT_OCTETS = 8
_TAG_OCTETS = 16
# base64url of 8 + 16 octets: 32 characters, no padding.
_NONCE_LENGTH = 32


class Nonces:
    """Stateless DPoP nonces: base64url(slot || HMAC-SHA256(secret, label || slot)[:16]).

    A slot is ``lifetime`` seconds of the clock.  Every node holding the same secret (derived from
    the shared keystore) issues and accepts the same nonces, with no shared storage; a nonce is
    accepted during its own slot and the next, so it lives between one and two lifetimes.  The
    slot number is public (it only reveals the time); the tag is what cannot be forged.
    """

    def __init__(self, secret: bytes, lifetime: int) -> None:
        if not isinstance(secret, bytes) or len(secret) < 16:
            raise ValueError("the nonce secret must be at least 16 bytes")
        if type(lifetime) is not int or lifetime <= 0:
            raise ValueError("the nonce lifetime must be a positive number of seconds")
        self._secret = secret
        self.lifetime = lifetime

    def _nonce(self, slot: int) -> str:
        slot_octets = slot.to_bytes(_SLOT_OCTETS, "big", signed=True)
        tag = hmac.new(self._secret, _NONCE_LABEL + slot_octets, hashlib.sha256).digest()[:_TAG_OCTETS]
        return b64url_encode(slot_octets + tag)

    def current(self, now: int) -> str:
        """The nonce to hand out now (DPoP-Nonce header, RFC 9449 §8.1)."""
        return self._nonce(now // self.lifetime)

    def valid(self, nonce: str | None, now: int) -> bool:
        """True for a nonce of the current or the previous slot; False for anything else, never raises."""
        if not isinstance(nonce, str) or len(nonce) != _NONCE_LENGTH or type(now) is not int:
            return False
        try:
            raw = b64url_decode(nonce)
        except MalformedJWS:
            return False
        if len(raw) != _SLOT_OCTETS + _TAG_OCTETS:
            return False
        slot = int.from_bytes(raw[:_SLOT_OCTETS], "big", signed=True)
        current = now // self.lifetime
        if slot not in (current, current - 1):
            return False
        return hmac.compare_digest(nonce.encode("ascii"), self._nonce(slot).encode("ascii"))

    @staticmethod
    def secret_from(private_key) -> bytes:
        """Derive the nonce HMAC key from the server's private key (HKDF-SHA256, RFC 5869, over its
        PKCS #8 DER encoding), so every node sharing the keystore shares the secret and no extra
        secret needs distributing; the info label keeps it independent of any other use."""
        der = private_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"dpop-nonce").derive(der)

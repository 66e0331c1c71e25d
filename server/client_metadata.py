"""Client metadata (RFC 7591 §2, OpenID Connect Dynamic Client Registration §2): the one place
its rules live, shared by the registration API, the console and the `clients create` command.

`validate` turns RFC 7591 names into the keyword arguments of storage.clients.create/update;
the `keys_from_*` functions check a client's public keys (a certificate, a JWK Set, a jwks_uri)
and describe what they found. Every refusal is a MetadataError whose message can be shown to a
person and never echoes the input.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable
from urllib.parse import SplitResult, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.x509.oid import NameOID

from keystore.certificates import certificate_key, x5c_problem
from keystore.jwk import SIGNING_ALGORITHMS, InvalidKey, PublicKey, parse_jwks
from keystore.jwks_uri import JWKSFetchError, check_jwks_uri
from core.config import SCHEMA
from core.profile import FAPI2, fapi2
from core.request import SCOPE_TOKEN
from storage.clients import AUTH_METHODS, MAX_CLIENT_ID, RegisteredClient, valid_client_id

INVALID_CLIENT_METADATA = "invalid_client_metadata"
INVALID_REDIRECT_URI = "invalid_redirect_uri"

GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")
# OpenID Connect Core §5.4 and §11: the scopes a client registering itself may ask for; any
# other scope (an API's) is an administrator's to grant.
STANDARD_SCOPES = ("openid", "profile", "email", "address", "phone", "offline_access")
SECRET_METHODS = ("client_secret_basic", "client_secret_post")
# The methods whose keys are registered (jwks, jwks_uri or certificate): private_key_jwt verifies
# assertions with them, self_signed_tls_client_auth (RFC 8705 §2.2) the TLS client certificate.
KEY_METHODS = ("private_key_jwt", "self_signed_tls_client_auth")
# RFC 8705 §2.1.2: what names a tls_client_auth client's certificate (exactly one of them), and
# the prefix of its value in storage's tls_client_auth_san (the subject DN has its own column).
TLS_CLIENT_AUTH_FIELDS = {"tls_client_auth_subject_dn": None, "tls_client_auth_san_dns": "dns",
                          "tls_client_auth_san_uri": "uri", "tls_client_auth_san_ip": "ip",
                          "tls_client_auth_san_email": "email"}
# FAPI 2.0 Security Profile §5.3.2.1 (client authentication) and §5.4.1 (signing algorithms).
FAPI2_AUTH_METHODS = ("private_key_jwt", "tls_client_auth", "self_signed_tls_client_auth")
FAPI2_SIGNING_ALGORITHMS = ("PS256", "ES256", "EdDSA")
# Extension fields that change the server's own policy for a client: an administrator's to set.
ADMIN_FIELDS = ("first_party", "audience_policy", "token_reuse", "require_explicit_typ", "access_token_lifetime",
                "refresh_token_lifetime", "id_token_lifetime", "resources")
# What ADMIN_FIELDS hold when nothing is set (a new client's "current" values).
ADMIN_DEFAULTS: dict[str, Any] = {"first_party": False, "resources": ()}
# [oauth.token] access_token_format's values (an opaque handle, or an RFC 9068 JWT), per client too.
ACCESS_TOKEN_FORMATS: tuple[str, ...] = SCHEMA[("oauth", "token")]["access_token_format"][0]
# Bounds of the per-client lifetimes, in seconds.
LIFETIME_BOUNDS = {
    "access_token_lifetime": (60, 86400),
    "refresh_token_lifetime": (60, 365 * 86400),
    "id_token_lifetime": (60, 86400),
}
MAX_NAME = 255
MAX_DESCRIPTION = 4096
MAX_URI = 2048
MAX_REDIRECT_URIS = 20
MAX_RESOURCES = 20
MAX_SCOPES = 100
MAX_SCOPE_TOKEN = 128
MAX_CERTIFICATE_BYTES = 64 * 1024
MAX_DN = 1024
MAX_DNS_NAME = 253
MAX_EMAIL = 320

# RFC 3986 §2: unreserved, reserved and percent signs; whitespace (lists are stored
# space-separated), control characters, backslashes and non-ASCII are refused, not guessed at.
_URI_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_EXCEPT_LINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# RFC 1035 §2.3.1 (as relaxed by RFC 1123 §2.1): letters, digits and inner hyphens, 63 at most.
_DNS_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
# RFC 5322 §3.4.1 dot-atom local part (no quoted strings), before the @ of an rfc822Name.
_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
# Attribute names a certificate tool prints that RFC 4514 §3 does not list (OpenSSL's emailAddress).
_DN_NAMES = {"EMAILADDRESS": NameOID.EMAIL_ADDRESS}


class MetadataError(Exception):
    """A refused metadata value. `error` is the RFC 7591 §3.2.2 code, `field` the metadata name,
    `message` a sentence fit to show a person (and to send as error_description)."""

    def __init__(self, field: str, message: str, error: str = INVALID_CLIENT_METADATA) -> None:
        super().__init__(message)
        self.error = error
        self.field = field
        self.message = message


@dataclass(frozen=True)
class KeyInfo:
    """One public key found in a registration, as the console and the CLI show it."""

    kid: str | None
    kty: str                 # "RSA", "EC" or "OKP"
    size: int | str          # RSA modulus bits, or the curve name ("P-256", "Ed25519")
    thumbprint: str          # RFC 7638, SHA-256, base64url
    alg: str | None

    @classmethod
    def of(cls, key: PublicKey) -> "KeyInfo":
        jwk = key.to_jwk()
        size = key.key.key_size if isinstance(key.key, RSAPublicKey) else jwk["crv"]
        return cls(key.kid, jwk["kty"], size, key.thumbprint, key.alg)


# --- client ids --------------------------------------------------------------------------------

def check_client_id(client_id: Any, field: str = "client_id") -> str:
    """1 to 255 printable characters: the id is an alias in the keystore and the sub of assertions."""
    if not isinstance(client_id, str):
        raise MetadataError(field, "The client_id must be a string")
    if not valid_client_id(client_id):
        raise MetadataError(field, f"The client_id must be 1 to {MAX_CLIENT_ID} printable characters")
    return client_id


# --- keys --------------------------------------------------------------------------------------

def _key_infos(keys: list[PublicKey], field: str) -> list[KeyInfo]:
    # A key published only for encryption, or restricted to an algorithm we do not verify, cannot
    # authenticate the client: a set without any signature key is a mistake worth refusing.
    if not any(any(key.fits(alg) for alg in SIGNING_ALGORITHMS) for key in keys):
        raise MetadataError(field, "The key set contains no key usable to verify signatures")
    return [KeyInfo.of(key) for key in keys]


def keys_from_jwks(text: str | bytes) -> tuple[str, list[KeyInfo]]:
    """A JWK Set (RFC 7517 §5) checked strictly: no private or symmetric keys, RSA of at least
    2048 bits, no duplicate kid, strict JSON. Returns the set as compact JSON text and its keys."""
    compact, keys = _parse_jwks(text)
    problem = x5c_problem(compact)
    if problem is not None:
        raise MetadataError("jwks", f"The JWK Set was refused: {problem}")
    return compact, _key_infos(keys, "jwks")


def _parse_jwks(text: str | bytes) -> tuple[str, list[PublicKey]]:
    try:
        keys = parse_jwks(text)
    except InvalidKey as exc:
        raise MetadataError("jwks", f"The JWK Set was refused: {exc}") from None
    # parse_jwks accepted it as strict JSON; store it compactly, members as the client wrote them.
    return json.dumps(json.loads(text), separators=(",", ":")), keys


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _looks_like_private_key(data: bytes) -> bool:
    if b"PRIVATE KEY-----" in data:
        return True
    if b"-----BEGIN" in data:
        return False
    try:
        serialization.load_der_private_key(data, password=None)
    except TypeError:   # an encrypted private key: still a private key
        return True
    except Exception:   # not a private key (ValueError), or one of a kind we do not know
        return False
    return True


def keys_from_certificate(data: bytes, *, now: datetime.datetime | None = None) -> tuple[str, list[KeyInfo]]:
    """An X.509 certificate (PEM or DER; the first one of a PEM bundle) turned into a one-key JWK
    Set carrying `x5c` and `x5t#S256` (RFC 7517 §4.7, §4.9), its kid the RFC 7638 thumbprint.
    Refuses expired and not yet valid certificates, RSA under 2048 bits, unsupported key types
    and private keys given in its place."""
    if not isinstance(data, (bytes, bytearray)) or not data:
        raise MetadataError("certificate", "The certificate is empty")
    data = bytes(data)
    if len(data) > MAX_CERTIFICATE_BYTES:
        raise MetadataError("certificate", "The certificate file is too large")
    if _looks_like_private_key(data):
        raise MetadataError("certificate", "This is a private key, not a certificate. Never share a private "
                                           "key: give the certificate (or the public JWK Set) instead.")
    try:
        cert = (x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data
                else x509.load_der_x509_certificate(data))
    except ValueError:
        raise MetadataError("certificate", "The file is not a PEM or DER X.509 certificate") from None
    now = now or datetime.datetime.now(datetime.timezone.utc)
    if cert.not_valid_after_utc < now:
        raise MetadataError("certificate", "The certificate has expired")
    if cert.not_valid_before_utc > now:
        raise MetadataError("certificate", "The certificate is not valid yet")
    try:
        key = certificate_key(cert)
    except InvalidKey as exc:
        raise MetadataError("certificate", f"The certificate key was refused: {exc}") from None
    der = cert.public_bytes(serialization.Encoding.DER)
    jwk = {**key.to_jwk(), "kid": key.thumbprint, "use": "sig",
           "x5c": [base64.b64encode(der).decode("ascii")],
           "x5t#S256": _b64url(hashlib.sha256(der).digest())}
    return keys_from_jwks(json.dumps({"keys": [jwk]}))


def keys_from_jwks_uri(uri: str, services) -> list[KeyInfo]:
    """Check a jwks_uri with the fetcher's own SSRF rules ([oauth.jwks_fetch]) and look at it once
    through the shared fetcher: the key set the token endpoint would use now (a fresh cached one,
    or a new fetch)."""
    _check_jwks_uri(uri, services.settings)
    try:
        keys = services.jwks_fetcher.keys(uri)
    except JWKSFetchError as exc:
        raise MetadataError("jwks_uri", f"The jwks_uri could not be used: {exc}") from None
    if not keys:
        raise MetadataError("jwks_uri", "The jwks_uri has no usable key")
    return _key_infos(keys, "jwks_uri")


def _check_jwks_uri(uri: Any, settings) -> str:
    if not isinstance(uri, str):
        raise MetadataError("jwks_uri", "The jwks_uri must be a string")
    fetch = settings.jwks_fetch
    try:
        check_jwks_uri(uri, require_https=fetch["require_https"], allowed_hosts=fetch["allowed_hosts"])
    except JWKSFetchError as exc:
        raise MetadataError("jwks_uri", f"The jwks_uri was refused: {exc}") from None
    return uri


# --- redirect URIs -----------------------------------------------------------------------------

def _absolute_uri(uri: Any, noun: str, refuse: Callable[[str], MetadataError]) -> SplitResult:
    """RFC 3986 §4.3 absolute-URI: a scheme, no fragment; at most MAX_URI characters of the URI
    character set (so never whitespace: lists are stored space-separated)."""
    if not isinstance(uri, str) or not uri:
        raise refuse(f"Each {noun} must be a non-empty string")
    if len(uri) > MAX_URI:
        raise refuse(f"A {noun} has at most {MAX_URI} characters")
    if not _URI_CHARS.fullmatch(uri):
        raise refuse(f"A {noun} contains characters not allowed in a URI (spaces, non-ASCII, control characters)")
    if "#" in uri:
        raise refuse(f"A {noun} must not contain a fragment")
    scheme, colon, _ = uri.partition(":")
    if not colon or not _SCHEME.fullmatch(scheme):
        raise refuse(f"A {noun} must be an absolute URI")
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018  (raises ValueError for an invalid port)
    except ValueError:
        raise refuse(f"A {noun} is not a valid URI") from None
    return parts


def check_redirect_uri(uri: Any) -> str:
    """RFC 6749 §3.1.2: absolute, no fragment. https; http only on a loopback host (RFC 8252 §7.3);
    or a private-use scheme in reverse domain notation for native apps (RFC 8252 §7.1)."""
    def refuse(message: str) -> MetadataError:
        return MetadataError("redirect_uris", message, INVALID_REDIRECT_URI)

    parts = _absolute_uri(uri, "redirect URI", refuse)
    scheme = uri.partition(":")[0].lower()
    if scheme in ("http", "https"):
        if not uri[len(scheme):].startswith("://") or not parts.hostname:
            raise refuse("A redirect URI must name a host")
        if "@" in parts.netloc:
            raise refuse("A redirect URI must not contain user information")
        if scheme == "http" and not _is_loopback(parts.hostname):
            raise refuse("A redirect URI must use https (http only on a loopback address such as 127.0.0.1)")
        return uri
    if "." in scheme:
        return uri
    raise refuse("A redirect URI must use https, http on a loopback address, or a private-use scheme "
                 "such as com.example.app")


def check_resource(uri: Any) -> str:
    """RFC 8707 §2: a resource indicator is an absolute URI without a fragment (any scheme: an
    https URL or a URN alike)."""
    _absolute_uri(uri, "resource in resources", lambda message: MetadataError("resources", message))
    return uri


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- mutual TLS: the certificate of a tls_client_auth client (RFC 8705 §2.1.2) ------------------

def subject_dn(text: Any) -> str:
    """An RFC 4514 distinguished name in its normalised string form, so that a certificate's
    subject matches exactly when `cert.subject.rfc4514_string()` equals it.

    Normalisation: parsed by cryptography (x509.Name.from_rfc4514_string) and written back with
    Name.rfc4514_string(): RDNs stay in the order written (most specific first); attribute type
    names are case-insensitive on input (RFC 4512 §1.4) and written as RFC 4514 §3's short names
    (CN, L, ST, O, OU, C, STREET, DC, UID) or, for any other type (OpenSSL's emailAddress too), as
    the dotted OID; spaces after a `,` or `+` separator (as people write "CN=client, O=Example",
    where nothing but a type can follow) are dropped; values are unescaped and re-escaped
    canonically (`\\2C` becomes `\\,`), their case kept. Refused: other unescaped spaces at either
    end of a value or around `=`, `;` separators, quoted values and `#` hex values (BER, not a string
    to compare). Attributes of a multi-valued RDN keep the order written."""
    field = "tls_client_auth_subject_dn"

    def refuse() -> MetadataError:
        return MetadataError(field, f"{field} must be a distinguished name in RFC 4514 string form, "
                                    "such as CN=client,O=Example Corp,C=SE")
    if not isinstance(text, str) or not text or len(text) > MAX_DN or _CONTROL.search(text):
        raise MetadataError(field, f"{field} must be a string of 1 to {MAX_DN} printable characters")
    prepared = _dn_types_upper(text)
    if prepared is None:
        raise refuse()
    try:
        name = x509.Name.from_rfc4514_string(prepared, _DN_NAMES)
    except ValueError:
        raise refuse() from None
    if not len(name):
        raise refuse()
    return name.rfc4514_string()


def _dn_types_upper(text: str) -> str | None:
    """The DN with its attribute type names upper-cased (the parser knows them so) and the spaces
    after its separators dropped; None when a value is in the RFC 4514 §2.4 `#` hex form."""
    out: list[str] = []
    in_type, escaped = True, False
    for i, char in enumerate(text):
        if in_type:
            if char == " " and i > 0 and text[i - 1] in ", +":
                continue
            out.append(char.upper())
            if char == "=":
                in_type = False
                if text[i + 1:i + 2] == "#":
                    return None
            continue
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in ",+":
            in_type = True
        out.append(char)
    return "".join(out)


def _is_dns_name(value: str) -> bool:
    """A host name of LDH labels (RFC 1123 §2.1), ASCII (IDNs as A-labels), no trailing dot."""
    return (value.isascii() and len(value) <= MAX_DNS_NAME
            and all(_DNS_LABEL.fullmatch(label) for label in value.split(".")))


def _san(name: str, value: Any) -> str:
    """The stored form of a subjectAltName (RFC 5280 §4.2.1.6) a tls_client_auth client names."""
    if not isinstance(value, str) or not value:
        raise MetadataError(name, f"{name} must be a non-empty string")
    kind = TLS_CLIENT_AUTH_FIELDS[name]
    if kind == "dns":
        if not _is_dns_name(value):
            raise MetadataError(name, f"{name} must be a DNS name such as client.example.com")
        return value.lower()   # RFC 4343 §3: DNS names compare without case
    if kind == "uri":
        _absolute_uri(value, name, lambda message: MetadataError(name, message))
        return value
    if kind == "ip":
        try:
            if "%" in value:   # an IPv6 zone belongs to one host's interfaces, never to a certificate
                raise ValueError
            # Normalised as str() writes the address a certificate's iPAddress SAN gives:
            # dotted quad for IPv4, RFC 5952 §4 compressed lower-case hex for IPv6.
            return str(ipaddress.ip_address(value))
        except ValueError:
            raise MetadataError(name, f"{name} must be an IPv4 or IPv6 address") from None
    local, at, domain = value.rpartition("@")
    if len(value) > MAX_EMAIL or not at or not _EMAIL_LOCAL.fullmatch(local) or not _is_dns_name(domain):
        raise MetadataError(name, f"{name} must be an email address such as client@example.com")
    return f"{local}@{domain.lower()}"   # RFC 5280 §7.5: the local part compares exactly, the domain without case


def _tls_client_auth(metadata: dict, method: str) -> dict[str, Any]:
    """RFC 8705 §2.1.2: a tls_client_auth client is the holder of a certificate, from a CA the
    server trusts, with exactly this subject DN or subjectAltName; no key or secret is registered."""
    given = [name for name in TLS_CLIENT_AUTH_FIELDS if metadata.get(name) is not None]
    if method != "tls_client_auth":
        if given:
            raise MetadataError(given[0], f"{given[0]} applies to token_endpoint_auth_method tls_client_auth only")
        return {"tls_client_auth_subject_dn": None, "tls_client_auth_san": None}
    if len(given) != 1:
        message = "token_endpoint_auth_method tls_client_auth needs exactly one of " + ", ".join(TLS_CLIENT_AUTH_FIELDS)
        raise MetadataError(given[1] if given else "token_endpoint_auth_method",
                            message + (f", not {' and '.join(given)}" if given else ""))
    name = given[0]
    if name == "tls_client_auth_subject_dn":
        return {"tls_client_auth_subject_dn": subject_dn(metadata[name]), "tls_client_auth_san": None}
    return {"tls_client_auth_subject_dn": None,
            "tls_client_auth_san": f"{TLS_CLIENT_AUTH_FIELDS[name]}:{_san(name, metadata[name])}"}


def _fapi2_rules(client: RegisteredClient) -> None:
    """FAPI 2.0 Security Profile rules for a client held to it (core.profile.fapi2)."""
    if client.auth_method not in FAPI2_AUTH_METHODS:
        # FAPI 2.0 Security Profile §5.3.2.1: confidential clients, by mutual TLS or private_key_jwt.
        raise MetadataError("token_endpoint_auth_method", "FAPI 2.0: token_endpoint_auth_method must be "
                            + ", ".join(FAPI2_AUTH_METHODS[:-1]) + f" or {FAPI2_AUTH_METHODS[-1]} "
                            "(no public clients, no client secrets)")
    if client.signing_alg is not None and client.signing_alg not in FAPI2_SIGNING_ALGORITHMS:
        # FAPI 2.0 Security Profile §5.4.1
        raise MetadataError("token_endpoint_auth_signing_alg", "FAPI 2.0: token_endpoint_auth_signing_alg must be "
                            + ", ".join(FAPI2_SIGNING_ALGORITHMS[:-1]) + f" or {FAPI2_SIGNING_ALGORITHMS[-1]}")
    for uri in client.redirect_uris:
        # https only; check_redirect_uri already allows http on a loopback host alone (RFC 8252 §7.3).
        if uri.partition(":")[0].lower() not in ("https", "http"):
            raise MetadataError("redirect_uris", "FAPI 2.0: a redirect URI must use https (http only on a loopback "
                                                 "address such as 127.0.0.1, for native apps)", INVALID_REDIRECT_URI)


# --- the metadata ------------------------------------------------------------------------------

def _string(metadata: dict, name: str, maximum: int, pattern: re.Pattern = _CONTROL) -> str:
    value = metadata.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise MetadataError(name, f"{name} must be a string")
    if len(value) > maximum or pattern.search(value):
        raise MetadataError(name, f"{name} must be at most {maximum} printable characters")
    return value


def _string_list(metadata: dict, name: str, error: str = INVALID_CLIENT_METADATA) -> list[str] | None:
    value = metadata.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise MetadataError(name, f"{name} must be an array of strings", error)
    if len(set(value)) != len(value):
        raise MetadataError(name, f"{name} lists a value twice", error)
    return value


def _choice(metadata: dict, name: str, choices: tuple[str, ...]) -> str | None:
    value = metadata.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or value not in choices:
        raise MetadataError(name, f"{name} must be one of {', '.join(choices)}")
    return value


def _scopes(metadata: dict) -> tuple[str, ...]:
    value = metadata.get("scope")
    if value is None or value == "":
        return ()
    if not isinstance(value, str):
        raise MetadataError("scope", "scope must be a string of space-separated scope values")
    tokens = value.split(" ")
    if len(tokens) > MAX_SCOPES or not all(SCOPE_TOKEN.fullmatch(t) and len(t) <= MAX_SCOPE_TOKEN for t in tokens):
        raise MetadataError("scope", "scope must be scope values (RFC 6749 section 3.3) separated by single spaces")
    return tuple(dict.fromkeys(tokens))


def _grants(metadata: dict, supported: Iterable[str]) -> tuple[tuple[str, ...], list[str]]:
    """grant_types and response_types, consistent with each other (RFC 7591 §2.1)."""
    grants = _string_list(metadata, "grant_types")
    responses = _string_list(metadata, "response_types")
    if grants is None:
        # RFC 7591 §2: the default grant is authorization_code (the default response type is code).
        grants = ["authorization_code"] if responses is None or "code" in responses else []
    if not grants:
        raise MetadataError("grant_types", "grant_types must list at least one grant type")
    supported = tuple(supported)
    for grant in grants:
        if grant not in supported:
            raise MetadataError("grant_types", f"grant_types may contain only {', '.join(supported)}")
    if "refresh_token" in grants and "authorization_code" not in grants:
        raise MetadataError("grant_types", "the refresh_token grant needs the authorization_code grant")
    expected = ["code"] if "authorization_code" in grants else []
    if responses is not None and responses != expected:
        raise MetadataError("response_types", 'response_types must be ["code"] with the authorization_code grant '
                                              "and empty without it")
    return tuple(grants), expected


def _flag(metadata: dict, name: str) -> bool:
    """A JSON boolean; absent or null is false."""
    value = metadata.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise MetadataError(name, f"{name} must be true or false")
    return value


def _optional_flag(metadata: dict, name: str) -> bool | None:
    """A JSON boolean, or absent/null for the server's setting."""
    value = metadata.get(name)
    if value is not None and not isinstance(value, bool):
        raise MetadataError(name, f"{name} must be true, false or null")
    return value


def _resources(metadata: dict) -> tuple[str, ...]:
    """RFC 8707 resource indicators the client may ask tokens for; none: it may send no `resource`."""
    resources = _string_list(metadata, "resources") or []
    if len(resources) > MAX_RESOURCES:
        raise MetadataError("resources", f"resources may list at most {MAX_RESOURCES} URIs")
    for uri in resources:
        check_resource(uri)
    return tuple(resources)


def _token_fields(metadata: dict) -> dict[str, Any]:
    """How the client's access tokens are made. Each only binds the client itself, so it may set them."""
    return {
        # RFC 9449 §5.2: every access token DPoP-bound; a token request without a proof is refused.
        "dpop_bound_access_tokens": _flag(metadata, "dpop_bound_access_tokens"),
        # RFC 9449 §8: a server nonce in every proof, whatever [oauth.dpop] require_nonce says.
        "require_dpop_nonce": _flag(metadata, "require_dpop_nonce"),
        # RFC 9068 JWT or opaque; absent: [oauth.token] access_token_format.
        "access_token_format": _choice(metadata, "access_token_format", ACCESS_TOKEN_FORMATS),
        # RFC 8705 §3.4: every access token bound to the client's TLS certificate.
        "tls_client_certificate_bound_access_tokens": _flag(metadata, "tls_client_certificate_bound_access_tokens"),
    }


def _stricter_rules(metadata: dict) -> dict[str, Any]:
    """Rules the client asks to be held to beyond the server's; it may set them (they only bind itself)."""
    profile = metadata.get("profile")
    if profile is not None and profile != FAPI2:
        # Stricter than the server's profile, never looser: "oauth2" under a FAPI 2.0 server is refused too.
        raise MetadataError("profile", f"profile must be {FAPI2}, or absent for the server's profile")
    return {
        # RFC 9126 §6: its authorization requests must be pushed, whatever [oauth.par] required says.
        "require_pushed_authorization_requests": _flag(metadata, "require_pushed_authorization_requests"),
        "profile": profile,
    }


def _lifetime(metadata: dict, name: str) -> int | None:
    value = metadata.get(name)
    if value is None:
        return None
    low, high = LIFETIME_BOUNDS[name]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise MetadataError(name, f"{name} must be an integer number of seconds from {low} to {high}")
    return value


def _admin_fields(metadata: dict) -> dict[str, Any]:
    return {
        "first_party": _flag(metadata, "first_party"),
        "audience_policy": _choice(metadata, "audience_policy", ("strict", "legacy")),
        "token_reuse": _choice(metadata, "token_reuse", ("allow", "prevent")),
        # RFC 7523bis explicit typing; None: the private_key_jwt handler's RequireExplicitTyp.
        "require_explicit_typ": _optional_flag(metadata, "require_explicit_typ"),
        **{name: _lifetime(metadata, name) for name in LIFETIME_BOUNDS},
        "resources": _resources(metadata),
    }


def validate(metadata: dict, settings, *, existing: RegisteredClient | None = None, admin: bool = True,
             grant_types_supported: Iterable[str] = GRANT_TYPES) -> dict[str, Any]:
    """RFC 7591 §2 names in, keyword arguments for storage.clients.create/update out (with
    `auth_method`; without `client_id`, see check_client_id). A full description of the client:
    absent fields take their defaults (RFC 7592 §2.2: an update replaces everything).

    `grant_types_supported` are the grant types the server's handler chain serves (the built-in
    ones by default; pass `sorted(chain.grants)` to include drop-in handlers). Fields the server
    does not support are ignored (RFC 7591 §2). `admin=False` (a client
    registering or updating itself with a bearer token) may not set ADMIN_FIELDS: absent, they keep
    the values of `existing`; present, they must equal them (or the defaults for a new client).
    Nor may it widen what it may ask for: its scope and grant_types stay within those of
    `existing`, and a new client's scope within STANDARD_SCOPES. A client held to FAPI 2.0
    (core.profile.fapi2: the server's [oauth] profile, or its own `profile`) meets its rules too.
    """
    if not isinstance(metadata, dict):
        raise MetadataError("", "The client metadata must be a JSON object")
    if existing is not None and "client_id" in metadata and metadata["client_id"] != existing.client_id:
        # RFC 7592 §2.2: the client_id sent with an update is the client's own.
        raise MetadataError("client_id", "The client_id cannot be changed")
    out: dict[str, Any] = {
        "client_name": _string(metadata, "client_name", MAX_NAME),
        "description": _string(metadata, "description", MAX_DESCRIPTION, _CONTROL_EXCEPT_LINES),
    }
    grants, _ = _grants(metadata, grant_types_supported)
    out["grant_types"] = grants
    out["scopes"] = _scopes(metadata)

    # RFC 7591 §2: client_secret_basic is the default method.
    method = _choice(metadata, "token_endpoint_auth_method", AUTH_METHODS) or "client_secret_basic"
    if method == "none" and ("client_credentials" in grants or "authorization_code" not in grants):
        # A public client cannot keep a secret, so it may only act for a user (RFC 6749 §2.1, §4.4).
        raise MetadataError("token_endpoint_auth_method", "token_endpoint_auth_method none is only for "
                                                          "authorization_code clients without client_credentials")
    out["auth_method"] = method

    redirect_uris = _string_list(metadata, "redirect_uris", INVALID_REDIRECT_URI) or []
    if len(redirect_uris) > MAX_REDIRECT_URIS:
        raise MetadataError("redirect_uris", f"At most {MAX_REDIRECT_URIS} redirect URIs", INVALID_REDIRECT_URI)
    for uri in redirect_uris:
        check_redirect_uri(uri)
    if "authorization_code" in grants and not redirect_uris:
        # RFC 6749 §3.1.2.2: clients using the authorization endpoint register their redirect URIs.
        raise MetadataError("redirect_uris", "The authorization_code grant needs at least one redirect URI",
                            INVALID_REDIRECT_URI)
    out["redirect_uris"] = tuple(redirect_uris)

    out.update(_keys(metadata, settings, method))
    out.update(_tls_client_auth(metadata, method))
    out.update(_token_fields(metadata))
    out.update(_stricter_rules(metadata))
    fields = _admin_fields(metadata)
    if not admin:
        fields = _keep_admin_fields(metadata, fields, existing)
        _within_registration(out, existing)
    out.update(fields)
    # The client as it would be stored: FAPI 2.0 applies under the server's profile or its own.
    client = RegisteredClient(client_id=existing.client_id if existing else "", secret_hash=None, updated_at=0, **out)
    if fapi2(settings, client):
        _fapi2_rules(client)
    return out


def _within_registration(out: dict[str, Any], existing: RegisteredClient | None) -> None:
    """A client registering or updating itself (RFC 7591 §3 initial access token, RFC 7592
    registration access token) cannot grant itself more: the server decides what a client may
    ask for (RFC 7591 §2: it may replace requested values), and here it refuses, so that the
    client knows what it got."""
    if existing is None:
        if any(scope not in STANDARD_SCOPES for scope in out["scopes"]):
            raise MetadataError("scope", "scope may contain only the standard OpenID Connect scopes ("
                                         + ", ".join(STANDARD_SCOPES) + "); an administrator registers others")
        return
    if any(scope not in existing.scopes for scope in out["scopes"]):
        raise MetadataError("scope", "scope may only keep or remove scope values of the registration; "
                                     "an administrator adds others")
    if any(grant not in existing.grant_types for grant in out["grant_types"]):
        raise MetadataError("grant_types", "grant_types may only keep or remove grant types of the registration; "
                                           "an administrator adds others")


def _keys(metadata: dict, settings, method: str) -> dict[str, Any]:
    """jwks, jwks_uri or (an extension, as WSO2's service provider form has it) a PEM `certificate`
    that is stored as a JWK Set; at most one of them. A private_key_jwt client without any uses the
    keystore; a self_signed_tls_client_auth client (RFC 8705 §2.2) must register one."""
    jwks, jwks_uri, certificate = metadata.get("jwks"), metadata.get("jwks_uri"), metadata.get("certificate")
    alg = metadata.get("token_endpoint_auth_signing_alg")
    given = [name for name, value in (("jwks", jwks), ("jwks_uri", jwks_uri), ("certificate", certificate),
                                      ("token_endpoint_auth_signing_alg", alg)) if value is not None]
    # Only client assertions have a signing algorithm (OpenID Connect Registration §2).
    wrong = next((name for name in given if method not in KEY_METHODS
                  or (name == "token_endpoint_auth_signing_alg" and method != "private_key_jwt")), None)
    if wrong is not None:
        methods = "private_key_jwt" if wrong == "token_endpoint_auth_signing_alg" else " or ".join(KEY_METHODS)
        raise MetadataError(wrong, f"{wrong} applies to token_endpoint_auth_method {methods} only")
    if method not in KEY_METHODS:
        return {"jwks": None, "jwks_uri": None, "signing_alg": None}
    sources = [name for name in given if name != "token_endpoint_auth_signing_alg"]
    if len(sources) > 1:
        # RFC 7591 §2: jwks and jwks_uri MUST NOT both be present.
        raise MetadataError(sources[1], f"Give only one of jwks, jwks_uri and certificate, not {' and '.join(sources)}")
    if not sources and method == "self_signed_tls_client_auth":
        # RFC 8705 §2.2: the certificate's public key is registered; there is no keystore fallback.
        raise MetadataError("jwks", "token_endpoint_auth_method self_signed_tls_client_auth needs the client "
                                    "certificate's public key: give jwks, jwks_uri or certificate")
    if alg is not None and (not isinstance(alg, str) or alg not in SIGNING_ALGORITHMS):
        raise MetadataError("token_endpoint_auth_signing_alg",
                            f"token_endpoint_auth_signing_alg must be one of {', '.join(SIGNING_ALGORITHMS)}")
    text = None
    if certificate is not None:
        if not isinstance(certificate, str):
            raise MetadataError("certificate", "certificate must be a PEM string")
        jwks = json.loads(keys_from_certificate(certificate.encode("utf-8"))[0])
    if jwks is not None:
        if not isinstance(jwks, dict):
            raise MetadataError("jwks", "jwks must be a JWK Set object")
        text, keys = _parse_jwks(json.dumps(jwks))
        _key_infos(keys, "jwks")
        # OpenID Connect Registration §2: the registered alg is used with the registered keys.
        if alg is not None and not any(key.fits(alg) for key in keys):
            raise MetadataError("token_endpoint_auth_signing_alg",
                                f"No registered key can verify token_endpoint_auth_signing_alg {alg}")
    if jwks_uri is not None:
        _check_jwks_uri(jwks_uri, settings)
    # None of them (private_key_jwt): the certificate in the primary keystore under the client id as alias.
    return {"jwks": text, "jwks_uri": jwks_uri, "signing_alg": alg}


def _keep_admin_fields(metadata: dict, fields: dict[str, Any], existing: RegisteredClient | None) -> dict[str, Any]:
    current = {name: getattr(existing, name) if existing else ADMIN_DEFAULTS.get(name) for name in ADMIN_FIELDS}
    for name in ADMIN_FIELDS:
        if name in metadata and fields[name] != current[name]:
            raise MetadataError(name, f"Only an administrator may set {name}")
    return current


def metadata_of(client: RegisteredClient) -> dict[str, Any]:
    """The client's registered metadata under RFC 7591 names (RFC 7591 §3.2.1 without the
    credentials): what validate() reads, so it can be sent back unchanged."""
    body: dict[str, Any] = {
        "client_id": client.client_id,
        "client_name": client.client_name,
        "description": client.description,
        "redirect_uris": list(client.redirect_uris),
        "grant_types": list(client.grant_types),
        "response_types": ["code"] if "authorization_code" in client.grant_types else [],
        "scope": " ".join(client.scopes),
        "token_endpoint_auth_method": client.auth_method,
    }
    if client.auth_method in KEY_METHODS:
        if client.jwks:
            body["jwks"] = json.loads(client.jwks)
        if client.jwks_uri:
            body["jwks_uri"] = client.jwks_uri
        if client.signing_alg:
            body["token_endpoint_auth_signing_alg"] = client.signing_alg
    if client.tls_client_auth_subject_dn:
        body["tls_client_auth_subject_dn"] = client.tls_client_auth_subject_dn
    if client.tls_client_auth_san:
        kind, _, value = client.tls_client_auth_san.partition(":")
        body[next(name for name, prefix in TLS_CLIENT_AUTH_FIELDS.items() if prefix == kind)] = value
    body["first_party"] = client.first_party
    body["dpop_bound_access_tokens"] = client.dpop_bound_access_tokens
    body["require_dpop_nonce"] = client.require_dpop_nonce
    body["tls_client_certificate_bound_access_tokens"] = client.tls_client_certificate_bound_access_tokens
    body["require_pushed_authorization_requests"] = client.require_pushed_authorization_requests
    for name in ("audience_policy", "token_reuse", "require_explicit_typ", *LIFETIME_BOUNDS, "access_token_format",
                 "profile"):
        value = getattr(client, name)
        if value is not None:
            body[name] = value
    if client.resources:
        body["resources"] = list(client.resources)
    return body

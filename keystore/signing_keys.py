"""The server's own signing keys: the primary keystore key (RS256: ID tokens, and access tokens by
default) and the key entry `[oauth.token] signing_key_alias` names for JWT access tokens
(RFC 9068) signed with PS256, ES256 or EdDSA; and the JWK Set that publishes them.

A key's `kid` is the RFC 7638 thumbprint of its public key, computed here for the token headers
and for /oauth2/jwks alike, so the two can never disagree.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from keystore.jwk import PublicKey
from keystore.jws import Verifier, verifier
from keystore.signing import sign
from keystore.store import Keystore, KeystoreError

log = logging.getLogger("keystore.signing_keys")

PRIMARY_ALGORITHM = "RS256"  # the primary key is RSA (keystore.store); OIDC Core §15.1 requires RS256


@dataclass(frozen=True)
class SigningKey:
    private_key: Any = None
    alg: str = PRIMARY_ALGORITHM
    public: PublicKey | None = None

    @classmethod
    def of(cls, private_key: Any, alg: str) -> "SigningKey":
        public = PublicKey.from_cryptography(private_key.public_key())
        if not public.fits(alg):
            raise KeystoreError(f"the key cannot sign {alg}")
        return cls(private_key, alg, PublicKey(public.key, kid=public.thumbprint, use="sig", alg=alg))

    @property
    def kid(self) -> str:
        assert self.public is not None
        return self.public.thumbprint

    def sign(self, claims: dict[str, Any], typ: str = "JWT") -> str:
        return sign(self.private_key, self.alg, claims, {"typ": typ, "kid": self.kid})

    def verifier(self) -> Verifier:
        assert self.public is not None
        return verifier(self.public, self.alg)


def _natural_alg(private_key: Any) -> str:
    """What a key entry other than the two in use is published for (a key being rolled out or
    kept for tokens it signed): the primary's RS256 is taken, so an RSA entry is PS256's."""
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        return {256: "ES256", 384: "ES384", 521: "ES512"}.get(private_key.curve.key_size, "")
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return "EdDSA"
    return "PS256" if isinstance(private_key, rsa.RSAPrivateKey) else ""


@dataclass(frozen=True)
class KeySet:
    """The keys of one loaded keystore: what signs, and everything published (by kid)."""

    primary: SigningKey
    access_token: SigningKey
    published: dict[str, SigningKey]

    def jwks(self) -> dict[str, Any]:
        """RFC 7517 §5: every key entry's public key with kid, use and alg. Keeping an old entry in
        the keystore after switching signing_key_alias keeps the tokens it signed verifiable."""
        return {"keys": [key.public.to_jwk() for key in self.published.values() if key.public is not None]}


def key_set(keystore: Keystore, token_alg: str = PRIMARY_ALGORITHM, token_alias: str = "",
            primary_alg: str = PRIMARY_ALGORITHM) -> KeySet:
    """Raises KeystoreError when `token_alias` is not a key entry or its key cannot sign `token_alg`.
    `primary_alg`: RS256, or PS256 under the FAPI 2.0 profile (core.config.primary_algorithm)."""
    primary = SigningKey.of(keystore.private_key, primary_alg)
    access_token = primary
    if token_alias:
        key = keystore.private_key_entry(token_alias)
        if key is None:
            raise KeystoreError(f"signing_key_alias {token_alias!r} is not a key entry of the keystore")
        try:
            access_token = SigningKey.of(key, token_alg)
        except (KeystoreError, ValueError):
            raise KeystoreError(f"the key entry {token_alias!r} cannot sign {token_alg}") from None
    published = {primary.kid: primary}
    if access_token.kid in published and access_token.alg != primary.alg:
        raise KeystoreError(f"signing_key_alias {token_alias!r} is the primary key, which signs RS256: "
                            f"{token_alg} needs a key entry of its own")
    published[access_token.kid] = access_token
    for _alias, key in keystore.private_keys():
        alg = _natural_alg(key)
        try:
            other = SigningKey.of(key, alg) if alg else None
        except (KeystoreError, ValueError):
            other = None  # a key we cannot publish (an unusual curve, a short RSA key) is skipped
        if other is not None and other.kid not in published:
            published[other.kid] = other
    return KeySet(primary, access_token, published)


class KeySets:
    """The KeySet of the keystore currently loaded, computed once per keystore object (the
    services reload the keystore when its file changes)."""

    def __init__(self, token_alg: str, token_alias: str, primary_alg: str = PRIMARY_ALGORITHM) -> None:
        self.token_alg, self.token_alias, self.primary_alg = token_alg, token_alias, primary_alg
        self._lock = threading.Lock()
        self._for: tuple[Keystore, KeySet] | None = None

    def get(self, keystore: Keystore) -> KeySet:
        cached = self._for
        if cached is not None and cached[0] is keystore:
            return cached[1]
        with self._lock:
            try:
                keys = key_set(keystore, self.token_alg, self.token_alias, self.primary_alg)
            except KeystoreError as exc:
                if cached is None:  # at start-up: the server refuses to start (app.py)
                    raise
                # A keystore edited while the server runs lost the access token key: keep
                # signing with the keys it had, and say so.
                log.warning("keystore %s: %s; still using the previous signing keys", keystore.path, exc)
                keys = cached[1]
            self._for = (keystore, keys)
            return keys

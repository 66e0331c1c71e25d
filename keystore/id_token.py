"""ID tokens (OpenID Connect Core §2): compact JWS signed with the primary keystore's private key.

The `kid` is the RFC 7638 thumbprint of the key, computed here for both the ID token header and
the key published at /oauth2/jwks, so the two can never disagree.
"""

from __future__ import annotations

import hashlib
from typing import Any

from keystore.jwk import PublicKey
from keystore.jws import b64url_encode
from keystore.signing import sign
from keystore.store import Keystore

ALGORITHM = "RS256"  # the primary key is RSA (keystore.store); RS256 is what OIDC Core §15.1 requires


def signing_key(keystore: Keystore) -> PublicKey:
    """The public half of the primary key, as published."""
    return PublicKey.from_cryptography(keystore.certificate.public_key())


def public_jwk(keystore: Keystore) -> dict[str, Any]:
    """The JWK served at /oauth2/jwks (RFC 7517 §4)."""
    key = signing_key(keystore)
    return {**key.to_jwk(), "kid": key.thumbprint, "use": "sig", "alg": ALGORITHM}


def at_hash(access_token: str) -> str:
    """OIDC Core §3.1.3.6: base64url of the left half of SHA-256 (the hash of RS256) of the token's ASCII."""
    digest = hashlib.sha256(access_token.encode("ascii")).digest()
    return b64url_encode(digest[: len(digest) // 2])


def sign_id_token(keystore: Keystore, claims: dict[str, Any]) -> str:
    """The ID token: `claims` signed with RS256, header `kid` (the published key's) and `typ` JWT."""
    return sign(keystore.private_key, ALGORITHM, claims, {"kid": signing_key(keystore).thumbprint})

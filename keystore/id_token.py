"""ID tokens (OpenID Connect Core §2): compact JWS signed with the primary keystore's private key
(keystore.signing_keys)."""

from __future__ import annotations

import hashlib
from typing import Any

from keystore.jws import b64url_encode
from keystore.signing_keys import SigningKey


def at_hash(access_token: str) -> str:
    """OIDC Core §3.1.3.6: base64url of the left half of SHA-256 (the hash of RS256) of the token's ASCII."""
    digest = hashlib.sha256(access_token.encode("ascii")).digest()
    return b64url_encode(digest[: len(digest) // 2])


def sign_id_token(key: SigningKey, claims: dict[str, Any]) -> str:
    """The ID token: `claims` signed with the primary key (RS256, or PS256 under FAPI 2.0), header
    `kid` and `typ` JWT."""
    return key.sign(claims)

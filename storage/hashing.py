"""How bearer values are stored: access and refresh tokens, codes, session cookies, client
secrets, registration and initial access tokens are 256-bit random values generated here, so a
fast hash is enough — there is nothing to brute-force (unlike user passwords, which get scrypt
in storage.users). A leaked database reveals no usable value."""

from __future__ import annotations

import hashlib


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()

"""Signing compact JWS with our own or a client's private key (assertions for the CLI, later ID tokens)."""

from __future__ import annotations

import json

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from keystore.jws import b64url_encode

_HASHES = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}
_EC_SIZES = {"ES256": 32, "ES384": 48, "ES512": 66}


def default_alg(private_key) -> str:
    if isinstance(private_key, rsa.RSAPrivateKey):
        return "RS256"
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        return {256: "ES256", 384: "ES384", 521: "ES512"}[private_key.curve.key_size]
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return "EdDSA"
    raise ValueError("unsupported private key type")


def sign(private_key, alg: str, payload: dict, header: dict | None = None) -> str:
    """Return a compact JWS (RFC 7515 §7.1) of `payload` signed with `alg`."""
    head = {"alg": alg, "typ": "JWT", **(header or {})}
    signing_input = (b64url_encode(json.dumps(head, separators=(",", ":")).encode())
                     + "." + b64url_encode(json.dumps(payload, separators=(",", ":")).encode())).encode("ascii")
    if alg.startswith("RS") and isinstance(private_key, rsa.RSAPrivateKey):
        signature = private_key.sign(signing_input, padding.PKCS1v15(), _HASHES[alg[2:]]())
    elif alg.startswith("PS") and isinstance(private_key, rsa.RSAPrivateKey):
        h = _HASHES[alg[2:]]()
        signature = private_key.sign(signing_input, padding.PSS(padding.MGF1(h), h.digest_size), h)
    elif alg in _EC_SIZES and isinstance(private_key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(private_key.sign(signing_input, ec.ECDSA(_HASHES[alg[2:]]())))
        size = _EC_SIZES[alg]
        signature = r.to_bytes(size, "big") + s.to_bytes(size, "big")  # RFC 7518 §3.4
    elif alg in ("EdDSA", "Ed25519") and isinstance(private_key, ed25519.Ed25519PrivateKey):
        signature = private_key.sign(signing_input)
    else:
        raise ValueError(f"the key cannot sign {alg}")
    return signing_input.decode("ascii") + "." + b64url_encode(signature)

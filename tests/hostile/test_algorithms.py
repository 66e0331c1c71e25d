"""Algorithms and signatures: none, HS* keyed with the client's public key, wrong curves and key
types, a header alg that is not the signature's, broken signatures, tampering, unknown algorithms,
short RSA keys, pinned algorithms; and each of the eleven accepted algorithms as a control."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from hostile_support import (EC_ORDER, b64, bad_client, compact, jdump, ok, params, payload_of, replace_segment,
                             run, segments, signature_for, unb64)
from support import jwks_of


def req(e, token: str):
    return e.token_request(token)


def forged(id: str, make):
    return bad_client(id, lambda e: req(e, make(e)))


def relabel(e, client_id: str, key, sign_alg: str, header_alg: str) -> str:
    """Signed with `sign_alg`, while the header claims `header_alg`."""
    return compact(key, header_alg, {"typ": "JWT", "kid": "k1"}, e.claims(client_id), sign_alg=sign_alg)


def with_signature(token: str, signature: bytes) -> str:
    return replace_segment(token, 2, b64(signature))


def sig(token: str) -> bytes:
    return unb64(segments(token)[2])


def flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


def public_pem(key, fmt=serialization.PublicFormat.SubjectPublicKeyInfo) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, fmt)


def public_der(key) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def hs(e, alg: str, secret: bytes, client_id: str = "rsa-client") -> str:
    return compact(secret, alg, {"typ": "JWT", "kid": "k1"}, e.claims(client_id))


def es256_der(e) -> str:
    token = e.assertion("es256-client", alg="ES256")
    raw = sig(token)
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    return with_signature(token, der)


def es256_s(e, change) -> str:
    token = e.assertion("es256-client", alg="ES256")
    raw = sig(token)
    s = change(int.from_bytes(raw[32:], "big"))
    return with_signature(token, raw[:32] + s.to_bytes(32, "big"))


def es256_r(e, value: int) -> str:
    token = e.assertion("es256-client", alg="ES256")
    return with_signature(token, value.to_bytes(32, "big") + sig(token)[32:])


ED_L = 2**252 + 27742317777372353535851937790883648493


def ed_s_plus_l(e) -> str:
    token = e.assertion("ed-client", alg="EdDSA")
    raw = sig(token)
    s = int.from_bytes(raw[32:], "little") + ED_L
    return with_signature(token, raw[:32] + s.to_bytes(32, "little"))


def tamper_claims(e, **changes) -> str:
    token = e.assertion()
    claims = {**payload_of(token), **changes}
    return replace_segment(token, 1, b64(jdump(claims)))


def tamper_header(e, **changes) -> str:
    token = e.assertion()
    header = {**json.loads(unb64(segments(token)[0])), **changes}
    return replace_segment(token, 0, b64(jdump({k: v for k, v in header.items() if v is not ...})))


def alg_named(e, name: str, sign_alg: str = "RS256", key=None) -> str:
    return relabel(e, "rsa-client", key or e.keys.rsa, sign_alg, name)


NONE = [
    forged("none-empty-signature", lambda e: replace_segment(alg_named(e, "none"), 2, "")),
    forged("none-with-rsa-signature", lambda e: alg_named(e, "none")),
    forged("none-capitalised", lambda e: replace_segment(alg_named(e, "None"), 2, "")),
    forged("none-upper-case", lambda e: replace_segment(alg_named(e, "NONE"), 2, "")),
    forged("none-mixed-case", lambda e: replace_segment(alg_named(e, "nOnE"), 2, "")),
    forged("none-trailing-space", lambda e: alg_named(e, "none ")),
    forged("none-with-nul", lambda e: alg_named(e, "none\x00")),
    forged("alg-empty-string", lambda e: alg_named(e, "")),
]

HMAC = [
    forged("hs256-public-pem", lambda e: hs(e, "HS256", public_pem(e.keys.rsa))),
    forged("hs384-public-pem", lambda e: hs(e, "HS384", public_pem(e.keys.rsa))),
    forged("hs512-public-pem", lambda e: hs(e, "HS512", public_pem(e.keys.rsa))),
    forged("hs256-public-pem-no-newline", lambda e: hs(e, "HS256", public_pem(e.keys.rsa).rstrip(b"\n"))),
    forged("hs256-pkcs1-pem", lambda e: hs(e, "HS256", public_pem(e.keys.rsa, serialization.PublicFormat.PKCS1))),
    forged("hs256-public-der", lambda e: hs(e, "HS256", public_der(e.keys.rsa))),
    forged("hs512-public-der", lambda e: hs(e, "HS512", public_der(e.keys.rsa))),
    forged("hs256-jwk-json", lambda e: hs(e, "HS256", json.dumps(json.loads(jwks_of((e.keys.rsa, "k1")))["keys"][0]).encode())),
    forged("hs256-jwks-json", lambda e: hs(e, "HS256", jwks_of((e.keys.rsa, "k1")).encode())),
    forged("hs256-modulus-bytes", lambda e: hs(e, "HS256", e.keys.rsa.public_key().public_numbers().n.to_bytes(256, "big"))),
    forged("hs256-ec-public-pem", lambda e: hs(e, "HS256", public_pem(e.keys.p256), "es256-client")),
    forged("hs256-ed-public-raw", lambda e: hs(e, "HS256", e.keys.ed.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw), "ed-client")),
]

KEY_MISMATCH = [
    # the wrong curve
    forged("es384-on-p256-client", lambda e: relabel(e, "es256-client", e.keys.p384, "ES384", "ES384")),
    forged("es256-header-p384-key", lambda e: relabel(e, "es384-client", e.keys.p384, "ES256", "ES256")),
    forged("es512-on-p256-client", lambda e: relabel(e, "es256-client", e.keys.p521, "ES512", "ES512")),
    forged("es256-on-p521-client", lambda e: relabel(e, "es512-client", e.keys.p256, "ES256", "ES256")),
    forged("es256-other-p256-key", lambda e: relabel(e, "es256-client", e.keys.p256_other, "ES256", "ES256")),
    # the wrong key type
    forged("rs256-on-ec-client", lambda e: relabel(e, "es256-client", e.keys.rsa, "RS256", "RS256")),
    forged("ps256-on-ed-client", lambda e: relabel(e, "ed-client", e.keys.rsa, "PS256", "PS256")),
    forged("es256-on-rsa-client", lambda e: relabel(e, "rsa-client", e.keys.p256, "ES256", "ES256")),
    forged("eddsa-on-rsa-client", lambda e: relabel(e, "rsa-client", e.keys.ed, "EdDSA", "EdDSA")),
    forged("eddsa-on-ec-client", lambda e: relabel(e, "es256-client", e.keys.ed, "EdDSA", "EdDSA")),
    forged("ed25519-other-key", lambda e: relabel(e, "ed-client", e.keys.ed_other, "Ed25519", "Ed25519")),
    # the header's alg is not the signature's
    forged("rs256-labelled-ps256", lambda e: relabel(e, "rsa-client", e.keys.rsa, "RS256", "PS256")),
    forged("ps256-labelled-rs256", lambda e: relabel(e, "rsa-client", e.keys.rsa, "PS256", "RS256")),
    forged("rs384-labelled-rs256", lambda e: relabel(e, "rsa-client", e.keys.rsa, "RS384", "RS256")),
    forged("rs256-labelled-rs512", lambda e: relabel(e, "rsa-client", e.keys.rsa, "RS256", "RS512")),
    forged("ps512-labelled-ps384", lambda e: relabel(e, "rsa-client", e.keys.rsa, "PS512", "PS384")),
    forged("es256-labelled-es384", lambda e: relabel(e, "es256-client", e.keys.p256, "ES256", "ES384")),
    forged("es384-sha256-labelled-es384", lambda e: relabel(e, "es384-client", e.keys.p384, "ES256", "ES384")),
    forged("eddsa-labelled-es256", lambda e: relabel(e, "ed-client", e.keys.ed, "EdDSA", "ES256")),
    # RSA keys under 2048 bits
    forged("rsa-1024-signature-kid-k1", lambda e: relabel(e, "rsa-client", e.keys.rsa_1024, "RS256", "RS256")),
    forged("rsa-1024-ps256", lambda e: relabel(e, "rsa-client", e.keys.rsa_1024, "PS256", "PS256")),
    forged("rsa-1024-without-kid", lambda e: compact(e.keys.rsa_1024, "RS256", {"typ": "JWT"}, e.claims("nokid-client"))),
    # a pinned algorithm
    forged("pinned-ps256-sent-rs256", lambda e: e.assertion("pinned-ps256", alg="RS256")),
    forged("pinned-ps256-sent-ps384", lambda e: e.assertion("pinned-ps256", alg="PS384")),
    forged("pinned-eddsa-sent-es256", lambda e: relabel(e, "pinned-eddsa", e.keys.p256, "ES256", "ES256")),
    forged("jwk-alg-rs512-sent-rs256", lambda e: e.assertion("jwkalg-client", alg="RS256")),
    ok("pinned-ps256-sent-ps256", lambda e: req(e, e.assertion("pinned-ps256", alg="PS256"))),
    ok("pinned-eddsa-sent-ed25519", lambda e: req(e, e.assertion("pinned-eddsa", alg="Ed25519", key=e.keys.ed))),
    ok("jwk-alg-rs512-sent-rs512", lambda e: req(e, e.assertion("jwkalg-client", alg="RS512"))),
]

SIGNATURES = [
    forged("sig-truncated-10-chars", lambda e: e.assertion()[:-10]),
    forged("sig-rsa-one-octet-short", lambda e: with_signature(t := e.assertion(), sig(t)[1:])),
    forged("sig-rsa-one-octet-long", lambda e: with_signature(t := e.assertion(), b"\x00" + sig(t))),
    forged("sig-rsa-all-zero", lambda e: with_signature(e.assertion(), bytes(256))),
    forged("sig-rsa-single-octet", lambda e: with_signature(e.assertion(), b"\x00")),
    forged("sig-rsa-bit-flip-first", lambda e: with_signature(t := e.assertion(), flip(sig(t), 0))),
    forged("sig-rsa-bit-flip-last", lambda e: with_signature(t := e.assertion(), flip(sig(t), -1))),
    forged("sig-ps256-bit-flip", lambda e: with_signature(t := e.assertion(alg="PS256"), flip(sig(t), 100))),
    forged("sig-rsa-from-other-assertion", lambda e: with_signature(e.assertion(), sig(e.assertion()))),
    forged("sig-rsa-modulus-value", lambda e: with_signature(e.assertion(), e.keys.rsa.public_key().public_numbers().n.to_bytes(256, "big"))),
    forged("sig-es256-der", es256_der),
    forged("sig-es256-all-zero", lambda e: with_signature(e.assertion("es256-client", alg="ES256"), bytes(64))),
    forged("sig-es256-r-zero", lambda e: es256_r(e, 0)),
    forged("sig-es256-r-equals-n", lambda e: es256_r(e, EC_ORDER["ES256"])),
    forged("sig-es256-s-zero", lambda e: es256_s(e, lambda s: 0)),
    forged("sig-es256-s-plus-n", lambda e: es256_s(e, lambda s: (s + EC_ORDER["ES256"]) % 2**256)),
    forged("sig-es256-bit-flip", lambda e: with_signature(t := e.assertion("es256-client", alg="ES256"), flip(sig(t), 5))),
    forged("sig-es256-truncated", lambda e: with_signature(t := e.assertion("es256-client", alg="ES256"), sig(t)[:63])),
    forged("sig-es512-truncated-132-to-130", lambda e: with_signature(t := e.assertion("es512-client", alg="ES512"), sig(t)[:130])),
    forged("sig-eddsa-bit-flip", lambda e: with_signature(t := e.assertion("ed-client", alg="EdDSA"), flip(sig(t), 40))),
    forged("sig-eddsa-s-plus-l", ed_s_plus_l),
    forged("sig-eddsa-all-zero", lambda e: with_signature(e.assertion("ed-client", alg="EdDSA"), bytes(64))),
    ok("sig-es256-high-s-fresh-is-accepted", lambda e: req(e, es256_s(e, lambda s: EC_ORDER["ES256"] - s))),
    # tampering after signing
    forged("tamper-scope-claim", lambda e: tamper_claims(e, scope="admin")),
    forged("tamper-exp-extended", lambda e: tamper_claims(e, exp=payload_of(e.assertion())["exp"] + 60)),
    forged("tamper-jti", lambda e: tamper_claims(e, jti="tampered")),
    forged("tamper-iss-sub-other-client", lambda e: tamper_claims(e, iss="other-client", sub="other-client")),
    forged("tamper-header-typ-removed", lambda e: tamper_header(e, typ=...)),
    forged("tamper-header-extra-member", lambda e: tamper_header(e, x5t="AAAA")),
    forged("tamper-payload-reencoded", lambda e: replace_segment(t := e.assertion(), 1, b64(json.dumps(payload_of(t), indent=1)))),
]

UNSUPPORTED = [forged(f"alg-{name}", (lambda n, a: lambda e: alg_named(e, n, a))(value, sign_alg))
               for name, value, sign_alg in [
                   ("rs1", "RS1", "RS256"), ("es256k", "ES256K", "RS256"), ("ed448", "Ed448", "RS256"),
                   ("rsa-oaep", "RSA-OAEP", "RS256"), ("dir", "dir", "RS256"), ("a128kw", "A128KW", "RS256"),
                   ("lower-rs256", "rs256", "RS256"), ("camel-rs256", "Rs256", "RS256"),
                   ("hyphen-rs-256", "RS-256", "RS256"), ("trailing-space-rs256", "RS256 ", "RS256"),
                   ("inner-space-rs-256", "RS 256", "RS256"), ("fullwidth-rs256", "\uff32\uff33256", "RS256"),
                   ("rs256-nul", "RS256\x00", "RS256"), ("upper-eddsa", "EDDSA", "RS256"),
                   ("lower-ed25519", "ed25519", "RS256"), ("ps256-typo", "PS265", "PS256"),
                   ("rs128", "RS128", "RS256"), ("rs1024", "RS1024", "RS256"),
               ]]

EVERY_ALGORITHM = [
    ok(f"alg-ok-{alg.lower()}", (lambda a, c: lambda e: req(e, e.assertion(c, alg=a)))(alg, client))
    for alg, client in [("RS256", "rsa-client"), ("RS384", "rsa-client"), ("RS512", "rsa-client"),
                        ("PS256", "rsa-client"), ("PS384", "rsa-client"), ("PS512", "rsa-client"),
                        ("ES256", "es256-client"), ("ES384", "es384-client"), ("ES512", "es512-client"),
                        ("EdDSA", "ed-client"), ("Ed25519", "ed-client")]
]


ALL = NONE + HMAC + KEY_MISMATCH + SIGNATURES + UNSUPPORTED + EVERY_ALGORITHM


@pytest.mark.parametrize("case", params(ALL))
def test_algorithms(env, case):
    run(env, case)


def _rsa_1024_jwks() -> str:
    from support import rsa_key
    numbers = rsa_key(1024).public_key().public_numbers()

    def uint(v: int) -> str:
        return base64.urlsafe_b64encode(v.to_bytes((v.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()
    return json.dumps({"keys": [{"kty": "RSA", "kid": "k1", "n": uint(numbers.n), "e": uint(numbers.e)}]})


def test_cli_refuses_a_1024_bit_rsa_key(env, tmp_path):
    jwks_file = tmp_path / "rsa1024.jwks.json"
    jwks_file.write_text(_rsa_1024_jwks())
    result = env.server.cli("clients", "create", "--client-id", "rsa1024-client", "--auth-method", "private_key_jwt",
                            "--jwks-file", str(jwks_file), check=False)
    assert result.returncode != 0
    assert "2048" in result.stderr
    assert env.server.cli("clients", "show", "rsa1024-client", check=False).returncode != 0


@pytest.mark.parametrize("alg", ["HS256", "none"])
def test_cli_refuses_to_pin_an_unaccepted_algorithm(env, tmp_path, alg):
    jwks_file = tmp_path / "k.jwks.json"
    jwks_file.write_text(jwks_of((env.keys.rsa, "k1")))
    result = env.server.cli("clients", "create", "--client-id", f"pin-{alg}", "--auth-method", "private_key_jwt",
                            "--jwks-file", str(jwks_file), "--signing-alg", alg, check=False)
    assert result.returncode != 0 and "signing-alg" in result.stderr

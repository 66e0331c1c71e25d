"""Strict compact JWS parsing and single-algorithm verification (keystore.jws)."""

from __future__ import annotations

import base64
import json
import re

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from jose import jwt as jose_jwt

from keystore.jwk import SIGNING_ALGORITHMS, PublicKey
from keystore.jws import (
    CompactJWS,
    MalformedJWS,
    UnsuitableKey,
    Verifier,
    b64url_decode,
    b64url_encode,
    parse_compact_jws,
    verifier,
)

# RFC 6749 §5.2 error_description characters.
SAFE_DESCRIPTION = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]+")

P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551

CLAIMS = {"iss": "client-1", "sub": "client-1", "aud": "https://as.example/token", "jti": "j-1", "exp": 2000000000}


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------

def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def as_json(value) -> bytes:
    if isinstance(value, bytes):
        return value
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


_HASH = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}


def raw_sign(private_key, alg: str, message: bytes) -> bytes:
    if alg.startswith("RS"):
        return private_key.sign(message, padding.PKCS1v15(), _HASH[alg[2:]]())
    if alg.startswith("PS"):
        h = _HASH[alg[2:]]
        return private_key.sign(message, padding.PSS(mgf=padding.MGF1(h()), salt_length=h.digest_size), h())
    if alg.startswith("ES"):
        der = private_key.sign(message, ec.ECDSA(_HASH[alg[2:]]()))
        r, s = decode_dss_signature(der)
        size = (private_key.curve.key_size + 7) // 8
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    return private_key.sign(message)


def make_token(private_key, header, payload=None) -> str:
    """Sign arbitrary header/payload JSON (dict or raw bytes) with cryptography."""
    if isinstance(header, dict):
        alg = header["alg"]
    else:
        alg = json.loads(header)["alg"]
    signing_input = b64(as_json(header)) + "." + b64(as_json(CLAIMS if payload is None else payload))
    return signing_input + "." + b64(raw_sign(private_key, alg, signing_input.encode("ascii")))


def unsigned(header, payload=None, signature: bytes = b"\x01" * 64) -> str:
    return b64(as_json(header)) + "." + b64(as_json(CLAIMS if payload is None else payload)) + "." + b64(signature)


def check(pub, alg: str, token: str) -> bool:
    parsed = parse_compact_jws(token)
    return verifier(pub, alg).verify(parsed.signing_input, parsed.signature)


def malformed(token, **kwargs) -> str:
    with pytest.raises(MalformedJWS) as info:
        parse_compact_jws(token, **kwargs)
    message = str(info.value)
    assert SAFE_DESCRIPTION.fullmatch(message), message
    return message


# ---------------------------------------------------------------------------------------------
# keys
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def p256_key():
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def p384_key():
    return ec.generate_private_key(ec.SECP384R1())


@pytest.fixture(scope="module")
def p521_key():
    return ec.generate_private_key(ec.SECP521R1())


@pytest.fixture(scope="module")
def ed_key():
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def keys(rsa_key, p256_key, p384_key, p521_key, ed_key):
    """alg -> (private key, PublicKey)"""
    table = {}
    for alg in SIGNING_ALGORITHMS:
        private = {"ES256": p256_key, "ES384": p384_key, "ES512": p521_key}.get(alg) \
            or {"RS": rsa_key, "PS": rsa_key, "Ed": ed_key}[alg[:2]]
        table[alg] = (private, PublicKey.from_cryptography(private.public_key()))
    return table


@pytest.fixture(scope="module")
def es256_token(p256_key):
    return jose_jwt.encode(CLAIMS, p256_key, algorithm="ES256")


@pytest.fixture(scope="module")
def rs256_token(rsa_key):
    return jose_jwt.encode(CLAIMS, rsa_key, algorithm="RS256")


# ---------------------------------------------------------------------------------------------
# base64url
# ---------------------------------------------------------------------------------------------

def test_b64url_round_trip_all_lengths():
    for n in range(0, 70):
        data = bytes(range(256))[:n]
        text = b64url_encode(data)
        assert "=" not in text
        assert b64url_decode(text) == data


@pytest.mark.parametrize("text", ["QQ==", "QQ=", "Q", "Q R", "QR\n", "QR+/", "QR", "QUJ", "QUJD\x00", "Q\u00e9", " QQ"])
def test_b64url_decode_refuses_non_canonical(text):
    if text in ("QR", "QUJ"):
        # "QR" and "QUJ" decode with non-zero unused bits; the canonical forms are "QQ" and "QUI".
        assert base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)) in (b"A", b"AB")
    with pytest.raises(MalformedJWS):
        b64url_decode(text)


def test_b64url_decode_refuses_non_string():
    with pytest.raises(MalformedJWS):
        b64url_decode(b"QQ")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# parsing: good input
# ---------------------------------------------------------------------------------------------

def test_parse_returns_exact_parts(es256_token):
    parsed = parse_compact_jws(es256_token)
    header_b64, payload_b64, signature_b64 = es256_token.split(".")
    assert isinstance(parsed, CompactJWS)
    assert parsed.header == {"alg": "ES256", "typ": "JWT"}
    assert parsed.payload == CLAIMS
    assert parsed.signing_input == f"{header_b64}.{payload_b64}".encode("ascii")
    assert parsed.signature == base64.urlsafe_b64decode(signature_b64 + "=" * (-len(signature_b64) % 4))
    assert len(parsed.signature) == 64


def test_signing_input_is_the_received_text_not_a_reencoding(p256_key):
    # Same JSON, different (but valid) textual form: the signature covers the received bytes.
    header = b'{ "alg" : "ES256" }'
    token = make_token(p256_key, header)
    parsed = parse_compact_jws(token)
    assert parsed.signing_input.split(b".")[0] == b64(header).encode("ascii")
    assert verifier(PublicKey.from_cryptography(p256_key.public_key()), "ES256").verify(
        parsed.signing_input, parsed.signature) is True


# ---------------------------------------------------------------------------------------------
# parsing: python-jose weaknesses
# ---------------------------------------------------------------------------------------------

def test_padded_signature_refused(rs256_token):
    # RS256/2048: 256-octet signature -> 342 characters, canonical form has no "==".
    assert malformed(rs256_token + "==") == "signature is not canonical base64url"


def test_padded_header_refused(p256_key):
    header = b'{"alg":"ES256","kid":"k"}'  # 25 octets -> 34 characters, canonical form unpadded
    header_b64, rest = make_token(p256_key, header).split(".", 1)
    assert len(header_b64) % 4 == 2
    assert malformed(header_b64 + "==." + rest) == "header is not canonical base64url"


def test_non_canonical_last_character_of_signature_refused(rs256_token):
    head, sig = rs256_token.rsplit(".", 1)
    assert len(sig) % 4 == 2  # 4 unused low bits in the last character
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    index = alphabet.index(sig[-1])
    assert index & 0x0F == 0
    forged = sig[:-1] + alphabet[index | 0x01]
    # A lenient decoder yields the very same octets ...
    assert base64.urlsafe_b64decode(forged + "==") == base64.urlsafe_b64decode(sig + "==")
    # ... but the text is not canonical.
    assert malformed(head + "." + forged) == "signature is not canonical base64url"


def test_non_canonical_payload_refused(p256_key):
    payload = b'{"jti":"j1","exp":2000000000}'  # 29 octets -> 39 characters, 2 unused bits
    header_b64, payload_b64, sig = make_token(p256_key, {"alg": "ES256"}, payload).split(".")
    assert len(payload_b64) % 4 == 3
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    index = alphabet.index(payload_b64[-1])
    assert index & 0x03 == 0
    forged = payload_b64[:-1] + alphabet[index | 0x03]
    assert base64.urlsafe_b64decode(forged + "=") == payload
    assert malformed(f"{header_b64}.{forged}.{sig}") == "payload is not canonical base64url"


def test_segment_length_one_mod_four_refused(es256_token):
    header_b64, payload_b64, sig = es256_token.split(".")
    trimmed = sig[: len(sig) - (len(sig) % 4) + 1] if len(sig) % 4 != 1 else sig
    assert len(trimmed) % 4 == 1
    assert malformed(f"{header_b64}.{payload_b64}.{trimmed}") == "signature is not canonical base64url"


def test_malleated_ecdsa_signature_is_accepted_by_design(p256_key, es256_token):
    """(r, n - s) is a second valid ECDSA signature.  Refusing high-s would refuse about half of all
    legitimate signatures (OpenSSL does not normalise s); replay is keyed on (client_id, jti),
    so a malleated copy carrying the same jti is caught as a replay by the caller."""
    pub = PublicKey.from_cryptography(p256_key.public_key())
    parsed = parse_compact_jws(es256_token)
    r = int.from_bytes(parsed.signature[:32], "big")
    s = int.from_bytes(parsed.signature[32:], "big")
    malleated_sig = r.to_bytes(32, "big") + (P256_ORDER - s).to_bytes(32, "big")
    assert malleated_sig != parsed.signature
    head = es256_token.rsplit(".", 1)[0]
    malleated_token = head + "." + b64(malleated_sig)
    assert malleated_token != es256_token

    again = parse_compact_jws(malleated_token)
    v = verifier(pub, "ES256")
    assert v.verify(parsed.signing_input, parsed.signature) is True
    assert v.verify(again.signing_input, again.signature) is True
    # Same claims, same jti: the replay key is identical.
    assert again.payload == parsed.payload
    assert again.payload["jti"] == parsed.payload["jti"]


def test_unknown_crit_refused(p256_key):
    token = make_token(p256_key, {"alg": "ES256", "crit": ["urn:example:ext"], "urn:example:ext": 1})
    assert malformed(token) == "crit header parameter is not supported"


def test_empty_crit_refused(p256_key):
    # RFC 7515 §4.1.11: an empty list is not allowed either.
    assert malformed(make_token(p256_key, {"alg": "ES256", "crit": []})) == "crit header parameter is not supported"


def test_b64_header_refused(p256_key):
    assert malformed(make_token(p256_key, {"alg": "ES256", "b64": False, "crit": ["b64"]})) \
        == "crit header parameter is not supported"
    assert malformed(make_token(p256_key, {"alg": "ES256", "b64": True})) == "b64 header parameter is not supported"


def test_zip_header_refused(p256_key):
    assert malformed(make_token(p256_key, {"alg": "ES256", "zip": "DEF"})) == "zip header parameter is not allowed in a JWS"


def test_enc_header_refused(p256_key):
    assert malformed(make_token(p256_key, {"alg": "ES256", "enc": "A128GCM"})) \
        == "enc header parameter is not allowed in a JWS"


def test_duplicate_member_in_header_refused(p256_key):
    token = make_token(p256_key, b'{"alg":"ES256","kid":"a","kid":"b"}')
    assert malformed(token) == "header is not strict JSON: duplicate member name"


def test_duplicate_alg_in_header_refused(p256_key):
    token = make_token(p256_key, b'{"alg":"none","alg":"ES256"}')
    assert malformed(token) == "header is not strict JSON: duplicate member name"


def test_duplicate_member_in_payload_refused(p256_key):
    payload = b'{"iss":"client-1","sub":"client-1","sub":"admin","jti":"j","exp":2000000000}'
    token = make_token(p256_key, {"alg": "ES256"}, payload)
    assert malformed(token) == "payload is not strict JSON: duplicate member name"


def test_duplicate_member_in_nested_payload_object_refused(p256_key):
    token = make_token(p256_key, {"alg": "ES256"}, b'{"jti":"j","cnf":{"jkt":"a","jkt":"b"}}')
    assert malformed(token) == "payload is not strict JSON: duplicate member name"


def test_es256_header_with_p384_key_is_unsuitable(p384_key):
    pub = PublicKey.from_cryptography(p384_key.public_key())
    parse_compact_jws(unsigned({"alg": "ES256"}))
    with pytest.raises(UnsuitableKey):
        verifier(pub, "ES256")
    assert verifier(pub, "ES384").alg == "ES384"


@pytest.mark.parametrize("literal", [b"Infinity", b"-Infinity", b"NaN"])
def test_non_finite_exp_refused(p256_key, literal):
    payload = b'{"iss":"c","jti":"j","exp":' + literal + b"}"
    token = make_token(p256_key, {"alg": "ES256"}, payload)
    assert malformed(token) == "payload is not strict JSON: NaN, Infinity or an overflowing number"


def test_overflowing_float_exp_refused(p256_key):
    # json would turn 1e400 into float("inf") without calling parse_constant.
    token = make_token(p256_key, {"alg": "ES256"}, b'{"jti":"j","exp":1e400}')
    assert malformed(token) == "payload is not strict JSON: NaN, Infinity or an overflowing number"


def test_nan_in_header_refused(p256_key):
    token = make_token(p256_key, b'{"alg":"ES256","x":NaN}')
    assert malformed(token) == "header is not strict JSON: NaN, Infinity or an overflowing number"


# ---------------------------------------------------------------------------------------------
# parsing: structure
# ---------------------------------------------------------------------------------------------

def test_two_segments_refused(es256_token):
    assert malformed(es256_token.rsplit(".", 1)[0]) == "token does not have exactly three segments"


def test_four_segments_refused(es256_token):
    assert malformed(es256_token + ".AAAA") == "token does not have exactly three segments"


def test_one_segment_refused():
    assert malformed("eyJhbGciOiJFUzI1NiJ9") == "token does not have exactly three segments"


def test_five_segments_jwe_refused():
    jwe = b64(b'{"alg":"RSA-OAEP","enc":"A256GCM"}') + ".AAAA.AAAA.AAAA.AAAA"
    assert malformed(jwe) == "token is a JWE, not a JWS"


def test_json_serialization_refused(es256_token):
    header_b64, payload_b64, sig = es256_token.split(".")
    general = json.dumps({"payload": payload_b64, "signatures": [{"protected": header_b64, "signature": sig}]})
    flattened = json.dumps({"payload": payload_b64, "protected": header_b64, "signature": sig})
    assert malformed(general) == "JWS JSON serialization is not accepted"
    assert malformed(flattened) == "JWS JSON serialization is not accepted"


@pytest.mark.parametrize("header", [b"[]", b'"ES256"', b"1", b"null", b"true", b'[{"alg":"ES256"}]'])
def test_non_object_header_refused(header):
    assert malformed(unsigned(header)) == "header is not a JSON object"


@pytest.mark.parametrize("payload", [b"[]", b'"claims"', b"42", b"null", b"false"])
def test_non_object_payload_refused(payload):
    assert malformed(unsigned({"alg": "ES256"}, payload)) == "payload is not a JSON object"


def test_empty_payload_refused():
    token = b64(b'{"alg":"ES256"}') + ".." + b64(b"\x01" * 64)
    assert malformed(token) == "payload is not strict JSON: invalid JSON"


def test_non_json_header_refused():
    assert malformed(unsigned(b"alg=ES256")) == "header is not strict JSON: invalid JSON"


def test_invalid_utf8_header_refused():
    assert malformed(unsigned(b'{"alg":"ES256","x":"\xff"}')) == "header is not strict JSON: not UTF-8"


def test_utf8_bom_header_refused():
    assert malformed(unsigned(b'\xef\xbb\xbf{"alg":"ES256"}')) == "header is not strict JSON: invalid JSON"


def test_unpaired_surrogate_refused():
    assert malformed(unsigned({"alg": "ES256"}, b'{"sub":"\\ud800"}')) \
        == "payload is not strict JSON: unpaired surrogate in a string"


def test_paired_surrogate_accepted():
    parsed = parse_compact_jws(unsigned({"alg": "ES256"}, b'{"sub":"\\ud83d\\ude00"}'))
    assert parsed.payload == {"sub": "\U0001F600"}


@pytest.mark.parametrize("where", ["leading", "trailing", "inside"])
@pytest.mark.parametrize("char", [" ", "\n", "\r\n", "\t", "\x00", "\x0b", "\x7f"])
def test_whitespace_and_control_characters_refused(es256_token, where, char):
    header_b64, payload_b64, sig = es256_token.split(".")
    token = {
        "leading": char + es256_token,
        "trailing": es256_token + char,
        "inside": f"{header_b64}.{payload_b64[:5]}{char}{payload_b64[5:]}.{sig}",
    }[where]
    message = malformed(token)
    assert message.endswith("is not canonical base64url")


def test_non_ascii_refused(es256_token):
    assert malformed(es256_token[:10] + "\u00e9" + es256_token[10:]) == "token contains non-ASCII characters"
    assert malformed(es256_token[:10] + "\uff21" + es256_token[10:]) == "token contains non-ASCII characters"


def test_standard_base64_alphabet_refused():
    token = unsigned({"alg": "ES256"}, signature=b"\xfb\xff" * 32)
    assert "-" in token or "_" in token
    assert malformed(token.replace("-", "+").replace("_", "/")).endswith("is not canonical base64url")


def _nested(depth: int) -> bytes:
    # An object whose deepest container is at `depth` (top-level object = 1).
    return b'{"a":' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


def test_nesting_at_limit_accepted():
    parsed = parse_compact_jws(unsigned({"alg": "ES256"}, _nested(16)))
    assert "a" in parsed.payload


def test_nesting_beyond_limit_refused():
    assert malformed(unsigned({"alg": "ES256"}, _nested(17))) == "payload is not strict JSON: nesting too deep"


def test_deep_nesting_in_header_refused():
    header = b'{"alg":"ES256","x":' + b'{"a":' * 20 + b"1" + b"}" * 20 + b"}"
    assert malformed(unsigned(header)) == "header is not strict JSON: nesting too deep"


def test_pathological_nesting_refused_without_recursion_error():
    # Deeper than the interpreter's recursion limit: must still be a MalformedJWS.
    payload = b"[" * 5000 + b"]" * 5000
    assert malformed(unsigned({"alg": "ES256"}, payload), max_length=20000) \
        == "payload is not strict JSON: nesting too deep"


def test_oversized_token_refused(p256_key):
    big = dict(CLAIMS, pad="x" * 8192)
    token = make_token(p256_key, {"alg": "ES256"}, big)
    assert malformed(token) == "token is too long"


def test_max_length_is_configurable(es256_token):
    assert malformed(es256_token, max_length=len(es256_token) - 1) == "token is too long"
    assert parse_compact_jws(es256_token, max_length=len(es256_token)).payload == CLAIMS


def test_empty_signature_refused(es256_token):
    assert malformed(es256_token.rsplit(".", 1)[0] + ".") == "signature is empty"


def test_alg_none_unsigned_token_refused():
    token = b64(b'{"alg":"none"}') + "." + b64(as_json(CLAIMS)) + "."
    assert malformed(token) == "signature is empty"


@pytest.mark.parametrize("token", [None, b"a.b.c", 123, ["a", "b", "c"]])
def test_non_string_token_refused(token):
    assert malformed(token) == "token is not a string"


def test_empty_token_refused():
    assert malformed("") == "token is empty"


def test_missing_alg_refused():
    assert malformed(unsigned({"typ": "JWT"})) == "header alg is missing or not a string"


@pytest.mark.parametrize("alg", [None, 256, ["ES256"], {"alg": "ES256"}, True])
def test_non_string_alg_refused(alg):
    assert malformed(unsigned({"alg": alg})) == "header alg is missing or not a string"


@pytest.mark.parametrize("name", ["kid", "typ", "cty"])
def test_non_string_kid_typ_cty_refused(name):
    assert malformed(unsigned({"alg": "ES256", name: 1})) == "header kid, typ or cty is not a string"


def test_key_bearing_headers_are_never_used(p256_key):
    """A token that carries its own key (jwk/jku/x5u/x5c) and is signed by that key still only
    verifies against the registered key."""
    attacker = ec.generate_private_key(ec.SECP256R1())
    attacker_jwk = PublicKey.from_cryptography(attacker.public_key()).to_jwk()
    header = {"alg": "ES256", "jwk": attacker_jwk, "jku": "https://attacker.example/jwks",
              "x5u": "https://attacker.example/cert", "x5c": ["AAAA"]}
    token = make_token(attacker, header)
    parsed = parse_compact_jws(token)
    assert parsed.header == header
    registered = PublicKey.from_cryptography(p256_key.public_key())
    assert verifier(registered, "ES256").verify(parsed.signing_input, parsed.signature) is False


def test_messages_never_echo_input():
    secret = "SECRETVALUE"
    for token in (
        secret,
        secret + "." + secret,
        unsigned({"alg": "ES256", "crit": [secret]}),
        unsigned({"alg": secret, "enc": secret}),
        unsigned(b'{"alg":"' + secret.encode() + b'","alg":"x"}'),
        "{" + secret + "}",
        secret + "\u00e9",
    ):
        message = malformed(token)
        assert secret not in message


# ---------------------------------------------------------------------------------------------
# verification
# ---------------------------------------------------------------------------------------------

def _good_token(keys, alg: str) -> str:
    private, _ = keys[alg]
    if alg[:2] in ("RS", "ES"):
        # Tokens produced by python-jose itself.
        return jose_jwt.encode(CLAIMS, private, algorithm=alg)
    return make_token(private, {"alg": alg, "typ": "JWT"})


@pytest.mark.parametrize("alg", SIGNING_ALGORITHMS)
def test_every_algorithm_verifies_a_good_signature(keys, alg):
    _, pub = keys[alg]
    token = _good_token(keys, alg)
    parsed = parse_compact_jws(token)
    assert parsed.header["alg"] == alg
    v = verifier(pub, alg)
    assert isinstance(v, Verifier)
    assert v.alg == alg and v.key == pub
    assert v.verify(parsed.signing_input, parsed.signature) is True


def test_signature_lengths(keys):
    expected = {"RS256": 256, "PS384": 256, "ES256": 64, "ES384": 96, "ES512": 132, "EdDSA": 64, "Ed25519": 64}
    for alg, length in expected.items():
        assert len(parse_compact_jws(_good_token(keys, alg)).signature) == length


def test_eddsa_and_ed25519_both_accepted_for_ed25519_key(ed_key):
    pub = PublicKey.from_cryptography(ed_key.public_key())
    for alg in ("EdDSA", "Ed25519"):
        assert check(pub, alg, make_token(ed_key, {"alg": alg})) is True
    # The operation is identical: a signature made under one name verifies under the other.
    parsed = parse_compact_jws(make_token(ed_key, {"alg": "EdDSA"}))
    assert verifier(pub, "Ed25519").verify(parsed.signing_input, parsed.signature) is True


def test_ed25519_jwk_alg_matches_both_names(ed_key):
    for jwk_alg in ("EdDSA", "Ed25519"):
        pub = PublicKey.from_cryptography(ed_key.public_key(), alg=jwk_alg)
        assert verifier(pub, "EdDSA").alg == "EdDSA"
        assert verifier(pub, "Ed25519").alg == "Ed25519"


@pytest.mark.parametrize("alg", SIGNING_ALGORITHMS)
def test_tampered_payload_fails(keys, alg):
    _, pub = keys[alg]
    token = _good_token(keys, alg)
    header_b64, _, sig = token.split(".")
    tampered = f"{header_b64}.{b64(as_json(dict(CLAIMS, sub='admin')))}.{sig}"
    assert check(pub, alg, tampered) is False


@pytest.mark.parametrize("alg", SIGNING_ALGORITHMS)
def test_truncated_signature_fails(keys, alg):
    _, pub = keys[alg]
    parsed = parse_compact_jws(_good_token(keys, alg))
    v = verifier(pub, alg)
    assert v.verify(parsed.signing_input, parsed.signature[:-1]) is False
    assert v.verify(parsed.signing_input, parsed.signature[1:]) is False
    assert v.verify(parsed.signing_input, parsed.signature[: len(parsed.signature) // 2]) is False


@pytest.mark.parametrize("alg", SIGNING_ALGORITHMS)
def test_extended_signature_fails(keys, alg):
    _, pub = keys[alg]
    parsed = parse_compact_jws(_good_token(keys, alg))
    v = verifier(pub, alg)
    assert v.verify(parsed.signing_input, parsed.signature + b"\x00") is False
    assert v.verify(parsed.signing_input, b"\x00" + parsed.signature) is False


@pytest.mark.parametrize("alg", SIGNING_ALGORITHMS)
def test_all_zero_signature_fails(keys, alg):
    _, pub = keys[alg]
    parsed = parse_compact_jws(_good_token(keys, alg))
    assert verifier(pub, alg).verify(parsed.signing_input, bytes(len(parsed.signature))) is False


@pytest.mark.parametrize("alg", SIGNING_ALGORITHMS)
def test_bit_flipped_signature_fails(keys, alg):
    _, pub = keys[alg]
    parsed = parse_compact_jws(_good_token(keys, alg))
    v = verifier(pub, alg)
    for position in (0, len(parsed.signature) // 2, len(parsed.signature) - 1):
        flipped = bytearray(parsed.signature)
        flipped[position] ^= 0x01
        assert v.verify(parsed.signing_input, bytes(flipped)) is False


@pytest.mark.parametrize("alg", ["ES256", "ES384", "ES512"])
def test_der_encoded_ecdsa_signature_fails(keys, alg):
    private, pub = keys[alg]
    parsed = parse_compact_jws(_good_token(keys, alg))
    size = len(parsed.signature) // 2
    r = int.from_bytes(parsed.signature[:size], "big")
    s = int.from_bytes(parsed.signature[size:], "big")
    der = encode_dss_signature(r, s)
    # The DER form is a valid signature for cryptography itself ...
    private.public_key().verify(der, parsed.signing_input, ec.ECDSA(_HASH[alg[2:]]()))
    # ... but JWS requires R || S (RFC 7518 §3.4).
    assert verifier(pub, alg).verify(parsed.signing_input, der) is False


def test_der_signature_padded_to_raw_length_fails(keys):
    _, pub = keys["ES256"]
    parsed = parse_compact_jws(_good_token(keys, "ES256"))
    r = int.from_bytes(parsed.signature[:32], "big")
    s = int.from_bytes(parsed.signature[32:], "big")
    der = encode_dss_signature(r, s)
    padded = (der + bytes(64))[:64]
    assert verifier(pub, "ES256").verify(parsed.signing_input, padded) is False


def test_ecdsa_r_or_s_out_of_range_fails(keys):
    _, pub = keys["ES256"]
    parsed = parse_compact_jws(_good_token(keys, "ES256"))
    r = int.from_bytes(parsed.signature[:32], "big")
    s = int.from_bytes(parsed.signature[32:], "big")
    v = verifier(pub, "ES256")
    for bad_r, bad_s in ((0, s), (r, 0), (r + P256_ORDER, s), (r, s + P256_ORDER), (P256_ORDER, s), (2**256 - 1, s)):
        if bad_r >= 2**256 or bad_s >= 2**256:
            continue
        sig = bad_r.to_bytes(32, "big") + bad_s.to_bytes(32, "big")
        assert v.verify(parsed.signing_input, sig) is False


def test_signature_of_another_key_fails(keys):
    _, pub = keys["ES256"]
    other = ec.generate_private_key(ec.SECP256R1())
    assert check(pub, "ES256", jose_jwt.encode(CLAIMS, other, algorithm="ES256")) is False


def test_rs256_signature_does_not_verify_as_ps256(keys):
    _, pub = keys["RS256"]
    parsed = parse_compact_jws(_good_token(keys, "RS256"))
    assert verifier(pub, "RS256").verify(parsed.signing_input, parsed.signature) is True
    assert verifier(pub, "PS256").verify(parsed.signing_input, parsed.signature) is False
    assert verifier(pub, "RS384").verify(parsed.signing_input, parsed.signature) is False


def test_ps256_signature_does_not_verify_as_ps384_or_rs256(keys):
    _, pub = keys["PS256"]
    parsed = parse_compact_jws(_good_token(keys, "PS256"))
    assert verifier(pub, "PS384").verify(parsed.signing_input, parsed.signature) is False
    assert verifier(pub, "RS256").verify(parsed.signing_input, parsed.signature) is False


def test_pss_with_wrong_salt_length_fails(rsa_key):
    pub = PublicKey.from_cryptography(rsa_key.public_key())
    signing_input = (b64(b'{"alg":"PS256"}') + "." + b64(as_json(CLAIMS))).encode("ascii")
    sig = rsa_key.sign(signing_input, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=0), hashes.SHA256())
    assert verifier(pub, "PS256").verify(signing_input, sig) is False


@pytest.mark.parametrize("alg", ["RS256", "ES256", "PS256", "EdDSA"])
@pytest.mark.parametrize("garbage", [None, "text", 1, b"", bytearray(b"x" * 64), object()])
def test_verify_never_raises_and_returns_bool(keys, alg, garbage):
    _, pub = keys[alg]
    v = verifier(pub, alg)
    assert v.verify(b"a.b", garbage) is False
    assert v.verify(garbage, b"\x01" * 64) is False


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE", "", "HS256", "HS384", "HS512", "RSA-OAEP",
                                 "RS1", "ES256K", "Ed448", "rs256", "ES256 "])
def test_unaccepted_algorithms_are_unsuitable(keys, alg):
    for candidate in ("RS256", "ES256", "EdDSA"):
        _, pub = keys[candidate]
        with pytest.raises(UnsuitableKey):
            verifier(pub, alg)


@pytest.mark.parametrize("alg", [None, 256, b"RS256", ("RS256",)])
def test_non_string_algorithm_is_unsuitable(keys, alg):
    _, pub = keys["RS256"]
    with pytest.raises(UnsuitableKey):
        verifier(pub, alg)


def test_key_family_mismatch_is_unsuitable(keys):
    rsa_pub = keys["RS256"][1]
    p256_pub = keys["ES256"][1]
    p521_pub = keys["ES512"][1]
    ed_pub = keys["EdDSA"][1]
    for pub, alg in ((rsa_pub, "ES256"), (rsa_pub, "EdDSA"), (p256_pub, "RS256"), (p256_pub, "PS256"),
                     (p256_pub, "ES384"), (p256_pub, "ES512"), (p256_pub, "EdDSA"), (p521_pub, "ES256"),
                     (ed_pub, "ES256"), (ed_pub, "RS256")):
        with pytest.raises(UnsuitableKey):
            verifier(pub, alg)


def test_key_with_use_enc_is_unsuitable(rsa_key):
    pub = PublicKey.from_cryptography(rsa_key.public_key(), use="enc")
    with pytest.raises(UnsuitableKey):
        verifier(pub, "RS256")


def test_key_with_jwk_alg_is_bound_to_it(rsa_key):
    pub = PublicKey.from_cryptography(rsa_key.public_key(), alg="PS256")
    assert verifier(pub, "PS256").alg == "PS256"
    with pytest.raises(UnsuitableKey):
        verifier(pub, "RS256")


def test_not_a_public_key_is_unsuitable(rsa_key):
    with pytest.raises(UnsuitableKey):
        verifier(rsa_key.public_key(), "RS256")  # type: ignore[arg-type]


def test_verifiers_are_cached_per_key_and_algorithm(rsa_key):
    first = PublicKey.from_cryptography(rsa_key.public_key(), kid="k1")
    again = PublicKey.from_cryptography(rsa_key.public_key(), kid="k1")
    assert verifier(first, "RS256") is verifier(again, "RS256")
    assert verifier(first, "RS256") is not verifier(first, "PS256")
    relabelled = PublicKey.from_cryptography(rsa_key.public_key(), kid="k2")
    assert verifier(relabelled, "RS256").key.kid == "k2"


def test_unsuitable_key_message_is_safe(keys):
    with pytest.raises(UnsuitableKey) as info:
        verifier(keys["ES256"][1], "HS256")
    assert SAFE_DESCRIPTION.fullmatch(str(info.value))
    assert "HS256" not in str(info.value)

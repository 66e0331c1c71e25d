"""DPoP proof verification, htu comparison and stateless nonces (keystore.dpop, RFC 9449)."""

from __future__ import annotations

import hashlib
import hmac
import json
import re

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from keystore.dpop import (
    MAX_JTI_LENGTH,
    Nonces,
    Proof,
    ProofError,
    ath,
    htu_matches,
    thumbprint_format_ok,
    verify_proof,
)
from keystore.jwk import PublicKey
from keystore.jws import b64url_decode, b64url_encode
from keystore.signing import sign

# RFC 6749 §5.2 error_description characters.
SAFE_DESCRIPTION = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]+")

NOW = 1_700_000_000
LIFETIME = 60
SKEW = 5
URL = "https://as.example.com/oauth2/token"
ALGORITHMS = ("ES256", "RS256", "PS256", "EdDSA")


@pytest.fixture(scope="module")
def keys():
    return {
        "ES256": ec.generate_private_key(ec.SECP256R1()),
        "RS256": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "EdDSA": ed25519.Ed25519PrivateKey.generate(),
    }


@pytest.fixture(scope="module")
def ec_key(keys):
    return keys["ES256"]


def public_jwk(private_key) -> dict:
    return PublicKey.from_cryptography(private_key.public_key()).to_jwk()


def claims(**changes) -> dict:
    payload = {"jti": "e1j3V_bKic8-LAEB", "htm": "POST", "htu": URL, "iat": NOW}
    payload.update(changes)
    return {name: value for name, value in payload.items() if value is not DROP}


DROP = object()


def make_proof(private_key, alg: str = "ES256", payload: dict | None = None, **header) -> str:
    head = {"typ": "dpop+jwt", **header}
    if "jwk" not in head:
        head["jwk"] = public_jwk(private_key)
    head = {name: value for name, value in head.items() if value is not DROP}
    return sign(private_key, alg, claims() if payload is None else payload, head)


def unsigned(header: dict, payload: dict, signature: bytes = b"\x01" * 64) -> str:
    """A compact JWS with an arbitrary header (sign() cannot produce none or HS*)."""
    encode = lambda value: b64url_encode(json.dumps(value, separators=(",", ":")).encode())  # noqa: E731
    return encode(header) + "." + encode(payload) + "." + b64url_encode(signature)


def verify(token: str, **options) -> Proof:
    arguments = {"method": "POST", "url": URL, "algorithms": ALGORITHMS, "now": NOW,
                 "lifetime": LIFETIME, "skew": SKEW}
    arguments.update(options)
    return verify_proof(token, **arguments)


def refused(token: str, check: str, **options) -> str:
    with pytest.raises(ProofError) as info:
        verify(token, **options)
    assert info.value.check == check
    message = str(info.value)
    assert SAFE_DESCRIPTION.fullmatch(message), message
    return message


# ---------------------------------------------------------------------------------------------
# accepted proofs
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("alg", ["ES256", "RS256", "EdDSA"])
def test_a_valid_proof_returns_the_key_thumbprint_and_claims(keys, alg):
    private_key = keys[alg]
    proof = verify(make_proof(private_key, alg))
    assert proof.jkt == PublicKey.from_cryptography(private_key.public_key()).thumbprint
    assert thumbprint_format_ok(proof.jkt)
    assert (proof.jti, proof.iat, proof.alg, proof.nonce, proof.htm, proof.htu) == (
        "e1j3V_bKic8-LAEB", NOW, alg, None, "POST", URL)
    assert proof.key.thumbprint == proof.jkt


def test_ps256_is_accepted_with_an_rsa_key(keys):
    assert verify(make_proof(keys["RS256"], "PS256")).alg == "PS256"


def test_extra_jwk_members_do_not_change_the_thumbprint(ec_key):
    plain = verify(make_proof(ec_key)).jkt
    jwk = {**public_jwk(ec_key), "kid": "k-1", "use": "sig", "alg": "ES256"}
    assert verify(make_proof(ec_key, jwk=jwk)).jkt == plain


# ---------------------------------------------------------------------------------------------
# RFC 9449 §4.3 item 2: a well-formed compact JWS
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("token", [
    "", "a.b", "a.b.c.d.e", "not a jws", "{}", "é.é.é", None, 42,
    "eyJhbGciOiJFUzI1NiJ9.eyJ9.",
])
def test_garbage_is_malformed(token):
    refused(token, "malformed")


def test_an_oversized_proof_is_malformed(ec_key):
    refused(make_proof(ec_key, payload=claims(padding="x" * 4096)), "malformed")


def test_duplicate_header_members_are_malformed(ec_key):
    token = make_proof(ec_key)
    _, payload, signature = token.split(".")
    header = b64url_encode(b'{"alg":"ES256","typ":"dpop+jwt","typ":"dpop+jwt"}')
    refused(header + "." + payload + "." + signature, "malformed")


# ---------------------------------------------------------------------------------------------
# RFC 9449 §4.3 item 4: typ
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("typ", [DROP, "JWT", "jwt", "at+jwt", "dpop", "dpop+jwt ", "application/jwt",
                                 "dpop+jwt; charset=utf-8", "text/dpop+jwt", "application/x-dpop+jwt"])
def test_typ_other_than_dpop_jwt_is_refused(ec_key, typ):
    refused(make_proof(ec_key, typ=typ), "typ")


@pytest.mark.parametrize("typ", ["dpop+jwt", "DPoP+JWT", "application/dpop+jwt", "Application/DPOP+JWT"])
def test_typ_is_compared_as_a_media_type(ec_key, typ):
    # RFC 7515 §4.1.9: a media type, case-insensitive, "application/" implied.
    assert verify(make_proof(ec_key, typ=typ)).alg == "ES256"


# ---------------------------------------------------------------------------------------------
# RFC 9449 §4.3 item 5: alg
# ---------------------------------------------------------------------------------------------

def test_alg_none_is_refused(ec_key):
    token = unsigned({"alg": "none", "typ": "dpop+jwt", "jwk": public_jwk(ec_key)}, claims())
    refused(token, "alg", algorithms=ALGORITHMS + ("none",))


def test_hs256_is_refused_even_when_listed(ec_key):
    jwk = public_jwk(ec_key)
    header = {"alg": "HS256", "typ": "dpop+jwt", "jwk": jwk}
    encode = lambda value: b64url_encode(json.dumps(value, separators=(",", ":")).encode())  # noqa: E731
    signing_input = encode(header) + "." + encode(claims())
    # The classic confusion: the public key text used as the MAC secret.
    mac = hmac.new(json.dumps(jwk).encode(), signing_input.encode(), hashlib.sha256).digest()
    refused(signing_input + "." + b64url_encode(mac), "alg", algorithms=ALGORITHMS + ("HS256",))


def test_alg_outside_the_allow_list_is_refused(keys):
    refused(make_proof(keys["ES256"]), "alg", algorithms=("RS256",))
    refused(make_proof(keys["RS256"], "PS256"), "alg", algorithms=("RS256", "ES256"))
    refused(make_proof(keys["RS256"], "RS256"), "alg", algorithms=())


# ---------------------------------------------------------------------------------------------
# RFC 9449 §4.3 items 5 and 7: the header jwk
# ---------------------------------------------------------------------------------------------

def test_missing_jwk_is_refused(ec_key):
    refused(make_proof(ec_key, jwk=DROP), "jwk")


@pytest.mark.parametrize("jwk", ["a key", ["a"], 1, None])
def test_jwk_that_is_not_an_object_is_refused(ec_key, jwk):
    refused(make_proof(ec_key, jwk=jwk), "jwk")


def test_private_jwk_is_refused(ec_key):
    d = ec_key.private_numbers().private_value.to_bytes(32, "big")
    refused(make_proof(ec_key, jwk={**public_jwk(ec_key), "d": b64url_encode(d)}), "jwk")


def test_symmetric_jwk_is_refused(ec_key):
    refused(make_proof(ec_key, jwk={"kty": "oct", "k": b64url_encode(b"s" * 32)}), "jwk")


def test_rsa_1024_is_refused():
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    n = weak.public_key().public_numbers().n
    jwk = {"kty": "RSA", "e": "AQAB", "n": b64url_encode(n.to_bytes(128, "big"))}
    refused(make_proof(weak, "RS256", jwk=jwk), "jwk")


def test_unsupported_key_type_is_refused(ec_key):
    refused(make_proof(ec_key, jwk={"kty": "XYZ", "x": "AAAA"}), "jwk")
    refused(make_proof(ec_key, jwk={**public_jwk(ec_key), "crv": "P-192"}), "jwk")


def test_jwk_that_does_not_fit_the_alg_is_refused(keys):
    # An RSA key named for an ES256 signature; an EC key restricted to another alg; an "enc" key.
    refused(make_proof(keys["ES256"], jwk=public_jwk(keys["RS256"])), "jwk")
    refused(make_proof(keys["ES256"], jwk={**public_jwk(keys["ES256"]), "alg": "ES384"}), "jwk")
    refused(make_proof(keys["ES256"], jwk={**public_jwk(keys["ES256"]), "use": "enc"}), "jwk")
    p384 = ec.generate_private_key(ec.SECP384R1())
    refused(make_proof(p384, "ES384", jwk=public_jwk(p384)), "alg")
    token = unsigned({"alg": "ES256", "typ": "dpop+jwt", "jwk": public_jwk(p384)}, claims(), b"\x01" * 64)
    refused(token, "jwk")


# ---------------------------------------------------------------------------------------------
# RFC 9449 §4.3 item 6: signature
# ---------------------------------------------------------------------------------------------

def test_tampered_payload_is_refused(ec_key):
    header, _, signature = make_proof(ec_key).split(".")
    forged = b64url_encode(json.dumps(claims(htu="https://evil.example/")).encode())
    refused(header + "." + forged + "." + signature, "signature")


def test_signature_by_another_key_is_refused(ec_key):
    other = ec.generate_private_key(ec.SECP256R1())
    refused(make_proof(other, jwk=public_jwk(ec_key)), "signature")


def test_flipped_signature_bit_is_refused(keys):
    token = make_proof(keys["EdDSA"], "EdDSA")
    head, payload, signature = token.split(".")
    raw = bytearray(b64url_decode(signature))
    raw[10] ^= 1
    refused(head + "." + payload + "." + b64url_encode(bytes(raw)), "signature")


# ---------------------------------------------------------------------------------------------
# RFC 9449 §4.2 / §4.3 item 3: jti
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("jti", [DROP, "", None, 12, ["a"], "j" * (MAX_JTI_LENGTH + 1)])
def test_bad_jti_is_refused(ec_key, jti):
    refused(make_proof(ec_key, payload=claims(jti=jti)), "jti")


def test_jti_of_maximum_length_is_accepted(ec_key):
    assert verify(make_proof(ec_key, payload=claims(jti="j" * MAX_JTI_LENGTH))).jti == "j" * MAX_JTI_LENGTH


# ---------------------------------------------------------------------------------------------
# RFC 9449 §4.3 item 8: htm
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("htm", ["post", "GET", "POST ", DROP, None, 1])
def test_htm_other_than_the_method_is_refused(ec_key, htm):
    refused(make_proof(ec_key, payload=claims(htm=htm)), "htm")


def test_htm_matches_the_given_method(ec_key):
    assert verify(make_proof(ec_key, payload=claims(htm="GET")), method="GET").htm == "GET"


# ---------------------------------------------------------------------------------------------
# RFC 9449 §4.3 item 9: htu
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("htu", [
    URL + "?client_id=c1",
    URL + "#fragment",
    URL + "?a=b#c",
    "https://AS.Example.COM/oauth2/token",
    "HTTPS://as.example.com/oauth2/token",
    "https://as.example.com:443/oauth2/token",
    "https://as.example.com:/oauth2/token",
    "https://as.example.com/oauth2/%74oken",
    "https://as.example.com/oauth2/./token",
    "https://as.example.com/other/../oauth2/token",
])
def test_equivalent_htu_is_accepted(ec_key, htu):
    assert verify(make_proof(ec_key, payload=claims(htu=htu))).htu == htu


@pytest.mark.parametrize("htu", [
    URL + "/",
    "https://as.example.com/oauth2/Token",
    "https://as.example.com/oauth2/token2",
    "https://as.example.com/oauth2",
    "https://other.example.com/oauth2/token",
    "https://as.example.com.evil.example/oauth2/token",
    "http://as.example.com/oauth2/token",
    "https://as.example.com:8443/oauth2/token",
    "https://user@as.example.com/oauth2/token",
    "https://as.example.com@evil.example/oauth2/token",
    "https://:@as.example.com/oauth2/token",
    "/oauth2/token",
    "as.example.com/oauth2/token",
    "",
    DROP,
    None,
    ["https://as.example.com/oauth2/token"],
])
def test_other_htu_is_refused(ec_key, htu):
    refused(make_proof(ec_key, payload=claims(htu=htu)), "htu")


@pytest.mark.parametrize("claimed, expected", [
    ("https://h.example", "https://h.example/"),
    ("http://h.example:80/a", "http://h.example/a"),
    ("https://h.example/a%2fb", "https://h.example/a%2Fb"),
    ("https://h.example/%7Euser", "https://h.example/~user"),
    ("https://h.example/a/b/../c", "https://h.example/a/c"),
    ("https://h.example/a/%2E%2E/c", "https://h.example/c"),
    ("https://h.example/../a", "https://h.example/a"),
    ("https://[::1]:8443/t", "https://[::1]:8443/t"),
    ("https://[2001:DB8::1]/t", "https://[2001:db8::1]/t"),
    ("https://192.0.2.1/t", "https://192.0.2.1:443/t"),
])
def test_htu_normalisation(claimed, expected):
    assert htu_matches(claimed, expected)
    assert htu_matches(expected, claimed)


@pytest.mark.parametrize("claimed, expected", [
    ("https://h.example/a/", "https://h.example/a"),
    ("https://h.example/a%2Fb", "https://h.example/a/b"),
    ("https://h.example//a", "https://h.example/a"),
    ("http://h.example:443/a", "https://h.example/a"),
    ("https://h.example:80/a", "http://h.example/a"),
    ("https://h.example:0443/a", "https://h.example/a"),
    ("https://h.example:99999/a", "https://h.example:99999/a"),
    ("https://h.example./a", "https://h.example/a"),
    ("https://h.example/a b", "https://h.example/a b"),
    ("https://h.example/a\\b", "https://h.example/a\\b"),
    ("https://h.example/%zz", "https://h.example/%zz"),
    ("https://h.example/%4", "https://h.example/%4"),
    ("https://h%2Eexample/a", "https://h.example/a"),
    ("https://hé.example/a", "https://hé.example/a"),
    ("https://h.example/é", "https://h.example/é"),
    ("https://h.example/a\n", "https://h.example/a"),
    ("ftp://h.example/a", "ftp://h.example/a"),
    ("https:///a", "https:///a"),
    ("https://[::1/a", "https://[::1/a"),
    ("https://[nothex]/a", "https://[nothex]/a"),
    ("https://[::1]x/a", "https://[::1]x/a"),
    ("https://a@h.example/", "https://a@h.example/"),
    ("https://h.example/a", "not a url"),
    ("https://h.example/a", None),
    (None, None),
    (b"https://h.example/a", "https://h.example/a"),
])
def test_htu_mismatch_and_garbage(claimed, expected):
    assert htu_matches(claimed, expected) is False


# ---------------------------------------------------------------------------------------------
# RFC 9449 §4.3 item 11: iat
# ---------------------------------------------------------------------------------------------

def test_iat_window_bounds_are_inclusive(ec_key):
    assert verify(make_proof(ec_key, payload=claims(iat=NOW - LIFETIME - SKEW))).iat == NOW - LIFETIME - SKEW
    assert verify(make_proof(ec_key, payload=claims(iat=NOW + SKEW))).iat == NOW + SKEW


def test_old_iat_is_refused(ec_key):
    message = refused(make_proof(ec_key, payload=claims(iat=NOW - LIFETIME - SKEW - 1)), "iat")
    assert "too old" in message


def test_future_iat_is_refused(ec_key):
    message = refused(make_proof(ec_key, payload=claims(iat=NOW + SKEW + 1)), "iat")
    assert "future" in message


@pytest.mark.parametrize("iat", [float(NOW), str(NOW), True, None, DROP, [NOW]])
def test_iat_that_is_not_an_integer_is_refused(ec_key, iat):
    message = refused(make_proof(ec_key, payload=claims(iat=iat)), "iat")
    assert "integer" in message


def test_huge_iat_is_refused(ec_key):
    refused(make_proof(ec_key, payload=claims(iat=10**40)), "iat")


# ---------------------------------------------------------------------------------------------
# RFC 9449 §4.3 item 12, §7.1: ath
# ---------------------------------------------------------------------------------------------

ACCESS_TOKEN = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"


def test_ath_matches_the_rfc_example():
    # RFC 9449 §7.1, Figures 12 and 13.
    assert ath(ACCESS_TOKEN) == "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"


def test_ath_is_required_with_an_access_token(ec_key):
    refused(make_proof(ec_key), "ath", access_token=ACCESS_TOKEN)


@pytest.mark.parametrize("value", [ath("another token"), "", 1, None, "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEé"])
def test_wrong_ath_is_refused(ec_key, value):
    refused(make_proof(ec_key, payload=claims(ath=value)), "ath", access_token=ACCESS_TOKEN)


def test_correct_ath_is_accepted(ec_key):
    token = make_proof(ec_key, payload=claims(ath=ath(ACCESS_TOKEN)))
    assert verify(token, access_token=ACCESS_TOKEN).jti == "e1j3V_bKic8-LAEB"


def test_ath_is_ignored_without_an_access_token(ec_key):
    assert verify(make_proof(ec_key, payload=claims(ath=12))).alg == "ES256"


def test_non_ascii_access_token_never_matches(ec_key):
    refused(make_proof(ec_key, payload=claims(ath="x")), "ath", access_token="tökén")


# ---------------------------------------------------------------------------------------------
# RFC 9449 §4.3 item 10: nonce (returned, judged by the caller)
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("nonce", [1, None, ["n"], {"n": 1}, True])
def test_nonce_that_is_not_a_string_is_refused(ec_key, nonce):
    refused(make_proof(ec_key, payload=claims(nonce=nonce)), "nonce")


def test_nonce_is_returned_unjudged(ec_key):
    assert verify(make_proof(ec_key, payload=claims(nonce="anything"))).nonce == "anything"


# ---------------------------------------------------------------------------------------------
# order and messages
# ---------------------------------------------------------------------------------------------

def test_checks_run_in_rfc_order(ec_key):
    other = ec.generate_private_key(ec.SECP256R1())
    bad = claims(jti="", htm="get", htu="https://evil.example/", iat=0)
    # Bad typ and a bad signature: typ is reported first.
    refused(make_proof(other, typ="JWT", payload=bad, jwk=public_jwk(ec_key)), "typ")
    refused(make_proof(other, payload=bad, jwk=public_jwk(ec_key)), "signature")
    refused(make_proof(ec_key, payload=bad), "jti")
    refused(make_proof(ec_key, payload={**bad, "jti": "j"}), "htm")
    refused(make_proof(ec_key, payload={**bad, "jti": "j", "htm": "POST"}), "htu")
    refused(make_proof(ec_key, payload={**bad, "jti": "j", "htm": "POST", "htu": URL}), "iat")


def test_messages_never_echo_input(ec_key):
    marker = "MARKER-7f3a"
    for token, check in [
        (make_proof(ec_key, payload=claims(jti=marker * 30)), "jti"),
        (make_proof(ec_key, payload=claims(htm=marker)), "htm"),
        (make_proof(ec_key, payload=claims(htu="https://" + marker + ".example/")), "htu"),
        (make_proof(ec_key, typ=marker), "typ"),
        (make_proof(ec_key, jwk={"kty": marker}), "jwk"),
        (marker + ".x.y", "malformed"),
    ]:
        assert marker not in refused(token, check)


def test_proof_error_is_a_value_error():
    error = ProofError("typ", "DPoP proof header typ is not dpop+jwt")
    assert isinstance(error, ValueError)
    assert (error.check, str(error)) == ("typ", "DPoP proof header typ is not dpop+jwt")


# ---------------------------------------------------------------------------------------------
# thumbprint format (RFC 7638, RFC 9449 §10 dpop_jkt)
# ---------------------------------------------------------------------------------------------

def test_thumbprint_format():
    good = b64url_encode(hashlib.sha256(b"k").digest())
    assert len(good) == 43 and thumbprint_format_ok(good)
    for bad in ["", good[:-1], good + "A", good[:-1] + "+", good[:-1] + "=", good[:-1] + "B",
                good[:-1] + "é", None, 43, b"x" * 43]:
        assert thumbprint_format_ok(bad) is False, bad


# ---------------------------------------------------------------------------------------------
# RFC 9449 §8, §9: stateless nonces
# ---------------------------------------------------------------------------------------------

SECRET = b"s" * 32
NONCE_LIFETIME = 300


@pytest.fixture
def nonces() -> Nonces:
    return Nonces(SECRET, NONCE_LIFETIME)


def test_current_nonce_is_short_and_url_safe(nonces):
    nonce = nonces.current(NOW)
    assert re.fullmatch(r"[A-Za-z0-9_-]{32}", nonce)
    assert nonces.valid(nonce, NOW)


def test_nonce_is_stable_within_a_slot_and_rotates(nonces):
    start = NOW - NOW % NONCE_LIFETIME
    assert nonces.current(start) == nonces.current(start + NONCE_LIFETIME - 1)
    assert nonces.current(start) != nonces.current(start + NONCE_LIFETIME)


def test_previous_slot_is_valid_and_older_is_not(nonces):
    start = NOW - NOW % NONCE_LIFETIME
    nonce = nonces.current(start)
    assert nonces.valid(nonce, start + NONCE_LIFETIME)
    assert nonces.valid(nonce, start + 2 * NONCE_LIFETIME - 1)
    assert not nonces.valid(nonce, start + 2 * NONCE_LIFETIME)
    # A nonce from a later slot (another node's clock ahead) is not accepted early.
    assert not nonces.valid(nonces.current(start + NONCE_LIFETIME), start)


def test_every_node_with_the_same_secret_accepts_the_nonce(nonces):
    assert Nonces(SECRET, NONCE_LIFETIME).valid(nonces.current(NOW), NOW)


def test_another_secret_refuses_the_nonce(nonces):
    assert not Nonces(b"t" * 32, NONCE_LIFETIME).valid(nonces.current(NOW), NOW)


def test_tampered_tag_is_refused(nonces):
    raw = bytearray(b64url_decode(nonces.current(NOW)))
    raw[-1] ^= 1
    assert not nonces.valid(b64url_encode(bytes(raw)), NOW)


def test_tampered_slot_is_refused(nonces):
    raw = bytearray(b64url_decode(nonces.current(NOW - NONCE_LIFETIME * 5)))
    slot = int.from_bytes(raw[:8], "big") + 5
    forged = b64url_encode(slot.to_bytes(8, "big") + bytes(raw[8:]))
    assert not nonces.valid(forged, NOW)


@pytest.mark.parametrize("garbage", [None, "", "a.b", "x" * 10_000, "é" * 32, "=" * 32, "A" * 32, 12,
                                     b"x" * 32, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA+"])
def test_garbage_nonce_is_refused(nonces, garbage):
    assert nonces.valid(garbage, NOW) is False


def test_garbage_now_is_refused(nonces):
    assert nonces.valid(nonces.current(NOW), None) is False


@pytest.mark.parametrize("secret, lifetime", [(b"short", 300), ("s" * 32, 300), (SECRET, 0), (SECRET, -1),
                                               (SECRET, 1.5)])
def test_nonces_refuse_bad_configuration(secret, lifetime):
    with pytest.raises(ValueError):
        Nonces(secret, lifetime)


def test_secret_derivation(keys):
    secrets = {alg: Nonces.secret_from(key) for alg, key in keys.items()}
    assert all(len(secret) == 32 for secret in secrets.values())
    assert len(set(secrets.values())) == 3
    assert Nonces.secret_from(keys["ES256"]) == secrets["ES256"]
    # Derived, never the key's own bytes.
    der = keys["ES256"].private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())
    assert secrets["ES256"] not in der

"""Strict JWK / JWK Set parsing, key/algorithm fitting and RFC 7638 thumbprints (keystore.jwk)."""

from __future__ import annotations

import base64
import hashlib
import json
import re

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa, x25519

from keystore.jwk import SIGNING_ALGORITHMS, InvalidKey, PublicKey, parse_jwk, parse_jwks

SAFE_DESCRIPTION = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]+")
THUMBPRINT_FORMAT = re.compile(r"[A-Za-z0-9_-]{43}")

# RFC 7638 §3.1 example key and its SHA-256 thumbprint.
RFC7638_N = (
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECP"
    "ebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY"
    "368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0f"
    "M4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
)
RFC7638_JWK = {"kty": "RSA", "n": RFC7638_N, "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"}
RFC7638_THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"

ED_P = 2**255 - 19
P256_PRIME = 2**256 - 2**224 + 2**192 + 2**96 - 1
P521_PRIME = 2**521 - 1


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def invalid(member_or_document, parser=parse_jwk) -> str:
    with pytest.raises(InvalidKey) as info:
        parser(member_or_document)
    message = str(info.value)
    assert SAFE_DESCRIPTION.fullmatch(message), message
    return message


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def rsa_jwk(rsa_key):
    return PublicKey.from_cryptography(rsa_key.public_key()).to_jwk()


@pytest.fixture(scope="module")
def ec_keys():
    return {crv: ec.generate_private_key(curve()) for crv, curve in
            (("P-256", ec.SECP256R1), ("P-384", ec.SECP384R1), ("P-521", ec.SECP521R1))}


@pytest.fixture(scope="module")
def ed_key():
    return ed25519.Ed25519PrivateKey.generate()


def okp_jwk(raw: bytes) -> dict:
    return {"kty": "OKP", "crv": "Ed25519", "x": b64(raw)}


# ---------------------------------------------------------------------------------------------
# RFC 7638 thumbprints
# ---------------------------------------------------------------------------------------------

def test_rfc7638_example_thumbprint():
    key = parse_jwk(RFC7638_JWK)
    assert key is not None
    assert key.thumbprint == RFC7638_THUMBPRINT
    assert key.kid == "2011-04-29" and key.alg == "RS256" and key.use is None


def test_rfc7638_example_round_trips_through_to_jwk():
    key = parse_jwk(RFC7638_JWK)
    assert key.to_jwk() == RFC7638_JWK
    assert PublicKey.from_cryptography(key.key).thumbprint == RFC7638_THUMBPRINT


def test_thumbprint_ignores_metadata_and_member_order():
    plain = parse_jwk({"e": "AQAB", "n": RFC7638_N, "kty": "RSA"})
    decorated = parse_jwk(dict(RFC7638_JWK, use="sig", key_ops=["verify"]))
    assert plain.thumbprint == decorated.thumbprint == RFC7638_THUMBPRINT


def test_thumbprint_is_deterministic_and_well_formed(ec_keys, ed_key, rsa_key):
    for private in (*ec_keys.values(), ed_key, rsa_key):
        first = PublicKey.from_cryptography(private.public_key())
        second = parse_jwk(first.to_jwk())
        assert first.thumbprint == second.thumbprint
        assert THUMBPRINT_FORMAT.fullmatch(first.thumbprint)


def test_ec_and_okp_thumbprints_follow_rfc7638_canonical_form(ec_keys, ed_key):
    for private in ec_keys.values():
        jwk = PublicKey.from_cryptography(private.public_key()).to_jwk()
        canonical = '{"crv":"%s","kty":"EC","x":"%s","y":"%s"}' % (jwk["crv"], jwk["x"], jwk["y"])
        assert parse_jwk(jwk).thumbprint == b64(hashlib.sha256(canonical.encode()).digest())
    jwk = PublicKey.from_cryptography(ed_key.public_key()).to_jwk()
    canonical = '{"crv":"Ed25519","kty":"OKP","x":"%s"}' % jwk["x"]
    assert parse_jwk(jwk).thumbprint == b64(hashlib.sha256(canonical.encode()).digest())


def test_distinct_keys_have_distinct_thumbprints(ec_keys):
    prints = {PublicKey.from_cryptography(k.public_key()).thumbprint for k in ec_keys.values()}
    assert len(prints) == 3


def test_supplied_thumbprint_must_match(rsa_key):
    with pytest.raises(InvalidKey):
        PublicKey(rsa_key.public_key(), thumbprint=RFC7638_THUMBPRINT)
    key = PublicKey.from_cryptography(rsa_key.public_key())
    assert PublicKey(rsa_key.public_key(), thumbprint=key.thumbprint) == key


def test_equal_keys_compare_and_hash_equal(rsa_jwk):
    a = parse_jwk(dict(rsa_jwk, kid="a"))
    b = parse_jwk(dict(rsa_jwk, kid="a"))
    c = parse_jwk(dict(rsa_jwk, kid="c"))
    assert a == b and hash(a) == hash(b)
    assert a != c


# ---------------------------------------------------------------------------------------------
# parse_jwk: accepted keys
# ---------------------------------------------------------------------------------------------

def test_parse_rsa_jwk(rsa_key, rsa_jwk):
    key = parse_jwk(dict(rsa_jwk, kid="r1", use="sig", alg="PS256"))
    assert key.key.public_numbers() == rsa_key.public_key().public_numbers()
    assert (key.kid, key.use, key.alg) == ("r1", "sig", "PS256")


@pytest.mark.parametrize("crv,length", [("P-256", 32), ("P-384", 48), ("P-521", 66)])
def test_parse_ec_jwk(ec_keys, crv, length):
    public = ec_keys[crv].public_key()
    jwk = PublicKey.from_cryptography(public).to_jwk()
    assert jwk["crv"] == crv and len(base64.urlsafe_b64decode(jwk["x"] + "==")) == length
    key = parse_jwk(jwk)
    assert key.key.public_numbers() == public.public_numbers()


def test_parse_okp_jwk(ed_key):
    raw = ed_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    key = parse_jwk(okp_jwk(raw))
    assert key.to_jwk() == okp_jwk(raw)


def test_to_jwk_contains_only_public_members(rsa_key, ec_keys, ed_key):
    assert set(PublicKey.from_cryptography(rsa_key.public_key(), kid="k", use="sig", alg="RS256").to_jwk()) \
        == {"kty", "n", "e", "kid", "use", "alg"}
    assert set(PublicKey.from_cryptography(ec_keys["P-256"].public_key()).to_jwk()) == {"kty", "crv", "x", "y"}
    assert set(PublicKey.from_cryptography(ed_key.public_key()).to_jwk()) == {"kty", "crv", "x"}


def test_unrelated_members_are_ignored(rsa_jwk):
    key = parse_jwk(dict(rsa_jwk, x5c=["AAAA"], x5t="abc", ext=True, custom={"a": 1}))
    assert key.thumbprint == parse_jwk(rsa_jwk).thumbprint


# ---------------------------------------------------------------------------------------------
# parse_jwk: refused or ignored keys
# ---------------------------------------------------------------------------------------------

def test_rsa_1024_refused():
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    numbers = small.public_numbers()
    jwk = {"kty": "RSA", "n": b64(numbers.n.to_bytes(128, "big")), "e": "AQAB"}
    assert invalid(jwk) == "RSA modulus is shorter than 2048 bits"
    with pytest.raises(InvalidKey):
        PublicKey.from_cryptography(small)


def test_rsa_2047_bit_modulus_refused(rsa_jwk):
    n = int.from_bytes(base64.urlsafe_b64decode(rsa_jwk["n"] + "=="), "big") >> 1 | 1
    assert n.bit_length() == 2047
    assert invalid(dict(rsa_jwk, n=b64(n.to_bytes(256, "big").lstrip(b"\x00")))) \
        == "RSA modulus is shorter than 2048 bits"


@pytest.mark.parametrize("name", ["d", "p", "q", "dp", "dq", "qi", "oth"])
def test_private_rsa_members_refused(rsa_jwk, name):
    assert invalid(dict(rsa_jwk, **{name: "AQAB"})) == "JWK contains private key material"


def test_full_private_rsa_jwk_refused(rsa_key):
    numbers = rsa_key.private_numbers()

    def enc(v):
        return b64(v.to_bytes((v.bit_length() + 7) // 8, "big"))

    jwk = {"kty": "RSA", "n": enc(numbers.public_numbers.n), "e": enc(numbers.public_numbers.e),
           "d": enc(numbers.d), "p": enc(numbers.p), "q": enc(numbers.q), "dp": enc(numbers.dmp1),
           "dq": enc(numbers.dmq1), "qi": enc(numbers.iqmp)}
    assert invalid(jwk) == "JWK contains private key material"


def test_private_ec_and_okp_jwk_refused(ec_keys, ed_key):
    ec_jwk = PublicKey.from_cryptography(ec_keys["P-256"].public_key()).to_jwk()
    assert invalid(dict(ec_jwk, d="AAAA")) == "JWK contains private key material"
    okp = PublicKey.from_cryptography(ed_key.public_key()).to_jwk()
    assert invalid(dict(okp, d="AAAA")) == "JWK contains private key material"


def test_oct_jwk_refused():
    assert invalid({"kty": "oct", "k": "GawgguFyGrWKav7AX4VKUg"}) == "JWK contains private key material"
    assert invalid({"kty": "oct", "alg": "HS256"}) == "symmetric (oct) keys are not accepted"


def test_unknown_kty_ignored():
    assert parse_jwk({"kty": "PQC-Example", "pub": "AAAA"}) is None


def test_unknown_kty_with_private_members_refused():
    assert invalid({"kty": "PQC-Example", "pub": "AAAA", "d": "AAAA"}) == "JWK contains private key material"
    assert invalid({"kty": "PQC-Example", "k": "AAAA"}) == "JWK contains private key material"


def test_unsupported_curves_ignored():
    k1 = ec.generate_private_key(ec.SECP256K1()).public_key().public_numbers()
    assert parse_jwk({"kty": "EC", "crv": "secp256k1", "x": b64(k1.x.to_bytes(32, "big")),
                      "y": b64(k1.y.to_bytes(32, "big"))}) is None
    assert parse_jwk({"kty": "OKP", "crv": "Ed448", "x": b64(bytes(57))}) is None
    assert parse_jwk({"kty": "OKP", "crv": "X25519", "x": b64(bytes(32))}) is None


@pytest.mark.parametrize("member", [
    None, [], "RSA", 1,
    {}, {"kty": 1}, {"kty": None}, {"kty": ["RSA"]},
])
def test_malformed_jwk_shapes_refused(member):
    invalid(member)


@pytest.mark.parametrize("change", [
    {"n": None}, {"e": None}, {"n": 12345}, {"e": 65537},
    {"e": "AQAB="}, {"e": "AQA"}, {"e": "AQ AB"}, {"e": "AQ+B"}, {"e": ""}, {"e": "AAEAAQ"},
])
def test_malformed_rsa_values_refused(rsa_jwk, change):
    jwk = dict(rsa_jwk)
    for name, value in change.items():
        if value is None:
            del jwk[name]
        else:
            jwk[name] = value
    invalid(jwk)


def test_rsa_modulus_with_leading_zero_refused(rsa_jwk):
    # RFC 7518 §6.3.1.1: minimum number of octets.
    n = base64.urlsafe_b64decode(rsa_jwk["n"] + "==")
    assert invalid(dict(rsa_jwk, n=b64(b"\x00" + n))) == "RSA parameter is not a minimal unsigned integer"


def test_rsa_modulus_padded_base64_refused(rsa_jwk):
    assert invalid(dict(rsa_jwk, n=rsa_jwk["n"] + "==")) == "JWK key parameter is not canonical base64url"


@pytest.mark.parametrize("e", [1, 2, 4, 65536, 2**65 + 1])
def test_bad_rsa_exponent_refused(rsa_jwk, e):
    jwk = dict(rsa_jwk, e=b64(e.to_bytes((e.bit_length() + 7) // 8, "big")))
    assert invalid(jwk) == "RSA public exponent is invalid"


def test_even_rsa_modulus_refused(rsa_jwk):
    n = int.from_bytes(base64.urlsafe_b64decode(rsa_jwk["n"] + "=="), "big") ^ 1
    assert invalid(dict(rsa_jwk, n=b64(n.to_bytes(256, "big")))) == "RSA modulus is invalid"


def test_ec_point_not_on_curve_refused(ec_keys):
    jwk = PublicKey.from_cryptography(ec_keys["P-256"].public_key()).to_jwk()
    y = bytearray(base64.urlsafe_b64decode(jwk["y"] + "="))
    y[-1] ^= 0x01
    assert invalid(dict(jwk, y=b64(bytes(y)))) == "EC point is not on the curve"


def test_ec_coordinate_not_reduced_refused(ec_keys):
    # P-521 coordinates are 66 octets, so x + p fits: it names the same field element and
    # cryptography itself accepts it -- the JWK parser must not.
    public = ec_keys["P-521"].public_key()
    numbers = public.public_numbers()
    unreduced = numbers.x + P521_PRIME
    assert unreduced < 2**528
    ec.EllipticCurvePublicNumbers(unreduced, numbers.y, ec.SECP521R1()).public_key()
    jwk = PublicKey.from_cryptography(public).to_jwk()
    assert invalid(dict(jwk, x=b64(unreduced.to_bytes(66, "big")))) == "EC coordinate is out of range"


def test_ec_coordinate_equal_to_prime_refused(ec_keys):
    jwk = PublicKey.from_cryptography(ec_keys["P-256"].public_key()).to_jwk()
    assert invalid(dict(jwk, y=b64(P256_PRIME.to_bytes(32, "big")))) == "EC coordinate is out of range"


@pytest.mark.parametrize("crv", ["P-256", "P-384", "P-521"])
def test_ec_coordinate_with_wrong_length_refused(ec_keys, crv):
    jwk = PublicKey.from_cryptography(ec_keys[crv].public_key()).to_jwk()
    x = base64.urlsafe_b64decode(jwk["x"] + "==")
    assert invalid(dict(jwk, x=b64(x[1:]))) == "EC coordinate has the wrong length"
    assert invalid(dict(jwk, x=b64(b"\x00" + x))) == "EC coordinate has the wrong length"


def test_ec_jwk_missing_y_or_crv_refused(ec_keys):
    jwk = PublicKey.from_cryptography(ec_keys["P-256"].public_key()).to_jwk()
    assert invalid({k: v for k, v in jwk.items() if k != "y"}) == "JWK key parameter is missing or not a string"
    assert invalid({k: v for k, v in jwk.items() if k != "crv"}) == "JWK crv is missing or not a string"


def test_ed25519_wrong_length_refused(ed_key):
    raw = ed_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert invalid(okp_jwk(raw[:31])) == "Ed25519 public key has the wrong length"
    assert invalid(okp_jwk(raw + b"\x00")) == "Ed25519 public key has the wrong length"


@pytest.mark.parametrize("y", [1, ED_P - 1, 0, 1 | (1 << 255)])
def test_ed25519_small_order_points_refused(y):
    # identity (order 1), (0, -1) (order 2), y = 0 (order 4) -- keys for which forgeries need no secret.
    assert invalid(okp_jwk(y.to_bytes(32, "little"))) == "Ed25519 public key is not a valid point of large order"


def test_ed25519_non_canonical_encoding_refused(ed_key):
    assert invalid(okp_jwk((ED_P + 1).to_bytes(32, "little"))) \
        == "Ed25519 public key is not a valid point of large order"


@pytest.mark.parametrize("name,value", [("kid", 1), ("use", ["sig"]), ("alg", None), ("kid", None)])
def test_non_string_metadata_refused(rsa_jwk, name, value):
    assert invalid(dict(rsa_jwk, **{name: value})) == "JWK metadata member is not a string"


@pytest.mark.parametrize("ops", ["verify", ["verify", "verify"], [1], {}])
def test_malformed_key_ops_refused(rsa_jwk, ops):
    assert invalid(dict(rsa_jwk, key_ops=ops)) == "JWK key_ops is not an array of unique strings"


# ---------------------------------------------------------------------------------------------
# from_cryptography
# ---------------------------------------------------------------------------------------------

def test_from_cryptography_refuses_private_keys(rsa_key, ec_keys, ed_key):
    for private in (rsa_key, ec_keys["P-256"], ed_key):
        with pytest.raises(InvalidKey) as info:
            PublicKey.from_cryptography(private)
        assert str(info.value) == "a private key was supplied where a public key is required"


def test_from_cryptography_refuses_unsupported_types():
    for public in (ec.generate_private_key(ec.SECP256K1()).public_key(),
                   ec.generate_private_key(ec.SECP224R1()).public_key(),
                   ed448.Ed448PrivateKey.generate().public_key(),
                   x25519.X25519PrivateKey.generate().public_key(),
                   b"-----BEGIN PUBLIC KEY-----", {"kty": "RSA"}, None):
        with pytest.raises(InvalidKey):
            PublicKey.from_cryptography(public)


# ---------------------------------------------------------------------------------------------
# fits()
# ---------------------------------------------------------------------------------------------

def test_rsa_key_fits_rs_and_ps_only(rsa_key):
    key = PublicKey.from_cryptography(rsa_key.public_key())
    assert {alg for alg in SIGNING_ALGORITHMS if key.fits(alg)} == {
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}


@pytest.mark.parametrize("crv,alg", [("P-256", "ES256"), ("P-384", "ES384"), ("P-521", "ES512")])
def test_ec_key_fits_exactly_its_curve_algorithm(ec_keys, crv, alg):
    key = PublicKey.from_cryptography(ec_keys[crv].public_key())
    assert {a for a in SIGNING_ALGORITHMS if key.fits(a)} == {alg}


def test_ed25519_key_fits_eddsa_and_ed25519(ed_key):
    key = PublicKey.from_cryptography(ed_key.public_key())
    assert {a for a in SIGNING_ALGORITHMS if key.fits(a)} == {"EdDSA", "Ed25519"}


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "HS256", "HS384", "HS512", "", "RSA-OAEP", "Ed448", None, 1])
def test_nothing_fits_unaccepted_algorithms(rsa_key, ec_keys, ed_key, alg):
    for private in (rsa_key, ec_keys["P-256"], ed_key):
        assert PublicKey.from_cryptography(private.public_key()).fits(alg) is False


def test_use_enc_fits_nothing(rsa_jwk, ec_keys):
    key = parse_jwk(dict(rsa_jwk, use="enc"))
    assert not any(key.fits(alg) for alg in SIGNING_ALGORITHMS)
    ec_key = PublicKey.from_cryptography(ec_keys["P-256"].public_key(), use="enc")
    assert ec_key.fits("ES256") is False


def test_use_sig_fits(rsa_jwk):
    assert parse_jwk(dict(rsa_jwk, use="sig")).fits("RS256") is True
    assert parse_jwk(dict(rsa_jwk, use="SIG")).fits("RS256") is False


def test_key_ops_without_verify_fits_nothing(rsa_jwk):
    assert parse_jwk(dict(rsa_jwk, key_ops=["encrypt", "wrapKey"])).fits("RS256") is False
    assert parse_jwk(dict(rsa_jwk, key_ops=["verify"])).fits("RS256") is True


def test_jwk_alg_restricts_to_that_algorithm(rsa_jwk):
    key = parse_jwk(dict(rsa_jwk, alg="RS256"))
    assert {a for a in SIGNING_ALGORITHMS if key.fits(a)} == {"RS256"}
    assert not any(parse_jwk(dict(rsa_jwk, alg="RSA-OAEP")).fits(a) for a in SIGNING_ALGORITHMS)


@pytest.mark.parametrize("jwk_alg", ["EdDSA", "Ed25519"])
def test_eddsa_and_ed25519_jwk_alg_match_each_other(ed_key, jwk_alg):
    key = PublicKey.from_cryptography(ed_key.public_key(), alg=jwk_alg)
    assert key.fits("EdDSA") is True
    assert key.fits("Ed25519") is True


def test_ed25519_jwk_alg_does_not_fit_ecdsa(ec_keys):
    key = PublicKey.from_cryptography(ec_keys["P-256"].public_key(), alg="EdDSA")
    assert not any(key.fits(a) for a in SIGNING_ALGORITHMS)


# ---------------------------------------------------------------------------------------------
# parse_jwks
# ---------------------------------------------------------------------------------------------

def test_parse_jwks_from_dict_str_and_bytes(rsa_jwk, ec_keys, ed_key):
    members = [dict(rsa_jwk, kid="r"),
               dict(PublicKey.from_cryptography(ec_keys["P-256"].public_key()).to_jwk(), kid="e"),
               dict(PublicKey.from_cryptography(ed_key.public_key()).to_jwk(), kid="o")]
    document = {"keys": members}
    for form in (document, json.dumps(document), json.dumps(document).encode("utf-8")):
        keys = parse_jwks(form)
        assert [k.kid for k in keys] == ["r", "e", "o"]


def test_parse_jwks_skips_ignored_members(rsa_jwk):
    keys = parse_jwks({"keys": [{"kty": "PQC-Example", "kid": "x"}, dict(rsa_jwk, kid="r")]})
    assert [k.kid for k in keys] == ["r"]


def test_parse_jwks_with_only_ignored_members_refused():
    assert invalid({"keys": [{"kty": "PQC-Example"}]}, parse_jwks) == "JWK Set contains no usable key"


def test_empty_jwks_refused():
    assert invalid({"keys": []}, parse_jwks) == "JWK Set is empty"
    assert invalid('{"keys":[]}', parse_jwks) == "JWK Set is empty"


def test_too_many_keys_refused(rsa_jwk):
    document = {"keys": [dict(rsa_jwk, kid=str(i)) for i in range(101)]}
    assert invalid(document, parse_jwks) == "JWK Set has too many keys"
    assert len(parse_jwks({"keys": document["keys"][:100]})) == 100


def test_duplicate_kid_refused(rsa_jwk, ec_keys):
    ec_jwk = PublicKey.from_cryptography(ec_keys["P-256"].public_key()).to_jwk()
    document = {"keys": [dict(rsa_jwk, kid="same"), dict(ec_jwk, kid="same")]}
    assert invalid(document, parse_jwks) == "JWK Set contains a duplicate kid"


def test_keys_without_kid_are_not_duplicates(rsa_jwk, ec_keys):
    ec_jwk = PublicKey.from_cryptography(ec_keys["P-256"].public_key()).to_jwk()
    assert len(parse_jwks({"keys": [rsa_jwk, ec_jwk]})) == 2


def test_jwks_duplicate_member_names_refused(rsa_jwk):
    text = '{"keys":[{"kty":"RSA","n":"%s","e":"AQAB","kid":"a","kid":"b"}]}' % rsa_jwk["n"]
    assert invalid(text, parse_jwks) == "JWK Set is not strict JSON"
    assert invalid('{"keys":[],"keys":[%s]}' % json.dumps(rsa_jwk), parse_jwks) == "JWK Set is not strict JSON"


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_jwks_non_finite_numbers_refused(rsa_jwk, literal):
    text = '{"keys":[%s],"x":%s}' % (json.dumps(rsa_jwk), literal)
    assert invalid(text, parse_jwks) == "JWK Set is not strict JSON"


@pytest.mark.parametrize("document", [
    "[]", "null", '"keys"', "{", b"\xff\xfe", '{"keys":{}}', '{"keys":null}', '{"other":[]}',
    '{"keys":[1]}', '{"keys":["RSA"]}', [], None, 42,
])
def test_malformed_jwks_refused(document):
    invalid(document, parse_jwks)


def test_deeply_nested_jwks_refused(rsa_jwk):
    text = '{"keys":[%s],"x":%s}' % (json.dumps(rsa_jwk), "[" * 3000 + "]" * 3000)
    assert invalid(text, parse_jwks) == "JWK Set is not strict JSON"


def test_oversized_jwks_refused(rsa_jwk):
    text = '{"keys":[%s],"pad":"%s"}' % (json.dumps(rsa_jwk), "x" * (512 * 1024))
    assert invalid(text, parse_jwks) == "JWK Set document is too large"


def test_one_bad_member_refuses_the_set(rsa_jwk):
    document = {"keys": [dict(rsa_jwk, kid="good"), {"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "bad"}]}
    assert invalid(document, parse_jwks) == "RSA modulus is shorter than 2048 bits"


def test_messages_never_echo_input(rsa_jwk):
    secret = "SECRETVALUE"
    for member in ({"kty": secret, "d": secret}, {"kty": "RSA", "n": secret, "e": secret},
                   dict(rsa_jwk, kid=[secret]), {"kty": "oct", "k": secret}):
        assert secret not in invalid(member)
    assert secret not in invalid('{"keys":[' + secret + "]}", parse_jwks)

"""Property-based tests around the valid request (in-process: the real app on a real SQLite file).

Invariants: keystore.jws.parse_compact_jws raises nothing but MalformedJWS; the token endpoint never
answers 5xx; it answers 200 only for the unmodified, validly signed assertion of a registered
client, and only once.
"""

from __future__ import annotations

import json
import math
import time
from urllib.parse import urlencode

import tempfile

import pytest

pytest.importorskip("hypothesis", reason="hypothesis is not installed (pip install hypothesis)")

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

# Hypothesis keeps caches in ./.hypothesis by default; keep the work tree clean.
set_hypothesis_home_dir(tempfile.mkdtemp(prefix="hypothesis-"))

from hostile_support import b64, compact, jdump, unb64
from keystore.jws import MalformedJWS, parse_compact_jws
from support import ASSERTION_TYPE, token_form

FAST = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                         HealthCheck.too_slow])
SLOW = settings(max_examples=50, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                        HealthCheck.too_slow])

json_scalars = st.none() | st.booleans() | st.integers(min_value=-(10**30), max_value=10**30) \
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


def status_ok(response) -> None:
    assert response.status_code < 500, (response.status_code, response.get_data(as_text=True))
    assert response.headers["Content-Type"] == "application/json"
    body = response.json
    if response.status_code != 200:
        assert "access_token" not in body and body["error"], body


# --- the parser ------------------------------------------------------------------------------------

@FAST
@given(st.text(max_size=300))
def test_parser_raises_only_malformed_on_any_text(text):
    try:
        parse_compact_jws(text)
    except MalformedJWS:
        pass


segment_text = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/. \x00", max_size=60)


@FAST
@given(st.lists(segment_text | st.builds(lambda v: b64(json.dumps(v)), json_values), min_size=0, max_size=6))
def test_parser_raises_only_malformed_on_segment_soup(parts):
    try:
        parse_compact_jws(".".join(parts))
    except MalformedJWS:
        pass


@FAST
@given(header=st.dictionaries(st.text(max_size=6), json_values, max_size=5), payload=json_values)
def test_parser_raises_only_malformed_on_any_json(header, payload):
    token = b64(json.dumps({"alg": "RS256", **header})) + "." + b64(json.dumps(payload)) + ".AAAA"
    try:
        parsed = parse_compact_jws(token)
    except MalformedJWS:
        return
    assert isinstance(parsed.header, dict) and isinstance(parsed.payload, dict)


# --- mutated assertions ---------------------------------------------------------------------------------

MUTATIONS = st.lists(st.tuples(st.sampled_from(["flip", "delete", "insert", "replace", "swap", "dup"]),
                               st.integers(min_value=0, max_value=10**6),
                               st.sampled_from("ABCxyz019-_.=+/ \x00\u00e9{}\"")), min_size=1, max_size=4)


def apply(token: str, mutations) -> str:
    chars = list(token)
    for op, position, char in mutations:
        if not chars:
            chars = [char]
            continue
        i = position % len(chars)
        if op == "flip":
            chars[i] = chr(ord(chars[i]) ^ 1)
        elif op == "delete":
            del chars[i]
        elif op == "insert":
            chars.insert(i, char)
        elif op == "replace":
            chars[i] = char
        elif op == "swap":
            j = (position // 7) % len(chars)
            chars[i], chars[j] = chars[j], chars[i]
        else:
            parts = "".join(chars).split(".")
            parts.insert(position % (len(parts) + 1), parts[i % len(parts)])
            chars = list(".".join(parts))
    return "".join(chars)


@SLOW
@given(mutations=MUTATIONS)
def test_mutated_assertion_never_gets_a_token(idp, mutations):
    valid = idp.assertion()
    mutated = apply(valid, mutations)
    try:
        parse_compact_jws(mutated)
    except MalformedJWS:
        pass
    response = idp.token(mutated) if mutated else idp.post(token_form(""))
    status_ok(response)
    if mutated != valid:
        assert response.status_code != 200, mutated
    # The unmodified assertion still works once (the mutant used nothing up), and only once.
    if mutated != valid:
        assert idp.token(valid).status_code == 200
    assert idp.token(valid).status_code == 401


# --- claims and header members -------------------------------------------------------------------------

CLAIMS = ["iss", "sub", "aud", "exp", "nbf", "iat", "jti"]


def acceptable(claims: dict, issuer: str, now: float) -> bool:
    """The README's claim rules, independently."""
    def number(name):
        if name not in claims:  # absent is allowed; present (null included) must be a number
            return None
        v = claims[name]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or abs(v) > 1e13 or not math.isfinite(v):
            raise ValueError
        return v
    try:
        if claims.get("iss") != "client-1" or claims.get("sub") != "client-1" or claims.get("aud") != issuer:
            return False
        exp, nbf, iat = number("exp"), number("nbf"), number("iat")
    except ValueError:
        return False
    if exp is None or exp < now - 30 or exp - now > 3600 + 30:
        return False
    if nbf is not None and (nbf > now + 30 or nbf > exp):
        return False
    if iat is not None and (iat > now + 30 or iat < now - 300 * 60 - 30 or iat > exp):
        return False
    jti = claims.get("jti")
    return isinstance(jti, str) and 1 <= len(jti) <= 255 and not any(ord(c) < 0x20 or ord(c) == 0x7f for c in jti)


def near_time():
    return st.integers(min_value=-400 * 60, max_value=2 * 3600).map(lambda d: int(time.time()) + d)


claim_values = json_values | near_time() | st.sampled_from(["client-1", "client-2", ""])


@SLOW
@given(changes=st.dictionaries(st.sampled_from(CLAIMS), claim_values | st.just(...), min_size=1, max_size=3),
       extra=st.dictionaries(st.text(min_size=1, max_size=6).filter(lambda k: k not in CLAIMS), json_values, max_size=2))
def test_random_claims_follow_the_rules(idp, changes, extra):
    now = time.time()
    claims_changes = {**changes, **extra}
    assertion = idp.assertion(**claims_changes)
    claims = json.loads(unb64(assertion.split(".")[1]))
    # The examples share one server: a jti value drawn twice (e.g. "client-1") is a replay.
    used = idp.__dict__.setdefault("used_jtis", set())
    expect = acceptable(claims, idp.issuer, now) and claims.get("jti") not in used
    # Keep away from the boundaries, where the second between signing and checking matters.
    for name in ("exp", "nbf", "iat"):
        v = claims.get(name)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            for edge in (now - 30, now + 30, now + 3630, now - 300 * 60 - 30):
                assume(abs(v - edge) > 5)
    response = idp.token(assertion)
    status_ok(response)
    if response.status_code == 200:
        used.add(claims["jti"])
    assert (response.status_code == 200) == expect, (claims, response.json)
    if not expect:
        assert response.status_code == 401 and response.json["error"] == "invalid_client"


REFUSED_HEADERS = {"crit", "b64", "zip", "enc"}


@SLOW
@given(members=st.dictionaries(st.sampled_from(["kid", "typ", "cty", "crit", "b64", "zip", "enc", "jku", "jwk",
                                                "x5u", "x5c", "x5t", "nonce", "url"]) | st.text(max_size=5),
                               json_values, min_size=1, max_size=3))
def test_random_header_members(idp, members):
    assume("alg" not in members)
    header = {"kid": "k1", **members}
    assertion = compact(idp.key, "RS256", header, jdump({
        "iss": "client-1", "sub": "client-1", "aud": idp.issuer, "jti": repr(members)[:200] + str(time.time()),
        "exp": int(time.time()) + 300}))
    response = idp.token(assertion)
    status_ok(response)
    if response.status_code == 200:
        assert not REFUSED_HEADERS & set(header)
        assert header.get("kid") == "k1"
        typ = header.get("typ")
        assert typ is None or (isinstance(typ, str) and typ.lower().removeprefix("application/")
                               in ("jwt", "client-authentication+jwt"))
        assert "cty" not in header or isinstance(header["cty"], str)


# --- form bodies --------------------------------------------------------------------------------------

NAMES = ["grant_type", "client_assertion", "client_assertion_type", "client_id", "client_secret", "scope",
         "redirect_uri"]


@SLOW
@given(body=st.binary(max_size=300), content_type=st.sampled_from(
    ["application/x-www-form-urlencoded", "application/json", "", "text/plain; charset=utf-8"]))
def test_random_bodies_never_5xx_never_token(idp, body, content_type):
    response = idp.post(body, content_type=content_type)
    status_ok(response)
    assert response.status_code != 200


@SLOW
@given(params=st.dictionaries(st.sampled_from(NAMES) | st.text(max_size=6), st.sampled_from(
    ["client_credentials", ASSERTION_TYPE, "VALID", "client-1", "openid", ""]) | st.text(max_size=12),
    max_size=7))
def test_random_parameters(idp, params):
    valid = idp.assertion()
    params = {k: (valid if v == "VALID" else v) for k, v in params.items()}
    response = idp.post(urlencode(params))
    status_ok(response)
    if response.status_code == 200:
        assert params.get("client_assertion") == valid
        assert params.get("grant_type") == "client_credentials"
        assert params.get("client_assertion_type") == ASSERTION_TYPE
        assert not params.get("client_secret") and params.get("client_id", "client-1") in ("client-1", "")

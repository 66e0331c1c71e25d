"""Claims and time: each required claim missing, wrong types, iss against sub, audience near-misses
and arrays under the strict policy and the legacy one side by side, expiry and the 30 s skew, the
lifetime cap, stale and future iat, nbf, inconsistent times and absurd numbers."""

from __future__ import annotations

import json
import time

import pytest

from hostile_support import bad_client, compact, jdump, ok, params, post, form, run

SKEW = 30
LIFETIME = 3600
REJECT_BEFORE = 300 * 60


def now() -> int:
    return int(time.time())


def with_claims(id: str, client_id: str = "rsa-client", **claims):
    """A validly signed assertion with these claims changed (a value of ... removes the claim)."""
    return bad_client(id, lambda e: e.token_request(e.assertion(client_id, **claims)))


def timed(id: str, make, expect_ok: bool = False):
    """`make(now)` gives the claim overrides at request time."""
    build = lambda e: e.token_request(e.assertion(**make(now())))
    return ok(id, build) if expect_ok else bad_client(id, build)


def raw_claim(id: str, name: str, json_text: str):
    """A claim whose JSON text is written verbatim (for values Python's json would not produce)."""
    def build(e):
        claims = e.claims(**{name: ...})
        text = json.dumps(claims, separators=(",", ":"))[:-1] + f',"{name}":{json_text}}}'
        return e.token_request(compact(e.keys.rsa, "RS256", {"typ": "JWT", "kid": "k1"}, text.encode()))
    return bad_client(id, build)


MISSING = [with_claims(f"missing-{name}", **{name: ...}) for name in ("iss", "sub", "aud", "exp", "jti")] + [
    with_claims("missing-iss-and-sub", iss=..., sub=...),
]

WRONG_TYPES = [with_claims(f"type-{name}-{label}", **{name: value}) for name, label, value in [
    ("iss", "number", 5), ("iss", "list", ["rsa-client"]), ("iss", "null", None), ("iss", "object", {"id": "rsa-client"}),
    ("sub", "number", 5), ("sub", "list", ["rsa-client"]), ("sub", "empty", ""), ("sub", "true", True),
    ("aud", "number", 5), ("aud", "object", {"aud": "x"}), ("aud", "true", True), ("aud", "empty", ""),
    ("exp", "string", "9999999999"), ("exp", "numeric-string", str(int(time.time()) + 300)), ("exp", "true", True),
    ("exp", "false", False), ("exp", "list", [int(time.time()) + 300]), ("exp", "null", None), ("exp", "object", {}),
    ("jti", "number", 5), ("jti", "empty", ""), ("jti", "256-characters", "j" * 256), ("jti", "nul", "a\x00b"),
    ("jti", "newline", "a\nb"), ("jti", "list", ["a"]), ("jti", "null", None), ("jti", "true", True),
    ("iat", "string", "1"), ("iat", "false", False), ("iat", "list", [1]), ("iat", "object", {}),
    ("nbf", "string", "0"), ("nbf", "object", {"a": 1}), ("nbf", "true", True),
    # Optional claims that are present are checked as strictly as required ones.
    ("iat", "null", None), ("iat", "true", True), ("nbf", "null", None), ("nbf", "false", False),
    ("aud", "null", None), ("aud", "list-with-number", [5]),
]] + [
    with_claims("iss-differs-from-sub", iss="other-client"),
    with_claims("sub-differs-from-iss", sub="other-client"),
    with_claims("iss-case-variant", iss="RSA-CLIENT"),
    with_claims("iss-trailing-space", iss="rsa-client "),
]


def aud(value):
    return lambda e: e.token_request(e.assertion(aud=value(e) if callable(value) else value))


AUDIENCE = [bad_client(f"aud-{label}", aud(value)) for label, value in [
    ("trailing-slash", lambda e: e.issuer + "/"),
    ("upper-case-scheme", lambda e: e.issuer.replace("https", "HTTPS")),
    ("upper-case-host", lambda e: e.issuer.replace("localhost", "LOCALHOST")),
    ("upper-case-path", lambda e: e.issuer.replace("/oauth2/token", "/OAuth2/Token")),
    ("other-port", lambda e: "https://localhost:9443/oauth2/token" if ":9443/" not in e.issuer else "https://localhost:9444/oauth2/token"),
    ("default-port", lambda e: "https://localhost/oauth2/token"),
    ("explicit-443", lambda e: "https://localhost:443/oauth2/token"),
    ("http-scheme", lambda e: e.issuer.replace("https", "http")),
    ("fragment", lambda e: e.issuer + "#x"),
    ("query", lambda e: e.issuer + "?x=1"),
    ("suffix-domain", lambda e: e.issuer.replace("localhost", "localhost.evil.com")),
    ("prefix-domain", lambda e: e.issuer.replace("localhost", "evil-localhost")),
    ("appended-path", lambda e: e.issuer + ".evil.com"),
    ("ip-literal", lambda e: e.issuer.replace("localhost", "127.0.0.1")),
    ("base-url-only", lambda e: e.server.base),
    ("authorize-endpoint", lambda e: e.server.base + "/oauth2/authorize"),
    ("trailing-whitespace", lambda e: e.issuer + " "),
    ("userinfo", lambda e: e.issuer.replace("https://", "https://user@")),
    ("percent-encoded-path", lambda e: e.issuer.replace("/token", "/%74oken")),
    ("another-server", "https://as.example.com/oauth2/token"),
    ("strict-array-one-element", lambda e: [e.issuer]),
    ("strict-array-with-evil", lambda e: [e.issuer, "https://evil.example/"]),
    ("strict-array-evil-first", lambda e: ["https://evil.example/", e.issuer]),
    ("strict-array-empty", []),
    ("strict-array-nested", lambda e: [[e.issuer]]),
]] + [
    ok("aud-exact-issuer", aud(lambda e: e.issuer)),
    ok("aud-legacy-client-array", lambda e: e.token_request(e.assertion("legacy-client", aud=["https://x.example", e.issuer]))),
    bad_client("aud-legacy-client-only-foreign", lambda e: e.token_request(e.assertion("legacy-client", aud=["https://x.example"]))),
]

TIME = [
    timed("exp-past-beyond-skew", lambda t: {"exp": t - SKEW - 15, "iat": t - 200}),
    timed("exp-long-ago", lambda t: {"exp": t - 86400, "iat": t - 86500}),
    timed("exp-within-skew", lambda t: {"exp": t - SKEW + 15, "iat": t - 200}, True),
    timed("exp-now", lambda t: {"exp": t, "iat": t - 10}, True),
    timed("exp-exactly-3600-ahead", lambda t: {"exp": t + LIFETIME, "iat": t}, True),
    timed("exp-3600-plus-skew-ahead", lambda t: {"exp": t + LIFETIME + SKEW - 10, "iat": t}, True),
    timed("exp-beyond-lifetime-cap", lambda t: {"exp": t + LIFETIME + SKEW + 15, "iat": t}),
    timed("exp-one-day-ahead", lambda t: {"exp": t + 86400, "iat": t}),
    timed("exp-year-3000", lambda t: {"exp": 32503680000, "iat": t}),
    timed("exp-fractional", lambda t: {"exp": t + 120.5}, True),
    timed("exp-fractional-tiny", lambda t: {"exp": t + 120 + 1e-9}, True),
    timed("iat-stale-beyond-reject-before", lambda t: {"iat": t - REJECT_BEFORE - SKEW - 60, "exp": t + 60}),
    timed("iat-within-reject-before", lambda t: {"iat": t - REJECT_BEFORE + 60, "exp": t + 60}, True),
    timed("iat-future-beyond-skew", lambda t: {"iat": t + SKEW + 30, "exp": t + 300}),
    timed("iat-future-within-skew", lambda t: {"iat": t + SKEW - 10, "exp": t + 300}, True),
    timed("nbf-future-beyond-skew", lambda t: {"nbf": t + SKEW + 30}),
    timed("nbf-future-within-skew", lambda t: {"nbf": t + SKEW - 10}, True),
    timed("nbf-past", lambda t: {"nbf": t - 60}, True),
    timed("nbf-after-exp", lambda t: {"nbf": t + 10, "exp": t + 5}),
    timed("iat-after-exp", lambda t: {"iat": t + 10, "exp": t + 5}),
    timed("iat-missing", lambda t: {"iat": ...}, True),
    timed("iat-and-nbf-missing", lambda t: {"iat": ..., "nbf": ...}, True),
    timed("extra-unknown-claims", lambda t: {"foo": {"bar": [1, 2]}, "scope": "admin", "cnf": {"jkt": "x"}}, True),
    timed("jti-255-characters", lambda t: {"jti": "j" * 255}, True),
    timed("jti-unicode", lambda t: {"jti": "\u00e9\u4e2d" + str(t) + str(id(t))}, True),
    # absurd numbers
    timed("exp-1e30-float", lambda t: {"exp": 1e30}),
    timed("exp-10-pow-30-int", lambda t: {"exp": 10**30}),
    timed("exp-10-pow-400-int", lambda t: {"exp": 10**400}),
    timed("exp-2-pow-63", lambda t: {"exp": 2**63}),
    timed("exp-2-pow-64-plus-now", lambda t: {"exp": 2**64 + t + 300}),
    timed("exp-negative", lambda t: {"exp": -1}),
    timed("exp-negative-huge", lambda t: {"exp": -(10**400)}),
    timed("exp-zero", lambda t: {"exp": 0}),
    timed("exp-1e308", lambda t: {"exp": 1e308}),
    timed("exp-milliseconds", lambda t: {"exp": (t + 300) * 1000}),
    timed("iat-negative-huge", lambda t: {"iat": -(10**400)}),
    timed("iat-10-pow-30", lambda t: {"iat": 10**30}),
    timed("iat-negative", lambda t: {"iat": -1}),
    timed("nbf-10-pow-30", lambda t: {"nbf": 10**30}),
    timed("nbf-negative-huge", lambda t: {"nbf": -(10**400)}),
    raw_claim("exp-1e400-json-text", "exp", "1e400"),
    raw_claim("exp-minus-1e400-json-text", "exp", "-1e400"),
    raw_claim("exp-1e-400-json-text", "exp", "1e-400"),
    raw_claim("iat-1e400-json-text", "iat", "1e400"),
    raw_claim("nbf-1e400-json-text", "nbf", "1e400"),
    raw_claim("exp-5000-digits", "exp", "9" * 5000),
    raw_claim("exp-negative-zero", "exp", "-0"),
]


@pytest.mark.parametrize("case", params(MISSING + WRONG_TYPES + AUDIENCE + TIME))
def test_claims_and_time(env, case):
    run(env, case)


LEGACY = [
    ok("legacy-aud-string", aud(lambda e: e.issuer)),
    ok("legacy-aud-array-with-issuer", aud(lambda e: ["https://evil.example/", e.issuer])),
    ok("legacy-aud-array-one-element", aud(lambda e: [e.issuer])),
    bad_client("legacy-aud-foreign-string", aud("https://evil.example/oauth2/token")),
    bad_client("legacy-aud-foreign-array", aud(["https://evil.example/", "https://other.example/"])),
    bad_client("legacy-aud-empty-array", aud([])),
    bad_client("legacy-aud-array-with-number", aud(lambda e: [e.issuer, 5])),
    bad_client("legacy-aud-nested-array", aud(lambda e: [[e.issuer]])),
    bad_client("legacy-aud-trailing-slash", aud(lambda e: [e.issuer + "/"])),
    bad_client("legacy-aud-upper-case-host", aud(lambda e: [e.issuer.replace("localhost", "LOCALHOST")])),
    bad_client("legacy-aud-object", aud(lambda e: {"aud": e.issuer})),
    bad_client("legacy-host-header-spoof", lambda e: post(form(e.assertion(aud="https://evil.example/oauth2/token")),
                                                          headers={"Host": "evil.example"})),
    bad_client("legacy-forwarded-host-spoof", lambda e: post(form(e.assertion(aud="https://evil.example/oauth2/token")),
                                                             headers={"X-Forwarded-Host": "evil.example",
                                                                      "X-Forwarded-Proto": "https",
                                                                      "Forwarded": "host=evil.example;proto=https"})),
    bad_client("legacy-strict-client-array", lambda e: e.token_request(e.assertion("strict-client", aud=[e.issuer]))),
    ok("legacy-strict-client-string", lambda e: e.token_request(e.assertion("strict-client"))),
]


@pytest.mark.parametrize("case", params(LEGACY))
def test_legacy_policy(legacy_env, case):
    run(legacy_env, case)


@pytest.mark.parametrize("aud_kind", ["array-with-issuer", "one-element-array"])
def test_strict_and_legacy_side_by_side(env, legacy_env, aud_kind):
    """The same kind of assertion: refused by the strict server, accepted by the legacy one."""
    def assertion(e):
        return e.assertion(aud=["https://evil.example/", e.issuer] if aud_kind == "array-with-issuer" else [e.issuer])
    strict = env.token(assertion(env))
    legacy = legacy_env.token(assertion(legacy_env))
    assert strict.status_code == 401 and strict.json()["error"] == "invalid_client"
    assert legacy.status_code == 200 and "access_token" in legacy.json()

"""Replay: sequential, concurrent, re-signed, malleated, re-encoded, across clients, and requests
that fail for another reason never using up a jti.  A row's builder makes the first use itself
(and checks it got a token); the row is the request that follows."""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from hostile_support import (EC_ORDER, b64, bad_client, check_response, compact, form, jdump, ok, params,
                             payload_of, post, replace_segment, run, segments, unb64)


def used(e, assertion: str) -> str:
    """Spend `assertion` once (it must get a token) and hand it back."""
    response = e.token(assertion)
    assert response.status_code == 200, response.text
    return assertion


def first_fails(e, assertion: str, **extra) -> None:
    response = e.token(assertion, **extra)
    assert response.status_code in (400, 401), response.text


def malleate(token: str) -> str:
    raw = unb64(segments(token)[2])
    s = int.from_bytes(raw[32:], "big")
    return replace_segment(token, 2, b64(raw[:32] + (EC_ORDER["ES256"] - s).to_bytes(32, "big")))


def reencoded(e, jti: str, text: bytes, key=None, alg="RS256", client="rsa-client") -> str:
    return compact(key or e.keys.rsa, alg, {"typ": "JWT", "kid": "k1"}, text)


def spent_then(make_second, client="rsa-client", alg="RS256"):
    """Use an assertion with a fresh jti, then build the second request from (env, jti, first assertion)."""
    def build(e):
        jti = "replay-" + uuid.uuid4().hex
        first = used(e, e.assertion(client, alg=alg, jti=jti))
        return e.token_request(make_second(e, jti, first))
    return build


def claims_text_variant(e, jti: str, style: str) -> bytes:
    claims = e.claims(jti=jti)
    if style == "spaces":
        return json.dumps(claims, indent=2).encode()
    if style == "reordered":
        return json.dumps(dict(reversed(list(claims.items())))).encode()
    if style == "escaped-jti":
        text = json.dumps(claims, separators=(",", ":"))
        return text.replace(f'"{jti}"', '"' + "".join(f"\\u{ord(c):04x}" for c in jti) + '"').encode()
    if style == "extra-claim":
        return jdump({**claims, "nonce": uuid.uuid4().hex})
    raise ValueError(style)


def survives(e, spoil) -> "Req":
    """Send a spoiled request carrying a fresh valid assertion (it must fail), then the assertion alone."""
    assertion = e.assertion()
    response = spoil(assertion).send(e.server, e.session)
    assert response.status_code == 400, response.text
    return e.token_request(assertion)


REPLAY = [
    bad_client("replay-sequential", spent_then(lambda e, jti, first: first)),
    bad_client("replay-third-time", spent_then(lambda e, jti, first: (e.token(first), first)[1])),
    bad_client("replay-resigned-same-jti", spent_then(lambda e, jti, first: e.assertion(jti=jti))),
    bad_client("replay-resigned-other-alg", spent_then(lambda e, jti, first: e.assertion(alg="PS256", jti=jti))),
    bad_client("replay-resigned-new-times", spent_then(lambda e, jti, first: e.assertion(jti=jti, exp=e.claims()["exp"] + 100))),
    bad_client("replay-resigned-without-kid", spent_then(lambda e, jti, first: e.assertion(jti=jti, kid=None))),
    bad_client("replay-json-whitespace", spent_then(lambda e, jti, first: reencoded(e, jti, claims_text_variant(e, jti, "spaces")))),
    bad_client("replay-member-order", spent_then(lambda e, jti, first: reencoded(e, jti, claims_text_variant(e, jti, "reordered")))),
    bad_client("replay-unicode-escaped-jti", spent_then(lambda e, jti, first: reencoded(e, jti, claims_text_variant(e, jti, "escaped-jti")))),
    bad_client("replay-extra-claim", spent_then(lambda e, jti, first: reencoded(e, jti, claims_text_variant(e, jti, "extra-claim")))),
    bad_client("replay-with-client-id-param", lambda e: post(form(used(e, e.assertion()), client_id="rsa-client"))),
    bad_client("replay-with-other-scope", lambda e: post(form(used(e, e.assertion()), scope="read"))),
    bad_client("replay-es256-malleated", spent_then(lambda e, jti, first: malleate(first), "es256-client", "ES256")),
    bad_client("replay-es256-original-after-malleated",
               lambda e: e.token_request((lambda t: (used(e, malleate(t)), t)[1])(e.assertion("es256-client", alg="ES256")))),
    bad_client("replay-eddsa-resigned", spent_then(lambda e, jti, first: e.assertion("ed-client", alg="Ed25519", jti=jti),
                                                   "ed-client", "EdDSA")),
    ok("replay-same-jti-other-client",
       spent_then(lambda e, jti, first: e.assertion("other-client", key=e.keys.rsa_other, jti=jti))),
    ok("replay-jti-case-differs", spent_then(lambda e, jti, first: e.assertion(jti=jti.upper()))),
    ok("replay-jti-suffix-differs", spent_then(lambda e, jti, first: e.assertion(jti=jti + " "))),
    # failures for other reasons do not use up the jti
    ok("jti-survives-forged-signature",
       lambda e: (first_fails(e, e.assertion(key=e.keys.rsa_other, jti=(j := "f-" + uuid.uuid4().hex))),
                  e.token_request(e.assertion(jti=j)))[1]),
    ok("jti-survives-wrong-audience",
       lambda e: (first_fails(e, e.assertion(aud="https://evil.example/", jti=(j := "a-" + uuid.uuid4().hex))),
                  e.token_request(e.assertion(jti=j)))[1]),
    ok("jti-survives-expired-copy",
       lambda e: (first_fails(e, e.assertion(exp=1, iat=..., jti=(j := "x-" + uuid.uuid4().hex))),
                  e.token_request(e.assertion(jti=j)))[1]),
    ok("jti-survives-unsupported-grant",
       lambda e: (first_fails(e, a := e.assertion(), grant_type="password"), e.token_request(a))[1]),
    ok("jti-survives-two-methods", lambda e: survives(e, lambda a: post(form(a, client_secret="x")))),
    ok("jti-survives-duplicate-parameter",
       lambda e: survives(e, lambda a: post(post(form(a)).body + b"&scope=openid&scope=read"))),
    ok("jti-survives-query-string", lambda e: survives(e, lambda a: post(form(a), path="/oauth2/token?x=1"))),
    ok("jti-survives-wrong-media-type", lambda e: survives(e, lambda a: post(form(a), "text/plain"))),
    ok("jti-survives-wrong-client-id-param",
       lambda e: (first_fails(e, a := e.assertion(), client_id="other-client"), e.token_request(a))[1]),
    ok("jti-survives-pinned-alg-violation",
       lambda e: (first_fails(e, e.assertion("pinned-ps256", alg="RS256", jti=(j := "p-" + uuid.uuid4().hex))),
                  e.token_request(e.assertion("pinned-ps256", alg="PS256", jti=j)))[1]),
]


@pytest.mark.parametrize("case", params(REPLAY))
def test_replay(env, case):
    run(env, case)


RELAXED = [
    ok("reuse-allowed-second-use", lambda e: e.token_request(used(e, e.assertion()))),
    ok("reuse-allowed-resigned-same-jti", spent_then(lambda e, jti, first: e.assertion(jti=jti))),
    bad_client("reuse-prevented-per-client", lambda e: e.token_request(used(e, e.assertion("prevent-client")))),
    bad_client("reuse-allowed-still-checks-signature",
               lambda e: e.token_request(replace_segment(used(e, e.assertion()), 2, b64(bytes(256))))),
]


@pytest.mark.parametrize("case", params(RELAXED))
def test_reuse_allowed_server(relaxed_env, case):
    run(relaxed_env, case)


@pytest.mark.parametrize("alg,client", [("RS256", "rsa-client"), ("ES256", "es256-client")])
def test_concurrent_replay_gives_exactly_one_token(env, alg, client):
    """20 requests with one assertion, released together on their own connections: one token."""
    assertion = env.assertion(client, alg=alg)
    request = env.token_request(assertion)
    barrier = threading.Barrier(20)

    def one(_):
        with requests.Session() as session:
            barrier.wait(timeout=30)
            return request.send(env.server, session)

    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(one, range(20)))
    outcomes = Counter((r.status_code, r.json().get("error")) for r in responses)
    assert outcomes == Counter({(200, None): 1, (401, "invalid_client"): 19}), outcomes
    for response in responses:
        expected = ok("concurrent", None) if response.status_code == 200 else bad_client("concurrent", None)
        check_response(response, expected, request)

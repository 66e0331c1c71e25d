"""JWS structure: segment counts, JWE and JSON serialization, non-object header or payload, padding
and non-canonical base64url, whitespace and control characters, duplicate member names, nesting,
size, nested JWTs, non-JSON numbers.  Where a row can be validly signed it is, so that the
structural rule alone is what refuses it."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from hostile_support import (b64, bad_client, bad_request, compact, jdump, ok, params, post, replace_segment, run,
                             segments, unb64)
from support import ASSERTION_TYPE

HEADER = b'{"alg":"RS256","typ":"JWT","kid":"k1"}'


def signed(e, header: bytes = HEADER, payload: bytes | None = None) -> str:
    """Exact header and payload bytes, validly signed RS256 by rsa-client's key."""
    return compact(e.keys.rsa, "RS256", header, payload if payload is not None else jdump(e.claims()))


def claims_text(e, extra: str = "", **overrides) -> bytes:
    """The valid claims as JSON text with `extra` spliced in before the closing brace."""
    text = json.dumps(e.claims(**overrides), separators=(",", ":"))
    return (text[:-1] + ("," + extra if extra else "") + "}").encode()


def raw(assertion_text: str):
    """A request whose client_assertion is exactly this text (percent-encoded only as a form needs)."""
    body = ("grant_type=client_credentials&client_assertion_type=" + quote(ASSERTION_TYPE, safe="")
            + "&client_assertion=" + quote(assertion_text, safe=""))
    return post(body)


def case(id: str, make):
    return bad_client(id, lambda e: raw(make(e)))


def mutate(id: str, change):
    """A valid assertion, then `change(token)`."""
    return bad_client(id, lambda e: raw(change(e.assertion())))


def flip_last(segment: str) -> str:
    """A different last character that keeps the text base64url (and may leave stray bits)."""
    return segment[:-1] + ("B" if segment[-1] != "B" else "C")


def stray_bits(segment: str) -> str:
    """Set unused low bits in the last character: decodes to the same octets, not canonical."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    if len(segment) % 4 == 0:
        segment = segment[:-1]  # make a partial group first
    index = alphabet.index(segment[-1])
    return segment[:-1] + alphabet[index | (1 if len(segment) % 4 == 3 else 3)]


def deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def nested_jwt(e, cty: str | None) -> str:
    inner = e.assertion()
    header = {"typ": "JWT", "kid": "k1", **({"cty": cty} if cty else {})}
    return compact(e.keys.rsa, "RS256", header, inner.encode())


CASES = [
    # --- segment counts
    case("segments-one", lambda e: b64(HEADER)),
    case("segments-two", lambda e: ".".join(segments(e.assertion())[:2])),
    case("segments-four", lambda e: e.assertion() + ".AAAA"),
    case("segments-trailing-dot", lambda e: e.assertion() + "."),
    case("segments-six", lambda e: e.assertion() + ".a.b.c"),
    case("segments-dots-only", lambda e: ".."),
    case("segments-empty-header", lambda e: "." + ".".join(segments(e.assertion())[1:])),
    case("segments-empty-payload", lambda e: replace_segment(e.assertion(), 1, "")),
    case("signature-empty", lambda e: replace_segment(e.assertion(), 2, "")),
    case("jwe-five-segments", lambda e: b64(b'{"alg":"RSA-OAEP","enc":"A256GCM","kid":"k1"}') + ".AAAA.AAAA.AAAA.AAAA"),
    case("jwe-five-segments-from-jws", lambda e: e.assertion() + ".AAAA.AAAA"),
    case("enc-header-in-three-segments", lambda e: signed(e, b'{"alg":"RS256","enc":"A256GCM","kid":"k1"}')),
    case("json-serialization-general", lambda e: json.dumps({
        "payload": segments(e.assertion())[1],
        "signatures": [{"protected": segments(e.assertion())[0], "signature": segments(e.assertion())[2]}]})),
    case("json-serialization-flattened", lambda e: json.dumps(dict(zip(("protected", "payload", "signature"),
                                                                          segments(e.assertion()))))),
    case("json-serialization-leading-space", lambda e: "  " + json.dumps({"payload": "x", "signatures": []})),
    # --- header and payload that are not JSON objects
    case("header-array", lambda e: signed(e, b'["RS256"]')),
    case("header-string", lambda e: signed(e, b'"RS256"')),
    case("header-number", lambda e: signed(e, b"256")),
    case("header-null", lambda e: signed(e, b"null")),
    case("header-not-json", lambda e: signed(e, b"alg=RS256")),
    case("header-binary", lambda e: signed(e, bytes(range(256)))),
    case("header-utf16", lambda e: signed(e, HEADER.decode().encode("utf-16"))),
    case("header-bom", lambda e: signed(e, b"\xef\xbb\xbf" + HEADER)),
    case("header-trailing-garbage", lambda e: signed(e, HEADER + b"x")),
    case("header-two-objects", lambda e: signed(e, HEADER + HEADER)),
    case("payload-array", lambda e: signed(e, payload=b"[" + claims_text(e) + b"]")),
    case("payload-string", lambda e: signed(e, payload=b'"claims"')),
    case("payload-null", lambda e: signed(e, payload=b"null")),
    case("payload-empty", lambda e: signed(e, payload=b"")),
    case("payload-not-json", lambda e: signed(e, payload=b"iss=rsa-client")),
    case("payload-invalid-utf8", lambda e: signed(e, payload=claims_text(e, '"x":"\xff"').replace(b"\xc3\xbf", b"\xff"))),
    case("payload-latin1-text", lambda e: signed(e, payload=claims_text(e, '"x":"caf\u00e9"').decode().encode("latin-1"))),
    case("payload-unpaired-surrogate", lambda e: signed(e, payload=claims_text(e, '"x":"\\ud800"'))),
    case("payload-surrogate-in-name", lambda e: signed(e, payload=claims_text(e, '"\\udc00":1'))),
    # --- header members
    case("alg-missing", lambda e: signed(e, b'{"typ":"JWT","kid":"k1"}')),
    case("alg-number", lambda e: signed(e, b'{"alg":256,"kid":"k1"}')),
    case("alg-null", lambda e: signed(e, b'{"alg":null,"kid":"k1"}')),
    case("alg-array", lambda e: signed(e, b'{"alg":["RS256"],"kid":"k1"}')),
    case("kid-number", lambda e: signed(e, b'{"alg":"RS256","kid":1}')),
    case("kid-null", lambda e: signed(e, b'{"alg":"RS256","kid":null}')),
    case("typ-object", lambda e: signed(e, b'{"alg":"RS256","kid":"k1","typ":{"t":"JWT"}}')),
    case("cty-number", lambda e: signed(e, b'{"alg":"RS256","kid":"k1","cty":5}')),
    case("b64-false", lambda e: signed(e, b'{"alg":"RS256","kid":"k1","b64":false,"crit":["b64"]}')),
    case("b64-false-without-crit", lambda e: signed(e, b'{"alg":"RS256","kid":"k1","b64":false}')),
    case("zip-deflate", lambda e: signed(e, b'{"alg":"RS256","kid":"k1","zip":"DEF"}')),
    # --- padding, alphabet, canonical form
    mutate("padding-on-header", lambda t: replace_segment(t, 0, segments(t)[0] + "==")),
    mutate("padding-on-payload", lambda t: replace_segment(t, 1, segments(t)[1] + "=")),
    mutate("padding-on-signature", lambda t: t + "="),
    mutate("padding-percent-encoded", lambda t: t + "%3D"),
    mutate("stray-bits-header", lambda t: replace_segment(t, 0, stray_bits(segments(t)[0]))),
    mutate("stray-bits-signature", lambda t: replace_segment(t, 2, stray_bits(segments(t)[2]))),
    mutate("standard-alphabet-signature", lambda t: replace_segment(t, 2, segments(t)[2][:-2] + "+/")),
    mutate("impossible-length", lambda t: replace_segment(t, 1, segments(t)[1] + "A" * ((1 - len(segments(t)[1])) % 4 or 4))),
    # --- whitespace and control characters
    mutate("space-leading", lambda t: " " + t),
    mutate("space-trailing", lambda t: t + " "),
    mutate("newline-trailing", lambda t: t + "\n"),
    mutate("crlf-inside-payload", lambda t: t[:40] + "\r\n" + t[40:]),
    mutate("tab-after-dot", lambda t: t.replace(".", ".\t", 1)),
    mutate("nul-inside", lambda t: t[:20] + "\x00" + t[20:]),
    mutate("nul-trailing", lambda t: t + "\x00"),
    mutate("vertical-tab-inside", lambda t: t[:30] + "\x0b" + t[30:]),
    mutate("non-ascii-inside", lambda t: t[:25] + "\u00e9" + t[25:]),
    mutate("zero-width-space-inside", lambda t: t[:25] + "\u200b" + t[25:]),
    mutate("fullwidth-dot", lambda t: t.replace(".", "\uff0e", 1)),
    # --- duplicate member names
    case("duplicate-alg", lambda e: signed(e, b'{"alg":"RS256","alg":"RS256","kid":"k1"}')),
    case("duplicate-alg-none-last", lambda e: signed(e, b'{"alg":"RS256","kid":"k1","alg":"none"}')),
    case("duplicate-kid", lambda e: signed(e, b'{"alg":"RS256","kid":"zz","kid":"k1"}')),
    case("duplicate-typ", lambda e: signed(e, b'{"alg":"RS256","kid":"k1","typ":"JWT","typ":"JWT"}')),
    case("duplicate-exp", lambda e: signed(e, payload=claims_text(e, '"exp":1'))),
    case("duplicate-sub", lambda e: signed(e, payload=claims_text(e, '"sub":"other-client"'))),
    case("duplicate-jti", lambda e: signed(e, payload=claims_text(e, '"jti":"second"'))),
    case("duplicate-by-escape", lambda e: signed(e, payload=claims_text(e, '"s\\u0075b":"rsa-client"'))),
    case("duplicate-in-nested-object", lambda e: signed(e, payload=claims_text(e, '"x":{"a":1,"a":2}'))),
    # --- nesting and size
    case("payload-nesting-20", lambda e: signed(e, payload=claims_text(e, '"x":' + deep(20)))),
    case("payload-nesting-3000", lambda e: signed(e, payload=claims_text(e, '"x":' + deep(3000)))),
    case("payload-object-nesting-20", lambda e: signed(e, payload=claims_text(e, '"x":' + '{"a":' * 20 + "1" + "}" * 20))),
    case("header-nesting-20", lambda e: signed(e, b'{"alg":"RS256","kid":"k1","x":' + deep(20).encode() + b"}")),
    case("oversized-assertion", lambda e: signed(e, payload=claims_text(e, '"pad":"' + "a" * 8200 + '"'))),
    case("oversized-header", lambda e: signed(e, b'{"alg":"RS256","kid":"k1","pad":"' + b"a" * 8000 + b'"}')),
    case("huge-integer-digits", lambda e: signed(e, payload=claims_text(e, '"x":' + "9" * 4400))),
    ok("nesting-within-limit", lambda e: raw(signed(e, payload=claims_text(e, '"x":' + deep(10))))),
    ok("near-size-limit", lambda e: raw(signed(e, payload=claims_text(e, '"pad":"' + "a" * 5400 + '"')))),
    # --- nested JWTs: never unwrapped
    case("nested-jwt-as-payload", lambda e: nested_jwt(e, None)),
    case("nested-jwt-cty-jwt", lambda e: nested_jwt(e, "JWT")),
    case("nested-jwt-as-json-string", lambda e: signed(e, payload=json.dumps(e.assertion()).encode())),
    case("nested-jwt-in-claims-only", lambda e: signed(e, b'{"alg":"RS256","kid":"k1","cty":"JWT"}',
                                                       jdump({"jwt": e.assertion()}))),
    # --- numbers that are not JSON
    case("exp-nan", lambda e: signed(e, payload=claims_text(e, '"exp":NaN', exp=...))),
    case("exp-infinity", lambda e: signed(e, payload=claims_text(e, '"exp":Infinity', exp=...))),
    case("exp-minus-infinity", lambda e: signed(e, payload=claims_text(e, '"exp":-Infinity', exp=...))),
    case("exp-1e400-raw", lambda e: signed(e, payload=claims_text(e, '"exp":1e400', exp=...))),
    case("exp-hex", lambda e: signed(e, payload=claims_text(e, '"exp":0x7fffffff', exp=...))),
    case("exp-leading-zero", lambda e: signed(e, payload=claims_text(e, '"exp":0' + str(int(e.claims()["exp"])), exp=...))),
    case("exp-plus-sign", lambda e: signed(e, payload=claims_text(e, '"exp":+' + str(int(e.claims()["exp"])), exp=...))),
    case("exp-trailing-dot", lambda e: signed(e, payload=claims_text(e, '"exp":' + str(int(e.claims()["exp"])) + ".", exp=...))),
    case("nan-in-header", lambda e: signed(e, b'{"alg":"RS256","kid":"k1","x":NaN}')),
    case("single-quoted-json", lambda e: signed(e, payload=claims_text(e).replace(b'"', b"'"))),
    case("json-comment", lambda e: signed(e, payload=claims_text(e) + b"/* c */")),
]

# The empty assertion never reaches the parser: an empty value is an omitted parameter.
EMPTY = [bad_request("assertion-empty-string", lambda e: raw(""))]


@pytest.mark.parametrize("case", params(CASES + EMPTY))
def test_jws_structure(env, case):
    run(env, case)


def test_the_valid_builder_passes(env):
    """The control for this file: the same construction, unmodified, gets a token."""
    from hostile_support import check_response, ok as ok_case
    request = raw(signed(env))
    check_response(request.send(env.server, env.session), ok_case("control", None), request)

"""Transport and form: methods, media types, body size, floods, duplicates, empty values, encodings,
the query string; then method conflicts and client identity.  Every row goes over HTTPS to the
real server."""

from __future__ import annotations

import base64
from urllib.parse import quote

import pytest

from hostile_support import FORM, Case, Req, bad_client, bad_request, form, ok, params, post, run
from support import ASSERTION_TYPE

Q_TYPE = quote(ASSERTION_TYPE, safe="")


def raw_form(e, *pairs: str, assertion: str | None = None) -> bytes:
    """A body from literal pairs; `{A}` is replaced by a fresh valid assertion."""
    a = assertion or e.assertion()
    return "&".join(pairs).replace("{A}", a).replace("{T}", Q_TYPE).encode()


def valid_body(e) -> bytes:
    return raw_form(e, "grant_type=client_credentials", "client_assertion_type={T}", "client_assertion={A}")


def method(name: str):
    return lambda e: Req(name, "/oauth2/token", {"Content-Type": FORM}, valid_body(e))


def basic(client_id: str, secret: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


ALLOW_POST = {"Allow": "POST"}
TRANSPORT = [
    # --- methods
    bad_request("method-get", method("GET"), 405, ALLOW_POST),
    bad_request("method-put", method("PUT"), 405, ALLOW_POST),
    bad_request("method-delete", method("DELETE"), 405, ALLOW_POST),
    bad_request("method-patch", method("PATCH"), 405, ALLOW_POST),
    bad_request("method-options", method("OPTIONS"), 405, ALLOW_POST),
    Case("method-head", method("HEAD"), 405, "invalid_request", ALLOW_POST, head=True),
    bad_request("method-trace", method("TRACE"), 405, ALLOW_POST),
    bad_request("method-propfind", method("PROPFIND"), 405, ALLOW_POST),
    bad_request("method-get-query-only", lambda e: Req("GET", "/oauth2/token?" + valid_body(e).decode(), {}, None),
                405, ALLOW_POST),
    # --- media types
    bad_request("ctype-json", lambda e: post(b'{"grant_type":"client_credentials"}', "application/json")),
    bad_request("ctype-text-plain", lambda e: post(valid_body(e), "text/plain")),
    bad_request("ctype-multipart", lambda e: post(valid_body(e), "multipart/form-data; boundary=x")),
    bad_request("ctype-missing", lambda e: post(valid_body(e), None)),
    bad_request("ctype-empty", lambda e: post(valid_body(e), "")),
    bad_request("ctype-suffix-trick", lambda e: post(valid_body(e), "application/x-www-form-urlencodedx")),
    bad_request("ctype-two-types", lambda e: post(valid_body(e), "application/x-www-form-urlencoded, text/plain")),
    bad_request("ctype-xml", lambda e: post(valid_body(e), "application/xml")),
    ok("ctype-charset-iso-8859-1", lambda e: post(valid_body(e), FORM + ";charset=ISO-8859-1")),
    ok("ctype-upper-case", lambda e: post(valid_body(e), "Application/X-WWW-Form-URLEncoded")),
    ok("ctype-utf8-with-spaces", lambda e: post(valid_body(e), FORM + " ; charset=utf-8")),
    # --- size
    bad_request("body-over-64k", lambda e: post(valid_body(e) + b"&pad=" + b"a" * (65 * 1024)), 413),
    bad_request("body-over-64k-chunked", lambda e: post(valid_body(e) + b"&pad=" + b"a" * (65 * 1024),
                                                        chunked=True), 413),
    bad_request("body-1m-chunked", lambda e: post(valid_body(e) + b"&pad=" + b"a" * (1024 * 1024),
                                                  chunked=True), 413),
    ok("body-chunked-small", lambda e: post(valid_body(e), chunked=True)),
    ok("body-just-under-64k", lambda e: post(valid_body(e) + b"&pad=" + b"a" * (63 * 1024))),
    # --- floods and duplicates
    bad_request("flood-65-parameters", lambda e: post(valid_body(e) + b"".join(b"&p%d=1" % i for i in range(62)))),
    ok("flood-64-parameters-boundary", lambda e: post(valid_body(e) + b"".join(b"&p%d=1" % i for i in range(61)))),
    bad_request("flood-empty-pairs", lambda e: post(valid_body(e) + b"&" * 70)),
    bad_request("duplicate-grant-type", lambda e: post(valid_body(e) + b"&grant_type=client_credentials")),
    bad_request("duplicate-client-assertion", lambda e: post(valid_body(e) + b"&client_assertion=" +
                                                             e.assertion().encode())),
    bad_request("duplicate-assertion-type", lambda e: post(valid_body(e) + b"&client_assertion_type=" +
                                                           Q_TYPE.encode())),
    bad_request("duplicate-one-empty", lambda e: post(valid_body(e) + b"&scope=&scope=openid")),
    bad_request("duplicate-percent-encoded-name", lambda e: post(valid_body(e) + b"&grant%5Ftype=client_credentials")),
    bad_request("duplicate-name-without-value", lambda e: post(valid_body(e) + b"&grant_type")),
    # --- empty values (RFC 6749 §3.1: treated as omitted)
    bad_request("empty-grant-type", lambda e: post(raw_form(e, "grant_type=", "client_assertion_type={T}",
                                                            "client_assertion={A}"))),
    bad_request("empty-client-assertion", lambda e: post(raw_form(e, "grant_type=client_credentials",
                                                                  "client_assertion_type={T}", "client_assertion="))),
    bad_request("empty-assertion-type", lambda e: post(raw_form(e, "grant_type=client_credentials",
                                                                "client_assertion_type=", "client_assertion={A}"))),
    bad_request("missing-grant-type", lambda e: post(raw_form(e, "client_assertion_type={T}", "client_assertion={A}"))),
    bad_request("missing-client-assertion", lambda e: post(raw_form(e, "grant_type=client_credentials",
                                                                    "client_assertion_type={T}"))),
    bad_request("missing-assertion-type", lambda e: post(raw_form(e, "grant_type=client_credentials",
                                                                  "client_assertion={A}"))),
    bad_request("wrong-assertion-type", lambda e: post(form(e.assertion(), client_assertion_type="urn:x"))),
    bad_request("assertion-type-saml", lambda e: post(form(
        e.assertion(), client_assertion_type="urn:ietf:params:oauth:client-assertion-type:saml2-bearer"))),
    bad_request("assertion-type-upper-case", lambda e: post(form(e.assertion(), client_assertion_type=ASSERTION_TYPE.upper()))),
    ok("empty-scope-is-omitted", lambda e: post(form(e.assertion(), scope=""))),
    ok("unknown-parameters-ignored", lambda e: post(form(e.assertion(), foo="bar", redirect_uri="http://x/"))),
    # --- encodings
    bad_request("utf8-percent-ff", lambda e: post(valid_body(e) + b"&scope=%FF")),
    bad_request("utf8-raw-ff", lambda e: post(valid_body(e) + b"&scope=\xff\xfe")),
    bad_request("utf8-overlong-slash", lambda e: post(valid_body(e) + b"&scope=%C0%AF")),
    bad_request("utf8-encoded-surrogate", lambda e: post(valid_body(e) + b"&scope=%ED%A0%80")),
    bad_request("utf8-truncated-sequence", lambda e: post(valid_body(e) + b"&scope=%E2%82")),
    bad_request("utf8-invalid-in-name", lambda e: post(valid_body(e) + b"&%FFscope=x")),
    bad_request("utf8-invalid-in-assertion", lambda e: post(raw_form(e, "grant_type=client_credentials",
                                                                     "client_assertion_type={T}",
                                                                     "client_assertion={A}%C3%28"))),
    bad_request("percent-bad-hex", lambda e: post(valid_body(e) + b"&scope=%ZZ")),
    bad_request("percent-truncated", lambda e: post(valid_body(e) + b"&scope=%A")),
    bad_request("name-with-nul", lambda e: post(valid_body(e) + b"&sc%00ope=x")),
    bad_request("name-with-space", lambda e: post(valid_body(e) + b"&sc+ope=x")),
    bad_request("name-too-long", lambda e: post(valid_body(e) + b"&" + b"n" * 129 + b"=x")),
    bad_request("name-empty", lambda e: post(valid_body(e) + b"&=x")),
    # --- the query string
    bad_request("query-one-parameter", lambda e: post(valid_body(e), path="/oauth2/token?grant_type=client_credentials")),
    bad_request("query-whole-request", lambda e: post(b"", path="/oauth2/token?" + valid_body(e).decode())),
    bad_request("query-junk", lambda e: post(valid_body(e), path="/oauth2/token?x")),
    # --- limits enforced in front of the app
    bad_request("header-field-flood", lambda e: post(valid_body(e), headers={f"X-Flood-{i}": "1" for i in range(120)}),
                431),
    bad_request("header-field-too-large", lambda e: post(valid_body(e), headers={"X-Big": "a" * 9000}),
                431),
    bad_request("request-line-too-long", lambda e: post(valid_body(e), path="/oauth2/token?" + "a" * 9000),
                414),
    # --- grant types
    Case("grant-unsupported-password", lambda e: post(form(e.assertion(), grant_type="password")), 400,
         "unsupported_grant_type"),
    Case("grant-case-variant", lambda e: post(form(e.assertion(), grant_type="Client_Credentials")), 400,
         "unsupported_grant_type"),
    Case("grant-not-registered", lambda e: post(form(e.assertion("no-cc-client"))), 400, "unauthorized_client"),
    Case("scope-not-registered", lambda e: post(form(e.assertion(), scope="openid admin")), 400, "invalid_scope"),
    # --- paths
    Case("path-trailing-slash", lambda e: post(valid_body(e), path="/oauth2/token/"), 404, "not_found"),
    Case("path-upper-case", lambda e: post(valid_body(e), path="/OAUTH2/TOKEN"), 404, "not_found"),
]

IDENTITY = [
    # --- two methods at once, none, the wrong one
    bad_request("two-methods-basic-and-assertion",
                lambda e: post(form(e.assertion()), headers=basic("rsa-client", "x"))),
    bad_request("two-methods-secret-and-assertion",
                lambda e: post(form(e.assertion(), client_id="rsa-client", client_secret="x"))),
    bad_request("two-methods-basic-and-secret",
                lambda e: post({"grant_type": "client_credentials", "client_id": "secret-client",
                                "client_secret": "x"}, headers=basic("secret-client", "x"))),
    bad_request("two-methods-bearer-header-and-assertion",
                lambda e: post(form(e.assertion()), headers={"Authorization": "Bearer abc"})),
    bad_request("two-methods-type-only-and-basic",
                lambda e: post({"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE},
                               headers=basic("secret-client", "x"))),
    bad_client("no-credentials", lambda e: post({"grant_type": "client_credentials"})),
    bad_client("client-id-only", lambda e: post({"grant_type": "client_credentials", "client_id": "rsa-client"})),
    bad_client("basic-for-private-key-jwt-client", lambda e: post({"grant_type": "client_credentials"},
                                                                  headers=basic("rsa-client", "x"))),
    bad_client("post-secret-for-private-key-jwt-client",
               lambda e: post({"grant_type": "client_credentials", "client_id": "rsa-client", "client_secret": "x"})),
    bad_client("assertion-for-basic-client", lambda e: post(form(e.assertion("secret-client")))),
    bad_client("assertion-for-post-client", lambda e: post(form(e.assertion("post-client")))),
    bad_client("basic-scheme-garbage", lambda e: post({"grant_type": "client_credentials"},
                                                      headers={"Authorization": "Basic !!!"})),
    bad_client("basic-right-secret-wrong-method",
               lambda e: post({"grant_type": "client_credentials"},
                              headers=basic("post-client", e.secrets["post-client"]))),
    # --- client_id against the assertion
    bad_client("client-id-disagrees", lambda e: post(form(e.assertion(), client_id="other-client"))),
    bad_client("client-id-case-variant-param", lambda e: post(form(e.assertion(), client_id="RSA-CLIENT"))),
    bad_client("client-id-trailing-space-param", lambda e: post(form(e.assertion(), client_id="rsa-client "))),
    ok("client-id-agrees", lambda e: post(form(e.assertion(), client_id="rsa-client"))),
    # --- unknown clients and look-alikes
    bad_client("unknown-client", lambda e: post(form(e.assertion("nobody")))),
    bad_client("client-id-lower-case-variant", lambda e: post(form(e.assertion("mixedcase-client")))),
    bad_client("client-id-upper-case-variant", lambda e: post(form(e.assertion("MIXEDCASE-CLIENT")))),
    ok("client-id-exact-case", lambda e: post(form(e.assertion("MixedCase-Client")))),
    bad_client("client-id-trailing-space", lambda e: post(form(e.assertion("rsa-client ")))),
    bad_client("client-id-leading-space", lambda e: post(form(e.assertion(" rsa-client")))),
    bad_client("client-id-cyrillic-homoglyph", lambda e: post(form(e.assertion("rsa-cli\u0435nt")))),
    bad_client("client-id-fullwidth", lambda e: post(form(e.assertion("\uff52sa-client")))),
    bad_client("client-id-with-nul", lambda e: post(form(e.assertion("rsa-client\x00")))),
    bad_client("client-id-with-newline", lambda e: post(form(e.assertion("rsa-client\n")))),
    bad_client("client-id-256-characters", lambda e: post(form(e.assertion("c" * 256)))),
    bad_client("client-id-sql-shaped", lambda e: post(form(e.assertion("' OR '1'='1")))),
    bad_client("client-id-like-wildcard", lambda e: post(form(e.assertion("rsa-%")))),
]


@pytest.mark.parametrize("case", params(TRANSPORT))
def test_transport(env, case):
    run(env, case)


@pytest.mark.parametrize("case", params(IDENTITY))
def test_identity(env, case):
    run(env, case)

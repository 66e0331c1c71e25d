"""Hostile input that once made a 500 or was accepted: malformed Authorization headers at every
endpoint that authenticates clients, and registered claims of the wrong JSON type. Over HTTPS
against the real server."""

from __future__ import annotations

import base64

import pytest

from hostile_support import assert_error, form, post


def raw_basic(value: bytes) -> dict:
    # requests sends str header values as latin-1: "é" goes out as the one byte 0xE9.
    return {"Authorization": "Basic " + value.decode("latin-1")}


MALFORMED_AUTHORIZATION = {
    "non-ascii": {"Authorization": "Basic é"},
    "non-ascii-after-base64": raw_basic(b"c2VjcmV0LWNsaWVudDp4\xff"),
    "not-utf8-inside": {"Authorization": "Basic " + base64.b64encode(b"secret-client:\xff\xfe").decode()},
    "no-colon": {"Authorization": "Basic " + base64.b64encode(b"secret-client").decode()},
    "scheme-only": {"Authorization": "Basic"},
    "other-scheme": {"Authorization": "Digest username=x"},
    "empty": {"Authorization": ""},
    "nul-inside": {"Authorization": "Basic " + base64.b64encode(b"secret\x00client:x").decode()},
}


@pytest.mark.parametrize("path", ["/oauth2/token", "/oauth2/introspect", "/oauth2/revoke"])
@pytest.mark.parametrize("label", MALFORMED_AUTHORIZATION)
def test_malformed_basic_credentials_are_invalid_client(env, path, label):
    body = {"grant_type": "client_credentials"} if path == "/oauth2/token" else {"token": "x"}
    before = env.server.log().count("Traceback")
    request = post(body, headers=MALFORMED_AUTHORIZATION[label], path=path)
    response = request.send(env.server, env.session)
    assert_error(response, 401, "invalid_client", request)
    assert response.headers["WWW-Authenticate"] == 'Basic realm="oauth2", error="invalid_client"'
    assert env.server.log().count("Traceback") == before


@pytest.mark.parametrize("name, value, words", [
    ("iat", None, "iat claim must be a number"),
    ("nbf", None, "nbf claim must be a number"),
    ("exp", None, "exp claim must be a number"),
    ("iat", True, "iat claim must be a number"),
    ("iss", None, "iss claim must be a string"),
    ("iss", 7, "iss claim must be a string"),
    ("jti", None, "jti claim must be a string"),
    ("aud", None, "aud claim"),
    ("aud", 5, "aud claim must be a single string"),
])
def test_a_claim_of_the_wrong_type_is_refused_naming_it(env, name, value, words):
    request = post(form(env.assertion(**{name: value})))
    body = assert_error(request.send(env.server, env.session), 401, "invalid_client", request)
    assert words in body["error_description"]


@pytest.mark.parametrize("value", [[5], ["x", None], [], {"aud": "x"}])
def test_legacy_audience_must_be_strings(env, value):
    request = post(form(env.assertion("legacy-client", aud=value)))
    body = assert_error(request.send(env.server, env.session), 401, "invalid_client", request)
    assert "aud claim" in body["error_description"]

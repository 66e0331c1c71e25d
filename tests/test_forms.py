"""The strict form parser (RFC 6749 §3.1, §3.2, Appendix B)."""

from __future__ import annotations

import pytest

from core.errors import OAuthError
from server.forms import check_media_type, parse_form


def test_plain_form():
    assert parse_form(b"a=1&b=x+y&c=%C3%A9%2B") == {"a": "1", "b": "x y", "c": "é+"}


def test_empty_values_are_omitted():
    assert parse_form(b"a=&b=2&c") == {"b": "2"}


def test_unusual_but_printable_names_are_kept():
    assert parse_form(b"resource%5B%5D=x&a.b-c_d=1") == {"resource[]": "x", "a.b-c_d": "1"}


def test_raw_utf8_is_accepted():
    assert parse_form("a=é".encode()) == {"a": "é"}


@pytest.mark.parametrize("body", [
    b"a=1&a=2", b"a=1&a=", b"a=%FF", b"a=\xff", b"a=%E9", b"a=%4", b"a=%G0", b"%61=1&a=2",
    b"=1", b"a b=1", b"a%00=1", b"%C3%A9=1", b"&".join(b"p%d=1" % i for i in range(65)),
])
def test_refused(body):
    with pytest.raises(OAuthError) as info:
        parse_form(body)
    assert info.value.error == "invalid_request" and info.value.status == 400


@pytest.mark.parametrize("value", [
    "application/x-www-form-urlencoded", "application/x-www-form-urlencoded; charset=ISO-8859-1",
    "APPLICATION/X-WWW-FORM-URLENCODED;charset=UTF-8",
])
def test_media_type_accepted(value):
    check_media_type(value)


@pytest.mark.parametrize("value", [None, "", "application/json", "application/x-www-form-urlencodedx", "text/plain"])
def test_media_type_refused(value):
    with pytest.raises(OAuthError):
        check_media_type(value)


def test_headers_are_read_from_the_environ_as_werkzeug_reads_them():
    from werkzeug.datastructures import EnvironHeaders

    from server.forms import request_headers

    environ = {"HTTP_DPOP": "a.b.c", "HTTP_X_FORWARDED_FOR": "10.0.0.1", "CONTENT_TYPE": "application/x-www-form-urlencoded",
               "CONTENT_LENGTH": "", "HTTP_CONTENT_TYPE": "text/plain", "HTTP_CONTENT_LENGTH": "5",
               "REMOTE_ADDR": "127.0.0.1", "wsgi.url_scheme": "https"}
    headers = request_headers(environ)
    assert headers == {"dpop": "a.b.c", "x-forwarded-for": "10.0.0.1", "content-type": "application/x-www-form-urlencoded"}
    assert headers == {k.lower(): v for k, v in EnvironHeaders(environ).items()}


def test_json_parts_keep_the_body_length_and_give_each_name_one_spelling():
    from server.render import json_parts

    status, fields, data = json_parts({"a": 1}, 429, {"retry-after": 7, "content-length": "999", "cache-control": "x"})
    assert status == "429 TOO MANY REQUESTS" and data == b'{"a":1}'
    assert fields == [("Content-Type", "application/json"), ("Content-Length", "7"), ("Pragma", "no-cache"),
                      ("retry-after", "7"), ("cache-control", "x")]

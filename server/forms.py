"""Strict application/x-www-form-urlencoded parsing — the one place it happens — and the token
request built from it for the endpoints that run the handler chain.

RFC 6749 §3.2 and Appendix B: parameters in the body, UTF-8, each at most once; §3.1: a
parameter without a value is treated as omitted.
"""

from __future__ import annotations

import os
import re
from typing import BinaryIO

from flask import request
from werkzeug.wrappers import Request
from werkzeug.wsgi import get_input_stream

from core.errors import OAuthError, invalid_dpop_proof, invalid_request
from core.request import TokenRequest
from server import current

MAX_BODY_BYTES = 64 * 1024
MAX_DRAIN_BYTES = 2 * 1024 * 1024
MAX_PARAMETERS = 64
_ESCAPE = re.compile(rb"%([0-9A-Fa-f]{2})")
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_NAME = re.compile(r"[\x21-\x7e]{1,128}")  # printable ASCII: unknown names are ignored, odd bytes are not


def check_media_type(content_type: str | None) -> None:
    """Only application/x-www-form-urlencoded; any charset parameter is accepted (UTF-8 is used)."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type != "application/x-www-form-urlencoded":
        raise invalid_request("The request body must be application/x-www-form-urlencoded", reason="media_type")


def read_body(stream: BinaryIO) -> bytes:
    """The body, at most MAX_BODY_BYTES, whether or not the client sent a Content-Length
    (chunked bodies have none). The one place the size limit is enforced."""
    chunks: list[bytes] = []
    size = 0
    while size <= MAX_BODY_BYTES:
        chunk = stream.read(MAX_BODY_BYTES + 1 - size)  # may return less than asked: loop to EOF
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
    # Read (and drop) a bounded rest so the client, still sending, can receive the 413 instead
    # of a connection reset; beyond that the connection is simply closed.
    drained = 0
    while drained < MAX_DRAIN_BYTES and (chunk := stream.read(65536)):
        drained += len(chunk)
    raise OAuthError("invalid_request", f"The request body exceeds {MAX_BODY_BYTES} bytes", 413, reason="body_size")


def _decode(raw: bytes) -> str:
    if b"%" not in raw and b"+" not in raw:  # most values (an assertion, a grant type) escape nothing
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise invalid_request("The request body is not valid UTF-8", reason="form_utf8") from None
    if _BAD_ESCAPE.search(raw):
        raise invalid_request("The request body has an invalid percent-encoding", reason="form_encoding")
    data = _ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), raw.replace(b"+", b" "))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise invalid_request("The request body is not valid UTF-8", reason="form_utf8") from None


def parse_form(body: bytes) -> dict[str, str]:
    """Parse the body; refuse duplicates, bad encodings, odd names and floods."""
    return parse_form_lists(body)[0]


def parse_form_lists(body: bytes, repeatable: tuple[str, ...] = ()) -> tuple[dict[str, str], dict[str, tuple[str, ...]]]:
    """parse_form, where the names in `repeatable` may occur more than once (RFC 8707 §2:
    `resource`); their values are returned apart, in order, and are not in the form."""
    form: dict[str, str] = {}
    lists: dict[str, list[str]] = {}
    seen: set[str] = set()
    if not body:
        return form, {}
    pairs = body.split(b"&")
    if len(pairs) > MAX_PARAMETERS:
        raise invalid_request("The request has too many parameters", reason="form_flood")
    for pair in pairs:
        if not pair:
            continue
        raw_name, _, raw_value = pair.partition(b"=")
        name, value = _decode(raw_name), _decode(raw_value)
        if not _NAME.fullmatch(name):
            raise invalid_request("The request has a malformed parameter name", reason="form_name")
        if name in repeatable:
            if value:
                lists.setdefault(name, []).append(value)
            continue
        if name in seen:
            # RFC 6749 §3.2: parameters MUST NOT be included more than once.
            raise invalid_request("A parameter was sent more than once", reason="form_duplicate")
        seen.add(name)
        if value:
            form[name] = value
    return form, {name: tuple(values) for name, values in lists.items()}


def one_dpop_header(headers: dict[str, str]) -> bool:
    """RFC 9449 §4.3 item 1: at most one DPoP header. The server joins repeated headers with a
    comma, which no compact JWS contains."""
    return "," not in headers.get("dpop", "")


def request_headers(environ: dict) -> dict[str, str]:
    """The request's headers by lower-case name, read from the WSGI environ as Werkzeug reads
    them (HTTP_* variables, and CONTENT_TYPE / CONTENT_LENGTH, which carry no prefix)."""
    headers = {key[5:].replace("_", "-").lower(): value for key, value in environ.items()
               if key.startswith("HTTP_") and key not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH")}
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = environ[key]
    return headers


def token_request(endpoint: str, req: Request | None = None, server=None) -> TokenRequest:
    """The checks every POST endpoint of the chain shares (token, introspection, revocation),
    then the immutable request object the handlers see."""
    req = request if req is None else req
    server = server or current.idp()
    environ = req.environ
    # RFC 6749 §3.2: parameters are sent in the body, never in the query string.
    if environ.get("QUERY_STRING"):
        raise invalid_request("Parameters must be sent in the request body, not the URL", reason="query")
    headers = request_headers(environ)
    check_media_type(headers.get("content-type"))
    form, lists = parse_form_lists(read_body(get_input_stream(environ)), ("resource",))
    if not one_dpop_header(headers):
        raise invalid_dpop_proof("Exactly one DPoP header is allowed", reason="dpop_headers")
    return TokenRequest.build(
        form,
        headers,
        resources=lists.get("resource", ()),
        endpoint=endpoint,
        endpoint_url=server.services.settings.base_url + req.path,  # never the Host header
        request_id=environ.setdefault("idp.request_id", os.urandom(8).hex()),
        remote_addr=current.client_address(req, server),
        client_certificate=current.client_certificate(req, server),  # RFC 8705
    )

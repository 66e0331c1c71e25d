"""The management console (/console): service providers, client keys, the keystore, recent failures.

Server-rendered pages that work without JavaScript, for administrators only (users.is_admin): a
browser without a session is sent to /console/login, a signed-in user who is not an admin gets
403. Every POST carries the CSRF token (server.web). Changes are written to the database and
the keystore file at once; the token endpoint reads both on its next request.
"""

from __future__ import annotations

import base64
import datetime
import io
import json
import re
import secrets
import string
import time
from typing import Any
from urllib.parse import urlencode

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from flask import Blueprint, Response, g, request
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException
from werkzeug.formparser import FormDataParser
from werkzeug.http import parse_options_header

from handlers import client_activity, failure_log
from keystore.certificates import x5c_validity
from keystore.jwk import SIGNING_ALGORITHMS
from keystore.store import PRIVATE_KEY_ENTRY, TRUSTED_CERT_ENTRY, Entry, KeystoreError
from server import current
from server import client_metadata, web
from server.client_metadata import MetadataError
from core.errors import OAuthError
from server.forms import MAX_BODY_BYTES, MAX_PARAMETERS, read_body
from server.web import PageError
from storage import activity
from storage import clients as client_store

bp = Blueprint("console", __name__, url_prefix="/console")

HOME = "/console/service-providers"
MAX_ALIAS_LENGTH = 255
# Where a sign-in may send the browser back to: console pages only (no open redirect).
_NEXT = re.compile(r"/console/[A-Za-z0-9/_-]*(\?[A-Za-z0-9._~%=&+-]*)?")


def _grant_types() -> list[str]:
    """The grant types a client may be registered for: those the handler chain serves (the
    built-in ones first, in their usual order, then drop-in grants)."""
    served = current.chain().grants
    return [g for g in client_metadata.GRANT_TYPES if g in served] + sorted(set(served) - set(client_metadata.GRANT_TYPES))


def _validate(metadata: dict[str, Any], existing: client_store.RegisteredClient | None = None) -> dict[str, Any]:
    return client_metadata.validate(metadata, current.services().settings, existing=existing,
                                    grant_types_supported=_grant_types())


# --- access -----------------------------------------------------------------------------------

@bp.before_request
def require_admin() -> Response | None:
    """Every page but the sign-in needs a signed-in admin; nothing else is ever shown."""
    if request.endpoint == "console.login":
        return None
    session = web.signed_in()
    if session is None:
        target = request.full_path.rstrip("?") if request.method == "GET" else ""
        query = "?" + urlencode({"next": target}) if target and _NEXT.fullmatch(target) else ""
        return _redirect("/console/login" + query, 302)
    if not session[0].is_admin:
        raise PageError(403, "Forbidden", "The console is for administrators. Sign out and sign in as an "
                                          "administrator.")
    g.admin = session[0]
    return None


def _redirect(location: str, status: int = 303) -> Response:
    """A redirect with the pages' headers (no-store); 303 after a POST (RFC 9110 §15.4.4)."""
    response = Response("", status=status)
    response.headers["Location"] = location
    response.headers.update(web.PAGE_HEADERS)
    return response


def _form() -> tuple[dict[str, str], dict[str, bytes]]:
    """A POSTed form and its uploaded files. Urlencoded forms go through the strict parser
    (server.forms); multipart forms through werkzeug's, under the same 64 KiB and parameter
    limits, with a field sent twice refused as the strict parser does."""
    mimetype, options = parse_options_header(request.headers.get("Content-Type", ""))
    mimetype = mimetype.lower()   # RFC 9110 §8.3.1: media types are case-insensitive
    if mimetype != "multipart/form-data":
        return web.read_form(), {}
    try:
        body = read_body(request.stream)
    except OAuthError:
        raise PageError(413, "Too large", f"The form is larger than {MAX_BODY_BYTES // 1024} KiB.") from None
    parser = FormDataParser(max_form_memory_size=MAX_BODY_BYTES, max_content_length=MAX_BODY_BYTES,
                            cls=MultiDict, silent=False, max_form_parts=MAX_PARAMETERS)
    try:
        _, fields, uploads = parser.parse(io.BytesIO(body), mimetype, len(body), options)
    except (ValueError, HTTPException):
        raise PageError(400, "Bad request", "The form could not be read.") from None
    form: dict[str, str] = {}
    files: dict[str, bytes] = {}
    for name in list(fields.keys()) + list(uploads.keys()):
        if len(fields.getlist(name)) + len(uploads.getlist(name)) > 1:
            raise PageError(400, "Bad request", "A form field was sent more than once.")
    for name, value in fields.items():
        if value:  # as in the strict parser: an empty field is an omitted one
            form[name] = value
    for name, upload in uploads.items():
        data = upload.read()
        if data:
            files[name] = data
    return form, files


def _post_form() -> tuple[dict[str, str], dict[str, bytes]]:
    form, files = _form()
    web.check_csrf(form)
    return form, files


# --- sign-in ----------------------------------------------------------------------------------

def _signin_page(status: int = 200, **context: Any) -> Response:
    next_url = context.pop("next_url", "")
    return web.render_page("signin.html", status, title="Management console", heading="Management console",
                           action="/console/login", hidden=[("next", next_url)] if next_url else [], **context)


def _next_url(value: str | None) -> str:
    return value if value and _NEXT.fullmatch(value) else ""


@bp.route("/login", methods=["GET", "POST"])
def login():
    if request.method == "GET":
        session = web.signed_in()
        if session is not None and session[0].is_admin:
            return _redirect(_next_url(request.args.get("next")) or HOME, 302)
        return _signin_page(next_url=_next_url(request.args.get("next")))
    form, _ = _post_form()
    username = form.get("username", "")
    next_url = _next_url(form.get("next"))
    try:
        account = web.sign_in(username, form.get("password", ""), current.client_address(), "console")
    except web.SignInError as exc:
        if exc.retry_after is not None:
            response = _signin_page(429, error=str(exc), username=username, next_url=next_url)
            response.headers["Retry-After"] = str(exc.retry_after)
            return response
        return _signin_page(401, error=str(exc), username=username, next_url=next_url)
    response = _redirect(next_url or HOME)
    web.start_session(response, account)  # a new session value; the browser's previous one ends
    return response


@bp.post("/logout")
def logout():
    _post_form()
    response = _redirect("/console/login")
    web.end_session(response)
    return response


@bp.get("/")
def home():
    return _redirect(HOME, 302)


# --- service providers --------------------------------------------------------------------------

# The list's sort orders (?sort=…): no script, a link per column.
SP_SORTS = {
    "name": lambda c, last, failed: ((c.client_name or c.client_id).casefold(), c.client_id),
    "client_id": lambda c, last, failed: (c.client_id,),
    "last_issued": lambda c, last, failed: (-last.get(c.client_id, 0), c.client_id),   # the latest first
    "failures": lambda c, last, failed: (-failed.get(c.client_id, 0), c.client_id),    # the most first
}


@bp.get("/service-providers")
def service_providers():
    query = request.args.get("q", "").strip()
    sort = request.args.get("sort", "name")
    if sort not in SP_SORTS:
        sort = "name"
    clients = client_store.all_clients()
    if query:
        folded = query.casefold()
        clients = [c for c in clients if folded in c.client_id.casefold() or folded in c.client_name.casefold()]
    last = activity.last_issued()
    failed = activity.failures_since(int(time.time()) // 3600 - 23)
    clients.sort(key=lambda c: SP_SORTS[sort](c, last, failed))
    return _page("console/service_providers.html", clients=clients, query=query, sort=sort, last_issued=last,
                 failures=failed, deleted=request.args.get("deleted", ""))


def _client_or_404(client_id: str) -> client_store.RegisteredClient:
    client = client_store.get(client_id) if client_id else None
    if client is None:
        raise PageError(404, "Not found", "There is no service provider with this client id.")
    return client


def new_client_id() -> str:
    """A random client id: lower-case letters and digits (124 bits), URL-safe and the same as a
    keystore alias in PKCS12 and JKS alike (JKS lower-cases aliases)."""
    return "".join(secrets.choice(_CLIENT_ID_ALPHABET) for _ in range(24))


_CLIENT_ID_ALPHABET = string.ascii_lowercase + string.digits
NEW_SP_METHODS = ("private_key_jwt", "client_secret_basic", "client_secret_post")
# tls_client_auth (RFC 8705 §2.1.2): what names the client's certificate, as the form offers it.
TLS_CLIENT_AUTH_KINDS = {"tls_client_auth_subject_dn": "Subject DN (RFC 4514, e.g. CN=client,O=Example)",
                         "tls_client_auth_san_dns": "SAN DNS name", "tls_client_auth_san_uri": "SAN URI",
                         "tls_client_auth_san_ip": "SAN IP address", "tls_client_auth_san_email": "SAN email address"}


@bp.route("/service-providers/add", methods=["GET", "POST"])
def add_service_provider():
    if request.method == "GET":
        return _page("console/sp_add.html", form={"token_endpoint_auth_method": "private_key_jwt"})
    form, _ = _post_form()
    method = form.get("token_endpoint_auth_method", "private_key_jwt")
    # A new service provider gets the client_credentials grant; callback URLs and the other grants
    # (and the public method "none", which needs them) are set on its configuration page.
    metadata = {"client_name": form.get("client_name", ""), "description": form.get("description", ""),
                "grant_types": ["client_credentials"], "token_endpoint_auth_method": method}
    try:
        if method not in NEW_SP_METHODS:
            raise MetadataError("token_endpoint_auth_method", "Choose private_key_jwt, client_secret_basic or "
                                                              "client_secret_post.")
        if not metadata["client_name"].strip():
            raise MetadataError("client_name", "Give the service provider a name.")
        values = _validate(metadata)
        client, secret = client_store.create(new_client_id(), **values)
    except (MetadataError, ValueError) as exc:
        message = exc.message if isinstance(exc, MetadataError) else f"The service provider was not saved: {exc}."
        return _page("console/sp_add.html", 400, error=message, form=form)
    return _edit_page(client, secret=secret, created=True)


def _edit_page(client: client_store.RegisteredClient, status: int = 200, **context: Any) -> Response:
    keystore_cert = None
    if client.auth_method == "private_key_jwt" and not client.jwks and not client.jwks_uri:
        keystore_cert = _keystore_certificate(client.client_id)
    return _page("console/sp_edit.html", status, client=client, grant_types=list(client_metadata.GRANT_TYPES) + [g for g in _grant_types() if g not in client_metadata.GRANT_TYPES],
                 enabled_grants=set(current.chain().grants), auth_methods=client_store.AUTH_METHODS,
                 key_methods=client_metadata.KEY_METHODS, tls_kinds=TLS_CLIENT_AUTH_KINDS,
                 algorithms=SIGNING_ALGORITHMS, lifetimes=client_metadata.LIFETIME_BOUNDS,
                 form=context.pop("form", None) or _form_of(client), keystore_cert=keystore_cert,
                 certificates=_registered_certificates(client.jwks), failures=failure_log.recent(client.client_id),
                 budget=_failure_budget(client.client_id), activity=_activity(client.client_id),
                 assertions=client_activity.client_row(current.chain(), current.services().settings, client),
                 **context)


# --- activity charts ---------------------------------------------------------------------------

CHART = {"width": 640, "height": 180, "left": 40, "right": 8, "top": 12, "bottom": 26}


def _scale(value: int) -> int:
    """The chart's top: the smallest 1, 2 or 5 × 10^k at least `value` (at least 1)."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def bar_chart(title: str, labels: list[str], issued: list[int], failures: list[int],
              label_every: int = 1) -> dict[str, Any]:
    """The geometry of a bar chart of issued tokens beside failures per period, for the SVG
    the template draws (no script: the console's CSP allows none)."""
    c = CHART
    top = _scale(max(issued + failures + [1]))
    plot_w = c["width"] - c["left"] - c["right"]
    plot_h = c["height"] - c["top"] - c["bottom"]
    group = plot_w / len(labels)
    bar = max(1.0, group * 0.38)
    bars, ticks = [], []
    for i, (label, ok, bad) in enumerate(zip(labels, issued, failures)):
        x0 = c["left"] + i * group + (group - 2 * bar) / 2
        for kind, value, x in (("issued", ok, x0), ("failures", bad, x0 + bar)):
            h = round(plot_h * value / top, 1)
            bars.append({"kind": kind, "x": round(x, 1), "y": round(c["top"] + plot_h - h, 1), "w": round(bar, 1),
                         "h": h, "value": value, "label": label})
        if i % label_every == 0:
            ticks.append({"x": round(c["left"] + i * group + group / 2, 1), "label": label})
    axis = [{"y": round(c["top"] + plot_h - plot_h * v / top, 1), "value": v} for v in sorted({0, top // 2, top})]
    return {"title": title, "bars": bars, "ticks": ticks, "axis": axis, "rows": list(zip(labels, issued, failures)),
            "base": c["top"] + plot_h, **c}


def _activity(client_id: str, now: float | None = None) -> dict[str, Any]:
    """The client's last 24 hours (by hour) and last 7 days (by UTC day, today included)."""
    now = time.time() if now is None else now
    now_hour = int(now) // 3600
    first_day = client_activity.window_start(now) // 24   # the migration report's window too
    counts = activity.hourly(client_id, first_day * 24)
    by_hour: dict[int, list[int]] = {}
    reasons: dict[str, list[int]] = {}
    for (hour, name), count in counts.items():
        if name == activity.ISSUED or name.startswith(activity.FAILURE_PREFIX):
            slot = by_hour.setdefault(hour, [0, 0])
            slot[0 if name == activity.ISSUED else 1] += count
        if name.startswith(activity.FAILURE_PREFIX):
            per = reasons.setdefault(name[len(activity.FAILURE_PREFIX):], [0, 0])
            per[1] += count
            if hour > now_hour - 24:
                per[0] += count
    hours = list(range(now_hour - 23, now_hour + 1))
    days = list(range(first_day, first_day + client_activity.REPORT_DAYS))

    def hour_label(hour: int) -> str:
        return f"{hour % 24:02d}:00"

    def day_label(day: int) -> str:
        return datetime.datetime.fromtimestamp(day * 86400, datetime.timezone.utc).strftime("%a %d %b")

    def day_sum(day: int, index: int) -> int:
        return sum(by_hour.get(h, [0, 0])[index] for h in range(day * 24, day * 24 + 24))

    day_chart = bar_chart("Last 7 days (UTC days)", [day_label(d) for d in days],
                          [day_sum(d, 0) for d in days], [day_sum(d, 1) for d in days])
    hour_chart = bar_chart("Last 24 hours (UTC, by hour)", [hour_label(h) for h in hours],
                           [by_hour.get(h, [0, 0])[0] for h in hours], [by_hour.get(h, [0, 0])[1] for h in hours],
                           label_every=3)
    return {"hours": hour_chart, "days": day_chart,
            "issued_24h": sum(hour_chart["rows"][i][1] for i in range(24)),
            "failures_24h": sum(hour_chart["rows"][i][2] for i in range(24)),
            "issued_7d": sum(day_chart["rows"][i][1] for i in range(7)),
            "failures_7d": sum(day_chart["rows"][i][2] for i in range(7)),
            "reasons": sorted(reasons.items(), key=lambda item: (-item[1][1], item[0]))}


def _failure_budget(client_id: str) -> dict[str, int] | None:
    """The client id's failed authentications in the current window, against its budget: a signal
    (an attack, or a client whose assertions go wrong), never a lock on the client."""
    limiter = current.services().limiter
    limit = limiter.limits["client"]
    if limit <= 0:
        return None
    count, seconds_left = limiter.client_failures(client_id)
    return {"count": count, "limit": limit, "seconds_left": seconds_left}


def _form_of(client: client_store.RegisteredClient) -> dict[str, Any]:
    """The configuration form's fields for a registered client."""
    form: dict[str, Any] = {
        "client_name": client.client_name, "description": client.description,
        "redirect_uris": "\n".join(client.redirect_uris), "scope": " ".join(client.scopes),
        "token_endpoint_auth_method": client.auth_method,
        "token_endpoint_auth_signing_alg": client.signing_alg or "",
        "audience_policy": client.audience_policy or "", "token_reuse": client.token_reuse or "",
        "require_explicit_typ": {None: "", True: "true", False: "false"}[client.require_explicit_typ],
        "first_party": "on" if client.first_party else "",
        "dpop_bound_access_tokens": "on" if client.dpop_bound_access_tokens else "",
        "require_dpop_nonce": "on" if client.require_dpop_nonce else "",
        "access_token_format": client.access_token_format or "",
        "resources": "\n".join(client.resources),
        "require_pushed_authorization_requests": "on" if client.require_pushed_authorization_requests else "",
        "tls_client_certificate_bound_access_tokens": "on" if client.tls_client_certificate_bound_access_tokens else "",
        "profile": client.profile or "",
    }
    # The one identifier of a tls_client_auth client, as metadata_of names it.
    identifier = [(name, value) for name, value in client_metadata.metadata_of(client).items()
                  if name in TLS_CLIENT_AUTH_KINDS]
    if identifier:
        form["tls_client_auth_kind"], form["tls_client_auth_value"] = identifier[0]
    for grant in client.grant_types:
        form["grant_type." + grant] = "on"
    for name in client_metadata.LIFETIME_BOUNDS:
        value = getattr(client, name)
        form[name] = "" if value is None else str(value)
    return form


@bp.get("/service-providers/edit")
def edit_service_provider():
    client = _client_or_404(request.args.get("client_id", ""))
    return _edit_page(client, saved=request.args.get("saved", ""))


@bp.post("/service-providers/edit")
def save_service_provider():
    form, _ = _post_form()
    client = _client_or_404(form.get("client_id", ""))
    try:
        metadata = _metadata_of_form(form, client)
        values = _validate(metadata, client)
        updated = client_store.update(client.client_id, **values)
    except MetadataError as exc:
        return _edit_page(client, 400, error=exc.message, form=form)
    if updated is None:
        raise PageError(404, "Not found", "There is no service provider with this client id.")
    _forget_jwks_uri(client.jwks_uri, updated[0].jwks_uri)
    client, secret = updated
    if secret:  # moved to a secret method: the new secret is shown on this answer only
        return _edit_page(client, secret=secret, saved="1")
    return _redirect("/console/service-providers/edit?" + urlencode({"client_id": client.client_id,
                                                                    "saved": "1"}))


def _metadata_of_form(form: dict[str, str], client: client_store.RegisteredClient) -> dict[str, Any]:
    """RFC 7591 metadata from the configuration form; the keys stay as registered (they are
    set on the public key page) while the client keeps a method with keys (KEY_METHODS)."""
    metadata: dict[str, Any] = {
        "client_name": form.get("client_name", ""),
        "description": form.get("description", "").replace("\r\n", "\n"),
        "redirect_uris": [line.strip() for line in form.get("redirect_uris", "").splitlines() if line.strip()],
        "grant_types": [g for g in _grant_types() if form.get("grant_type." + g)],
        "scope": " ".join(form.get("scope", "").split()),
        "token_endpoint_auth_method": form.get("token_endpoint_auth_method", client.auth_method),
        "first_party": bool(form.get("first_party")),
        "dpop_bound_access_tokens": bool(form.get("dpop_bound_access_tokens")),
        "require_dpop_nonce": bool(form.get("require_dpop_nonce")),
        "resources": [line.strip() for line in form.get("resources", "").splitlines() if line.strip()],
        "require_pushed_authorization_requests": bool(form.get("require_pushed_authorization_requests")),
        "tls_client_certificate_bound_access_tokens": bool(form.get("tls_client_certificate_bound_access_tokens")),
    }
    for name in ("token_endpoint_auth_signing_alg", "audience_policy", "token_reuse", "access_token_format",
                 "profile"):
        if form.get(name):
            metadata[name] = form[name]
    if form.get("require_explicit_typ"):   # empty: the server's RequireExplicitTyp
        text = form["require_explicit_typ"]
        metadata["require_explicit_typ"] = {"true": True, "false": False}.get(text, text)
    identifier = form.get("tls_client_auth_value", "").strip()
    if identifier:
        kind = form.get("tls_client_auth_kind", "")
        if kind not in TLS_CLIENT_AUTH_KINDS:
            raise MetadataError("tls_client_auth_kind", "Choose what names the client's certificate.")
        metadata[kind] = identifier
    for name in client_metadata.LIFETIME_BOUNDS:
        if form.get(name):
            text = form[name].strip()
            if not text.isascii() or not text.isdigit() or len(text) > 9:
                raise MetadataError(name, f"{_LABELS[name]} must be a whole number of seconds.")
            metadata[name] = int(text)
    if metadata["token_endpoint_auth_method"] in client_metadata.KEY_METHODS:
        if client.jwks:
            metadata["jwks"] = json.loads(client.jwks)
        elif client.jwks_uri:
            metadata["jwks_uri"] = client.jwks_uri
    return metadata


def _forget_jwks_uri(old: str | None, new: str | None) -> None:
    """A jwks_uri no longer registered leaves the fetcher's cache (README: a new one is fetched at once)."""
    if old and old != new:
        current.services().jwks_fetcher.invalidate(old)


@bp.post("/service-providers/regenerate-secret")
def regenerate_secret():
    form, _ = _post_form()
    client = _client_or_404(form.get("client_id", ""))
    try:
        secret = client_store.regenerate_secret(client.client_id)
    except ValueError:
        raise PageError(400, "No secret", "This service provider does not authenticate with a client secret.") \
            from None
    if secret is None:
        raise PageError(404, "Not found", "There is no service provider with this client id.")
    return _edit_page(client_store.get(client.client_id) or client, secret=secret, regenerated=True)


@bp.route("/service-providers/delete", methods=["GET", "POST"])
def delete_service_provider():
    if request.method == "GET":
        client = _client_or_404(request.args.get("client_id", ""))
        return _page("console/sp_delete.html", client=client,
                     keystore_cert=_keystore_certificate(client.client_id) is not None)
    form, _ = _post_form()
    client = _client_or_404(form.get("client_id", ""))
    if client_store.delete(client.client_id):
        _forget_jwks_uri(client.jwks_uri, None)
    return _redirect("/console/service-providers?" + urlencode({"deleted": client.client_id}))


# --- a client's public key (private_key_jwt) ---------------------------------------------------

KEY_SOURCES = ("keystore", "certificate", "jwks", "jwks_uri")


def _keystore_certificate(client_id: str) -> dict[str, Any] | None:
    """The certificate under the client id in the keystore, as the token endpoint finds it."""
    cert = current.services().keystore().trusted_certificate(client_id)
    if cert is None:
        return None
    der = cert.to_cryptography().public_bytes(Encoding.DER)
    view = _certificate_view(cert.to_cryptography())
    try:
        view["keys"] = client_metadata.keys_from_certificate(der)[1]
    except MetadataError as exc:  # expired, weak key…: say why the token endpoint refuses it
        view["problem"] = exc.message
    return view


def _keys_page(client: client_store.RegisteredClient, status: int = 200, **context: Any) -> Response:
    if "keys" not in context and client.jwks:
        try:
            context["keys"] = client_metadata.keys_from_jwks(client.jwks)[1]
        except MetadataError as exc:
            context["keys_problem"] = exc.message
        context["certificates"] = _registered_certificates(client.jwks)
    source = "jwks" if client.jwks else "jwks_uri" if client.jwks_uri else "keystore"
    uploaded = _uploaded_certificate(client.jwks) if client.jwks else None
    if uploaded is not None:
        source = "certificate"
    form = context.pop("form", None) or {"key_source": source, "token_endpoint_auth_method": client.auth_method}
    return _page("console/sp_keys.html", status, client=client, source=source, form=form, uploaded=uploaded,
                 keystore_cert=_keystore_certificate(client.client_id), key_methods=client_metadata.KEY_METHODS,
                 **context)


def _registered_certificates(jwks: str | None) -> dict[str, dict[str, Any]]:
    """The certificates a registered JWKS carries (an uploaded certificate's x5c), by key
    thumbprint: notAfter, and "expired" or "not yet valid" as the token endpoint judges it now."""
    now, skew = time.time(), current.services().settings.timestamp_skew
    return {thumbprint: {"not_after": validity.not_after, "lapse": validity.lapse(now, skew)}
            for thumbprint, validity in x5c_validity(jwks or "{}").items()}


def _uploaded_certificate(jwks: str) -> dict[str, Any] | None:
    """The certificate a one-key JWK Set was made from (its x5c, RFC 7517 §4.7), if it was."""
    try:
        keys = json.loads(jwks).get("keys")
        if isinstance(keys, list) and len(keys) == 1 and isinstance(keys[0].get("x5c"), list):
            return _certificate_view(x509.load_der_x509_certificate(base64.b64decode(keys[0]["x5c"][0])))
    except (ValueError, TypeError, AttributeError, IndexError):
        pass
    return None


@bp.get("/service-providers/keys")
def client_keys():
    client = _client_or_404(request.args.get("client_id", ""))
    return _keys_page(client)


@bp.post("/service-providers/keys")
def save_client_keys():
    form, files = _post_form()
    client = _client_or_404(form.get("client_id", ""))
    if client.auth_method not in client_metadata.KEY_METHODS:
        raise PageError(400, "No public key", "Public keys are registered for private_key_jwt and "
                                              "self_signed_tls_client_auth clients only. Change the "
                                              "authentication method first.")
    try:
        source = _key_source(form, files)
        metadata = client_metadata.metadata_of(client)
        metadata.pop("jwks", None)
        metadata.pop("jwks_uri", None)
        # The keys and the method they serve may change together (a self-signed certificate, RFC 8705 §2.2).
        method = form.get("token_endpoint_auth_method", client.auth_method)
        if method not in client_metadata.KEY_METHODS:
            raise MetadataError("token_endpoint_auth_method", "Choose private_key_jwt or self_signed_tls_client_auth.")
        metadata["token_endpoint_auth_method"] = method
        if method != "private_key_jwt":   # no assertions, so no assertion signing algorithm
            metadata.pop("token_endpoint_auth_signing_alg", None)
        keys = None
        if source == "certificate":
            jwks, keys = client_metadata.keys_from_certificate(read_certificate(form, files))
            metadata["jwks"] = json.loads(jwks)
        elif source == "jwks":
            jwks, keys = client_metadata.keys_from_jwks(_jwks_text(form, files))
            metadata["jwks"] = json.loads(jwks)
        elif source == "jwks_uri":
            metadata["jwks_uri"] = form["jwks_uri"].strip()
            current.services().jwks_fetcher.invalidate(metadata["jwks_uri"])  # fetched now, not from a cache
            keys = client_metadata.keys_from_jwks_uri(metadata["jwks_uri"], current.services())
        values = _validate(metadata, client)
        updated = client_store.update(client.client_id, **values)
    except (MetadataError, ValueError) as exc:
        message = exc.message if isinstance(exc, MetadataError) else str(exc)
        # Pasted text is not echoed back: it may be a private key given by mistake.
        form = {"key_source": form.get("key_source", ""), "jwks_uri": form.get("jwks_uri", ""),
                "token_endpoint_auth_method": form.get("token_endpoint_auth_method", client.auth_method)}
        return _keys_page(client, 400, error=message, form=form)
    if updated is None:
        raise PageError(404, "Not found", "There is no service provider with this client id.")
    _forget_jwks_uri(client.jwks_uri, updated[0].jwks_uri)
    context = {"keys": keys} if keys is not None else {}
    return _keys_page(updated[0], saved=source, **context)


def _key_source(form: dict[str, str], files: dict[str, bytes]) -> str:
    """The chosen key source; the fields of exactly one source may be filled in."""
    filled = {
        "certificate": bool(files.get("certificate_file") or form.get("certificate_pem", "").strip()),
        "jwks": bool(files.get("jwks_file") or form.get("jwks", "").strip()),
        "jwks_uri": bool(form.get("jwks_uri", "").strip()),
    }
    if filled["jwks"] and filled["jwks_uri"]:
        # RFC 7591 §2: jwks and jwks_uri MUST NOT both be present.
        raise MetadataError("jwks", "Give a JWKS or a JWKS URI, not both.")
    given = [name for name, present in filled.items() if present]
    if len(given) > 1:
        raise MetadataError("key_source", "Give only one of: a certificate, a JWKS, a JWKS URI.")
    source = form.get("key_source") or (given[0] if given else "")
    if source not in KEY_SOURCES:
        raise MetadataError("key_source", "Choose where the client's public key is found.")
    if given and given[0] != source:
        raise MetadataError("key_source", "The fields filled in do not belong to the chosen key source.")
    if source != "keystore" and not given:
        raise MetadataError(source, {"certificate": "Choose a certificate file or paste a PEM certificate.",
                                     "jwks": "Choose a JWKS file or paste a JWKS.",
                                     "jwks_uri": "Enter the JWKS URI."}[source])
    return source


def _jwks_text(form: dict[str, str], files: dict[str, bytes]) -> str:
    data = files.get("jwks_file")
    if data is None:
        return form["jwks"]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise MetadataError("jwks", "The JWKS file is not UTF-8 JSON.") from None


_LABELS = {"access_token_lifetime": "The access token lifetime",
           "refresh_token_lifetime": "The refresh token lifetime",
           "id_token_lifetime": "The ID token lifetime"}


# --- keystore --------------------------------------------------------------------------------

def _certificate_view(cert: x509.Certificate) -> dict[str, Any]:
    now = datetime.datetime.now(datetime.timezone.utc)
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "not_before": cert.not_valid_before_utc,
        "not_after": cert.not_valid_after_utc,
        "expired": cert.not_valid_after_utc < now,
        "not_yet_valid": cert.not_valid_before_utc > now,
        "serial": format(cert.serial_number, "X"),
        "sha256": cert.fingerprint(hashes.SHA256()).hex(":").upper(),
        "pem": cert.public_bytes(Encoding.PEM).decode("ascii"),
    }


def _entry_view(entry: Entry) -> dict[str, Any]:
    return {"alias": entry.alias, "kind": entry.kind, **_certificate_view(entry.certificate),
            "primary": entry.kind == PRIVATE_KEY_ENTRY and entry.alias == current.services().keystore().alias}


def _find_entry(alias: str) -> Entry | None:
    return next((e for e in current.services().keystore().entries() if e.alias == alias), None)


def _keystore_page(status: int = 200, **context: Any) -> Response:
    entries = [_entry_view(e) for e in current.services().keystore().entries()]
    entries.sort(key=lambda e: (not e["primary"], e["alias"].casefold()))
    clients = {c.client_id for c in client_store.all_clients()}
    return _page("console/keystore.html", status, entries=entries, clients=clients,
                 store_type=current.services().keystore().store_type, **context)


@bp.get("/keystore")
def keystore():
    return _keystore_page(alias=request.args.get("alias", ""), imported=request.args.get("imported", ""),
                          deleted=request.args.get("deleted", ""))


def check_alias(alias: str) -> str | None:
    """Why an alias cannot name a new keystore entry, or None."""
    if not alias or len(alias) > MAX_ALIAS_LENGTH:
        return f"An alias has 1 to {MAX_ALIAS_LENGTH} characters."
    if alias != alias.strip() or any(ord(c) < 0x20 or ord(c) == 0x7F for c in alias):
        return "An alias has no leading or trailing spaces and no control characters."
    # keytool compares aliases without case (and JKS stores them lower-cased).
    if any(e.alias.casefold() == alias.casefold() for e in current.services().keystore().entries()):
        return "The keystore already has an entry with this alias (aliases are compared ignoring case)."
    return None


def read_certificate(form: dict[str, str], files: dict[str, bytes], prefix: str = "certificate") -> bytes:
    """The certificate of a form: an uploaded file (PEM or DER) or pasted PEM, exactly one."""
    upload, pasted = files.get(prefix + "_file"), form.get(prefix + "_pem", "").strip()
    if upload and pasted:
        raise ValueError("Upload a certificate file or paste one, not both.")
    data = upload or pasted.encode("utf-8")
    if not data:
        raise ValueError("Choose a certificate file or paste a PEM certificate.")
    return data


def parse_certificate(data: bytes) -> x509.Certificate:
    """PEM (RFC 7468 "CERTIFICATE") or DER, as keytool -importcert accepts."""
    try:
        if b"-----BEGIN" in data:
            if b"PRIVATE KEY-----" in data:
                raise ValueError("This is a private key. Upload the certificate only: the private key stays "
                                 "with the client.")
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        if "private key" in str(exc):
            raise
        raise ValueError("This is not an X.509 certificate (PEM or DER).") from None


@bp.post("/keystore/import")
def keystore_import():
    form, files = _post_form()
    alias = form.get("alias", "")
    try:
        problem = check_alias(alias)
        if problem:
            raise ValueError(problem)
        data = read_certificate(form, files)
        parse_certificate(data)
        entry = current.services().keystore().import_certificate(alias, data)
    except (ValueError, KeystoreError) as exc:
        message = str(exc) if isinstance(exc, ValueError) else "The keystore could not be written."
        return _keystore_page(400, error=message, alias=alias)
    # The alias as stored: JKS keystores lower-case ASCII aliases (as keytool does).
    return _redirect("/console/keystore/entry?" + urlencode({"alias": entry.alias, "imported": "1"}))


def _entry_or_404(alias: str) -> Entry:
    entry = _find_entry(alias)
    if entry is None:
        raise PageError(404, "Not found", "The keystore has no entry with this alias.")
    return entry


@bp.get("/keystore/entry")
def keystore_entry():
    entry = _entry_or_404(request.args.get("alias", ""))
    client = client_store.get(entry.alias)
    return _page("console/keystore_entry.html", entry=_entry_view(entry), client=client,
                 imported=request.args.get("imported", ""))


@bp.route("/keystore/delete", methods=["GET", "POST"])
def keystore_delete():
    if request.method == "GET":
        entry = _entry_or_404(request.args.get("alias", ""))
        _deletable(entry)
        return _page("console/keystore_delete.html", entry=_entry_view(entry), client=_client_using(entry.alias))
    form, _ = _post_form()
    entry = _entry_or_404(form.get("alias", ""))
    _deletable(entry)
    try:
        current.services().keystore().delete_entry(entry.alias)
    except KeystoreError:
        raise PageError(500, "Server error", "The keystore could not be written.") from None
    return _redirect("/console/keystore?" + urlencode({"deleted": entry.alias}))


def _deletable(entry: Entry) -> None:
    # The server's own key entry (TLS, signing) and any other key entry are never deleted here.
    if entry.kind != TRUSTED_CERT_ENTRY:
        raise PageError(400, "Cannot delete", "Key entries cannot be deleted from the console; only "
                                              "certificate entries can.")


def _client_using(alias: str):
    """The private_key_jwt client that trusts this keystore certificate, if any."""
    client = client_store.get(alias)
    if client is None and current.services().keystore().store_type == "JKS":
        client = next((c for c in client_store.all_clients() if c.client_id.lower() == alias), None)
    if client is not None and client.auth_method == "private_key_jwt" and not client.jwks and not client.jwks_uri:
        return client
    return None


# --- the migration report ------------------------------------------------------------------------

@bp.get("/report")
def migration_report():
    report = client_activity.report(current.chain(), current.services().settings, client_store.all_clients())
    return _page("console/report.html", report=report, settings_list=client_activity.SETTINGS)


# --- rendering ---------------------------------------------------------------------------------

def _page(template: str, status: int = 200, **context: Any) -> Response:
    return web.render_page(template, status, admin=g.admin, **context)


@bp.app_template_filter("utc")
def _utc(value: int | datetime.datetime | None) -> str:
    if value is None:
        return ""
    if not isinstance(value, datetime.datetime):
        value = datetime.datetime.fromtimestamp(value, datetime.timezone.utc)
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


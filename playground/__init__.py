"""The playground: a sample OpenID Connect client, like WSO2's playground2, that runs the
authorization code flow with PKCE against this server and authenticates at the token endpoint
with private_key_jwt.

`flask --app app playground` creates the client's RSA key pair (var/playground/, 0600) and
registers the client on first run, then serves http://localhost:8080/playground2/oauth2client:
plain HTTP on loopback, because it is the client, not the server (RFC 8252 §7.3). It talks to
the server only over HTTPS, verifying the server's certificate, exactly as any other client.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import socket
import ssl
import stat
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import click
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask, Response, current_app, render_template, request
from flask.cli import with_appcontext
from werkzeug.exceptions import HTTPException
from werkzeug.serving import WSGIRequestHandler, make_server

from keystore.jwk import InvalidKey, PublicKey, parse_jwks
from keystore.jws import MalformedJWS, UnsuitableKey, parse_compact_jws, verifier
from keystore.signing import sign
from core.config import Settings
from storage import clients as client_store
from storage.database import release
from storage.schema import upgrade

PATH = "/playground2/oauth2client"
SCOPES = ("openid", "profile", "email", "offline_access")
GRANT_TYPES = ("authorization_code", "refresh_token")
KEY_FILE = "var/playground/private-key.pem"
ALG = "RS256"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME = 300
BROWSER_COOKIE = "playground_browser"
PENDING_LIFETIME = 600         # seconds a started authorization may take to come back
PENDING_CAPACITY = 1000
HTTP_TIMEOUT = 10.0
MAX_RESPONSE_BYTES = 1 << 20
LEEWAY = 30                    # seconds of clock difference tolerated in exp and iat
# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ), separated by single spaces.
_SCOPE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+( [\x21\x23-\x5b\x5d-\x7e]+)*")
_COOKIE_VALUE = re.compile(r"[A-Za-z0-9_-]{43}")


class PlaygroundError(Exception):
    """The playground cannot start; str() says what to do."""


@dataclass(frozen=True)
class PlaygroundConfig:
    """Everything the running playground needs: who it is and where the server is."""

    client_id: str
    redirect_uri: str
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    key: rsa.RSAPrivateKey = field(repr=False)
    kid: str
    ca_file: str | None          # None: the system's trust store
    scope: str = " ".join(SCOPES)


# --- the key pair and the registration -------------------------------------------------------

def load_or_create_key(path: Path) -> tuple[rsa.RSAPrivateKey, bool]:
    """The playground's private key: read from `path`, or created there (RSA 2048, mode 0600,
    in a 0700 directory) when the file does not exist. Returns the key and whether it was created."""
    if path.exists():
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError):
            raise PlaygroundError(f"{path} is not an unencrypted PEM private key; remove it to create a new one") \
                from None
        if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < 2048:
            raise PlaygroundError(f"{path} must hold an RSA key of at least 2048 bits")
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            raise PlaygroundError(f"{path} is readable by other users; run `chmod 600 {path}`")
        return key, False
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    # O_EXCL: never overwrite a key another process created meanwhile; 0600 from the first byte.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return key, True


def public_jwks(key: rsa.RSAPrivateKey) -> tuple[dict, str]:
    """The JWKS registered for the client (its public key only) and the key's kid, its RFC 7638
    thumbprint."""
    public = PublicKey.from_cryptography(key.public_key())
    jwk = {**public.to_jwk(), "kid": public.thumbprint, "use": "sig", "alg": ALG}
    return {"keys": [jwk]}, public.thumbprint


def register(client_id: str, redirect_uri: str, jwks: dict, kid: str) -> str:
    """Register the playground as a private_key_jwt client unless it exists; an existing client
    must be usable as it is (same key, same redirect URI), else the playground refuses to start.
    Returns what was done, for the operator."""
    client = client_store.get(client_id)
    if client is None:
        client_store.create(client_id, "private_key_jwt", client_name="Playground", grant_types=GRANT_TYPES,
                            scopes=SCOPES, redirect_uris=(redirect_uri,),
                            jwks=json.dumps(jwks, separators=(",", ":")), signing_alg=ALG,
                            description="The sample client of `flask playground`.")
        return (f"registered client {client_id}: private_key_jwt ({ALG}, kid {kid}), grant types "
                f"{' '.join(GRANT_TYPES)}, scope {' '.join(SCOPES)}, redirect URI {redirect_uri}")
    delete_hint = f"delete it with `flask --app app clients delete {client_id}` or choose another --client-id"
    if client.auth_method != "private_key_jwt":
        raise PlaygroundError(f"client {client_id} exists and does not use private_key_jwt; {delete_hint}")
    try:
        registered = parse_jwks(client.jwks) if client.jwks else []
    except InvalidKey:
        registered = []
    if not any(k.thumbprint == kid for k in registered):
        raise PlaygroundError(f"client {client_id} is registered with another key than {KEY_FILE}; {delete_hint}")
    if redirect_uri not in client.redirect_uris:
        raise PlaygroundError(f"client {client_id} is registered for the redirect URIs "
                              f"{' '.join(client.redirect_uris) or '(none)'}, not {redirect_uri}: "
                              f"use the --port it was registered with, or {delete_hint}")
    if "authorization_code" not in client.grant_types:
        raise PlaygroundError(f"client {client_id} is not registered for the authorization_code grant; "
                              f"{delete_hint}")
    return f"client {client_id} is already registered"


def prepare(settings: Settings, *, port: int, client_id: str, ca: str | None) -> tuple[PlaygroundConfig, list[str]]:
    """Key pair, registration and server endpoints; needs the server's app context (database).
    Returns the configuration and the lines to tell the operator."""
    messages: list[str] = []
    key_path = settings.resolve(KEY_FILE)
    key, created = load_or_create_key(key_path)
    jwks, kid = public_jwks(key)
    messages.append(f"{'created' if created else 'using'} the client key {key_path} (RSA 2048, kid {kid})")
    redirect_uri = f"http://localhost:{port}{PATH}"
    messages.append(register(client_id, redirect_uri, jwks, kid))
    if ca is None:
        default_ca = settings.resolve("var/tls/cert.pem")
        ca = str(default_ca) if default_ca.exists() else None
    messages.append(f"trusting the server certificate in {ca}" if ca else
                    "trusting the system's certificate authorities for the server")
    base = settings.base_url
    config = PlaygroundConfig(client_id=client_id, redirect_uri=redirect_uri, issuer=settings.issuer,
                              authorization_endpoint=base + "/oauth2/authorize", token_endpoint=settings.token_endpoint,
                              jwks_uri=base + "/oauth2/jwks", key=key, kid=kid, ca_file=ca)
    return config, messages


# --- authorizations started in a browser -----------------------------------------------------

@dataclass(frozen=True)
class Pending:
    """What the callback needs to finish one authorization request (kept only in memory)."""

    browser: str
    code_verifier: str
    nonce: str
    scope: str
    created: float


class PendingAuthorizations:
    """Started authorizations keyed by `state`: bounded, each used once, expiring."""

    def __init__(self, capacity: int = PENDING_CAPACITY, lifetime: float = PENDING_LIFETIME) -> None:
        self.capacity = capacity
        self.lifetime = lifetime
        self._items: OrderedDict[str, Pending] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, state: str, pending: Pending) -> None:
        with self._lock:
            self._items[state] = pending
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def take(self, state: str) -> Pending | None:
        with self._lock:
            pending = self._items.pop(state, None)
        if pending is None or time.monotonic() - pending.created > self.lifetime:
            return None
        return pending


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def code_challenge(verifier: str) -> str:
    # RFC 7636 §4.2: S256 = BASE64URL(SHA256(ASCII(code_verifier))).
    return b64url(hashlib.sha256(verifier.encode("ascii")).digest())


# --- talking to the server --------------------------------------------------------------------

class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):   # a token endpoint or JWKS never redirects us
        return None


@dataclass(frozen=True)
class HTTPResult:
    """A JSON answer from the server, or why there is none (`problem`)."""

    status: int | None
    body: dict | None
    problem: str | None = None


def fetch_json(config: PlaygroundConfig, url: str, form: dict[str, str] | None = None) -> HTTPResult:
    """GET, or POST a form, over HTTPS with the server's certificate verified; never raises."""
    context = ssl.create_default_context(cafile=config.ca_file)
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), _NoRedirect)
    data = urlencode(form).encode("ascii") if form is not None else None
    req = urllib.request.Request(url, data=data, headers={"Accept": "application/json"})
    if data is not None:
        req.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with opener.open(req, timeout=HTTP_TIMEOUT) as response:
            status, raw = response.status, response.read(MAX_RESPONSE_BYTES + 1)
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read(MAX_RESPONSE_BYTES + 1)
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, ssl.SSLCertVerificationError):
            return HTTPResult(None, None, f"the server's TLS certificate was not trusted ({reason.verify_message}); "
                                          f"start the playground with --ca pointing to the server's certificate")
        return HTTPResult(None, None, f"cannot reach {url}: {reason}")
    except (OSError, ValueError) as exc:
        return HTTPResult(None, None, f"cannot reach {url}: {exc}")
    if len(raw) > MAX_RESPONSE_BYTES:
        return HTTPResult(status, None, f"the answer from {url} is too large")
    try:
        body = json.loads(raw)
    except ValueError:
        return HTTPResult(status, None, f"the answer from {url} (HTTP {status}) is not JSON")
    if not isinstance(body, dict):
        return HTTPResult(status, None, f"the answer from {url} (HTTP {status}) is not a JSON object")
    return HTTPResult(status, body)


def client_assertion(config: PlaygroundConfig) -> str:
    """A fresh private_key_jwt assertion (RFC 7523 §3): iss = sub = client id, aud = the issuer."""
    now = int(time.time())
    claims = {"iss": config.client_id, "sub": config.client_id, "aud": config.issuer, "jti": str(uuid.uuid4()),
              "iat": now, "exp": now + ASSERTION_LIFETIME}
    return sign(config.key, ALG, claims, {"kid": config.kid})


def redeem_code(config: PlaygroundConfig, code: str, code_verifier: str) -> HTTPResult:
    # RFC 6749 §4.1.3, RFC 7636 §4.5, RFC 7523 §2.2.
    return fetch_json(config, config.token_endpoint, {
        "grant_type": "authorization_code", "code": code, "redirect_uri": config.redirect_uri,
        "code_verifier": code_verifier, "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": client_assertion(config)})


# --- ID token validation (OpenID Connect Core §3.1.3.7) ----------------------------------------

@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class IDTokenReport:
    header: dict | None
    claims: dict | None
    checks: list[Check]

    @property
    def valid(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)


def verify_id_token(id_token: str, jwks: HTTPResult, *, issuer: str, client_id: str, nonce: str,
                    access_token: str | None, now: int | None = None) -> IDTokenReport:
    """Every check a relying party makes on an ID token, each reported on its own."""
    now = int(time.time()) if now is None else now
    try:
        jws = parse_compact_jws(id_token, max_length=16384)
    except MalformedJWS as exc:
        return IDTokenReport(None, None, [Check("format", False, f"not a compact JWS: {exc}")])
    header, claims = jws.header, jws.payload
    checks = [_signature_check(jws, jwks)]

    # §3.1.3.7 item 2: iss exactly the issuer.
    checks.append(Check("iss", claims.get("iss") == issuer, f"{_json(claims.get('iss'))}, expected {_json(issuer)}"))
    # Item 3: aud contains the client id; items 4 and 5: azp, required with several audiences,
    # is the client id.
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    aud_ok = client_id in audiences
    if len(audiences) > 1 or "azp" in claims:
        aud_ok = aud_ok and claims.get("azp") == client_id
    checks.append(Check("aud", aud_ok, f"{_json(aud)}" + (f", azp {_json(claims['azp'])}" if "azp" in claims else "")
                        + f", expected {_json(client_id)}"))
    # Item 11: nonce exactly the value sent in the authorization request.
    nonce_ok = isinstance(claims.get("nonce"), str) and hmac.compare_digest(claims["nonce"].encode(), nonce.encode())
    checks.append(Check("nonce", nonce_ok, "matches the request" if nonce_ok else
                        f"{_json(claims.get('nonce'))} is not the nonce of the request"))
    # Item 9: exp in the future; item 10: iat not in the future.
    exp, iat = claims.get("exp"), claims.get("iat")
    checks.append(Check("exp", _is_int(exp) and exp > now - LEEWAY,
                        f"{_json(exp)}" + (f" (in {exp - now} s)" if _is_int(exp) and exp > now else " (expired)")))
    checks.append(Check("iat", _is_int(iat) and iat <= now + LEEWAY, _json(iat)))
    # §2: sub is a non-empty string of at most 255 ASCII characters.
    sub = claims.get("sub")
    checks.append(Check("sub", isinstance(sub, str) and 0 < len(sub) <= 255 and sub.isascii(), _json(sub)))
    # §3.1.3.8 (optional in the code flow): at_hash, when present, binds the access token.
    if "at_hash" in claims:
        at_hash_ok = claims["at_hash"] == _at_hash(access_token or "", header.get("alg"))
        checks.append(Check("at_hash", at_hash_ok,
                            "matches the access token" if at_hash_ok else "does not match the access token"))
    return IDTokenReport(header, claims, checks)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _at_hash(access_token: str, alg: Any) -> str | None:
    size = {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}.get(str(alg)[-3:])
    if size is None:
        return None
    digest = size(access_token.encode("ascii", "replace")).digest()
    return b64url(digest[: len(digest) // 2])


def _signature_check(jws, jwks: HTTPResult) -> Check:
    """§3.1.3.7 item 6: verified with the server's published keys, with the alg of the header,
    never "none" or HS* (the verifier refuses those)."""
    if jwks.body is None or jwks.status != 200:
        return Check("signature", False, f"the server's JWKS could not be read: {jwks.problem or jwks.status}")
    try:
        keys = parse_jwks(jwks.body)
    except InvalidKey as exc:
        return Check("signature", False, f"the server's JWKS is not valid: {exc}")
    alg, kid = jws.header.get("alg"), jws.header.get("kid")
    candidates = [k for k in keys if kid is None or k.kid == kid]
    if not candidates:
        return Check("signature", False, f"no key with kid {_json(kid)} in the server's JWKS")
    for key in candidates:
        try:
            if verifier(key, alg).verify(jws.signing_input, jws.signature):
                return Check("signature", True, f"{alg}, key {key.kid or key.thumbprint} from the server's JWKS")
        except UnsuitableKey:
            continue
    return Check("signature", False, f"no key of the server's JWKS verifies this {_json(alg)} signature")


# --- the web application ----------------------------------------------------------------------

def _page_headers(config: PlaygroundConfig) -> dict[str, str]:
    origin = config.authorization_endpoint.split("/oauth2/", 1)[0]
    return {
        "Cache-Control": "no-store",
        "Pragma": "no-cache",
        # No script at all; the Start form may only lead here or (by redirect) to the server.
        "Content-Security-Policy": f"default-src 'none'; style-src 'unsafe-inline'; form-action 'self' {origin}; "
                                   "frame-ancestors 'none'; base-uri 'none'",
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        # The callback URL carries the code: never sent to another origin. Same-origin forms keep
        # their Origin header (with no-referrer browsers send "Origin: null").
        "Referrer-Policy": "same-origin",
    }


def create_app(config: PlaygroundConfig) -> Flask:
    """The playground's own Flask application (separate from the server's)."""
    app = Flask("playground", template_folder=str(Path(__file__).parent / "templates"), static_folder=None)
    app.extensions["playground"] = config
    pending = PendingAuthorizations()

    def page(template: str, status: int = 200, **context: Any) -> Response:
        html = render_template(template, config=config, **context)
        response = Response(html, status=status, content_type="text/html; charset=utf-8")
        response.headers.update(_page_headers(config))
        return response

    def browser_id() -> str | None:
        value = request.cookies.get(BROWSER_COOKIE, "")
        return value if _COOKIE_VALUE.fullmatch(value) else None

    @app.get(PATH)
    def index():
        args = request.args
        if not any(name in args for name in ("code", "error", "state")):
            return page("index.html", scope=config.scope)
        return callback(args)

    @app.post(PATH)
    def start():
        # A form of another site must not start flows in this browser.
        origin = request.headers.get("Origin")
        if origin and origin != config.redirect_uri.split(PATH, 1)[0]:
            return page("result.html", 403, outcome="refused", message="The form was sent from another site.")
        scope = " ".join(request.form.get("scope", "").split())
        if not _SCOPE.fullmatch(scope):
            return page("index.html", 400, scope=scope,
                        error="The scope must be space-separated scope tokens (RFC 6749 §3.3).")
        browser = browser_id() or secrets.token_urlsafe(32)
        state, nonce, verifier_value = secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(64)
        pending.add(state, Pending(browser, verifier_value, nonce, scope, time.monotonic()))
        # OpenID Connect Core §3.1.2.1, RFC 7636 §4.3.
        query = urlencode({"response_type": "code", "client_id": config.client_id,
                           "redirect_uri": config.redirect_uri, "scope": scope, "state": state, "nonce": nonce,
                           "code_challenge": code_challenge(verifier_value), "code_challenge_method": "S256"})
        response = Response(status=303, headers={"Location": f"{config.authorization_endpoint}?{query}"})
        response.headers.update(_page_headers(config))
        # Binds the state to this browser: a code and state pasted into another browser are refused.
        response.set_cookie(BROWSER_COOKIE, browser, httponly=True, samesite="Lax", path=PATH.rsplit("/", 1)[0])
        return response

    def callback(args):
        state = args.get("state", "")
        found = pending.take(state) if state else None
        browser = browser_id()
        state_ok = found is not None and browser is not None and hmac.compare_digest(found.browser, browser)
        # RFC 6749 §4.1.2.1: the server reports a refusal in error, error_description, error_uri.
        if "error" in args:
            return page("result.html", 400, outcome="error", error=args.get("error"),
                        error_description=args.get("error_description"), error_uri=args.get("error_uri"),
                        state_ok=state_ok)
        # RFC 6749 §10.12: a response to a request this browser did not start is refused.
        if not state_ok:
            return page("result.html", 400, outcome="refused",
                        message="The state does not match an authorization started in this browser "
                                "(unknown, already used, expired, or from another browser). Nothing was redeemed.")
        # RFC 9207 §2.4: the response must name the issuer we sent the request to (mix-up attacks).
        iss = args.get("iss")
        if iss != config.issuer:
            return page("result.html", 400, outcome="refused",
                        message=f"The iss parameter of the response ({'missing' if iss is None else _json(iss)}) "
                                f"is not the issuer {_json(config.issuer)}. Nothing was redeemed.")
        code = args.get("code", "")
        if not code:
            return page("result.html", 400, outcome="refused", message="The response carries no code.")
        tokens = redeem_code(config, code, found.code_verifier)
        if tokens.body is None or tokens.status != 200:
            return page("result.html", 502, outcome="token_error", token_status=tokens.status,
                        body=tokens.body or {}, message=tokens.problem)
        report = None
        id_token = tokens.body.get("id_token")
        if isinstance(id_token, str):
            report = verify_id_token(id_token, fetch_json(config, config.jwks_uri), issuer=config.issuer,
                                     client_id=config.client_id, nonce=found.nonce,
                                     access_token=tokens.body.get("access_token"))
        return page("result.html", outcome="tokens", tokens=tokens.body, requested_scope=found.scope,
                    id_token=id_token, report=report, pretty=lambda value: json.dumps(value, indent=2, ensure_ascii=False))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return page("result.html", exc.code or 500, outcome="refused",
                    message="There is no such page here." if exc.code == 404 else (exc.name or "Error"))

    return app


# --- serving ----------------------------------------------------------------------------------

class _RequestLog(WSGIRequestHandler):
    """Access log lines without the query string: the callback's query carries the code."""

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        self.log("info", '"%s %s" %s %s', self.command, self.path.split("?", 1)[0], code, size)


def serve(config: PlaygroundConfig, port: int) -> None:
    # Bound here, so that a busy port is reported in one line (werkzeug would print and exit).
    try:
        listener = socket.create_server(("127.0.0.1", port))
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise PlaygroundError(f"cannot listen on 127.0.0.1:{port}: {reason}") from None
    with listener:
        server = make_server("127.0.0.1", port, create_app(config), threaded=True, request_handler=_RequestLog,
                             fd=listener.fileno())
    click.echo(f"playground: open {config.redirect_uri} (Ctrl-C stops it)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@click.command("playground")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True,
              help="Port on localhost; the redirect URI is http://localhost:PORT/playground2/oauth2client.")
@click.option("--client-id", default="playground", show_default=True, help="Registered on first run.")
@click.option("--ca", type=click.Path(exists=True, dir_okay=False),
              help="Certificate(s) to trust for the server (default: var/tls/cert.pem written by the server, "
                   "else the system's authorities).")
@with_appcontext
def command(port: int, client_id: str, ca: str | None) -> None:
    """Run the sample client: authorization code flow with PKCE and private_key_jwt."""
    services = current_app.extensions["idp"].services
    try:
        upgrade(services.db)
        config, messages = prepare(services.settings, port=port, client_id=client_id, ca=ca)
    except PlaygroundError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        release(services.db)
    for line in messages:
        click.echo(line)
    try:
        serve(config, port)
    except PlaygroundError as exc:
        raise click.ClickException(str(exc)) from None

"""The authorization endpoint (RFC 6749 §4.1.1, OpenID Connect Core §3.1.2): sign-in, consent, code.

One URL serves every step and keeps no state between them but the browser session: the
sign-in and consent pages post the original authorization parameters back as hidden fields,
with the CSRF token, and every request is validated completely again. Until the client and its
redirect URI are verified, errors are pages shown to the person and never redirects (RFC 6749
§4.1.2.1); after that they go back to the client with `state` and `iss` (RFC 9207).

A pushed request (RFC 9126 §4: `client_id` and `request_uri`) is looked up and used up when it
starts; its parameters then travel through the pages like any others, with one more hidden field,
`pushed_request`: an HMAC over them, the browser's CSRF token and an expiry, so that a page
posted back is still known to be pushed (where pushing is required) and unaltered.

The rules a request must pass are in `validate` (and `redirect_uri`), shared with the pushed
authorization request endpoint (server.endpoints.par), which answers their errors as JSON.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from collections import Counter
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import Blueprint, Response, request
from werkzeug.exceptions import MethodNotAllowed

from server import current
from server import web
from core.errors import OAuthError, invalid_request, invalid_scope, invalid_target, unauthorized_client
from core.profile import fapi2
from core.request import SCOPE, check_resources
from keystore.dpop import thumbprint_format_ok
from server.forms import MAX_PARAMETERS, check_media_type, parse_form_lists, read_body
from storage import clients, codes, consents
from storage import par as pushed_requests
from storage.clients import RegisteredClient
from storage.users import Account

bp = Blueprint("authorize", __name__)

ENDPOINT = "/oauth2/authorize"
# The parameters a page carries to the next step; any other is ignored (RFC 6749 §3.1).
AUTHORIZATION_PARAMETERS = ("response_type", "client_id", "redirect_uri", "scope", "state", "nonce",
                            "code_challenge", "code_challenge_method", "response_mode", "prompt", "max_age",
                            "login_hint", "dpop_jkt")
# OpenID Connect features this server does not offer, and the error each one gets (OIDC Core §3.1.2.6).
# A request_uri is supported as the reference to a pushed request (RFC 9126) only, never as the
# address of a request object (OIDC Core §6.2).
NOT_SUPPORTED = (("request", "request_not_supported"), ("request_uri", "request_uri_not_supported"),
                 ("registration", "registration_not_supported"))
# The hidden field that marks a pushed request's parameters on the pages (see the module's doc),
# and how long after the request started its pages may be posted.
PUSHED_FIELD = "pushed_request"
PUSHED_PAGE_LIFETIME = 600  # seconds to sign in and consent once the request_uri was used
PROMPTS = frozenset({"none", "login", "consent", "select_account"})   # OIDC Core §3.1.2.1
MAX_STATE = 512
MAX_NONCE = 512
MAX_LOGIN_HINT = 255
MAX_REDIRECT_URI = 2048
# A POSTed request is sent on in the URL of a GET: it must fit the request line the server
# accepts (gunicorn's limit_request_line, 8190 bytes, in app.py).
MAX_QUERY = 8000
_VSCHAR = re.compile(r"[\x20-\x7e]+")                                   # RFC 6749 Appendix A.5
_CODE_CHALLENGE = re.compile(r"[A-Za-z0-9\-._~]{43,128}")               # RFC 7636 §4.2
_MAX_AGE = re.compile(r"[0-9]{1,10}")
_URI_CHARS = re.compile(r"[\x21-\x7e]+")
_LOOPBACK_URI = re.compile(r"(?P<origin>http://(?:127\.0\.0\.1|\[::1\]))(?::(?P<port>[0-9]{1,5}))?"
                           r"(?P<rest>[/?].*)?", re.DOTALL)
_UNSAFE_SCHEMES = frozenset({"javascript", "data", "vbscript", "file", "blob"})

# What a scope lets the client have, in plain words (OIDC Core §5.4, §11); others are shown by name.
SCOPE_DESCRIPTIONS = {
    "openid": "Sign you in with your account on this server",
    "profile": "See your profile: name, user name, picture and other profile details",
    "email": "See your email address and whether it is verified",
    "address": "See your postal address",
    "phone": "See your phone number and whether it is verified",
    "offline_access": "Keep access while you are not using it, until you withdraw it "
                      "(ask this server's administrators)",
}


@dataclass(frozen=True)
class AuthorizationRequest:
    """A validated authorization request (RFC 6749 §4.1.1, OIDC Core §3.1.2.1)."""

    client: RegisteredClient
    redirect_uri: str                 # the one sent, or the only registered one when omitted
    scopes: tuple[str, ...]
    state: str | None
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    prompt: frozenset[str]
    max_age: int | None
    login_hint: str | None
    parameters: dict[str, str]        # as received: the hidden fields of the next page
    resources: tuple[str, ...] = ()   # RFC 8707 §2: the `resource` parameters (they may repeat)
    dpop_jkt: str | None = None       # RFC 9449 §10: the code is redeemable with this DPoP key only
    pushed: str | None = None         # RFC 9126: the pushed request they came from (its request_uri's hash)

    def hidden_fields(self) -> list[tuple[str, str]]:
        return [*self.parameters.items(), *(("resource", resource) for resource in self.resources)]

    def pushed_parameters(self) -> dict:
        """What a pushed request stores (storage.par): the parameters, `resource` as a list."""
        return {**self.parameters, **({"resource": list(self.resources)} if self.resources else {})}


def par_required(settings, client: RegisteredClient) -> bool:
    """RFC 9126 §4, §5, §6: the server's policy, the client's registration, or FAPI 2.0 (Security
    Profile §5.3.2.2) say every authorization request must be pushed."""
    return settings.par["required"] or client.require_pushed_authorization_requests or fapi2(settings, client)


# --- the endpoint -------------------------------------------------------------------------------

@bp.route(ENDPOINT, methods=["GET", "POST"], provide_automatic_options=False)
def authorize() -> Response:
    if request.method == "HEAD":
        # Flask answers HEAD with the GET view, which would issue a code nobody sees.
        raise MethodNotAllowed(valid_methods=["GET", "POST"])
    form, resources, parse_error = _read_parameters()
    # The sign-in and consent forms name an action; a client's own POST (OIDC Core §3.1.2.1)
    # names none and is sent on as a GET. One the strict parser refuses is answered below, with
    # the error back to the client like a GET's.
    action = form.get("action") if request.method == "POST" else None
    if request.method == "POST" and action is None and parse_error is None:
        return _as_get(form, resources)
    if action is not None:
        web.check_csrf(form)
    client = _client(form)
    pushed = None
    if action is None and form.get("request_uri", "").startswith(pushed_requests.PREFIX):
        form, resources, pushed = _pushed(form, client, parse_error)
        parse_error = None
    elif action is not None:
        pushed = _carried_pushed(form, resources)
    redirect_uri = _verified_redirect_uri(form, client)
    try:
        if parse_error is not None:
            raise parse_error
        if not pushed and par_required(current.services().settings, client):
            raise invalid_request("A pushed authorization request is required: push the request (RFC 9126) "
                                  "and send its request_uri", reason="par_required")
        auth = validate(form, resources, client, redirect_uri, pushed=pushed)
    except OAuthError as exc:
        return _error_redirect(client, redirect_uri, _valid_state(form.get("state")), exc)
    if action is None:
        return _start(auth)
    if action == "signin":
        return _sign_in(auth, form)
    if action in ("allow", "deny"):
        return _decide(auth, allowed=action == "allow")
    raise web.PageError(400, "Bad request", "The form was not understood. Go back and try again.")


def _as_get(form: dict[str, str], resources: tuple[str, ...]) -> Response:
    """A client's POSTed authorization request, sent on as the same request by GET. A cross-site
    POST carries no SameSite=Lax cookie, so only the GET that follows sees the user's session
    (prompt=none, no second sign-in); the GET validates everything."""
    query = urlencode([*form.items(), *(("resource", resource) for resource in resources)])
    if len(query) > MAX_QUERY:
        raise web.PageError(413, "Request too large", "The authorization request is too large to be served. "
                                                      "The application must send shorter parameters.")
    response = Response(status=303)   # RFC 9110 §15.4.4: the browser follows with a GET
    response.headers.update(web.PAGE_HEADERS)
    response.headers["Location"] = f"{ENDPOINT}?{query}"
    return response


def _start(auth: AuthorizationRequest) -> Response:
    """A new authorization request: sign in when there is no session or the client asks for a
    fresh one (prompt=login, max_age), then consent or the code."""
    session = web.signed_in()
    if session is None or _login_required(auth, session[1]):
        if "none" in auth.prompt:
            return _error_redirect(auth.client, auth.redirect_uri, auth.state,
                                   OAuthError("login_required", "The user must sign in"))
        username = auth.login_hint or (session[0].username if session and "select_account" not in auth.prompt
                                       else "")
        return _signin_page(auth, username)
    account, auth_time = session
    return _consent_or_code(auth, account, auth_time)


def _login_required(auth: AuthorizationRequest, auth_time: int) -> bool:
    if auth.prompt & {"login", "select_account"}:
        return True
    # OIDC Core §3.1.2.1: re-authenticate when the sign-in is older than max_age; 0 means always.
    return auth.max_age is not None and (auth.max_age == 0 or int(time.time()) - auth_time > auth.max_age)


def _sign_in(auth: AuthorizationRequest, form: dict[str, str]) -> Response:
    """The sign-in form was posted. A successful sign-in satisfies prompt=login and max_age."""
    username, password = form.get("username", ""), form.get("password", "")
    if not username or not password:
        return _signin_page(auth, username, error="Enter your user name and password.")
    try:
        account = web.sign_in(username, password, current.client_address(), "authorize")
    except web.SignInError as exc:
        if exc.retry_after is None:
            return _signin_page(auth, username, error=str(exc))
        response = _signin_page(auth, username, error=str(exc), status=429)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    auth_time = int(time.time())
    response = _consent_or_code(auth, account, auth_time)
    web.start_session(response, account, auth_time)
    return response


def _consent_or_code(auth: AuthorizationRequest, account: Account, auth_time: int) -> Response:
    if _consent_needed(auth, account):
        if "none" in auth.prompt:
            return _error_redirect(auth.client, auth.redirect_uri, auth.state,
                                   OAuthError("consent_required", "The user has not approved the requested scopes"))
        return _consent_page(auth, account)
    return _issue_code(auth, account, auth_time)


def _consent_needed(auth: AuthorizationRequest, account: Account) -> bool:
    if "consent" in auth.prompt:      # OIDC Core §3.1.2.1: ask again, whatever was approved before
        return True
    if auth.client.first_party:
        return False
    return not set(auth.scopes) <= consents.granted(account.sub, auth.client.client_id)


def _decide(auth: AuthorizationRequest, allowed: bool) -> Response:
    """The consent form was posted: Deny → access_denied (RFC 6749 §4.1.2.1), Allow → the code."""
    if not allowed:
        return _error_redirect(auth.client, auth.redirect_uri, auth.state,
                               OAuthError("access_denied", "The user denied the request"))
    session = web.signed_in()
    if session is None:   # signed out or expired while the page was open
        return _signin_page(auth, auth.login_hint or "", notice="Your session ended. Sign in again to continue.")
    account, auth_time = session
    consents.grant(account.sub, auth.client.client_id, auth.scopes)
    return _issue_code(auth, account, auth_time)


def _issue_code(auth: AuthorizationRequest, account: Account, auth_time: int) -> Response:
    """RFC 6749 §4.1.2: the code, bound to everything the request said, back to the client."""
    settings = current.idp().services.settings
    if auth.pushed is not None and not pushed_requests.issue_code(auth.pushed):
        raise web.PageError(400, "Invalid request", "This authorization request was already answered "
                                                    "(invalid_request_uri). Go back to the application and start again.")
    code = codes.issue(client_id=auth.client.client_id, user_sub=account.sub, redirect_uri=auth.redirect_uri,
                       redirect_uri_sent="redirect_uri" in auth.parameters, scopes=auth.scopes, nonce=auth.nonce, code_challenge=auth.code_challenge,
                       code_challenge_method=auth.code_challenge_method, auth_time=auth_time,
                       lifetime=settings.validity["authorization_code_validity"], dpop_jkt=auth.dpop_jkt,
                       resources=auth.resources)
    current.idp().chain.emit("authorization_code_issued", {"client_id": auth.client.client_id, "user_sub": account.sub,
                                                    "scope": " ".join(auth.scopes),
                                                    "pkce": auth.code_challenge_method})
    return _redirect(auth.redirect_uri, {"code": code, "state": auth.state})


# --- reading and validating the request ----------------------------------------------------------

def _read_parameters() -> tuple[dict[str, str], tuple[str, ...], OAuthError | None]:
    """The parameters: the query of a GET or the form body of a POST (OIDC Core §3.1.2.1), parsed
    by the strict form parser. When it refuses them (a repeated parameter, a bad encoding), the
    names that occur once are read leniently instead, together with the error, so that the error
    can still go back to a verified redirect URI."""
    if request.method == "POST":
        if request.query_string:
            raise web.PageError(400, "Bad request", "Send the parameters in the form body, not in the URL.")
        try:
            check_media_type(request.headers.get("Content-Type"))
            raw = read_body(request.stream)
        except OAuthError as exc:
            raise web.PageError(exc.status, "Bad request", exc.description) from None
    else:
        raw = request.query_string
    try:
        form, lists = parse_form_lists(raw, ("resource",))
        return form, lists.get("resource", ()), None
    except OAuthError as exc:
        return _single_parameters(raw), (), exc


def _single_parameters(raw: bytes) -> dict[str, str]:
    try:
        pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True, errors="replace",
                          max_num_fields=MAX_PARAMETERS)
    except ValueError:
        return {}
    counts = Counter(name for name, _ in pairs)
    return {name: value for name, value in pairs if counts[name] == 1 and value}


def _client(form: dict[str, str]) -> RegisteredClient:
    client_id = form.get("client_id")
    if client_id is None:
        raise web.PageError(400, "Invalid request", "The request does not say which application it is for "
                                                    "(the client_id parameter is missing).")
    client = clients.get(client_id)
    if client is None:
        raise web.PageError(400, "Unknown application",
                            "The application that sent you here is not registered with this server.")
    return client


def _pushed(form: dict[str, str], client: RegisteredClient,
            parse_error: OAuthError | None) -> tuple[dict[str, str], tuple[str, ...], str]:
    """RFC 9126 §4: the parameters pushed for the request_uri, used up now; the URL's others are
    ignored (its client_id named the client, which must be the one that pushed). No redirect URI
    is established yet, so a request_uri that cannot be used is a page (invalid_request_uri:
    OIDC Core §3.1.2.6, RFC 9101 §7)."""
    if parse_error is not None:
        raise web.PageError(400, "Invalid request", "The authorization request is malformed "
                                                    f"({parse_error.description}). Go back to the application "
                                                    "and try again.")
    try:
        pushed = pushed_requests.use(form["request_uri"], client.client_id)
    except pushed_requests.RequestUriError as exc:
        current.chain().emit("authorization_error", {"client_id": client.client_id, "error": "invalid_request_uri",
                                                     "reason": f"request_uri_{exc.reason}"})
        raise web.PageError(400, "Invalid request",
                            "The authorization request is unknown, has expired or was already used "
                            "(invalid_request_uri). Go back to the application and start again.") from None
    resources = tuple(pushed.pop("resource", ()))
    return pushed, resources, pushed_requests.request_uri_hash(form["request_uri"])


def _carried_pushed(form: dict[str, str], resources: tuple[str, ...]) -> str | None:
    """The pushed request a posted page carries the parameters of, as they were pushed, or None."""
    match = re.fullmatch(r"([0-9]{1,12})\.([0-9a-f]{64})\.([A-Za-z0-9_-]{43})", form.get(PUSHED_FIELD, ""))
    if match is None or int(match[1]) < time.time():
        return None
    parameters = {name: form[name] for name in AUTHORIZATION_PARAMETERS if name in form}
    if not hmac.compare_digest(match[3], _pushed_tag(int(match[1]), match[2], parameters, resources)):
        return None
    return match[2]


def _pushed_mark(auth: AuthorizationRequest) -> str:
    assert auth.pushed is not None
    expires = int(time.time()) + PUSHED_PAGE_LIFETIME
    return f"{expires}.{auth.pushed}.{_pushed_tag(expires, auth.pushed, auth.parameters, auth.resources)}"


def _pushed_tag(expires: int, pushed: str, parameters: dict[str, str], resources: tuple[str, ...]) -> str:
    # Bound to this browser (its CSRF token) and to the keystore's key: no secret to distribute
    # between nodes, and HKDF's label keeps this use apart from any other (like DPoP nonces).
    der = current.services().keystore().private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"pushed-authorization-request").derive(der)
    message = json.dumps([web.csrf_token(), expires, pushed, sorted(parameters.items()),
                          list(dict.fromkeys(resources))], separators=(",", ":"))
    tag = hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(tag).rstrip(b"=").decode("ascii")


# What a person is told when the redirect URI cannot be verified (by the reason of the OAuthError).
_REDIRECT_URI_PAGES = {
    "redirect_uri_missing": "The request has no redirect_uri, and the application has not registered exactly one. "
                            "The application must send its redirect URI.",
    "redirect_uri_unregistered": "The redirect_uri is not registered for this application, so you are not sent "
                                 "back to it. Tell the application's developers.",
    "redirect_uri_malformed": "The application's redirect URI is not a valid absolute URI without a fragment.",
}


def _verified_redirect_uri(form: dict[str, str], client: RegisteredClient) -> str:
    try:
        return redirect_uri(form, client)
    except OAuthError as exc:
        raise web.PageError(400, "Invalid redirect URI", _REDIRECT_URI_PAGES[exc.reason]) from None


def redirect_uri(form: dict[str, str], client: RegisteredClient) -> str:
    """RFC 6749 §3.1.2.3: the sent redirect_uri must equal a registered one (simple string
    comparison, but for the port of a loopback URI); it may be omitted only when exactly one is
    registered. A failure is invalid_request (RFC 9126 §2.3: the default where RFC 6749 §4.1.2.1
    forbids the redirect and so defines no code); the authorization endpoint shows it as a page."""
    sent = form.get("redirect_uri")
    if sent is None:
        if len(client.redirect_uris) != 1:
            raise invalid_request("The redirect_uri parameter is missing and the client has not registered "
                                  "exactly one redirect URI", reason="redirect_uri_missing")
        uri = client.redirect_uris[0]
    elif sent in client.redirect_uris or any(_same_loopback_uri(sent, uri) for uri in client.redirect_uris):
        uri = sent   # recorded as sent: the token request must send this same value
    else:
        raise invalid_request("The redirect_uri is not registered for the client", reason="redirect_uri_unregistered")
    if not _well_formed_redirect_uri(uri):
        raise invalid_request("The redirect URI is not an absolute URI without a fragment",
                              reason="redirect_uri_malformed")
    return uri


def authorization_request(form: dict[str, str], resources: tuple[str, ...],
                          client: RegisteredClient) -> AuthorizationRequest:
    """Every rule of an authorization request of a known client, redirect URI included: what the
    pushed authorization request endpoint checks (RFC 9126 §2.1)."""
    return validate(form, resources, client, redirect_uri(form, client))


def _same_loopback_uri(sent: str, registered: str) -> bool:
    """RFC 8252 §7.3, RFC 9700 §4.1.1: a native app's http loopback redirect URI matches whatever
    its port, which the app picks when it runs; all else compares exactly. Not for `localhost`
    (RFC 8252 §8.3: a name can resolve elsewhere)."""
    ours, theirs = _LOOPBACK_URI.fullmatch(registered), _LOOPBACK_URI.fullmatch(sent)
    if ours is None or theirs is None or not 0 < int(theirs["port"] or "80") <= 65535:
        return False
    return (ours["origin"], ours["rest"]) == (theirs["origin"], theirs["rest"])


def _well_formed_redirect_uri(uri: str) -> bool:
    # RFC 6749 §3.1.2: an absolute URI without a fragment; never a scheme that runs code.
    if len(uri) > MAX_REDIRECT_URI or not _URI_CHARS.fullmatch(uri) or "#" in uri:
        return False
    try:
        parts = urlsplit(uri)
    except ValueError:
        return False
    scheme = parts.scheme.lower()
    if not scheme or scheme in _UNSAFE_SCHEMES:
        return False
    return bool(parts.hostname) if scheme in ("http", "https") else bool(parts.path or parts.netloc)


def _valid_state(state: str | None) -> str | None:
    """The state, when it can be sent back as it is."""
    return state if state is not None and len(state) <= MAX_STATE and _VSCHAR.fullmatch(state) else None


def validate(form: dict[str, str], resources: tuple[str, ...], client: RegisteredClient,
             redirect_uri: str, *, pushed: str | None = None) -> AuthorizationRequest:
    """Every rule after the client and redirect URI are known; each failure is an OAuthError,
    sent back to the redirect URI (or, at the pushed authorization request endpoint, answered
    as JSON)."""
    for name, error in NOT_SUPPORTED:
        if name in form:
            raise OAuthError(error, f"The {name} parameter is not supported")
    response_type = form.get("response_type")
    if response_type is None:
        raise invalid_request("The response_type parameter is missing")
    if response_type != "code":
        raise OAuthError("unsupported_response_type", "Only response_type=code is supported")
    if "authorization_code" not in client.grant_types:
        raise unauthorized_client("The client is not registered for the authorization code grant")
    if form.get("response_mode", "query") != "query":
        raise invalid_request("Only response_mode=query is supported")
    state = form.get("state")
    if state is not None and _valid_state(state) is None:
        raise invalid_request(f"The state parameter must be at most {MAX_STATE} printable ASCII characters")
    nonce = form.get("nonce")
    # Stored with the code and copied into the ID token: no control characters (PostgreSQL
    # refuses NUL in text).
    if nonce is not None and (len(nonce) > MAX_NONCE or any(ord(c) < 0x20 or ord(c) == 0x7f for c in nonce)):
        raise invalid_request(f"The nonce parameter must be at most {MAX_NONCE} characters, none of them control characters")
    scopes = _scopes(form.get("scope"), client)
    code_challenge, code_challenge_method = _pkce(form, client)
    max_age = form.get("max_age")
    if max_age is not None and not _MAX_AGE.fullmatch(max_age):
        raise invalid_request("The max_age parameter must be a number of seconds")
    login_hint = form.get("login_hint")
    dpop_jkt = form.get("dpop_jkt")
    if dpop_jkt is not None and not thumbprint_format_ok(dpop_jkt):
        raise invalid_request("The dpop_jkt parameter must be a JWK SHA-256 thumbprint (RFC 7638)")
    resources = tuple(dict.fromkeys(resources))
    check_resources(resources)
    if any(resource not in client.resources for resource in resources):
        raise invalid_target("A requested resource is not registered for the client")  # RFC 8707 §2
    return AuthorizationRequest(
        client=client,
        redirect_uri=redirect_uri,
        scopes=scopes,
        state=state,
        nonce=nonce,
        code_challenge=code_challenge,
        code_challenge_method=code_challenge_method,
        prompt=_prompt(form.get("prompt")),
        max_age=int(max_age) if max_age is not None else None,
        login_hint=login_hint if login_hint and len(login_hint) <= MAX_LOGIN_HINT else None,
        parameters={name: form[name] for name in AUTHORIZATION_PARAMETERS if name in form},
        resources=resources,
        dpop_jkt=dpop_jkt,
        pushed=pushed,
    )


def _scopes(scope: str | None, client: RegisteredClient) -> tuple[str, ...]:
    # RFC 6749 §3.3: no default scope here; the request fails instead.
    if scope is None:
        raise invalid_scope("The scope parameter is missing")
    if not SCOPE.fullmatch(scope):
        raise invalid_scope("The scope parameter is malformed")
    scopes = tuple(dict.fromkeys(scope.split(" ")))
    if not set(scopes) <= set(client.scopes):
        raise invalid_scope("A requested scope is not registered for the client")
    return scopes


def _pkce(form: dict[str, str], client: RegisteredClient) -> tuple[str | None, str | None]:
    """RFC 7636 §4.3 and §4.4.1. S256 only, unless [oauth.pkce] allow_plain (never under FAPI 2.0)."""
    settings = current.idp().services.settings
    challenge, method = form.get("code_challenge"), form.get("code_challenge_method")
    strict = fapi2(settings, client)   # FAPI 2.0 Security Profile §5.3.2.2: PKCE with S256, always
    if challenge is None:
        if method is not None:
            raise invalid_request("code_challenge_method was sent without code_challenge")
        # Public clients always need PKCE (RFC 9700 §2.1.1); [oauth.pkce] mandatory extends it to all.
        if client.auth_method == "none" or settings.pkce["mandatory"] or strict:
            raise invalid_request("PKCE is required: send code_challenge with code_challenge_method=S256")
        return None, None
    if not _CODE_CHALLENGE.fullmatch(challenge):
        raise invalid_request("The code_challenge must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~")
    method = method or "plain"   # RFC 7636 §4.3: plain when the method is absent
    if method == "S256" or (method == "plain" and settings.pkce["allow_plain"] and not strict):
        return challenge, method
    raise invalid_request("The code_challenge_method must be S256")


def _prompt(prompt: str | None) -> frozenset[str]:
    if prompt is None:
        return frozenset()
    values = prompt.split(" ")
    if not set(values) <= PROMPTS:
        raise invalid_request("The prompt parameter has an unsupported value")
    if "none" in values and len(set(values)) > 1:
        raise invalid_request("prompt=none cannot be combined with other values")   # OIDC Core §3.1.2.1
    return frozenset(values)


# --- responses -----------------------------------------------------------------------------------

def _redirect(redirect_uri: str, params: dict[str, str | None]) -> Response:
    """A redirect to the client. RFC 6749 §3.1.2: the registered URI's query is kept; RFC 9207:
    `iss` names this server. After a form POST, 303 makes the browser follow with a GET."""
    values = {name: value for name, value in params.items() if value is not None}
    values["iss"] = current.idp().services.settings.issuer
    separator = "&" if urlsplit(redirect_uri).query else ("" if redirect_uri.endswith("?") else "?")
    response = Response(status=303 if request.method == "POST" else 302)
    response.headers.update(web.PAGE_HEADERS)
    response.headers["Location"] = redirect_uri + separator + urlencode(values)
    return response


def _error_redirect(client: RegisteredClient, redirect_uri: str, state: str | None, exc: OAuthError) -> Response:
    """RFC 6749 §4.1.2.1: the error back to the verified redirect URI."""
    current.idp().chain.emit("authorization_error", {"client_id": client.client_id, "error": exc.error,
                                              "reason": exc.reason})
    return _redirect(redirect_uri, {"error": exc.error, "error_description": exc.description, "state": state})


def _client_name(client: RegisteredClient) -> str:
    return client.client_name or client.client_id


def _hidden_fields(auth: AuthorizationRequest) -> list[tuple[str, str]]:
    """What the next page posts back: the parameters, and for a pushed request its mark."""
    return [*auth.hidden_fields(), *([(PUSHED_FIELD, _pushed_mark(auth))] if auth.pushed is not None else [])]


def _signin_page(auth: AuthorizationRequest, username: str, *, error: str | None = None,
                 notice: str | None = None, status: int = 200) -> Response:
    return web.render_page("signin.html", status, title="Sign in", action=ENDPOINT, hidden=_hidden_fields(auth),
                           username=username, client_name=_client_name(auth.client), error=error, notice=notice)


def _consent_page(auth: AuthorizationRequest, account: Account) -> Response:
    target = urlsplit(auth.redirect_uri)
    return web.render_page(
        "consent.html", title="Allow access", action=ENDPOINT, hidden=_hidden_fields(auth), account=account,
        client_name=_client_name(auth.client), client_description=auth.client.description,
        scopes=[(scope, SCOPE_DESCRIPTIONS.get(scope)) for scope in auth.scopes],
        destination=f"{target.scheme}://{target.netloc}" if target.netloc else f"{target.scheme}:")


# --- signing out ---------------------------------------------------------------------------------

@bp.route("/oauth2/logout", methods=["GET", "POST"], provide_automatic_options=False)
def logout() -> Response:
    """GET asks, POST (CSRF-checked) ends the browser's session."""
    if request.method == "POST":
        web.check_csrf(web.read_form())
        response = web.render_page("logout.html", title="Signed out", signed_out=True)
        web.end_session(response)
        return response
    session = web.signed_in()
    return web.render_page("logout.html", title="Sign out", account=session[0] if session else None)

"""Build the chain from deployment.toml and run a token request through it.

Names in `[[event_listener]] name` resolve to a handler class by, in this order: the WSO2 Java
class name of a built-in handler, `module.Class` or `handlers.module.Class` for a class in a
module under handlers/, or `module` when that module defines exactly one handler class.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import re
from dataclasses import dataclass, field, replace
from typing import Any

from handlers.base import STAGES, ClientAuthenticator, GrantHandler, Handler, Listener, PropertyError, TokenIssuer
from core import config
from core.dpop import claimed_client_id
from core.errors import (OAuthError, invalid_client, invalid_dpop_proof, invalid_request, invalid_target, rate_limited,
                         unsupported_grant_type)
from core.profile import fapi2
from core.request import AuthAttempt, AuthenticatedClient, TokenRequest, check_resources

log = logging.getLogger("handlers.chain")

# Built-in handlers run with their defaults even when deployment.toml does not name them.
BUILTIN_MODULES = ("private_key_jwt", "client_secret", "client_credentials", "token_issuer", "audit_log", "failure_log",
                   "public_client", "authorization_code", "refresh_token", "tls_client_auth", "client_activity",
                   "metrics")
FAPI2_METHODS = ("private_key_jwt", "tls_client_auth", "self_signed_tls_client_auth")
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _handler_classes(module) -> list[type[Handler]]:
    return [obj for _, obj in inspect.getmembers(module, inspect.isclass)
            if issubclass(obj, Handler) and obj.__module__ == module.__name__
            and getattr(obj, "stage", None) in STAGES]


def _import(module_name: str, fail) -> Any:
    try:
        return importlib.import_module(f"handlers.{module_name}")
    except ModuleNotFoundError as exc:
        if exc.name in (f"handlers.{module_name}",):
            raise fail(f"no module handlers/{module_name}.py") from None
        raise fail(f"handlers/{module_name}.py cannot be imported: missing module {exc.name}") from None
    except Exception as exc:  # a broken handler module must stop start-up with one line
        line = getattr(exc, "lineno", None)
        where = f" at line {line}" if line else ""
        raise fail(f"handlers/{module_name}.py cannot be imported: {exc.__class__.__name__}{where}") from None


def _builtin_classes() -> list[type[Handler]]:
    classes: list[type[Handler]] = []
    for name in BUILTIN_MODULES:
        classes += _handler_classes(importlib.import_module(f"handlers.{name}"))
    return classes


def resolve(name: str, fail) -> type[Handler]:
    """The handler class an [[event_listener]] name refers to."""
    for cls in _builtin_classes():
        if cls.wso2_name == name:
            return cls
    parts = name.split(".")
    if parts[0] == "handlers":
        parts = parts[1:]
    if not parts or len(parts) > 2 or not all(_MODULE.fullmatch(p) for p in parts):
        raise fail("does not name a built-in handler or a module in handlers/")
    if parts[0] in ("base", "chain"):
        raise fail(f"handlers/{parts[0]}.py is the chain itself, not a handler")
    module = _import(parts[0], fail)
    classes = _handler_classes(module)
    if len(parts) == 2:
        for cls in classes:
            if cls.__name__ == parts[1]:
                return cls
        raise fail(f"handlers/{parts[0]}.py has no handler class {parts[1]}")
    if len(classes) != 1:
        raise fail(f"handlers/{parts[0]}.py defines {len(classes)} handler classes; name one as module.Class")
    return classes[0]


def _properties(cls: type[Handler], entry: config.ListenerEntry | None, settings: config.Settings) -> dict[str, Any]:
    values = {key: prop.default for key, prop in cls.properties.items()}
    if entry is None:
        return values
    for key, located in entry.properties.items():
        if key not in cls.properties:
            known = ", ".join(sorted(cls.properties)) or "none"
            raise settings.error(located.key_path, f"unknown property of {cls.__name__} (known: {known})")
        prop = cls.properties[key]
        try:
            values[key] = config.coerce(located.value, prop.kind, "the value")
        except ValueError as exc:
            raise settings.error(located.key_path, str(exc)) from None
        if prop.choices is not None and (not values[key] or any(v not in prop.choices for v in values[key])):
            raise settings.error(located.key_path, "each value must be one of " + ", ".join(prop.choices))
        if prop.minimum is not None and values[key] < prop.minimum:
            raise settings.error(located.key_path, f"must be at least {prop.minimum}")
    return values


@dataclass
class Chain:
    services: Any = None
    authenticators: list[ClientAuthenticator] = field(default_factory=list)
    grants: dict[str, GrantHandler] = field(default_factory=dict)
    issuer: TokenIssuer | None = None
    listeners: list[Listener] = field(default_factory=list)

    # --- the token request ------------------------------------------------------------

    def token(self, request: TokenRequest) -> tuple[dict[str, Any], dict[str, str]]:
        """The token response's body and headers."""
        grant_type = request.form.get("grant_type")
        if not grant_type:
            raise invalid_request("The grant_type parameter is missing")
        handler = self.grants.get(grant_type)
        # Checked before authentication, so that a request that cannot succeed never uses up
        # the jti of a valid client assertion: the grant type, the resources' form, the DPoP
        # proof and its nonce.
        if handler is None:
            raise unsupported_grant_type("This grant type is not supported")
        check_resources(request.resources)
        dpop = self.services.dpop
        proof = None
        if "dpop" in request.headers:
            proof = dpop.verify(request.headers["dpop"], "POST", request.endpoint_url)
            # The nonce of the server, or of the client the request names (RFC 9449 §8).
            wanted = not dpop.nonce_valid(proof) and dpop.nonce_wanted_by(
                claimed_client_id(request.form, request.headers))
            dpop.check_nonce(proof, None, wanted=wanted)
        client = self.authenticate(request)
        registered = client.client
        # RFC 9449 §8.2: every answer to a proof carries the current nonce.
        headers = {"DPoP-Nonce": dpop.current_nonce()} if proof else {}
        try:
            if registered.tls_client_certificate_bound_access_tokens and request.client_certificate is None:
                # RFC 8705 §3: the client declared it uses certificate-bound tokens (as RFC 9449
                # §5.2 has it for DPoP): no bearer token instead.
                raise invalid_request("The client must present a TLS client certificate (mutual TLS)",
                                      reason="certificate_required")
            if proof is not None:
                dpop.check_nonce(proof, registered)
                request = replace(request, dpop=proof)
            elif registered.dpop_bound_access_tokens:  # RFC 9449 §5.2
                raise invalid_dpop_proof("The client must send a DPoP proof", reason="dpop_required")
            elif fapi2(self.services.settings, registered) and not (
                    registered.tls_client_certificate_bound_access_tokens and request.client_certificate):
                # FAPI 2.0 Security Profile §5.3.2.1: only sender-constrained access tokens.
                raise invalid_dpop_proof("FAPI 2.0: access tokens are sender-constrained; send a DPoP proof "
                                         "(or use a certificate-bound mutual-TLS client)", reason="sender_constrained")
            if any(resource not in registered.resources for resource in request.resources):
                raise invalid_target("A requested resource is not registered for the client")  # RFC 8707 §2
            grant = handler.handle(request, client)
            if proof is not None:
                # Once the grant is known to be good: a public client "authenticates" by its id
                # alone, and a request from anyone must not write a row.
                dpop.record(proof)
            assert self.issuer is not None
            response = self.issuer.issue(request, client, grant)
            handler.after_issue(request, client, grant)  # checks that must follow the issue
        except OAuthError as exc:
            exc.headers.update(headers)
            self.emit("token_error", {"request_id": request.request_id, "client_id": client.client.client_id,
                                      "grant_type": grant_type, "error": exc.error, "reason": exc.reason})
            raise
        certificate_bound = registered.tls_client_certificate_bound_access_tokens  # the issuer bound it (RFC 8705 §3)
        self.emit("token_issued", {"request_id": request.request_id, "client_id": client.client.client_id,
                                   "grant_type": grant_type, "scope": response.get("scope", ""),
                                   "token_type": response.get("token_type"),
                                   "format": registered.access_token_format or self.services.access_tokens.default_format,
                                   "binding": "+".join(b for b, on in (("dpop", proof is not None),
                                                                        ("mtls", certificate_bound)) if on) or "bearer"})
        return response, headers

    def authenticate(self, request: TokenRequest) -> AuthenticatedClient:
        """Exactly one authentication method per request (RFC 6749 §2.3).

        Failure budgets slow attackers, never the client that holds the credential: a request
        over a budget (ClientAuthenticator.claim) is still checked and served when its
        credential verifies; only a failure is answered 429 instead of 401."""
        attempt = AuthAttempt(remote_addr=request.remote_addr)
        try:
            if len(request.credential_kinds()) > 1:
                raise invalid_request("More than one client authentication method was used",
                                      reason="multiple_methods")
            able = [a for a in self.authenticators if a.can_handle(request)]
            if not able:
                raise invalid_client("Client authentication is required", reason="no_credentials")
            if len(able) > 1:  # two enabled handlers claim the same credentials
                raise invalid_request("More than one client authentication method applies",
                                      reason="multiple_methods")
            attempt.method = able[0].methods[0] if len(able[0].methods) == 1 else ""
            result = able[0].authenticate(request, attempt)
            if result.method not in FAPI2_METHODS and fapi2(self.services.settings, result.client):
                # FAPI 2.0 Security Profile §5.3.2.1: private_key_jwt or mutual TLS only.
                raise invalid_client("FAPI 2.0: the client must authenticate with private_key_jwt or mutual TLS",
                                     reason="method_fapi2")
        except OAuthError as exc:
            if exc.status == 401:  # failed authentications count; malformed requests do not
                exc = self._count_failure(attempt, exc)
            self._audit(request, attempt, "failure", exc.reason, exc.detail)
            raise exc from None
        self._audit(request, attempt, "success", None)
        return result

    def _count_failure(self, attempt: AuthAttempt, exc: OAuthError) -> OAuthError:
        """The answer to a failed authentication: 401, or 429 beyond a failure budget. Failures
        count against the source address and, for a registered client, against the client id
        from that address and the client id as a whole (the last one a signal: it makes
        failures cheap, it never refuses a credential that verifies)."""
        # The 429 keeps the failure's own reason (and detail) for the audit log.
        detail = f"{exc.reason}: {exc.detail}" if exc.detail else exc.reason
        if attempt.limited is not None:  # already over: not counted again, nothing written
            return rate_limited(attempt.limited, detail=detail)
        client_id = attempt.client_id if attempt.client_known else None
        retry = self.services.limiter.client_failed(attempt.remote_addr, client_id)
        return exc if retry is None else rate_limited(retry, detail=detail)

    def _audit(self, request: TokenRequest, attempt: AuthAttempt, outcome: str, reason: str | None,
               detail: str | None = None) -> None:
        data = {"request_id": request.request_id, "client_id": attempt.client_id, "client_known": attempt.client_known,
                "method": attempt.method or None, "alg": attempt.alg, "kid": attempt.kid, "outcome": outcome,
                "reason": reason, "remote_addr": request.remote_addr}
        if detail:
            data["detail"] = detail
        if attempt.assertion is not None:
            data["assertion"] = attempt.assertion
        self.emit("client_authentication", data)

    def emit(self, event: str, data: dict[str, Any]) -> None:
        for listener in self.listeners:
            try:
                listener.on_event(event, data)
            except Exception:  # listeners observe; they never change the outcome
                log.exception("listener %s failed on %s", type(listener).__name__, event)

    # --- discovery --------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        methods: list[str] = []
        extra: dict[str, Any] = {}
        for a in self.authenticators:
            methods += [m for m in a.methods if m not in methods]
            extra.update(a.metadata())
        if self.services.settings.profile == "fapi2":
            methods = [m for m in methods if m in FAPI2_METHODS]
        return {"grant_types_supported": sorted(self.grants),
                "token_endpoint_auth_methods_supported": methods, **extra}


def build(settings: config.Settings, services) -> Chain:
    """Instantiate and order the handlers; every mistake is a ConfigError naming the line."""
    chosen: dict[type[Handler], config.ListenerEntry | None] = {cls: None for cls in _builtin_classes()}
    disabled: set[type[Handler]] = set()
    named: dict[type[Handler], str] = {}
    for entry in settings.listeners:
        cls = resolve(entry.name, lambda msg, e=entry: settings.error(e.key_path + ("name",), msg))
        if cls in named:
            raise settings.error(entry.key_path + ("name",),
                                 f"the same handler is already configured by id {named[cls]}")
        named[cls] = entry.id
        if not entry.enable:
            disabled.add(cls)
        chosen[cls] = entry

    instances: list[Handler] = []
    for cls, entry in chosen.items():
        if cls in disabled:
            continue
        where = entry.key_path + ("name",) if entry else ("event_listener",)
        if issubclass(cls, GrantHandler) and not isinstance(getattr(cls, "grant_type", None), str):
            raise settings.error(where, f"{cls.__name__} declares no grant_type")
        if issubclass(cls, ClientAuthenticator) and not cls.methods:
            raise settings.error(where, f"{cls.__name__} declares no authentication methods")
        props = _properties(cls, entry, settings)
        try:
            handler = cls(services, props)
        except PropertyError as exc:
            located = entry.properties.get(exc.key) if entry else None
            raise settings.error(located.key_path if located else where, str(exc)) from None
        except Exception as exc:  # a handler refusing its configuration stops start-up in one line
            raise settings.error(where, f"{cls.__name__} could not be created ({exc.__class__.__name__}: {exc})") from None
        if entry is not None and entry.order is not None:
            handler.order = entry.order
        instances.append(handler)
    instances.sort(key=lambda h: h.order)

    chain = Chain(services)
    for handler in instances:
        if isinstance(handler, ClientAuthenticator):
            chain.authenticators.append(handler)
        elif isinstance(handler, GrantHandler):
            if handler.grant_type in chain.grants:
                raise settings.error(_where(chosen, handler),
                                     f"grant type {handler.grant_type} already has a handler")
            chain.grants[handler.grant_type] = handler
        elif isinstance(handler, TokenIssuer):
            if chain.issuer is not None:
                raise settings.error(_where(chosen, handler), "only one token issuer may be enabled")
            chain.issuer = handler
        elif isinstance(handler, Listener):
            chain.listeners.append(handler)
    if chain.issuer is None:
        raise config.ConfigError(f"{settings.path.name}: event_listener: no token issuer is enabled")
    if not chain.authenticators:
        raise config.ConfigError(f"{settings.path.name}: event_listener: no client authenticator is enabled")
    return chain


def _where(chosen: dict, handler: Handler) -> tuple:
    entry = chosen.get(type(handler))
    return entry.key_path + ("name",) if entry else ("event_listener",)

"""private_key_jwt client authentication (RFC 7523 §2.2 and §3, OpenID Connect Core §9).

The order of the checks matters: strict parse → client → algorithm → key → signature → claims
→ replay. The jti is recorded last, so a request that fails any other check (a forged
signature above all) never uses up a legitimate client's jti.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from types import MappingProxyType
from typing import Any, Mapping

from cryptography import x509
from OpenSSL import crypto

from handlers.base import (CLIENT_ID, AuthAttempt, AuthenticatedClient, ClientAuthenticator, OAuthError, Property,
                           PropertyError, RegisteredClient, TokenRequest, fapi2, invalid_client, invalid_request)
from keystore.certificates import EXPIRED, NOT_YET_VALID, Validity, certificate_key, x5c_validity
from keystore.jwk import SIGNING_ALGORITHMS, InvalidKey, PublicKey, parse_jwks
from keystore.jws import MalformedJWS, UnsuitableKey, parse_compact_jws, verifier
from keystore.jwks_uri import JWKSFetchError
from storage import clients

log = logging.getLogger("handlers.private_key_jwt")

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# The typ values a client assertion may carry (RFC 7515 §4.1.9: compared case-insensitively,
# "application/" may be omitted; draft-ietf-oauth-rfc7523bis registers client-authentication+jwt).
ACCEPTED_TYP = {"jwt", "client-authentication+jwt"}
EXPLICIT_TYP = "client-authentication+jwt"
# FAPI 2.0 Security Profile §5.4.1: the algorithms a client assertion may use under the profile.
FAPI2_ALGORITHMS = ("PS256", "ES256", "EdDSA", "Ed25519")
FAPI2_SKEW = 10  # §5.3.2.1: iat and nbf up to 10 s ahead accepted; beyond, refused
# kid and jti reach the database and the logs: bounded like a client id (handlers.base.CLIENT_ID).
_IDENTIFIER = CLIENT_ID
MAX_KEYS_TRIED = 3


class PrivateKeyJWTClientAuthenticator(ClientAuthenticator):
    methods = ("private_key_jwt",)
    default_order = 899
    wso2_name = "org.wso2.carbon.identity.oauth2.token.handler.clientauth.jwt.PrivateKeyJWTClientAuthenticator"
    properties = {
        "PreventTokenReuse": Property(bool, True, "refuse a jti already used by the client until its exp has passed"),
        "RejectBeforeInMinutes": Property(int, 300, "refuse assertions whose iat is older than this; 0 disables",
                                          minimum=0),
        "TokenEndpointAlias": Property(str, "", "another audience value accepted besides the issuer"),
        "MaxLifetimeInMinutes": Property(int, 60, "refuse assertions whose exp is further away than this",
                                         minimum=1),
        "AudiencePolicy": Property(("strict", "legacy"), "strict", "how aud is checked; clients may override"),
        "AllowSingleElementAudienceArray": Property(bool, False, "strict policy: accept [issuer] as well as issuer"),
        "SigningAlgorithms": Property(list, list(SIGNING_ALGORITHMS), "JWS algorithms accepted",
                                      choices=SIGNING_ALGORITHMS),
        "RequireExplicitTyp": Property(bool, False, "assertions must carry typ client-authentication+jwt "
                                                    "(RFC 7523bis explicit typing); clients may override"),
    }

    def __init__(self, services, props: dict[str, Any]) -> None:
        super().__init__(services, props)
        self.algorithms = tuple(props["SigningAlgorithms"])
        self.skew = services.settings.timestamp_skew
        if services.settings.profile == "fapi2":
            self._fapi2_properties(props)

    def _fapi2_properties(self, props: dict[str, Any]) -> None:
        """Under [oauth] profile = "fapi2" a property left at its default follows the profile; one
        set to contradict it stops start-up (FAPI 2.0 Security Profile §5.3.2.1, §5.4.1)."""
        defaults = {key: prop.default for key, prop in self.properties.items()}
        if props["SigningAlgorithms"] == defaults["SigningAlgorithms"]:
            self.algorithms = tuple(alg for alg in self.algorithms if alg in FAPI2_ALGORITHMS)
        elif any(alg not in FAPI2_ALGORITHMS for alg in self.algorithms):
            raise PropertyError("SigningAlgorithms", 'under [oauth] profile = "fapi2" only PS256, ES256 and EdDSA '
                                                     "are allowed (FAPI 2.0 §5.4.1)")
        for key, rule in (("AudiencePolicy", "must be strict: aud is the issuer, as one string"),
                          ("AllowSingleElementAudienceArray", "must be false: aud is the issuer, as one string"),
                          ("TokenEndpointAlias", "must be empty: aud is the issuer and nothing else")):
            if props[key] != defaults[key]:
                raise PropertyError(key, f'{rule} under [oauth] profile = "fapi2" (FAPI 2.0 §5.3.2.1)')

    def metadata(self) -> dict[str, Any]:
        return {"token_endpoint_auth_signing_alg_values_supported": list(self.algorithms)}

    def can_handle(self, request: TokenRequest) -> bool:
        return "client_assertion" in request.form or "client_assertion_type" in request.form

    # --- the checks ----------------------------------------------------------------------

    def authenticate(self, request: TokenRequest, attempt: AuthAttempt) -> AuthenticatedClient:
        attempt.method = "private_key_jwt"
        form = request.form
        # RFC 7521 §4.2: both parameters, the type exactly this URN.
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise invalid_request("client_assertion_type must be " + ASSERTION_TYPE, reason="assertion_type")
        if "client_assertion" not in form:
            raise invalid_request("The client_assertion parameter is missing", reason="assertion_missing")
        try:
            jws = parse_compact_jws(form["client_assertion"])
        except MalformedJWS as exc:
            raise invalid_client(f"The client assertion is malformed: {exc}", reason="malformed") from None
        header, claims = jws.header, jws.payload
        alg = header["alg"]
        attempt.alg = alg if isinstance(alg, str) and len(alg) <= 20 else None
        kid = header.get("kid")
        if kid is not None and not (isinstance(kid, str) and _IDENTIFIER.fullmatch(kid)):
            raise invalid_client("The kid header must be a non-empty string", reason="kid")
        attempt.kid = kid

        # RFC 7523 §3 items 1 and 2: iss and sub are both the client id.
        iss, sub = claims.get("iss"), claims.get("sub")
        self.claim(attempt, sub, "sub")
        if not isinstance(iss, str):
            raise invalid_client("The iss claim must be a string", reason="iss")
        if iss != sub:
            raise invalid_client("The iss claim must equal the sub claim", reason="iss")
        if "client_id" in form and form["client_id"] != sub:
            raise invalid_client("The client_id parameter does not match the client assertion", reason="client_id")
        client = clients.get(sub)
        if client is None:
            raise invalid_client("Unknown client", reason="unknown_client")
        attempt.client_known = True
        if client.auth_method != "private_key_jwt":
            raise invalid_client("The client is not registered for private_key_jwt", reason="wrong_method")

        fapi = fapi2(self.services.settings, client)
        # The client's own setting, stricter or looser, before the server's; FAPI 2.0 implies neither.
        explicit = self.props["RequireExplicitTyp"] if client.require_explicit_typ is None \
            else client.require_explicit_typ
        self._check_typ(header, explicit)
        self._check_alg(alg, client.signing_alg, fapi)
        self._check_signature(jws, alg, kid, client)
        exp_time = self._check_claims(claims, request, "fapi2" if fapi else client.audience_policy)

        # Replay last (RFC 7523 §3 item 7), keyed by (client id, jti), never by the token text.
        prevent = self.props["PreventTokenReuse"] if client.token_reuse is None else client.token_reuse == "prevent"
        if not self.services.replay.use(client.client_id, claims["jti"], exp_time, prevent):
            raise invalid_client("The client assertion has already been used (jti replay)", reason="replay")
        attempt.assertion = {"aud": self._audience_form(claims["aud"], request), "typ": header.get("typ"), "alg": alg,
                             "lifetime": int(claims["exp"] - claims.get("iat", time.time()))}
        return AuthenticatedClient(client, "private_key_jwt")

    def _audience_form(self, aud: Any, request: TokenRequest) -> str:
        """How an accepted assertion named this server, for the migration report."""
        if isinstance(aud, list):
            return "array"
        settings = self.services.settings
        if aud == settings.issuer:
            return "issuer"
        if aud in (settings.token_endpoint, request.endpoint_url):
            return "token_endpoint"
        return "alias" if aud == self.props["TokenEndpointAlias"] else "other"

    @staticmethod
    def _check_typ(header: dict, explicit: bool) -> None:
        typ = header.get("typ")
        if typ is None:
            if explicit:
                raise invalid_client("The typ header must be client-authentication+jwt", reason="typ")
            return
        if not isinstance(typ, str):
            raise invalid_client("The typ header must be a string", reason="typ")
        value = typ_value(typ)
        if explicit and value != EXPLICIT_TYP:
            raise invalid_client("The typ header must be client-authentication+jwt", reason="typ")
        if value not in ACCEPTED_TYP:
            raise invalid_client("The typ header must be JWT or client-authentication+jwt", reason="typ")

    def _check_alg(self, alg: Any, pinned: str | None, fapi: bool) -> None:
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise invalid_client("The signing algorithm is not accepted", reason="alg")
        if fapi and alg not in FAPI2_ALGORITHMS:  # a client of its own held to FAPI 2.0
            raise invalid_client("FAPI 2.0: the client assertion must be signed with PS256, ES256 or EdDSA",
                                 reason="alg_fapi2")
        # The client's registered token_endpoint_auth_signing_alg (RFC 7591 §2).
        if pinned and not (alg == pinned or {alg, pinned} == {"EdDSA", "Ed25519"}):
            raise invalid_client("The signing algorithm is not the one registered for the client", reason="alg_pinned")

    # --- keys and signature --------------------------------------------------------------

    def _check_signature(self, jws, alg: str, kid: str | None, client: RegisteredClient) -> None:
        keys, source = self._keys(client)
        candidates = self._select(keys, alg, kid, source)
        if not candidates and source == "jwks_uri" and kid is not None:
            # An unknown kid may mean the client rotated its keys: refetch (at most once per
            # refresh_interval per URI, whoever asks, so also over a failure budget).
            try:
                keys = self.services.jwks_fetcher.refresh(client.jwks_uri)
            except JWKSFetchError as exc:
                raise _keys_unavailable(exc.description) from None
            candidates = self._select(keys, alg, kid, source)
        if not candidates:
            raise invalid_client("No registered key of the client matches the kid and algorithm", reason="no_key")
        if source == "jwks":
            candidates = self._certified(candidates, client.jwks)
        for key in candidates[:MAX_KEYS_TRIED]:
            try:
                if verifier(key, alg).verify(jws.signing_input, jws.signature):
                    return
            except UnsuitableKey:
                continue
        raise invalid_client("The client assertion signature is invalid", reason="signature")

    @staticmethod
    def _select(keys: list[PublicKey], alg: str, kid: str | None, source: str) -> list[PublicKey]:
        # kid selects by exact match (RFC 7515 §4.1.4); a keystore certificate has no kid.
        if kid is not None and source != "keystore":
            keys = [k for k in keys if k.kid == kid]
        return [k for k in keys if k.fits(alg)]

    def _keys(self, client: RegisteredClient) -> tuple[list[PublicKey], str]:
        """The client's keys, in this order: inline JWKS, jwks_uri, keystore certificate by alias."""
        if client.jwks:
            try:
                return list(_jwks_keys(client.jwks)), "jwks"
            except InvalidKey:
                raise invalid_client("The client registered JWKS is not usable", reason="jwks") from None
        if client.jwks_uri:
            try:
                # Never a set fetched before the registration last changed (on any worker or node).
                # Fetches are throttled per URI, not per caller: a caller over a failure budget
                # may cause one, so that nobody can keep a client's rotated keys from being seen.
                return self.services.jwks_fetcher.keys(client.jwks_uri, not_before=client.updated_at), "jwks_uri"
            except JWKSFetchError as exc:
                raise _keys_unavailable(exc.description) from None
        cert = self.services.keystore().trusted_certificate(client.client_id)
        if cert is None:
            raise invalid_client("No certificate for the client in the keystore", reason="no_certificate")
        lapsed = self._lapsed(Validity.of(cert.to_cryptography()), "The client certificate in the keystore")
        if lapsed is not None:
            raise lapsed
        try:
            return [_certificate_key(crypto.dump_certificate(crypto.FILETYPE_ASN1, cert))], "keystore"
        except InvalidKey as exc:
            # Why the key is refused (or cannot even be loaded) is for the operator.
            raise invalid_client("The client certificate in the keystore is not usable", reason="certificate_key",
                                 detail=f"keystore certificate key: {exc}") from None

    def _certified(self, keys: list[PublicKey], jwks: str) -> list[PublicKey]:
        """The keys whose certificate (the x5c of a certificate uploaded for the client) is within
        its validity period now; keys registered without one pass."""
        validity = _jwks_certificates(jwks)
        usable, refusal = [], None
        for key in keys:
            period = validity.get(key.thumbprint)
            lapsed = self._lapsed(period, "The client's registered certificate") if period else None
            if lapsed is None:
                usable.append(key)
            else:
                refusal = refusal or lapsed
        if refusal is not None and not usable:
            raise refusal
        return usable

    def _lapsed(self, validity: Validity, holder: str) -> OAuthError | None:
        """The refusal of a certificate outside its validity period, or None: one rule for a
        keystore certificate and for one uploaded for the client."""
        lapse = validity.lapse(time.time(), self.skew)
        if lapse == EXPIRED:
            return invalid_client(f"{holder} has expired", reason="certificate_expired")
        if lapse == NOT_YET_VALID:
            return invalid_client(f"{holder} is not yet valid", reason="certificate_not_yet_valid")
        return None

    # --- claims --------------------------------------------------------------------------

    def _check_claims(self, claims: dict, request: TokenRequest, client_policy: str | None) -> int:
        """RFC 7523 §3; returns the time until which the jti must be remembered. `client_policy`
        "fapi2": the strict audience without its options, and 10 s of clock skew."""
        now = time.time()
        skew = min(self.skew, FAPI2_SKEW) if client_policy == "fapi2" else self.skew
        self._check_audience(claims.get("aud"), request, client_policy)

        exp = _number(claims, "exp", required=True)
        nbf = _number(claims, "nbf")
        iat = _number(claims, "iat")
        if exp < now - skew:  # RFC 7523 §3 item 4
            raise invalid_client("The client assertion has expired", reason="expired")
        if exp - now > self.props["MaxLifetimeInMinutes"] * 60 + skew:
            raise invalid_client("The client assertion lifetime is too long", reason="lifetime")
        if nbf is not None and nbf > now + skew:  # item 5
            raise invalid_client("The client assertion is not yet valid (nbf)", reason="nbf")
        if iat is not None:
            if iat > now + skew:  # item 6
                raise invalid_client("The client assertion iat is in the future", reason="iat_future")
            reject_before = self.props["RejectBeforeInMinutes"]
            if reject_before > 0 and iat < now - reject_before * 60 - skew:
                raise invalid_client("The client assertion was issued too long ago (iat)", reason="iat_stale")
            if iat > exp:
                raise invalid_client("The client assertion iat is after its exp", reason="iat_exp")
        if nbf is not None and nbf > exp:
            raise invalid_client("The client assertion nbf is after its exp", reason="nbf_exp")

        jti = claims.get("jti")  # item 7
        if not isinstance(jti, str) or not _IDENTIFIER.fullmatch(jti):
            raise invalid_client("The jti claim must be a string of 1 to 255 characters", reason="jti")
        # Remembered while the assertion could still be accepted: exp plus the skew.
        return math.ceil(exp) + skew

    def _check_audience(self, aud: Any, request: TokenRequest, client_policy: str | None) -> None:
        settings = self.services.settings
        fapi = client_policy == "fapi2"  # FAPI 2.0 §5.3.2.1: the issuer, one string, nothing else
        alias = "" if fapi else self.props["TokenEndpointAlias"]
        policy = "strict" if fapi else client_policy or self.props["AudiencePolicy"]
        if aud is None:
            raise invalid_client("The aud claim is missing or null", reason="aud")
        if policy == "strict":
            # OpenID Connect Core §9 (2025 errata), FAPI 2.0: aud is the issuer, as one string.
            if (isinstance(aud, list) and len(aud) == 1 and self.props["AllowSingleElementAudienceArray"]
                    and not fapi):
                aud = aud[0]
            if not isinstance(aud, str):
                raise invalid_client("The aud claim must be a single string (strict audience policy)", reason="aud")
            if aud != settings.issuer and not (alias and aud == alias):
                raise invalid_client("The aud claim must be the issuer identifier", reason="aud")
            return
        values = aud if isinstance(aud, list) else [aud]
        if not values or not all(isinstance(v, str) for v in values):
            raise invalid_client("The aud claim must be a string or an array of strings", reason="aud")
        accepted = {settings.issuer, settings.token_endpoint, request.endpoint_url}
        if alias:
            accepted.add(alias)
        if not any(v in accepted for v in values):
            raise invalid_client("The aud claim does not identify this server", reason="aud")
        log.info("legacy audience policy accepted aud for request %s", request.request_id)


def typ_value(typ: str) -> str:
    """A typ header as compared: case-insensitive, "application/" optional (RFC 7515 §4.1.9)."""
    value = typ.lower()
    return value[len("application/"):] if value.startswith("application/") else value


def _number(claims: dict, name: str, required: bool = False) -> float | None:
    """A NumericDate (RFC 7519 §2): a JSON number, finite, not a boolean. An optional claim may
    be absent; present, it is checked like a required one (`"iat": null` is not a date)."""
    if name not in claims:
        if required:
            raise invalid_client(f"The {name} claim is missing", reason=name)
        return None
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            isinstance(value, float) and not math.isfinite(value)):
        raise invalid_client(f"The {name} claim must be a number", reason=name)
    if abs(value) > 1e13:  # far beyond year 2286; also keeps huge integers away from float()
        raise invalid_client(f"The {name} claim is out of range", reason=name)
    return value


@functools.lru_cache(maxsize=1024)
def _jwks_keys(jwks: str) -> tuple[PublicKey, ...]:
    """Parsed once per distinct registered JWKS text; a changed registration is a new key."""
    return tuple(parse_jwks(jwks))


@functools.lru_cache(maxsize=1024)
def _jwks_certificates(jwks: str) -> Mapping[str, Validity]:
    """The certificates a registered JWKS carries, read once per distinct text; their validity is
    compared with the clock on every request."""
    return MappingProxyType(x5c_validity(jwks))


@functools.lru_cache(maxsize=1024)
def _certificate_key(der: bytes) -> PublicKey:
    return certificate_key(x509.load_der_x509_certificate(der))


def _keys_unavailable(detail: str) -> OAuthError:
    # Why a jwks_uri failed (connection refused, TLS, timeout…) describes the client's
    # infrastructure: the operator reads it in the audit log and the failure list, the caller not.
    return invalid_client("The client's keys could not be obtained", reason="jwks_uri", detail=detail)

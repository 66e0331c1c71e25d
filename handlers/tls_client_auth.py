"""Mutual-TLS client authentication (RFC 8705 §2): tls_client_auth and self_signed_tls_client_auth.

The certificate arrives with the request (TokenRequest.client_certificate, read in one place:
server.current.client_certificate) with its private key proven by the TLS handshake (ours, or a
trusted proxy's). Over our own TLS it chains to a CA in [server] client_ca_file or is listed in
client_self_signed_file (the handshake fails otherwise). What is left is which client it
identifies:

- tls_client_auth (§2.1, PKI): a CA in client_ca_file issued it (checked here again, whatever the
  TLS layer or a proxy accepted: a certificate listed for a self-signed client is a trust anchor
  of the handshake, and must not vouch for certificates of its own making), and the registered
  subject DN (tls_client_auth_subject_dn) equals its subject, or the one registered subject
  alternative name (tls_client_auth_san) is among its SANs of that kind.
- self_signed_tls_client_auth (§2.2): the certificate's public key is one of the keys the client
  registered (jwks or jwks_uri), compared by RFC 7638 thumbprint.

Either way the certificate must be within its validity period ([oauth] timestamp_skew for a
notBefore just ahead). The request names the client with `client_id` (§2: REQUIRED) and carries
no other credential. Every failure that could tell one client from another is the same
"Client authentication failed"; the audit log has the reason.
"""

from __future__ import annotations

import functools
import time
from typing import Any

from cryptography import x509

from handlers.base import AuthAttempt, AuthenticatedClient, ClientAuthenticator, RegisteredClient, TokenRequest, invalid_client
from keystore.certificates import (EXPIRED, NOT_YET_VALID, SAN_KINDS, Validity, certificate_key, issued_by_one_of,
                                   normalised_dn, normalised_san, read_certificates, san_entries, self_issued,
                                   subject_dn)
from keystore.jwk import InvalidKey, PublicKey, parse_jwks
from keystore.jwks_uri import JWKSFetchError
from storage import clients

FAILED = "Client authentication failed"


class TLSClientAuthenticator(ClientAuthenticator):
    methods = ("tls_client_auth", "self_signed_tls_client_auth")
    default_order = 950

    def __init__(self, services, props: dict[str, Any]) -> None:
        super().__init__(services, props)
        self.skew = services.settings.timestamp_skew
        server = services.settings.server
        self.enabled = server["client_certificates"] != "off"
        # The CAs of tls_client_auth (core.config checked the file at start-up).
        self.authorities = (read_certificates(str(services.settings.resolve(server["client_ca_file"])))
                            if self.enabled and server["client_ca_file"] else [])
        if not self.enabled:
            # Without client certificates no request can use these methods: discovery does not
            # offer them (handlers.chain lists the methods of each authenticator).
            self.methods = ()  # type: ignore[misc]

    def metadata(self) -> dict[str, Any]:
        # RFC 8705 §3.3. No mtls_endpoint_aliases (§5): the one listener asks every client for a
        # certificate and accepts connections without one, so the usual endpoints serve mutual TLS.
        return {"tls_client_certificate_bound_access_tokens": True} if self.enabled else {}

    def can_handle(self, request: TokenRequest) -> bool:
        # A certificate and a client_id, and no credential of another method (which would then be
        # that method's, the certificate serving only to bind tokens).
        return (request.client_certificate is not None and "client_id" in request.form
                and not request.credential_kinds())

    def authenticate(self, request: TokenRequest, attempt: AuthAttempt) -> AuthenticatedClient:
        assert request.client_certificate is not None
        attempt.method = "tls_client_auth"
        client_id = self.claim(attempt, request.form["client_id"])
        try:
            cert = _certificate(request.client_certificate)
        except ValueError:  # one OpenSSL took and cryptography cannot read
            raise invalid_client(FAILED, reason="certificate_malformed") from None
        # The certificate's own validity first: its answer says nothing about the client named.
        lapse = Validity.of(cert).lapse(time.time(), self.skew)
        if lapse == EXPIRED:
            raise invalid_client("The client certificate has expired", reason="certificate_expired")
        if lapse == NOT_YET_VALID:
            raise invalid_client("The client certificate is not yet valid", reason="certificate_not_yet_valid")
        client = clients.get(client_id)
        attempt.client_known = client is not None
        # One answer for an unknown client and one registered for another method: no enumeration.
        if client is None or client.auth_method not in self.methods:
            raise invalid_client(FAILED, reason="wrong_method" if client else "unknown_client")
        attempt.method = client.auth_method
        try:
            if client.auth_method == "tls_client_auth":
                self._check_pki(cert, client)
            else:
                self._check_self_signed(cert, client)
        except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType):
            # A name or extension cryptography cannot read (non-UTF-8 strings, two SAN extensions,
            # an X.400 name…): OpenSSL let it through the handshake; it identifies nobody.
            raise invalid_client(FAILED, reason="certificate_malformed") from None
        return AuthenticatedClient(client, client.auth_method)

    # --- §2.1: PKI ---------------------------------------------------------------------------

    def _check_pki(self, cert: x509.Certificate, client: RegisteredClient) -> None:
        if self_issued(cert):
            raise invalid_client(FAILED, reason="self_signed")
        if not issued_by_one_of(cert, self.authorities):
            raise invalid_client(FAILED, reason="issuer", detail="no CA in client_ca_file issued the certificate")
        if client.tls_client_auth_subject_dn:
            # Both sides in cryptography's RFC 4514 spelling (keystore.certificates.normalised_dn).
            try:
                matches = subject_dn(cert) == normalised_dn(client.tls_client_auth_subject_dn)
            except ValueError:
                raise invalid_client(FAILED, reason="subject_dn", detail="the DN cannot be compared") from None
            if not matches:
                raise invalid_client(FAILED, reason="subject_dn")
            return
        if client.tls_client_auth_san:
            kind, _, value = client.tls_client_auth_san.partition(":")
            try:
                wanted = f"{kind}:{normalised_san(kind, value)}" if kind in SAN_KINDS else None
                present = san_entries(cert)
            except ValueError:
                wanted = None
            if wanted is None or wanted not in present:
                raise invalid_client(FAILED, reason="subject_alt_name")
            return
        # §2.1.2: exactly one of them is registered; a registration without either matches nothing.
        raise invalid_client(FAILED, reason="no_tls_identity",
                             detail="the client has neither tls_client_auth_subject_dn nor tls_client_auth_san")

    # --- §2.2: self-signed -------------------------------------------------------------------

    def _check_self_signed(self, cert: x509.Certificate, client: RegisteredClient) -> None:
        try:
            thumbprint = certificate_key(cert).thumbprint
        except InvalidKey:
            raise invalid_client(FAILED, reason="certificate_key") from None
        if client.jwks:
            try:
                registered = _jwks_thumbprints(client.jwks)
            except InvalidKey:
                raise invalid_client(FAILED, reason="jwks", detail="the registered JWKS is not usable") from None
            if thumbprint not in registered:
                raise invalid_client(FAILED, reason="certificate_not_registered")
            return
        if client.jwks_uri:
            fetcher = self.services.jwks_fetcher
            try:
                keys = fetcher.keys(client.jwks_uri, not_before=client.updated_at)
                if thumbprint not in {key.thumbprint for key in keys}:
                    # The client may have added a certificate since: one refetch (throttled per URI).
                    keys = fetcher.refresh(client.jwks_uri)
            except JWKSFetchError as exc:
                raise invalid_client("The client's keys could not be obtained", reason="jwks_uri",
                                     detail=exc.description) from None
            if thumbprint not in {key.thumbprint for key in keys}:
                raise invalid_client(FAILED, reason="certificate_not_registered")
            return
        raise invalid_client(FAILED, reason="no_keys", detail="the client has neither jwks nor jwks_uri")


@functools.lru_cache(maxsize=1024)
def _certificate(der: bytes) -> x509.Certificate:
    """Parsed once per distinct certificate: a client presents the same one on every request."""
    return x509.load_der_x509_certificate(der)


@functools.lru_cache(maxsize=1024)
def _jwks_thumbprints(jwks: str) -> frozenset[str]:
    """The RFC 7638 thumbprints of a registered JWKS, once per distinct text."""
    keys: list[PublicKey] = parse_jwks(jwks)
    return frozenset(key.thumbprint for key in keys)

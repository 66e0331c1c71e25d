"""DPoP (RFC 9449) as the token endpoint and the protected resources apply it: the proof checked
by keystore.dpop, the server's nonces, the replay table, and the errors each failure gets.

At the token endpoint (handlers.chain) the proof is checked, nonce included, before the client
authenticates, so that a client asked for a nonce can retry with the same client assertion (its
jti is not yet used); the proof's own jti is recorded once the grant is found good, so that
requests from nobody write nothing.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from typing import Mapping
from urllib.parse import unquote

from core.errors import invalid_dpop_proof, use_dpop_nonce
from keystore.dpop import Nonces, Proof, ProofError, verify_proof
from storage import clients
from storage.clients import RegisteredClient
from storage.replay import ReplayStore


class DPoP:
    def __init__(self, settings: Mapping, replay: ReplayStore, nonce_secret: bytes) -> None:
        self.algorithms = tuple(settings["signing_algorithms"])
        self.lifetime = settings["proof_lifetime"]
        self.skew = settings["timestamp_skew"]
        self.require_nonce = settings["require_nonce"]
        self.replay = replay
        self.nonces = Nonces(nonce_secret, settings["nonce_lifetime"])

    def nonce_required(self, client: RegisteredClient | None) -> bool:
        return self.require_nonce or (client is not None and client.require_dpop_nonce)

    def nonce_wanted_by(self, client_id: str | None) -> bool:
        """Whether the client a request claims to come from (claimed_client_id) requires nonces.
        One read of its registration, for a proof without a valid nonce only: a client that uses
        the nonce every answer offers (RFC 9449 §8.2) spares it."""
        client = clients.get(client_id) if client_id else None
        return client is not None and client.require_dpop_nonce

    def current_nonce(self) -> str:
        return self.nonces.current(int(time.time()))

    def verify(self, header: str, method: str, url: str, *, access_token: str | None = None,
               error=invalid_dpop_proof) -> Proof:
        """The proof in a DPoP header, every check of RFC 9449 §4.3 but the nonce and the replay."""
        try:
            return verify_proof(header, method=method, url=url, algorithms=self.algorithms, now=int(time.time()),
                                lifetime=self.lifetime, skew=self.skew, access_token=access_token)
        except ProofError as exc:
            raise error(f"The DPoP proof was refused: {exc}", reason=f"dpop_{exc.check}") from None

    def nonce_valid(self, proof: Proof) -> bool:
        return self.nonces.valid(proof.nonce, int(time.time()))

    def check_nonce(self, proof: Proof, client: RegisteredClient | None, error=use_dpop_nonce,
                    wanted: bool = False) -> None:
        """RFC 9449 §8: a missing, stale or foreign nonce where one is required (by the server,
        the client, or `wanted`)."""
        if (wanted or self.nonce_required(client)) and not self.nonce_valid(proof):
            raise error(self.current_nonce())

    def record(self, proof: Proof, error=invalid_dpop_proof) -> None:
        """RFC 9449 §11.1: a proof is used once; its jti is kept as long as its iat is acceptable."""
        if not self.replay.use(proof.jkt, proof.jti, proof.iat + self.lifetime + self.skew, prevent_reuse=True):
            raise error("The DPoP proof was used before", reason="dpop_replay")


def claimed_client_id(form: Mapping[str, str], headers: Mapping[str, str]) -> str | None:
    """The client a token request says it comes from, before anything is verified: enough to
    decide whether its DPoP proof needs a nonce (a wrong answer costs the caller one round trip),
    never to trust. The client_id parameter, else the client assertion's `sub`, else the user
    name of Basic authentication."""
    if "client_id" in form:
        return form["client_id"]
    assertion = form.get("client_assertion")
    if assertion is not None and assertion.count(".") == 2 and len(assertion) <= 8192:
        try:
            payload = assertion.split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except (ValueError, binascii.Error, RecursionError):
            return None
        sub = claims.get("sub") if isinstance(claims, dict) else None
        return sub if isinstance(sub, str) else None
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            name = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")[0]
        except (ValueError, binascii.Error):
            return None
        return unquote(name)  # RFC 6749 §2.3.1: form-encoded
    return None


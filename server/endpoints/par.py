"""The pushed authorization request endpoint (RFC 9126).

The client sends the parameters of an authorization request in the body of an authenticated
POST, as it would send a token request (the strict form parser, the chain's client
authentication), and gets back a request_uri that stands for them at the authorization endpoint,
once, for [oauth.par] request_uri_lifetime seconds. The request is checked by the very rules of
the authorization endpoint (server.authorize.authorization_request); here every failure is a
JSON error (§2.3), since no redirect URI is involved.
"""

from __future__ import annotations

import json

from flask import Blueprint

from core.dpop import claimed_client_id
from core.errors import OAuthError, invalid_dpop_proof, invalid_request
from core.request import PAR
from server import current
from server.authorize import MAX_QUERY, authorization_request
from server.forms import token_request
from server.render import json_response
from storage import par as pushed_requests

bp = Blueprint("par", __name__)

ENDPOINT = "/oauth2/par"
MAX_PUSHED = MAX_QUERY


@bp.route(ENDPOINT, methods=["POST"], provide_automatic_options=False)
def push():
    """RFC 9126 §2.1 (request), §2.2 (201 with request_uri and expires_in), §2.3 (errors)."""
    request = token_request(PAR)
    dpop = current.services().dpop
    proof = None
    if "dpop" in request.headers:
        # RFC 9449 §10.1: a proof at this endpoint binds the code to its key (dpop_jkt). Checked,
        # nonce included, before the client authenticates, as at the token endpoint: a refused
        # proof never uses up a client assertion's jti.
        proof = dpop.verify(request.headers["dpop"], "POST", request.endpoint_url)
        wanted = not dpop.nonce_valid(proof) and dpop.nonce_wanted_by(
            claimed_client_id(request.form, request.headers))
        dpop.check_nonce(proof, None, wanted=wanted)
    client = current.chain().authenticate(request).client
    headers = {"DPoP-Nonce": dpop.current_nonce()} if proof else {}   # RFC 9449 §8.2
    try:
        form = dict(request.form)
        # §2.1: the client_id, when sent, is the authenticated client's.
        if form.setdefault("client_id", client.client_id) != client.client_id:
            raise invalid_request("The client_id parameter is not the authenticated client", reason="client_id")
        # §2.1: request_uri must not be pushed.
        if "request_uri" in form:
            raise invalid_request("The request_uri parameter cannot be pushed", reason="request_uri")
        if proof is not None:
            dpop.check_nonce(proof, client)
            # RFC 9449 §10.1: with both, dpop_jkt must be the proof's key.
            if form.setdefault("dpop_jkt", proof.jkt) != proof.jkt:
                raise invalid_dpop_proof("The dpop_jkt parameter is not the thumbprint of the DPoP proof's key",
                                         reason="dpop_jkt")
        auth = authorization_request(form, request.resources, client)
        parameters = auth.pushed_parameters()
        if len(json.dumps(parameters)) > MAX_PUSHED:  # what GET /oauth2/authorize would take, no more
            raise invalid_request(f"The pushed request exceeds {MAX_PUSHED} characters", reason="too_large")
        if proof is not None:
            dpop.record(proof)   # once the request is known good, as at the token endpoint
        request_uri, expires_in = pushed_requests.push(client.client_id, parameters,
                                                       current.services().settings.par["request_uri_lifetime"])
    except OAuthError as exc:
        exc.headers.update(headers)
        current.chain().emit("pushed_authorization_error", {"request_id": request.request_id,
                                                            "client_id": client.client_id, "error": exc.error,
                                                            "reason": exc.reason})
        raise
    current.chain().emit("pushed_authorization_request", {"request_id": request.request_id,
                                                          "client_id": client.client_id,
                                                          "scope": " ".join(auth.scopes)})
    return json_response({"request_uri": request_uri, "expires_in": expires_in}, 201, headers)

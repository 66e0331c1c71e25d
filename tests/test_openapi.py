"""GET /api/openapi.json: a valid OpenAPI 3.0 description of the registration API that matches the
server. Schemathesis generates requests from it and sends them over HTTPS to the real server with
an administrator's credentials: no 5xx, and every answer is documented (status, media type, body
schema, headers)."""

from __future__ import annotations

import base64

import pytest
import requests
import schemathesis
from schemathesis import GenerationMode
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_headers_conformance,
                                               response_schema_conformance, status_code_conformance)

from support import Server, free_port, jwks_of, rsa_key, shared_keystore, write_config

REGISTER = "/api/identity/oauth2/dcr/v1.1/register"
ADMIN_PASSWORD = "admin-password"
ADMIN = {"Authorization": "Basic " + base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode()).decode()}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    directory = tmp_path_factory.mktemp("openapi-server")
    shared_keystore(directory)
    port = free_port()
    # Generated requests carry the right password; the sign-in limits stay at their defaults.
    server = Server(write_config(directory, port, workers=2), port)
    server.start()
    try:
        server.cli("admin", "create", "--username", "admin", "--password-stdin", input=ADMIN_PASSWORD + "\n")
        yield server
    finally:
        server.stop()


def fetch(server: Server) -> requests.Response:
    return requests.get(server.base + "/api/openapi.json", headers=ADMIN, verify=server.ca, timeout=15)


# --- the document -----------------------------------------------------------------------------------

def test_the_description_is_for_administrators_and_valid_openapi(server):
    anonymous = requests.get(server.base + "/api/openapi.json", verify=server.ca, timeout=15)
    assert anonymous.status_code == 401 and "paths" not in anonymous.json()
    response = fetch(server)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "private, max-age=300"
    document = response.json()
    assert document["openapi"].startswith("3.0.")
    assert document["servers"] == [{"url": server.base}]
    schemathesis.openapi.from_dict(document).validate()  # the OpenAPI 3.0 meta-schema


def test_the_description_matches_the_routes(server):
    """Every documented operation is served, and every route of the registration API is documented
    (the document describes that API; WSO2's health-check path beside it is not part of it)."""
    from app import build_app
    document = fetch(server).json()
    documented = {(path.replace("{client_id}", "<client_id>"), method.upper())
                  for path, item in document["paths"].items() for method in item if method != "parameters"}
    app = build_app(str(server.config_path))
    served = {(rule.rule.replace("<path:client_id>", "<client_id>"), method)
              for rule in app.url_map.iter_rules() if rule.rule.startswith("/api/identity/")
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert documented == served
    assert document["components"]["securitySchemes"] == {
        "basicAuth": {"type": "http", "scheme": "basic", "description": document["components"]["securitySchemes"]
                      ["basicAuth"]["description"]},
        "bearerAuth": {"type": "http", "scheme": "bearer", "description": document["components"]["securitySchemes"]
                       ["bearerAuth"]["description"]},
    }
    for item in document["paths"].values():
        for method, operation in item.items():
            if method != "parameters":
                assert operation["security"] == [{"basicAuth": []}, {"bearerAuth": []}]
                assert "401" in operation["responses"]


def test_documented_bodies_match_real_answers(server):
    """One real answer of each kind, validated by hand against the document's schemas."""
    document = fetch(server).json()
    schema = schemathesis.openapi.from_dict(document)
    key = rsa_key()
    metadata = {"token_endpoint_auth_method": "private_key_jwt", "grant_types": ["client_credentials"],
                "jwks": __import__("json").loads(jwks_of((key, "k1")))}
    post = schema[REGISTER]["POST"]
    response = requests.post(server.base + REGISTER, json=metadata, headers=ADMIN, verify=server.ca, timeout=15)
    assert response.status_code == 201
    post.validate_response(response)
    client_id = response.json()["client_id"]
    item = schema[REGISTER + "/{client_id}"]
    for method, call, status in (("GET", requests.get, 200), ("PUT", requests.put, 200),
                                 ("DELETE", requests.delete, 204), ("GET", requests.get, 404)):
        kwargs = {"json": metadata} if method == "PUT" else {}
        response = call(f"{server.base}{REGISTER}/{client_id}", headers=ADMIN, verify=server.ca, timeout=15, **kwargs)
        assert response.status_code == status, response.text
        item[method].validate_response(response)
    for headers, status in (({}, 401), (ADMIN | {"Content-Type": "text/plain"}, 415)):
        response = requests.post(server.base + REGISTER, data=b"{}", headers=headers, verify=server.ca, timeout=15)
        assert response.status_code == status
        post.validate_response(response)


# --- generated requests -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def api_schema(server):
    return schemathesis.openapi.from_url(server.base + "/api/openapi.json", headers=ADMIN, verify=server.ca)


@pytest.fixture
def registered(server) -> list[str]:
    """A few clients for the generated reads, replaces and deletes to find (random ids rarely exist)."""
    ids = []
    for _ in range(4):
        response = requests.post(server.base + REGISTER, json={"grant_types": ["client_credentials"]}, headers=ADMIN,
                                 verify=server.ca, timeout=15)
        assert response.status_code == 201, response.text
        ids.append(response.json()["client_id"])
    return ids


# Fields whose random values almost never pass the cross-field rules a JSON schema cannot express.
_ENTANGLED = ("grant_types", "response_types", "redirect_uris", "token_endpoint_auth_method", "jwks", "jwks_uri",
              "certificate", "token_endpoint_auth_signing_alg", "client_secret",
              "client_id")  # a replace must not name another client (RFC 7592 §2.2)


def registrable(case):
    """The generated body on a valid footing, so that successful answers are generated too."""
    if isinstance(case.body, dict):
        case.body = {k: v for k, v in case.body.items() if k not in _ENTANGLED} | {
            "grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_basic"}
    return case


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"])
@pytest.mark.parametrize("method, path", [("POST", REGISTER), ("GET", REGISTER + "/{client_id}"),
                                          ("PUT", REGISTER + "/{client_id}"), ("DELETE", REGISTER + "/{client_id}")])
def test_generated_requests_get_documented_answers(server, api_schema, registered, method, path, mode):
    """Schemathesis cases for one operation (bounded: 30 examples per operation and mode), sent with
    an administrator's credentials: as generated, on a valid footing, and aimed at existing clients."""
    operation = api_schema[path][method]
    strategy = operation.as_strategy(generation_mode=mode)
    strategies = [strategy]
    if method in ("POST", "PUT"):
        strategies.append(strategy.map(registrable))
    if "{client_id}" in path:
        existing = st.sampled_from(registered).flatmap(
            lambda client_id: operation.as_strategy(generation_mode=mode, path_parameters={"client_id": client_id}))
        strategies += [existing, existing.map(registrable)] if method == "PUT" else [existing]
    statuses = set()

    @given(case=st.one_of(strategies))
    # derandomize: the same cases on every run, so that CI never depends on a lucky draw
    @settings(max_examples=30, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    def run(case):
        response = case.call_and_validate(headers=ADMIN, verify=server.ca, timeout=15, checks=CHECKS)
        statuses.add(response.status_code)

    run()
    assert statuses - {200, 201, 204}, statuses      # refusals were generated
    if mode == GenerationMode.POSITIVE:
        assert statuses & {200, 201, 204}, statuses  # and successes

"""The chain loader: WSO2 and Python names, order, enable = false, typed properties."""

from __future__ import annotations

import pytest

from core.config import ConfigError
from support import shared_keystore, write_config


def build(tmp_path, **config):
    from app import build_app
    shared_keystore(tmp_path)
    return build_app(str(write_config(tmp_path, **config))).extensions["idp"].chain


def test_builtins_run_with_defaults(tmp_path):
    chain = build(tmp_path)
    assert [type(a).__name__ for a in chain.authenticators] == ["PrivateKeyJWTClientAuthenticator", "ClientSecretAuthenticator",
                                                                "TLSClientAuthenticator", "PublicClientAuthenticator"]
    assert list(chain.grants) == ["client_credentials", "authorization_code", "refresh_token"]
    assert type(chain.issuer).__name__ == "DefaultTokenIssuer"
    assert [type(l).__name__ for l in chain.listeners] == ["AuditLogListener", "AuthFailureLogListener",
                                                           "ClientActivityListener", "MetricsListener"]
    pkjwt = chain.authenticators[0]
    assert pkjwt.props["PreventTokenReuse"] is True and pkjwt.props["AudiencePolicy"] == "strict"
    assert pkjwt.order == 899


def test_properties_are_coerced(tmp_path):
    chain = build(tmp_path, pkjwt={"PreventTokenReuse": "false", "RejectBeforeInMinutes": "100",
                                   "TokenEndpointAlias": "sampleurl"})
    props = chain.authenticators[0].props
    assert props["PreventTokenReuse"] is False and props["RejectBeforeInMinutes"] == 100
    assert props["TokenEndpointAlias"] == "sampleurl"


def test_order_decides_position(tmp_path):
    secret = ('[[event_listener]]\nid = "secret"\ntype = "t"\n'
              'name = "org.wso2.carbon.identity.oauth2.client.authentication.BasicAuthClientAuthenticator"\norder = 10\n')
    chain = build(tmp_path, listeners=secret)
    assert [type(a).__name__ for a in chain.authenticators] == ["ClientSecretAuthenticator", "PrivateKeyJWTClientAuthenticator",
                                                                "TLSClientAuthenticator", "PublicClientAuthenticator"]


def test_python_names_resolve(tmp_path):
    listeners = '[[event_listener]]\nid = "secret"\nname = "handlers.client_secret.ClientSecretAuthenticator"\nenable = false\n'
    chain = build(tmp_path, listeners=listeners)
    assert [type(a).__name__ for a in chain.authenticators] == ["PrivateKeyJWTClientAuthenticator", "TLSClientAuthenticator",
                                                                "PublicClientAuthenticator"]
    # Mutual TLS is listed only where client certificates are asked for ([server] client_certificates).
    assert chain.metadata()["token_endpoint_auth_methods_supported"] == ["private_key_jwt", "none"]


@pytest.mark.parametrize("name,message", [
    ("nosuch_module.Foo", "no module handlers/nosuch_module.py"),
    ("client_secret.Nope", "handlers/client_secret.py has no handler class Nope"),
    ("os.path", "no module handlers/os.py"),
    ("../etc/passwd", "does not name a built-in handler or a module in handlers/"),
    ("org.wso2.carbon.Unknown", "does not name a built-in handler or a module in handlers/"),
])
def test_unresolvable_names(tmp_path, name, message):
    listeners = f'\n[[event_listener]]\nid = "x"\nname = "{name}"\n'
    with pytest.raises(ConfigError) as info:
        build(tmp_path, listeners=listeners)
    assert str(info.value).endswith(f"event_listener[1].name: {message}")
    assert str(info.value).startswith("deployment.toml:")


def test_unknown_property_names_line(tmp_path):
    with pytest.raises(ConfigError) as info:
        build(tmp_path, pkjwt={"PreventTokenReus": True})
    line = next(i for i, l in enumerate((tmp_path / "deployment.toml").read_text().splitlines(), 1)
                if l.startswith("PreventTokenReus"))
    assert str(info.value).startswith(f"deployment.toml:{line}: event_listener[0].properties.PreventTokenReus: unknown property")


def test_property_of_wrong_type(tmp_path):
    with pytest.raises(ConfigError) as info:
        build(tmp_path, pkjwt={"AudiencePolicy": "loose"})
    assert "AudiencePolicy: the value must be one of strict, legacy" in str(info.value)


def test_unknown_signing_algorithm_property(tmp_path):
    with pytest.raises(ConfigError) as info:
        build(tmp_path, pkjwt={"SigningAlgorithms": ["RS256", "HS256"]})
    assert "properties.SigningAlgorithms: each value must be one of RS256" in str(info.value)
    assert str(info.value).startswith("deployment.toml:")


def test_same_handler_twice(tmp_path):
    listeners = '[[event_listener]]\nid = "again"\nname = "private_key_jwt"\n'
    with pytest.raises(ConfigError) as info:
        build(tmp_path, listeners=listeners)
    assert "already configured by id private_key_jwt_authenticator" in str(info.value)


def test_disabling_the_issuer_is_an_error(tmp_path):
    listeners = '[[event_listener]]\nid = "issuer"\nname = "token_issuer"\nenable = false\n'
    with pytest.raises(ConfigError) as info:
        build(tmp_path, listeners=listeners)
    assert "no token issuer is enabled" in str(info.value)


@pytest.mark.parametrize("name,message", [
    ("base.GrantHandler", "handlers/base.py is the chain itself, not a handler"),
    ("chain", "handlers/chain.py is the chain itself, not a handler"),
])
def test_contract_modules_are_not_handlers(tmp_path, name, message):
    with pytest.raises(ConfigError) as info:
        build(tmp_path, listeners=f'[[event_listener]]\nid = "x"\nname = "{name}"\n')
    assert str(info.value).endswith(message)


@pytest.mark.parametrize("prop,value", [("MaxLifetimeInMinutes", -5), ("MaxLifetimeInMinutes", 0),
                                        ("RejectBeforeInMinutes", -1)])
def test_property_minimum(tmp_path, prop, value):
    with pytest.raises(ConfigError) as info:
        build(tmp_path, pkjwt={prop: value})
    assert f"properties.{prop}: must be at least" in str(info.value)


def test_pool_smaller_than_threads_is_refused(tmp_path, database_urls):
    url = database_urls("postgresql") + "?max_connections=5"
    with pytest.raises(ConfigError) as info:
        build(tmp_path, database_url=url)
    assert "database.identity_db.url: max_connections (5) must be at least [server] threads + 2 (6)" in str(info.value)


# --- client ids and the failure log --------------------------------------------------------------

def recorded_events(env) -> list[dict]:
    """A listener appended to the running chain: it observes what every listener is told."""
    from handlers.base import Listener

    class Recorder(Listener):
        def on_event(self, event, data):
            if event == "client_authentication":
                self.events.append(data)

    recorder = Recorder(env.app.extensions["idp"].services, {})
    recorder.events = []
    env.app.extensions["idp"].chain.listeners.append(recorder)
    return recorder.events


def unusable_id_requests(client_id: str, env) -> dict:
    import base64
    from urllib.parse import quote_plus
    from support import ASSERTION_TYPE, claims_for, sign
    basic = base64.b64encode(f"{quote_plus(client_id)}:secret".encode()).decode()
    return {
        "none": ({"grant_type": "authorization_code", "code": "c", "client_id": client_id}, {}),
        "client_secret_post": ({"grant_type": "client_credentials", "client_id": client_id, "client_secret": "s"}, {}),
        "client_secret_basic": ({"grant_type": "client_credentials"}, {"Authorization": "Basic " + basic}),
        "private_key_jwt": ({"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
                             "client_assertion": sign(env.key, claims_for(client_id, env.issuer))}, {}),
    }


@pytest.mark.parametrize("client_id", ["x" * 256, "a\x00b", "line\nbreak", "tab\there", "del\x7f"],
                         ids=["256-characters", "nul", "newline", "tab", "del"])
def test_unusable_client_ids_are_refused_before_any_use(idp, client_id):
    """A claimed client id longer than 255 characters or with a control character never becomes a
    failure-limiter key, a query or a logged id: invalid_client, reason client_id (sub for an assertion)."""
    from support import assert_oauth_error
    events = recorded_events(idp)
    for method, (form, headers) in unusable_id_requests(client_id, idp).items():
        assert_oauth_error(idp.post(form, headers=headers), 401, "invalid_client")
        event = events.pop()
        assert event["method"] == method and event["client_id"] is None and event["client_known"] is False
        assert event["reason"] == ("sub" if method == "private_key_jwt" else "client_id")


def test_a_255_character_client_id_is_usable(idp):
    idp.register("c" * 255)
    assert idp.token(idp.assertion("c" * 255)).status_code == 200


def test_failures_of_unregistered_client_ids_are_never_recorded(idp):
    """The failure log (the console's list per client) records only clients the authenticator
    found registered: an unknown id, whatever the reason it failed for, leaves no row."""
    import base64
    from support import assert_oauth_error, claims_for, sign, token_form
    from storage.models import AuthFailure
    events = recorded_events(idp)
    client = idp.app.test_client()
    form = "application/x-www-form-urlencoded"
    for path in ("/oauth2/introspect", "/oauth2/revoke"):
        r = client.post(path, data={"token": "t", "client_id": "ghost"}, content_type=form)
        assert_oauth_error(r, 401, "invalid_client")
    failures = [
        {"grant_type": "client_credentials", "client_id": "ghost"},                     # public_client_not_allowed
        {"grant_type": "authorization_code", "code": "c", "client_id": "ghost"},       # unknown_client
        {"grant_type": "client_credentials", "client_id": "ghost", "client_secret": "s"},
        token_form(idp.assertion("ghost", iss="client-1")),                            # iss before the lookup
        token_form(idp.assertion("ghost")),
    ]
    for data in failures:
        assert_oauth_error(idp.post(data), 401, "invalid_client")
    assert_oauth_error(idp.post({"grant_type": "client_credentials"},
                                headers={"Authorization": "Basic " + base64.b64encode(b"ghost:s").decode()}),
                       401, "invalid_client")
    assert [e["client_id"] for e in events] == ["ghost"] * 8 and not any(e["client_known"] for e in events)
    with idp.app.app_context():
        assert AuthFailure.select().count() == 0

    # The registered client's failures are recorded, whichever authenticator saw them.
    assert_oauth_error(client.post("/oauth2/introspect", data={"token": "t", "client_id": "client-1"},
                                   content_type=form), 401, "invalid_client")
    assert_oauth_error(idp.token(sign(idp.key, claims_for("client-1", "https://elsewhere.example/"),
                                      headers={"kid": "k1"})), 401, "invalid_client")
    with idp.app.app_context():
        rows = [(f.client_id, f.method, f.reason) for f in AuthFailure.select().order_by(AuthFailure.id)]
    assert rows == [("client-1", "none", "public_client_not_allowed"), ("client-1", "private_key_jwt", "aud")]

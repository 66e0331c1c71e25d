"""deployment.toml: the WSO2 snippet loads unchanged; every mistake names its key and line."""

from __future__ import annotations

import textwrap

import pytest

from core import config
from core.config import ConfigError

WSO2_SNIPPET = textwrap.dedent('''
    [keystore.primary]
    password = "wso2carbon"

    [[event_listener]]
    id = "private_key_jwt_authenticator"
    type = "org.wso2.carbon.identity.core.handler.AbstractIdentityHandler"
    name = "org.wso2.carbon.identity.oauth2.token.handler.clientauth.jwt.PrivateKeyJWTClientAuthenticator"
    order = "899"
    [event_listener.properties]
    PreventTokenReuse= false
    RejectBeforeInMinutes= "100"
    TokenEndpointAlias= "sampleurl"

    [[cache.manager]]
    name = "PrivateKeyJWT"
    timeout = "10"
    capacity = "5000"
''')


def load(tmp_path, text: str):
    path = tmp_path / "deployment.toml"
    path.write_text(text)
    return config.load(path)


def error(tmp_path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return str(info.value)


def test_wso2_snippet_loads_unchanged(tmp_path):
    settings = load(tmp_path, WSO2_SNIPPET)
    [entry] = settings.listeners
    assert entry.order == 899 and entry.enable is True
    assert {k: v.value for k, v in entry.properties.items()} == {
        "PreventTokenReuse": False, "RejectBeforeInMinutes": "100", "TokenEndpointAlias": "sampleurl"}
    cache = settings.caches["PrivateKeyJWT"]
    assert (cache.timeout_minutes, cache.capacity) == (10, 5000)


def test_defaults(tmp_path):
    settings = load(tmp_path, '[keystore.primary]\npassword = "x"\n')
    assert settings.server["hostname"] == "localhost" and settings.server["port"] == 9443
    assert settings.issuer == "https://localhost:9443/oauth2/token"
    assert settings.token_endpoint == settings.issuer
    assert settings.database_url == "sqlite:///var/identity.db"
    assert settings.keystore["type"] == "PKCS12"
    assert settings.timestamp_skew == 30 and settings.access_token_lifetime == 3600
    assert settings.jwks_fetch["require_https"] is True and settings.jwks_fetch["allowed_hosts"] == []


def test_proxy_port_is_the_port_clients_use(tmp_path):
    settings = load(tmp_path, '[server]\ntls = false\nport = 9443\nproxy_port = 443\n'
                              '[keystore.primary]\npassword = "x"\n')
    assert settings.base_url == "https://localhost"
    assert settings.issuer == settings.token_endpoint == "https://localhost/oauth2/token"
    settings = load(tmp_path, '[server]\nproxy_port = 8443\n[keystore.primary]\npassword = "x"\n')
    assert settings.base_url == "https://localhost:8443"
    assert "server.proxy_port: must be between" in error(tmp_path, '[server]\nproxy_port = 70000\n'
                                                                   '[keystore.primary]\npassword = "x"\n')


def test_shipped_deployment_toml_loads():
    from support import ROOT
    settings = config.load(ROOT / "deployment.toml")
    props = {k: v.value for k, v in settings.listeners[0].properties.items()}
    assert props["PreventTokenReuse"] is True  # secure by default


def test_env_substitution(tmp_path, monkeypatch):
    monkeypatch.setenv("KS_PASSWORD", "from-env")
    settings = load(tmp_path, '[keystore.primary]\npassword = "$env{KS_PASSWORD}"\n')
    assert settings.keystore["password"] == "from-env"


def test_missing_env_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    message = error(tmp_path, '\n[keystore.primary]\npassword = "$env{NOT_SET_ANYWHERE}"\n')
    assert message == "deployment.toml:3: keystore.primary.password: environment variable NOT_SET_ANYWHERE is not set"


@pytest.mark.parametrize("text,expected", [
    ('[server]\nprot = 1\n[keystore.primary]\npassword = "x"\n', "deployment.toml:2: server.prot: unknown key"),
    ('[server]\nport = "abc"\n[keystore.primary]\npassword = "x"\n', "deployment.toml:2: server.port: the value must be an integer"),
    ('[server]\nport = 70000\n[keystore.primary]\npassword = "x"\n', "deployment.toml:2: server.port: must be between 1 and 65535"),
    ('[keystore.primary]\nalias = "a"\n', "deployment.toml:1: keystore.primary.password: is required"),
    ('[keystore.primary]\npassword = "x"\ntype = "JCEKS"\n', "deployment.toml:3: keystore.primary.type: the value must be one of PKCS12, JKS"),
    ('[keystore.primary]\npassword = "x"\n[nonsense]\na = 1\n', "deployment.toml:3: nonsense: unknown section"),
    ('[keystore.primary]\npassword = "x"\n[database.identity_db]\nurl = "oracle://x"\n',
     "deployment.toml:4: database.identity_db.url: must start with sqlite://, postgresql:// or mysql://"),
    ('[keystore.primary]\npassword = "x"\n\n[[event_listener]]\nname = "x"\n', "deployment.toml:4: event_listener[0]: id is required"),
    ('[keystore.primary]\npassword = "x"\n\n[[event_listener]]\nid = "a"\nname = "x"\norder = "soon"\n',
     "deployment.toml:7: event_listener[0].order: the value must be an integer"),
    ('[keystore.primary]\npassword = "x"\n[[event_listener]]\nid = "a"\nname = "x"\n[[event_listener]]\nid = "a"\nname = "y"\n',
     "deployment.toml:7: event_listener[1].id: is used by another [[event_listener]]"),
    ('[keystore.primary]\npassword = "x"\n[[cache.manager]]\nname = "PrivateKeyJWT"\ncapacity = "lots"\n',
     "deployment.toml:5: cache.manager[0].capacity: the value must be an integer"),
    ('[keystore.primary]\npassword = "x"\n[oauth]\ntimestamp_skew = true\n', "deployment.toml:4: oauth.timestamp_skew: the value must be an integer"),
    ('[keystore.primary]\npassword = "x"\n[oauth.jwks_fetch]\nmax_bytes = 0\n',
     "deployment.toml:4: oauth.jwks_fetch.max_bytes: must be between 1024 and 10485760"),
    ('[keystore.primary]\npassword = "x"\n[server]\ntrusted_proxies = ["lb.internal"]\n',
     "deployment.toml:4: server.trusted_proxies: must list IP addresses"),
    ('[keystore.primary]\npassword = "x"\n[oauth.rate_limit]\nwindow = 60\nstore = "memcached://x"\n',
     'deployment.toml:5: oauth.rate_limit.store: must be "memory" or a redis://, rediss:// or unix:// URL'),
    ('[keystore.primary]\npassword = "x"\n[oauth.rate_limit]\nstore = "redis://:pa[ss@127.0.0.1:6379/0"\n',
     'deployment.toml:4: oauth.rate_limit.store: must be "memory" or a redis://, rediss:// or unix:// URL'),
    ('[keystore.primary]\npassword = "x"\n[oauth.rate_limit]\nstore = "redis://127.0.0.1:port/0"\n',
     'deployment.toml:4: oauth.rate_limit.store: must be "memory" or a redis://, rediss:// or unix:// URL'),
    ('[keystore.primary]\npassword = "x"\n[oauth.rate_limit]\nfailures_per_client_address = -1\n',
     "deployment.toml:4: oauth.rate_limit.failures_per_client_address: must not be negative (0 disables the limit)"),
])
def test_mistakes_name_key_and_line(tmp_path, text, expected):
    assert error(tmp_path, text) == expected


def test_toml_syntax_error(tmp_path):
    message = error(tmp_path, '[keystore.primary]\npassword = "x\n')
    assert message.startswith("deployment.toml:2: not valid TOML")


def test_missing_file(tmp_path):
    assert "file not found" in str(pytest.raises(ConfigError, config.load, tmp_path / "nope.toml").value)


@pytest.mark.parametrize("value,kind,expected", [
    ("100", int, 100), (100, int, 100), ("false", bool, False), (False, bool, False), ("TRUE", bool, True),
    ("RS256, PS256", list, ["RS256", "PS256"]), (["ES256"], list, ["ES256"]), ("3.5", float, 3.5),
])
def test_coerce_accepts_wso2_spellings(value, kind, expected):
    assert config.coerce(value, kind, "v") == expected


@pytest.mark.parametrize("value,kind", [("yes", bool), (1, bool), (True, int), ("1e3", int), (5, str), ([1], list)])
def test_coerce_refuses(value, kind):
    with pytest.raises(ValueError):
        config.coerce(value, kind, "v")

"""Fixtures for the hostile catalogue: one real server (python app.py → gunicorn, HTTPS) shared by
every file in this package, plus one with AudiencePolicy = legacy and one with PreventTokenReuse =
false, each started only when a test asks for it and stopped at the end of the run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hostile_support import Env, Keys  # noqa: E402
from support import Server, free_port, jwks_of, write_config  # noqa: E402


def _jwks(key, kid: str | None = "k1", **members) -> str:
    document = json.loads(jwks_of((key, kid)))
    document["keys"][0].update(members)
    return json.dumps(document)


def _start(directory: Path, **config) -> Server:
    port = free_port()
    return Server(write_config(directory, port, **config), port).start()


def _register_common(env: Env) -> None:
    k = env.keys
    env.register("rsa-client", _jwks(k.rsa))
    env.register("other-client", _jwks(k.rsa_other))
    env.register("es256-client", _jwks(k.p256))
    env.register("es384-client", _jwks(k.p384))
    env.register("es512-client", _jwks(k.p521))
    env.register("ed-client", _jwks(k.ed))
    env.register("nokid-client", _jwks(k.rsa, None))


@pytest.fixture(scope="package")
def keys() -> Keys:
    return Keys()


@pytest.fixture(scope="package")
def env(tmp_path_factory, keys) -> Env:
    """The strict, default-configured server every catalogue file shares."""
    server = _start(tmp_path_factory.mktemp("hostile-main"))
    try:
        e = Env(server, keys)
        _register_common(e)
        k = keys
        e.register("pinned-ps256", _jwks(k.rsa), signing_alg="PS256")
        e.register("pinned-eddsa", _jwks(k.ed), signing_alg="EdDSA")
        e.register("MixedCase-Client", _jwks(k.rsa))
        e.register("enc-client", _jwks(k.rsa, use="enc"))
        e.register("keyops-client", _jwks(k.rsa, key_ops=["encrypt"]))
        e.register("jwkalg-client", _jwks(k.rsa, alg="RS512"))
        e.register("legacy-client", _jwks(k.rsa), audience_policy="legacy")
        e.register("no-cc-client", _jwks(k.rsa), grant_types=("authorization_code",))
        e.register("secret-client", auth_method="client_secret_basic")
        e.register("post-client", auth_method="client_secret_post")
        yield e
    finally:
        server.stop()


@pytest.fixture(scope="package")
def legacy_env(tmp_path_factory, keys) -> Env:
    server = _start(tmp_path_factory.mktemp("hostile-legacy"), pkjwt={"AudiencePolicy": "legacy"})
    try:
        e = Env(server, keys)
        _register_common(e)
        e.register("strict-client", _jwks(keys.rsa), audience_policy="strict")
        yield e
    finally:
        server.stop()


@pytest.fixture(scope="package")
def relaxed_env(tmp_path_factory, keys) -> Env:
    server = _start(tmp_path_factory.mktemp("hostile-relaxed"), pkjwt={"PreventTokenReuse": False})
    try:
        e = Env(server, keys)
        _register_common(e)
        e.register("prevent-client", _jwks(keys.rsa), token_reuse="prevent")
        yield e
    finally:
        server.stop()

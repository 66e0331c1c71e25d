"""server.client_metadata: the client metadata rules (RFC 7591 §2) and the key checks shared by
the registration API, the console and `clients create`."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519
from cryptography.x509.oid import NameOID

from server import client_metadata as cm
from server.client_metadata import MetadataError, validate
from support import JWKSServer, ec_key, ed_key, jwks_of, pem, rsa_key, write_config

RSA = rsa_key()
RSA_1024 = rsa_key(1024)
P256 = ec_key()


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    """The real settings of a test deployment.toml (http allowed, 127.0.0.1 allowed for jwks_uri)."""
    from core import config
    return config.load(write_config(tmp_path_factory.mktemp("settings")))


@pytest.fixture(scope="module")
def strict_settings(tmp_path_factory):
    """The shipped defaults for jwks_uri: https only, no private addresses."""
    from core import config
    path = write_config(tmp_path_factory.mktemp("strict"))
    text = path.read_text().replace("require_https = false", "").replace('allowed_hosts = ["127.0.0.1"]', "")
    path.write_text(text)
    return config.load(path)


def jwks(*pairs) -> dict:
    return json.loads(jwks_of(*pairs))


def pkjwt(**extra) -> dict:
    return {"token_endpoint_auth_method": "private_key_jwt", "grant_types": ["client_credentials"],
            "jwks": jwks((RSA, "k1")), **extra}


def refused(metadata: dict, settings, error: str = "invalid_client_metadata", **kwargs) -> MetadataError:
    with pytest.raises(MetadataError) as info:
        validate(metadata, settings, **kwargs)
    assert info.value.error == error, (info.value.field, info.value.message)
    message = info.value.message
    assert message and all(0x20 <= ord(c) <= 0x7E for c in message), message
    return info.value


def certificate(key, *, days: int = 30, start_days: int = -1, encoding=serialization.Encoding.PEM) -> bytes:
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "client")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now + datetime.timedelta(days=start_days))
            .not_valid_after(now + datetime.timedelta(days=days))
            .sign(key, None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()))
    return cert.public_bytes(encoding)


# --- validate: what comes out -----------------------------------------------------------------------

def test_rfc7591_defaults(settings):
    # RFC 7591 §2: authorization_code, response type code, client_secret_basic.
    out = validate({"redirect_uris": ["https://app.example.com/cb"]}, settings)
    assert out == {
        "client_name": "", "description": "", "grant_types": ("authorization_code",), "scopes": (),
        "auth_method": "client_secret_basic", "redirect_uris": ("https://app.example.com/cb",),
        "jwks": None, "jwks_uri": None, "signing_alg": None, "first_party": False, "audience_policy": None,
        "token_reuse": None, "access_token_lifetime": None, "refresh_token_lifetime": None,
        "id_token_lifetime": None, "dpop_bound_access_tokens": False, "require_dpop_nonce": False,
        "access_token_format": None, "resources": (), "require_pushed_authorization_requests": False,
        "tls_client_auth_subject_dn": None, "tls_client_auth_san": None,
        "tls_client_certificate_bound_access_tokens": False, "profile": None, "require_explicit_typ": None,
    }


def test_a_full_private_key_jwt_registration(settings):
    out = validate(pkjwt(client_name="Billing", description="line one\nline two", scope="openid read read",
                         token_endpoint_auth_signing_alg="PS256", audience_policy="legacy", token_reuse="allow",
                         first_party=True, access_token_lifetime=600, refresh_token_lifetime=86400,
                         id_token_lifetime=300, logo_uri="https://example.com/logo.png"), settings)
    assert out["auth_method"] == "private_key_jwt"
    assert out["scopes"] == ("openid", "read")  # a repeated scope value is kept once
    assert out["signing_alg"] == "PS256"
    assert json.loads(out["jwks"]) == jwks((RSA, "k1"))
    assert (out["audience_policy"], out["token_reuse"], out["first_party"]) == ("legacy", "allow", True)
    assert (out["access_token_lifetime"], out["refresh_token_lifetime"], out["id_token_lifetime"]) == (600, 86400, 300)
    assert "logo_uri" not in out  # unsupported fields are ignored (RFC 7591 §2)


def test_the_output_is_what_storage_create_takes(tmp_path, settings):
    from support import make_in_process
    from storage import clients
    env = make_in_process(tmp_path)
    with env.app.app_context():
        client, secret = clients.create("stored", **validate(pkjwt(scope="openid"), settings))
        assert secret is None and client.jwks and client.scopes == ("openid",)
        # What metadata_of gives back validates to the same registration.
        again = validate(cm.metadata_of(client), settings, existing=client)
        updated, secret = clients.update("stored", **again)
        assert secret is None and updated.public_view() == client.public_view()


def test_private_key_jwt_without_keys_uses_the_keystore_alias(settings):
    out = validate({"token_endpoint_auth_method": "private_key_jwt", "grant_types": ["client_credentials"]}, settings)
    assert (out["jwks"], out["jwks_uri"]) == (None, None)


def test_a_public_client_with_pkce_style_metadata(settings):
    out = validate({"token_endpoint_auth_method": "none", "grant_types": ["authorization_code", "refresh_token"],
                    "response_types": ["code"], "redirect_uris": ["com.example.app:/oauth2redirect",
                                                                  "http://127.0.0.1:53123/cb", "http://[::1]/cb",
                                                                  "http://localhost:8080/cb"]}, settings)
    assert out["auth_method"] == "none" and len(out["redirect_uris"]) == 4


@pytest.mark.parametrize("value", [True, False, None])
def test_require_explicit_typ_per_client(tmp_path, settings, value):
    """true/false: the client's own setting (stricter or looser than RequireExplicitTyp); null or
    absent: the server's. Stored, and given back by metadata_of only when set."""
    from support import make_in_process
    from storage import clients
    out = validate(pkjwt(require_explicit_typ=value), settings)
    assert out["require_explicit_typ"] is value
    env = make_in_process(tmp_path)
    with env.app.app_context():
        client, _ = clients.create("typed", **out)
        assert clients.get("typed").require_explicit_typ is value
        assert client.public_view()["require_explicit_typ"] is value
        body = cm.metadata_of(client)
        assert body.get("require_explicit_typ", "absent") == ("absent" if value is None else value)
        assert validate(body, settings, existing=client)["require_explicit_typ"] is value
        updated, _ = clients.update("typed", **validate(pkjwt(require_explicit_typ=not value), settings,
                                                           existing=client))
        assert updated.require_explicit_typ is (not value)


def test_null_values_mean_absent(settings):
    out = validate(pkjwt(client_name=None, scope=None, jwks_uri=None, audience_policy=None, first_party=None),
                   settings)
    assert (out["client_name"], out["scopes"], out["first_party"]) == ("", (), False)


# --- validate: what is refused ------------------------------------------------------------------------

@pytest.mark.parametrize("uri", [
    "http://app.example.com/cb",          # http outside loopback
    "https://app.example.com/cb#frag",    # RFC 6749 §3.1.2: no fragment
    "/cb",                                # relative
    "app.example.com/cb",                 # no scheme
    "javascript:alert(1)",                # not a private-use scheme
    "data:text/html,hi",
    "file:///etc/passwd",
    "https://user:pass@app.example.com/cb",
    "https:///cb",                        # no host
    "https://app.example.com/a b",        # whitespace (lists are stored space-separated)
    "https://app.example.com/é",
    "https://app.example.com:99999/cb",
    "https://" + "a" * 2050 + ".com/",
    "",
])
def test_bad_redirect_uris(settings, uri):
    error = refused({"redirect_uris": [uri]}, settings, "invalid_redirect_uri")
    assert error.field == "redirect_uris"


def test_redirect_uri_rules_beyond_each_uri(settings):
    assert refused({"grant_types": ["authorization_code"]}, settings, "invalid_redirect_uri").field == "redirect_uris"
    assert refused({"redirect_uris": ["https://a.example/cb"] * 2}, settings, "invalid_redirect_uri")
    assert refused({"redirect_uris": [f"https://a.example/{i}" for i in range(21)]}, settings, "invalid_redirect_uri")
    assert refused({"redirect_uris": "https://a.example/cb"}, settings, "invalid_redirect_uri")
    assert refused({"redirect_uris": [7]}, settings, "invalid_redirect_uri")


@pytest.mark.parametrize("metadata, field", [
    ({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "none"}, "token_endpoint_auth_method"),
    ({"grant_types": ["client_credentials", "authorization_code"], "redirect_uris": ["https://a.example/cb"],
      "token_endpoint_auth_method": "none"}, "token_endpoint_auth_method"),
    ({"grant_types": ["refresh_token"]}, "grant_types"),
    ({"grant_types": ["password"]}, "grant_types"),
    ({"grant_types": ["implicit"], "redirect_uris": ["https://a.example/cb"]}, "grant_types"),
    ({"grant_types": []}, "grant_types"),
    ({"grant_types": ["client_credentials", "client_credentials"]}, "grant_types"),
    ({"grant_types": "client_credentials"}, "grant_types"),
    ({"grant_types": ["client_credentials"], "response_types": ["code"]}, "response_types"),
    ({"grant_types": ["authorization_code"], "redirect_uris": ["https://a.example/cb"], "response_types": []},
     "response_types"),
    ({"grant_types": ["authorization_code"], "redirect_uris": ["https://a.example/cb"],
      "response_types": ["code", "token"]}, "response_types"),
    ({"response_types": []}, "grant_types"),
    ({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_jwt"},
     "token_endpoint_auth_method"),
    ({"grant_types": ["client_credentials"], "scope": "openid  read"}, "scope"),
    ({"grant_types": ["client_credentials"], "scope": " openid"}, "scope"),
    ({"grant_types": ["client_credentials"], "scope": 'open"id'}, "scope"),
    ({"grant_types": ["client_credentials"], "scope": "café"}, "scope"),
    ({"grant_types": ["client_credentials"], "scope": ["openid"]}, "scope"),
    ({"grant_types": ["client_credentials"], "client_name": 5}, "client_name"),
    ({"grant_types": ["client_credentials"], "client_name": "a\x00b"}, "client_name"),
    ({"grant_types": ["client_credentials"], "client_name": "x" * 256}, "client_name"),
    ({"grant_types": ["client_credentials"], "description": "bell\x07"}, "description"),
    ({"grant_types": ["client_credentials"], "first_party": "yes"}, "first_party"),
    ({"grant_types": ["client_credentials"], "audience_policy": "lenient"}, "audience_policy"),
    ({"grant_types": ["client_credentials"], "token_reuse": True}, "token_reuse"),
    ({"grant_types": ["client_credentials"], "require_explicit_typ": "true"}, "require_explicit_typ"),
    ({"grant_types": ["client_credentials"], "require_explicit_typ": 1}, "require_explicit_typ"),
    ({"grant_types": ["client_credentials"], "require_explicit_typ": "client-authentication+jwt"},
     "require_explicit_typ"),
    ({"grant_types": ["client_credentials"], "access_token_lifetime": 59}, "access_token_lifetime"),
    ({"grant_types": ["client_credentials"], "access_token_lifetime": 86401}, "access_token_lifetime"),
    ({"grant_types": ["client_credentials"], "access_token_lifetime": True}, "access_token_lifetime"),
    ({"grant_types": ["client_credentials"], "refresh_token_lifetime": 600.5}, "refresh_token_lifetime"),
    ({"grant_types": ["client_credentials"], "id_token_lifetime": "300"}, "id_token_lifetime"),
    # Keys belong to private_key_jwt only.
    ({"grant_types": ["client_credentials"], "jwks": jwks((RSA, "k1"))}, "jwks"),
    ({"grant_types": ["client_credentials"], "jwks_uri": "https://keys.example.com/jwks"}, "jwks_uri"),
    ({"grant_types": ["client_credentials"], "token_endpoint_auth_signing_alg": "RS256"},
     "token_endpoint_auth_signing_alg"),
])
def test_metadata_refusals(settings, metadata, field):
    assert refused(metadata, settings).field == field


def test_grant_types_of_drop_in_handlers(settings):
    metadata = {"grant_types": ["urn:example:ping", "client_credentials"]}
    assert refused(metadata, settings).field == "grant_types"   # not served by the built-in chain
    out = validate(metadata, settings, grant_types_supported=("client_credentials", "urn:example:ping"))
    assert out["grant_types"] == ("urn:example:ping", "client_credentials")
    # A chain without the authorization_code handler cannot take authorization_code clients.
    assert refused({"redirect_uris": ["https://a.example/cb"]}, settings,
                   grant_types_supported=("client_credentials",)).field == "grant_types"


def test_the_metadata_must_be_an_object(settings):
    refused(["client_credentials"], settings)


@pytest.mark.parametrize("extra, field", [
    ({"jwks_uri": "https://keys.example.com/jwks"}, "jwks_uri"),   # RFC 7591 §2: not both
    ({"certificate": certificate(RSA).decode()}, "certificate"),
])
def test_one_key_source_only(settings, extra, field):
    assert refused(pkjwt(**extra), settings).field == field


@pytest.mark.parametrize("alg", ["HS256", "none", "RS1", "", 256])
def test_signing_alg_must_be_a_supported_one(settings, alg):
    assert refused(pkjwt(token_endpoint_auth_signing_alg=alg), settings).field == "token_endpoint_auth_signing_alg"


def test_signing_alg_must_fit_a_registered_key(settings):
    # An RSA key cannot verify ES256; a P-256 key cannot verify ES384.
    assert refused(pkjwt(token_endpoint_auth_signing_alg="ES256"), settings).field == "token_endpoint_auth_signing_alg"
    assert refused(pkjwt(jwks=jwks((P256, "e1")), token_endpoint_auth_signing_alg="ES384"), settings)
    assert validate(pkjwt(jwks=jwks((P256, "e1")), token_endpoint_auth_signing_alg="ES256"), settings)["signing_alg"] == "ES256"
    # A key restricted to RS256 by its own alg member cannot verify PS256.
    restricted = jwks((RSA, "k1"))
    restricted["keys"][0]["alg"] = "RS256"
    assert refused(pkjwt(jwks=restricted, token_endpoint_auth_signing_alg="PS256"), settings)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def rsa_1024_jwks() -> dict:
    numbers = RSA_1024.public_key().public_numbers()
    n = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
    return {"keys": [{"kty": "RSA", "kid": "small", "n": b64(n), "e": "AQAB"}]}


def private_jwks() -> dict:
    document = jwks((P256, "k1"))
    document["keys"][0]["d"] = b64(P256.private_numbers().private_value.to_bytes(32, "big"))
    return document


@pytest.mark.parametrize("document, message", [
    (rsa_1024_jwks(), "2048"),
    (private_jwks(), "private key material"),
    ({"keys": [{"kty": "oct", "kid": "s", "k": b64(b"a shared secret")}]}, "private key material"),
    ({"keys": [{"kty": "oct", "kid": "s"}]}, "symmetric"),
    ({"keys": [json.loads(jwks_of((RSA, "k1")))["keys"][0], json.loads(jwks_of((P256, "k1")))["keys"][0]]},
     "duplicate kid"),
    ({"keys": []}, "empty"),
    ({"keys": [{"kty": "OKP", "crv": "X25519", "x": b64(bytes(32))}]}, "no usable key"),
    ({"keys": [{**jwks((RSA, "k1"))["keys"][0], "use": "enc"}]}, "verify signatures"),
    ({"kty": "RSA"}, "keys array"),
])
def test_jwks_refusals(settings, document, message):
    error = refused(pkjwt(jwks=document), settings)
    assert error.field == "jwks" and message in error.message, error.message


def test_jwks_must_be_an_object(settings):
    assert refused(pkjwt(jwks=json.dumps(jwks((RSA, "k1")))), settings).field == "jwks"


def test_jwks_uri_is_checked_with_the_fetcher_rules(settings, strict_settings):
    assert validate(pkjwt(jwks=None, jwks_uri="https://keys.example.com/jwks"), strict_settings)["jwks_uri"] \
        == "https://keys.example.com/jwks"
    for uri in ("http://keys.example.com/jwks", "https://127.0.0.1/jwks", "https://10.1.2.3/jwks",
                "https://localhost/jwks", "https://[::1]/jwks", "https://169.254.169.254/latest", "ftp://x.example/j",
                "https://user@keys.example.com/jwks", "https://keys.example.com/jwks#k", 42):
        assert refused(pkjwt(jwks=None, jwks_uri=uri), strict_settings).field == "jwks_uri", uri
    # The test deployment allows http and 127.0.0.1 ([oauth.jwks_fetch] allowed_hosts), nothing else.
    assert validate(pkjwt(jwks=None, jwks_uri="http://127.0.0.1:8000/jwks"), settings)["jwks_uri"]
    assert refused(pkjwt(jwks=None, jwks_uri="http://10.0.0.1/jwks"), settings)


def test_a_certificate_becomes_a_jwks(settings):
    out = validate(pkjwt(jwks=None, certificate=certificate(RSA).decode(), token_endpoint_auth_signing_alg="RS256"),
                   settings)
    key = json.loads(out["jwks"])["keys"][0]
    assert key["kty"] == "RSA" and key["kid"] == cm.keys_from_jwks(out["jwks"])[1][0].thumbprint


# --- token settings: DPoP (RFC 9449), access token format (RFC 9068), resources (RFC 8707) -------------------

def test_token_settings_are_read_and_given_back(tmp_path, settings):
    from support import make_in_process
    from storage import clients
    metadata = pkjwt(dpop_bound_access_tokens=True, require_dpop_nonce=True, access_token_format="jwt",
                     resources=["https://api.example.com/", "urn:example:payments", "https://api.example.com/v2?x=1"])
    out = validate(metadata, settings)
    assert (out["dpop_bound_access_tokens"], out["require_dpop_nonce"], out["access_token_format"]) == \
        (True, True, "jwt")
    assert out["resources"] == ("https://api.example.com/", "urn:example:payments", "https://api.example.com/v2?x=1")
    env = make_in_process(tmp_path)
    with env.app.app_context():
        client, _ = clients.create("tokens", **out)
        assert clients.get("tokens") == client
        assert (client.dpop_bound_access_tokens, client.require_dpop_nonce, client.access_token_format) == \
            (True, True, "jwt")
        assert client.resources == out["resources"]
        view = client.public_view()
        assert (view["dpop_bound_access_tokens"], view["require_dpop_nonce"], view["access_token_format"],
                view["resources"]) == (True, True, "jwt", list(out["resources"]))
        given = cm.metadata_of(client)
        assert (given["dpop_bound_access_tokens"], given["require_dpop_nonce"], given["access_token_format"],
                given["resources"]) == (True, True, "jwt", list(out["resources"]))
        # What metadata_of gives back validates to the same registration, for the client itself too.
        assert validate(given, settings, existing=client) == out
        assert validate(given, settings, existing=client, admin=False) == out
        # Absent: back to the defaults, and metadata_of says so.
        plain, _ = clients.update("tokens", **validate(pkjwt(), settings, existing=client))
        assert (plain.dpop_bound_access_tokens, plain.require_dpop_nonce, plain.access_token_format,
                plain.resources) == (False, False, None, ())
        given = cm.metadata_of(plain)
        assert (given["dpop_bound_access_tokens"], given["require_dpop_nonce"]) == (False, False)
        assert "access_token_format" not in given and "resources" not in given


def test_token_settings_null_and_opaque(settings):
    out = validate(pkjwt(dpop_bound_access_tokens=None, require_dpop_nonce=False, access_token_format=None,
                         resources=None), settings)
    assert (out["dpop_bound_access_tokens"], out["require_dpop_nonce"], out["access_token_format"],
            out["resources"]) == (False, False, None, ())
    assert validate(pkjwt(access_token_format="opaque"), settings)["access_token_format"] == "opaque"
    assert validate(pkjwt(resources=[]), settings)["resources"] == ()
    twenty = [f"https://api.example.com/{i}" for i in range(20)]
    assert validate(pkjwt(resources=twenty), settings)["resources"] == tuple(twenty)


@pytest.mark.parametrize("metadata, words", [
    ({"dpop_bound_access_tokens": "true"}, "dpop_bound_access_tokens must be true or false"),
    ({"dpop_bound_access_tokens": 1}, "dpop_bound_access_tokens must be true or false"),
    ({"require_dpop_nonce": "yes"}, "require_dpop_nonce must be true or false"),
    ({"access_token_format": "reference"}, "access_token_format must be one of opaque, jwt"),
    ({"access_token_format": "JWT"}, "access_token_format must be one of opaque, jwt"),
    ({"access_token_format": True}, "access_token_format must be one of opaque, jwt"),
    ({"resources": "https://api.example.com/"}, "resources must be an array of strings"),
    ({"resources": [42]}, "resources must be an array of strings"),
    ({"resources": [{"uri": "https://api.example.com/"}]}, "resources must be an array of strings"),
    ({"resources": ["https://api.example.com/", "https://api.example.com/"]}, "resources lists a value twice"),
    ({"resources": ["/api"]}, "must be an absolute URI"),
    ({"resources": ["api.example.com"]}, "must be an absolute URI"),
    ({"resources": ["https://api.example.com/#section"]}, "must not contain a fragment"),
    ({"resources": ["https://api.example.com/a b"]}, "characters not allowed"),
    ({"resources": ["https://api.example.com/\x00"]}, "characters not allowed"),
    ({"resources": ["https://api.example.com/é"]}, "characters not allowed"),
    ({"resources": ["https://api.example.com:99999/"]}, "not a valid URI"),
    ({"resources": [""]}, "non-empty string"),
    ({"resources": ["https://" + "a" * 2048 + ".com/"]}, "at most 2048 characters"),
    ({"resources": [f"https://api.example.com/{i}" for i in range(21)]}, "at most 20"),
])
def test_token_setting_refusals(settings, metadata, words):
    field = next(iter(metadata))
    error = refused(pkjwt(**metadata), settings)
    assert error.field == field and field in error.message and words in error.message, error.message
    assert "example" not in error.message  # the input is never echoed


# --- mutual TLS (RFC 8705), pushed authorization requests (RFC 9126), FAPI 2.0 ----------------------------

@pytest.fixture(scope="module")
def fapi2_settings(tmp_path_factory):
    """A test deployment.toml with [oauth] profile = "fapi2"."""
    from core import config
    return config.load(write_config(tmp_path_factory.mktemp("fapi2"), extra='[oauth]\nprofile = "fapi2"\n'))


def tls(**extra) -> dict:
    return {"token_endpoint_auth_method": "tls_client_auth", "grant_types": ["client_credentials"], **extra}


def self_signed(**extra) -> dict:
    return {"token_endpoint_auth_method": "self_signed_tls_client_auth", "grant_types": ["client_credentials"],
            "jwks": jwks((RSA, "k1")), **extra}


@pytest.mark.parametrize("field, value, dn, san", [
    # RFC 4514: types case-insensitive, written upper-case; spaces after separators dropped; \2C re-escaped.
    ("tls_client_auth_subject_dn", "cn=Client One, O=Example\\2C Inc.,c=SE", "CN=Client One,O=Example\\, Inc.,C=SE",
     None),
    ("tls_client_auth_subject_dn", "emailAddress=ops@example.com,CN=client",
     "1.2.840.113549.1.9.1=ops@example.com,CN=client", None),
    ("tls_client_auth_subject_dn", "2.5.4.3=client+OU=api,DC=example,DC=com", "CN=client+OU=api,DC=example,DC=com",
     None),
    ("tls_client_auth_san_dns", "Client.Example.COM", None, "dns:client.example.com"),
    ("tls_client_auth_san_uri", "spiffe://example.org/ns/billing", None, "uri:spiffe://example.org/ns/billing"),
    ("tls_client_auth_san_ip", "2001:DB8:0:0::1", None, "ip:2001:db8::1"),
    ("tls_client_auth_san_ip", "192.0.2.10", None, "ip:192.0.2.10"),
    ("tls_client_auth_san_email", "Billing+ops@Example.COM", None, "email:Billing+ops@example.com"),
])
def test_tls_client_auth_round_trip(tmp_path, settings, field, value, dn, san):
    from support import make_in_process
    from storage import clients
    out = validate(tls(**{field: value}), settings)
    assert (out["auth_method"], out["tls_client_auth_subject_dn"], out["tls_client_auth_san"]) == \
        ("tls_client_auth", dn, san)
    assert (out["jwks"], out["jwks_uri"], out["signing_alg"]) == (None, None, None)  # a CA vouches for the client
    env = make_in_process(tmp_path)
    with env.app.app_context():
        client, secret = clients.create("mtls", **out)
        assert secret is None and client.secret_hash is None
        assert (client.tls_client_auth_subject_dn, client.tls_client_auth_san) == (dn, san)
        view = client.public_view()
        assert (view["tls_client_auth_subject_dn"], view["tls_client_auth_san"], view["key_source"]) == (dn, san, None)
        given = cm.metadata_of(client)
        names = [name for name in cm.TLS_CLIENT_AUTH_FIELDS if name in given]
        assert names == [field]   # only the one set, under its RFC 8705 name, in its stored form
        assert given[field] == (dn or san.partition(":")[2])
        # What metadata_of gives back validates to the same registration (the normalised form is stable).
        assert validate(given, settings, existing=client) == out
        # Moving to another method drops the identifier.
        moved, _ = clients.update("mtls", **validate(pkjwt(), settings, existing=client))
        assert (moved.tls_client_auth_subject_dn, moved.tls_client_auth_san) == (None, None)
        assert not any(name in cm.metadata_of(moved) for name in cm.TLS_CLIENT_AUTH_FIELDS)


def test_a_stored_subject_dn_matches_the_certificate_exactly():
    """The normalised DN is what cryptography writes for a certificate carrying that subject."""
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "SE"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example, Inc."),
                      x509.NameAttribute(NameOID.EMAIL_ADDRESS, "ops@example.com"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "client one")])
    assert cm.subject_dn("cn=client one, emailAddress=ops@example.com, O=Example\\2C Inc., C=SE") \
        == name.rfc4514_string()


def test_self_signed_tls_client_auth_registers_its_certificate_key(settings):
    for keys in ({"jwks": jwks((P256, "e1"))}, {"jwks": None, "jwks_uri": "http://127.0.0.1:8000/jwks"},
                 {"jwks": None, "certificate": certificate(RSA).decode()}):
        out = validate(self_signed(**keys), settings)
        assert out["auth_method"] == "self_signed_tls_client_auth"
        assert (out["jwks"] or out["jwks_uri"]) and out["signing_alg"] is None
        assert (out["tls_client_auth_subject_dn"], out["tls_client_auth_san"]) == (None, None)


def test_self_signed_keys_are_stored_and_given_back(tmp_path, settings):
    from support import make_in_process
    from storage import clients
    out = validate(self_signed(), settings)
    env = make_in_process(tmp_path)
    with env.app.app_context():
        client, secret = clients.create("self-signed", **out)
        assert secret is None and client.public_view()["key_source"] == "jwks"
        given = cm.metadata_of(client)
        assert given["jwks"] == jwks((RSA, "k1")) and "token_endpoint_auth_signing_alg" not in given
        assert validate(given, settings, existing=client) == out


def test_par_certificate_binding_and_profile_round_trip(tmp_path, settings):
    from support import make_in_process
    from storage import clients
    metadata = tls(tls_client_auth_san_dns="client.example.com", require_pushed_authorization_requests=True,
                   tls_client_certificate_bound_access_tokens=True, profile="fapi2")
    out = validate(metadata, settings)
    assert (out["require_pushed_authorization_requests"], out["tls_client_certificate_bound_access_tokens"],
            out["profile"]) == (True, True, "fapi2")
    # The client's own to choose: they only bind itself (profile: stricter, never looser).
    assert validate(metadata, settings, admin=False) == out
    env = make_in_process(tmp_path)
    with env.app.app_context():
        client, _ = clients.create("strict", **out)
        assert clients.get("strict") == client
        view = client.public_view()
        assert (view["require_pushed_authorization_requests"], view["tls_client_certificate_bound_access_tokens"],
                view["profile"]) == (True, True, "fapi2")
        given = cm.metadata_of(client)
        assert (given["require_pushed_authorization_requests"], given["tls_client_certificate_bound_access_tokens"],
                given["profile"]) == (True, True, "fapi2")
        assert validate(given, settings, existing=client, admin=False) == out
        # Absent: the defaults; metadata_of always gives the booleans, the profile only when set.
        plain, _ = clients.update("strict", **validate(pkjwt(), settings, existing=client))
        given = cm.metadata_of(plain)
        assert (given["require_pushed_authorization_requests"], given["tls_client_certificate_bound_access_tokens"]) \
            == (False, False)
        assert "profile" not in given and plain.profile is None
    assert validate(pkjwt(profile=None, require_pushed_authorization_requests=None), settings)["profile"] is None


TLS_DN = {"tls_client_auth_subject_dn": "CN=client"}
TLS_REFUSALS = [
    # RFC 8705 §2.1.2: exactly one identifier, and only with tls_client_auth.
    (tls(), "token_endpoint_auth_method", "token_endpoint_auth_method tls_client_auth needs exactly one of "
     "tls_client_auth_subject_dn, tls_client_auth_san_dns, tls_client_auth_san_uri, tls_client_auth_san_ip, "
     "tls_client_auth_san_email"),
    (tls(**TLS_DN, tls_client_auth_san_dns="client.example.com"), "tls_client_auth_san_dns",
     "needs exactly one of tls_client_auth_subject_dn, tls_client_auth_san_dns, tls_client_auth_san_uri, "
     "tls_client_auth_san_ip, tls_client_auth_san_email, not tls_client_auth_subject_dn and tls_client_auth_san_dns"),
    (tls(tls_client_auth_san_ip="192.0.2.1", tls_client_auth_san_email="a@b.example"), "tls_client_auth_san_email",
     "not tls_client_auth_san_ip and tls_client_auth_san_email"),
    (pkjwt(**TLS_DN), "tls_client_auth_subject_dn",
     "tls_client_auth_subject_dn applies to token_endpoint_auth_method tls_client_auth only"),
    (pkjwt(tls_client_auth_san_ip="192.0.2.1"), "tls_client_auth_san_ip",
     "tls_client_auth_san_ip applies to token_endpoint_auth_method tls_client_auth only"),
    (self_signed(tls_client_auth_san_dns="client.example.com"), "tls_client_auth_san_dns", "tls_client_auth only"),
    (tls(**TLS_DN, jwks=jwks((RSA, "k1"))), "jwks",
     "jwks applies to token_endpoint_auth_method private_key_jwt or self_signed_tls_client_auth only"),
    (tls(**TLS_DN, token_endpoint_auth_signing_alg="PS256"), "token_endpoint_auth_signing_alg",
     "token_endpoint_auth_signing_alg applies to token_endpoint_auth_method private_key_jwt only"),
    # RFC 8705 §2.2: the self-signed certificate's key is registered; no keystore, no assertion alg.
    (self_signed(jwks=None), "jwks", "token_endpoint_auth_method self_signed_tls_client_auth needs the client "
     "certificate's public key: give jwks, jwks_uri or certificate"),
    (self_signed(token_endpoint_auth_signing_alg="PS256"), "token_endpoint_auth_signing_alg",
     "token_endpoint_auth_signing_alg applies to token_endpoint_auth_method private_key_jwt only"),
    (self_signed(jwks_uri="https://keys.example.com/jwks"), "jwks_uri",
     "Give only one of jwks, jwks_uri and certificate"),
    (self_signed(jwks=rsa_1024_jwks()), "jwks", "2048"),
    # Booleans and the profile.
    (pkjwt(require_pushed_authorization_requests="yes"), "require_pushed_authorization_requests",
     "require_pushed_authorization_requests must be true or false"),
    (pkjwt(tls_client_certificate_bound_access_tokens=1), "tls_client_certificate_bound_access_tokens",
     "tls_client_certificate_bound_access_tokens must be true or false"),
    (pkjwt(profile="oauth2"), "profile", "profile must be fapi2, or absent for the server's profile"),
    (pkjwt(profile="FAPI2"), "profile", "profile must be fapi2, or absent for the server's profile"),
    (pkjwt(profile=True), "profile", "profile must be fapi2, or absent for the server's profile"),
]


@pytest.mark.parametrize("metadata, field, words", TLS_REFUSALS)
def test_mtls_and_profile_refusals(settings, metadata, field, words):
    error = refused(metadata, settings)
    assert error.field == field and words in error.message, (error.field, error.message)


@pytest.mark.parametrize("field, value, words", [
    ("tls_client_auth_subject_dn", "not a dn", "must be a distinguished name in RFC 4514 string form"),
    ("tls_client_auth_subject_dn", "CN=client;O=Corp", "RFC 4514"),            # RFC 1779 separator
    ("tls_client_auth_subject_dn", "CN=client ,O=Corp", "RFC 4514"),           # unescaped trailing space
    ("tls_client_auth_subject_dn", "CN = client", "RFC 4514"),
    ("tls_client_auth_subject_dn", 'CN="client"', "RFC 4514"),
    ("tls_client_auth_subject_dn", "CN=#0c06636c69656e74", "RFC 4514"),        # a BER hex value
    ("tls_client_auth_subject_dn", "XX=client", "RFC 4514"),                    # an unknown type name
    ("tls_client_auth_subject_dn", "C=SWE", "RFC 4514"),                        # countryName is 2 letters
    ("tls_client_auth_subject_dn", "CN=a\nb", "must be a string of 1 to 1024 printable characters"),
    ("tls_client_auth_subject_dn", "", "must be a string of 1 to 1024 printable characters"),
    ("tls_client_auth_subject_dn", "CN=" + "a" * 1022, "must be a string of 1 to 1024 printable characters"),
    ("tls_client_auth_subject_dn", 5, "must be a string"),
    ("tls_client_auth_san_ip", "192.0.2.256", "tls_client_auth_san_ip must be an IPv4 or IPv6 address"),
    ("tls_client_auth_san_ip", "010.0.0.1", "must be an IPv4 or IPv6 address"),
    ("tls_client_auth_san_ip", "fe80::1%eth0", "must be an IPv4 or IPv6 address"),
    ("tls_client_auth_san_ip", "host.example.com", "must be an IPv4 or IPv6 address"),
    ("tls_client_auth_san_ip", 3232235521, "must be a non-empty string"),
    ("tls_client_auth_san_dns", "-client.example.com", "tls_client_auth_san_dns must be a DNS name"),
    ("tls_client_auth_san_dns", "client..example.com", "must be a DNS name"),
    ("tls_client_auth_san_dns", "client.example.com.", "must be a DNS name"),
    ("tls_client_auth_san_dns", "clïent.example.com", "must be a DNS name"),
    ("tls_client_auth_san_dns", "*.example.com", "must be a DNS name"),
    ("tls_client_auth_san_uri", "/client", "tls_client_auth_san_uri must be an absolute URI"),
    ("tls_client_auth_san_uri", "https://client.example.com/#x", "must not contain a fragment"),
    ("tls_client_auth_san_email", "client.example.com", "tls_client_auth_san_email must be an email address"),
    ("tls_client_auth_san_email", "a b@example.com", "must be an email address"),
    ("tls_client_auth_san_email", "ops@-example.com", "must be an email address"),
    ("tls_client_auth_san_email", "", "must be a non-empty string"),
])
def test_tls_client_auth_identifier_refusals(settings, field, value, words):
    error = refused(tls(**{field: value}), settings)
    assert error.field == field and words in error.message, error.message
    if isinstance(value, str) and len(value) > 3:
        assert value not in error.message  # the input is never echoed


FAPI_REFUSALS = [
    # FAPI 2.0 Security Profile §5.3.2.1: no client secrets, no public clients.
    ({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_basic"},
     "token_endpoint_auth_method", "invalid_client_metadata"),
    ({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_post"},
     "token_endpoint_auth_method", "invalid_client_metadata"),
    ({"redirect_uris": ["https://app.example.com/cb"], "token_endpoint_auth_method": "none"},
     "token_endpoint_auth_method", "invalid_client_metadata"),
    # §5.4.1: PS256, ES256 or EdDSA.
    (pkjwt(token_endpoint_auth_signing_alg="RS256"), "token_endpoint_auth_signing_alg", "invalid_client_metadata"),
    (pkjwt(jwks=jwks((ec_key(ec.SECP384R1), "e3")), token_endpoint_auth_signing_alg="ES384"),
     "token_endpoint_auth_signing_alg",
     "invalid_client_metadata"),
    # https redirect URIs (http on a loopback host only, for native apps: RFC 8252 §7.3).
    (pkjwt(grant_types=["authorization_code"], redirect_uris=["https://app.example.com/cb", "com.example.app:/cb"]),
     "redirect_uris", "invalid_redirect_uri"),
]
FAPI_MESSAGES = {
    "token_endpoint_auth_method": "FAPI 2.0: token_endpoint_auth_method must be private_key_jwt, tls_client_auth or "
                                  "self_signed_tls_client_auth (no public clients, no client secrets)",
    "token_endpoint_auth_signing_alg": "FAPI 2.0: token_endpoint_auth_signing_alg must be PS256, ES256 or EdDSA",
    "redirect_uris": "FAPI 2.0: a redirect URI must use https (http only on a loopback address such as 127.0.0.1, "
                     "for native apps)",
}


@pytest.mark.parametrize("metadata, field, error", FAPI_REFUSALS)
def test_fapi2_registration_rules(settings, fapi2_settings, metadata, field, error):
    # Under the server's profile, and under the client's own profile on an oauth2 server alike.
    for where, extra in ((fapi2_settings, {}), (settings, {"profile": "fapi2"})):
        refusal = refused({**metadata, **extra}, where, error)
        assert (refusal.field, refusal.message) == (field, FAPI_MESSAGES[field])
    # Without FAPI 2.0 the same registration is accepted.
    assert validate(metadata, settings)


def test_fapi2_accepts_its_client_authentication_methods_and_loopback_http(settings, fapi2_settings):
    redirects = ["https://app.example.com/cb", "http://127.0.0.1:8080/cb", "http://[::1]/cb"]
    for where, extra in ((fapi2_settings, {}), (settings, {"profile": "fapi2"})):
        for alg in (None, "PS256"):
            out = validate(pkjwt(grant_types=["authorization_code"], redirect_uris=redirects,
                                 token_endpoint_auth_signing_alg=alg, **extra), where)
            assert out["redirect_uris"] == tuple(redirects) and out["signing_alg"] == alg
        assert validate(pkjwt(jwks=jwks((P256, "e1")), token_endpoint_auth_signing_alg="ES256", **extra),
                        where)["signing_alg"] == "ES256"
        assert validate(pkjwt(jwks=jwks((ed_key(), "o1")), token_endpoint_auth_signing_alg="EdDSA", **extra),
                        where)["signing_alg"] == "EdDSA"
        assert validate(tls(**TLS_DN, **extra), where)["auth_method"] == "tls_client_auth"
        assert validate(self_signed(**extra), where)["auth_method"] == "self_signed_tls_client_auth"
    # Under the server's FAPI 2.0 profile a client cannot opt out: "oauth2" is no profile value.
    assert refused(pkjwt(profile="oauth2"), fapi2_settings).field == "profile"
    # Plain http stays refused for everyone (the general rule, RFC 8252 §7.3).
    error = refused(pkjwt(grant_types=["authorization_code"], redirect_uris=["http://app.example.com/cb"]),
                    fapi2_settings, "invalid_redirect_uri")
    assert "must use https" in error.message


# --- administrator-only fields --------------------------------------------------------------------------

def test_non_admins_cannot_set_policy_fields(settings):
    for field, value in (("first_party", True), ("audience_policy", "legacy"), ("token_reuse", "allow"),
                         ("require_explicit_typ", True), ("require_explicit_typ", False),
                         ("access_token_lifetime", 600), ("refresh_token_lifetime", 600), ("id_token_lifetime", 600),
                         ("resources", ["https://api.example.com/"])):
        error = refused(pkjwt(**{field: value}), settings, admin=False)
        assert error.field == field and error.message == f"Only an administrator may set {field}"
    # The defaults may be sent back as they are.
    out = validate(pkjwt(first_party=False, resources=[]), settings, admin=False)
    assert out["first_party"] is False and out["audience_policy"] is None and out["resources"] == ()
    assert validate(pkjwt(require_explicit_typ=None), settings, admin=False)["require_explicit_typ"] is None
    # The token settings only bind the client itself: they are its own to choose.
    out = validate(pkjwt(dpop_bound_access_tokens=True, require_dpop_nonce=True, access_token_format="jwt"), settings,
                   admin=False)
    assert (out["dpop_bound_access_tokens"], out["require_dpop_nonce"], out["access_token_format"]) == \
        (True, True, "jwt")


def test_a_client_updating_itself_keeps_the_administrators_choices(tmp_path, settings):
    from support import make_in_process
    from storage import clients
    env = make_in_process(tmp_path)
    with env.app.app_context():
        client, _ = clients.create("managed", **validate(pkjwt(token_reuse="allow", first_party=True,
                                                              access_token_lifetime=600,
                                                              resources=["https://api.example.com/"]), settings))
    out = validate(pkjwt(client_name="renamed"), settings, existing=client, admin=False)
    assert (out["token_reuse"], out["first_party"], out["access_token_lifetime"]) == ("allow", True, 600)
    assert out["resources"] == ("https://api.example.com/",)
    # Its resources may be sent back unchanged, never changed.
    assert validate(pkjwt(resources=["https://api.example.com/"]), settings, existing=client,
                    admin=False)["resources"] == ("https://api.example.com/",)
    for resources in ([], ["https://api.example.com/", "https://other.example.com/"], ["https://other.example.com/"]):
        assert refused(pkjwt(resources=resources), settings, existing=client, admin=False).field == "resources"
    assert validate(pkjwt(token_reuse="allow"), settings, existing=client, admin=False)["token_reuse"] == "allow"
    # The same for require_explicit_typ, in both directions.
    with env.app.app_context():
        strict, _ = clients.create("typed", **validate(pkjwt(require_explicit_typ=True), settings))
    assert validate(pkjwt(), settings, existing=strict, admin=False)["require_explicit_typ"] is True
    assert validate(pkjwt(require_explicit_typ=True), settings, existing=strict,
                    admin=False)["require_explicit_typ"] is True
    for value in (False, None):   # looser, or back to the server's: an administrator's to decide
        assert refused(pkjwt(require_explicit_typ=value), settings, existing=strict,
                       admin=False).field == "require_explicit_typ"
    assert refused(pkjwt(token_reuse="prevent"), settings, existing=client, admin=False).field == "token_reuse"
    # An administrator's replace is complete: what is absent returns to the default.
    assert validate(pkjwt(), settings, existing=client)["token_reuse"] is None
    # RFC 7592 §2.2: the client_id cannot change.
    assert refused(pkjwt(client_id="other"), settings, existing=client).field == "client_id"
    assert validate(pkjwt(client_id="managed"), settings, existing=client)


def test_a_client_registering_itself_asks_only_for_standard_scopes(settings):
    out = validate(pkjwt(scope="openid profile email address phone offline_access"), settings, admin=False)
    assert out["scopes"] == cm.STANDARD_SCOPES
    for scope in ("openid read", "payments", "openid OPENID"):
        error = refused(pkjwt(scope=scope), settings, admin=False)
        assert error.field == "scope" and "administrator" in error.message and "read" not in error.message
    # An administrator registers any scope.
    assert validate(pkjwt(scope="openid read admin"), settings)["scopes"] == ("openid", "read", "admin")


def test_a_client_updating_itself_cannot_widen_its_scope_or_grant_types(tmp_path, settings):
    from support import make_in_process
    from storage import clients
    env = make_in_process(tmp_path)
    with env.app.app_context():
        client, _ = clients.create("narrow", **validate(pkjwt(scope="openid read"), settings))
    # Keeping or removing is allowed, even scopes outside the standard ones that an administrator gave.
    for scope in ("openid read", "read", "openid", None):
        assert validate(pkjwt(scope=scope), settings, existing=client, admin=False)
    for scope in ("openid read write", "profile", "openid read admin"):
        error = refused(pkjwt(scope=scope), settings, existing=client, admin=False)
        assert error.field == "scope" and "administrator" in error.message
    error = refused(pkjwt(grant_types=["client_credentials", "authorization_code"],
                          redirect_uris=["https://a.example/cb"]), settings, existing=client, admin=False)
    assert error.field == "grant_types" and "administrator" in error.message
    # The RFC 7591 default (authorization_code) is a new grant type for this client too.
    assert refused({k: v for k, v in pkjwt(redirect_uris=["https://a.example/cb"]).items() if k != "grant_types"},
                   settings, existing=client, admin=False).field == "grant_types"
    # An administrator's replace may widen both.
    out = validate(pkjwt(scope="openid read write", grant_types=["client_credentials", "authorization_code"],
                         redirect_uris=["https://a.example/cb"]), settings, existing=client)
    assert out["scopes"] == ("openid", "read", "write")
    with env.app.app_context():
        wide, _ = clients.create("wide", **validate(pkjwt(grant_types=["client_credentials", "authorization_code"],
                                                          redirect_uris=["https://a.example/cb"]), settings))
    assert validate(pkjwt(), settings, existing=wide, admin=False)["grant_types"] == ("client_credentials",)


@pytest.mark.parametrize("client_id", ["", "x" * 256, "a\nb", "tab\there", "nul\x00", 7, None])
def test_client_id_rules(client_id):
    with pytest.raises(MetadataError) as info:
        cm.check_client_id(client_id)
    assert info.value.field == "client_id"


def test_client_ids_that_pass():
    for client_id in ("myapp", "x" * 255, "WSO2 App", "app/with/slashes", "ünïcode"):
        assert cm.check_client_id(client_id) == client_id


# --- keys_from_jwks ---------------------------------------------------------------------------------------

def test_keys_from_jwks_describes_each_key():
    ed = ed_key()
    text, infos = cm.keys_from_jwks(jwks_of((RSA, "r"), (P256, "e"), (ed, None)))
    assert json.loads(text) == json.loads(jwks_of((RSA, "r"), (P256, "e"), (ed, None)))
    assert [(i.kid, i.kty, i.size, i.alg) for i in infos] == [("r", "RSA", 2048, None), ("e", "EC", "P-256", None),
                                                              (None, "OKP", "Ed25519", None)]
    from keystore.jwk import PublicKey
    assert infos[0].thumbprint == PublicKey.from_cryptography(RSA.public_key()).thumbprint


@pytest.mark.parametrize("text", ['{"keys": [', '{"keys": [], "keys": []}', "[]", '{"keys": [NaN]}', b"\xff"])
def test_keys_from_jwks_refuses_what_is_not_strict_json(text):
    with pytest.raises(MetadataError):
        cm.keys_from_jwks(text)


def test_keys_from_jwks_refuses_an_x5c_of_another_key():
    """RFC 7517 §4.7: the certificate holds the JWK's own key; otherwise its validity, checked on
    every request, would be another key's."""
    own, _ = cm.keys_from_certificate(certificate(RSA))
    cm.keys_from_jwks(own)
    member = json.loads(own)["keys"][0]
    other = json.loads(jwks_of((P256, "p")))["keys"][0]
    for label, bad, words in [
        ("another key", {**other, "x5c": member["x5c"]}, "key 0: the x5c certificate holds another key than the JWK"),
        ("unreadable", {**member, "x5c": ["AAAA"]}, "key 0: the x5c certificate cannot be read"),
        ("not an array", {**member, "x5c": "AAAA"}, "key 0: x5c must be a non-empty array of base64 certificates"),
    ]:
        with pytest.raises(MetadataError) as info:
            cm.keys_from_jwks(json.dumps({"keys": [bad]}))
        assert info.value.message == "The JWK Set was refused: " + words, label


# --- keys_from_certificate -------------------------------------------------------------------------------

def test_keys_from_a_pem_certificate():
    data = certificate(RSA)
    text, infos = cm.keys_from_certificate(data)
    key = json.loads(text)["keys"][0]
    der = x509.load_pem_x509_certificate(data).public_bytes(serialization.Encoding.DER)
    assert key["x5c"] == [base64.b64encode(der).decode()]
    assert key["x5t#S256"] == b64(hashlib.sha256(der).digest())
    assert key["kid"] == infos[0].thumbprint and key["use"] == "sig"
    assert (infos[0].kty, infos[0].size) == ("RSA", 2048)


def test_keys_from_a_der_certificate_and_other_key_types():
    assert cm.keys_from_certificate(certificate(RSA, encoding=serialization.Encoding.DER))[1][0].kty == "RSA"
    assert cm.keys_from_certificate(certificate(P256))[1][0].size == "P-256"
    assert cm.keys_from_certificate(certificate(ec_key(ec.SECP384R1)))[1][0].size == "P-384"
    assert cm.keys_from_certificate(certificate(ed_key()))[1][0].size == "Ed25519"


def dsa_certificate() -> bytes:
    return certificate(dsa.generate_private_key(2048))


@pytest.mark.parametrize("make, message", [
    (lambda: certificate(RSA, days=-1, start_days=-30), "expired"),
    (lambda: certificate(RSA, days=30, start_days=2), "not valid yet"),
    (lambda: certificate(RSA_1024), "2048"),
    (lambda: certificate(ec_key(ec.SECP256K1)), "unsupported"),
    (dsa_certificate, "unsupported"),
    (lambda: pem(RSA), "private key"),
    (lambda: RSA.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption()), "private key"),
    (lambda: RSA.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                               serialization.BestAvailableEncryption(b"pw")), "private key"),
    (lambda: b"not a certificate", "not a PEM or DER"),
    (lambda: b"", "empty"),
    (lambda: b"-----BEGIN CERTIFICATE-----\n" + b"A" * 70000, "too large"),
])
def test_certificate_refusals(make, message):
    with pytest.raises(MetadataError) as info:
        cm.keys_from_certificate(make())
    assert message in info.value.message, info.value.message


def test_an_expired_certificate_is_refused_in_metadata(settings):
    error = refused(pkjwt(jwks=None, certificate=certificate(RSA, days=-1, start_days=-30).decode()), settings)
    assert error.field == "certificate" and "expired" in error.message


# --- keys_from_jwks_uri ---------------------------------------------------------------------------------

@pytest.fixture
def services(tmp_path):
    from support import make_in_process
    return make_in_process(tmp_path).app.extensions["idp"].services


@pytest.fixture
def key_server():
    server = JWKSServer(jwks((RSA, "k1"), (P256, "k2")))
    yield server
    server.close()


def test_keys_from_jwks_uri_fetches_once(services, key_server):
    infos = cm.keys_from_jwks_uri(key_server.url(), services)
    assert [(i.kid, i.kty) for i in infos] == [("k1", "RSA"), ("k2", "EC")]
    assert key_server.hits == 1
    # The token endpoint then uses the same cached set: no second fetch.
    assert len(services.jwks_fetcher.keys(key_server.url())) == 2
    assert key_server.hits == 1


def test_keys_from_jwks_uri_refusals(services, key_server):
    key_server.default = {"keys": [{"kty": "oct", "k": b64(b"secret")}]}
    with pytest.raises(MetadataError) as info:
        cm.keys_from_jwks_uri(key_server.url("/bad"), services)
    assert info.value.field == "jwks_uri"
    port = key_server.port
    key_server.close()
    with pytest.raises(MetadataError):
        cm.keys_from_jwks_uri(f"http://127.0.0.1:{port}/gone", services)  # unreachable


def test_keys_from_jwks_uri_applies_the_ssrf_rules_before_any_connection(tmp_path, strict_settings, key_server):
    import dataclasses
    from support import make_in_process
    services = make_in_process(tmp_path).app.extensions["idp"].services
    strict = dataclasses.replace(services, settings=strict_settings)
    for uri in (key_server.url(), key_server.url().replace("http:", "https:"), "https://10.0.0.1/jwks"):
        with pytest.raises(MetadataError) as info:
            cm.keys_from_jwks_uri(uri, strict)
        assert info.value.field == "jwks_uri"
    assert key_server.hits == 0


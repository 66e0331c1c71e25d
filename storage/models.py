"""Tables. Column types are chosen to have the same definition on SQLite, PostgreSQL and MariaDB:
times are integer seconds since the epoch (UTC), lists are space-separated text, JSON is text."""

from __future__ import annotations

import peewee

from storage.database import database_proxy

# 4: IDN_OAUTH_CLIENT_ACTIVITY (a new table: upgrade() creates it on an existing database).
SCHEMA_VERSION = 4


class BaseModel(peewee.Model):
    class Meta:
        database = database_proxy
        legacy_table_names = False


class JTI(BaseModel):
    """IDN_OIDC_JTI: one row per client assertion `jti` seen, keyed by (client, jti) (RFC 7523 §3 item 7)."""

    client_id = peewee.CharField(max_length=255, column_name="CLIENT_ID")
    jwt_id = peewee.CharField(max_length=255, column_name="JWT_ID")
    # Until this time the assertion could still be accepted (its exp plus the allowed skew).
    exp_time = peewee.BigIntegerField(column_name="EXP_TIME", index=True)
    time_created = peewee.BigIntegerField(column_name="TIME_CREATED")

    class Meta:
        table_name = "IDN_OIDC_JTI"
        primary_key = peewee.CompositeKey("client_id", "jwt_id")


class DPoPJTI(BaseModel):
    """DPoP proof `jti`s seen, keyed by (key thumbprint, jti) (RFC 9449 §11.1): the same
    discipline as IDN_OIDC_JTI, in its own table."""

    jkt = peewee.CharField(max_length=64, column_name="JKT")
    jwt_id = peewee.CharField(max_length=255, column_name="JWT_ID")
    exp_time = peewee.BigIntegerField(column_name="EXP_TIME", index=True)
    time_created = peewee.BigIntegerField(column_name="TIME_CREATED")

    class Meta:
        table_name = "IDN_OAUTH_DPOP_JTI"
        primary_key = peewee.CompositeKey("jkt", "jwt_id")


class RevokedJWT(BaseModel):
    """JWT access tokens revoked while not persisted ([oauth.token] persist = false): a deny-list
    by `jti`, kept until the token's own expiry."""

    jti = peewee.CharField(max_length=64, primary_key=True)
    client_id = peewee.CharField(max_length=255)
    exp_time = peewee.BigIntegerField(index=True)

    class Meta:
        table_name = "oauth_revoked_jwt"


class PushedAuthorizationRequest(BaseModel):
    """RFC 9126: an authorization request pushed by an authenticated client, used once by its
    request_uri (only its SHA-256 is stored)."""

    request_uri_hash = peewee.CharField(max_length=64, primary_key=True)
    client_id = peewee.CharField(max_length=255)
    parameters = peewee.TextField()                                # the validated parameters, JSON
    expires_at = peewee.BigIntegerField(index=True)
    used = peewee.BooleanField(default=False)
    # A code was issued for it: one code per pushed request, however often its pages are posted.
    code_issued = peewee.BooleanField(default=False, constraints=[peewee.SQL("DEFAULT FALSE")])

    class Meta:
        table_name = "oauth_par_request"


class Client(BaseModel):
    """A registered OAuth client (a service provider's inbound OAuth configuration)."""

    client_id = peewee.CharField(max_length=255, unique=True)
    client_name = peewee.CharField(max_length=255, default="")
    auth_method = peewee.CharField(max_length=40)
    secret_hash = peewee.CharField(max_length=128, null=True)
    grant_types = peewee.TextField(default="")
    scopes = peewee.TextField(default="")
    redirect_uris = peewee.TextField(default="")
    jwks = peewee.TextField(null=True)
    jwks_uri = peewee.CharField(max_length=2048, null=True)
    signing_alg = peewee.CharField(max_length=20, null=True)
    audience_policy = peewee.CharField(max_length=10, null=True)   # None: the handler's AudiencePolicy
    token_reuse = peewee.CharField(max_length=10, null=True)       # None: the handler's PreventTokenReuse
    # Nullable or with a database default: nodes of schema version 1 still insert clients
    # without these columns during a rolling upgrade.
    description = peewee.TextField(null=True)
    first_party = peewee.BooleanField(default=False, constraints=[peewee.SQL("DEFAULT FALSE")])  # no consent page
    # Lifetimes in seconds; None: [oauth.token_validation].
    access_token_lifetime = peewee.IntegerField(null=True)
    refresh_token_lifetime = peewee.IntegerField(null=True)
    id_token_lifetime = peewee.IntegerField(null=True)
    created_at = peewee.BigIntegerField()
    updated_at = peewee.BigIntegerField()
    # Schema version 3 (nullable or with a database default, added to existing tables):
    # RFC 9449 §5.2: every access token of this client is DPoP-bound.
    dpop_bound_access_tokens = peewee.BooleanField(default=False, constraints=[peewee.SQL("DEFAULT FALSE")])
    require_dpop_nonce = peewee.BooleanField(default=False, constraints=[peewee.SQL("DEFAULT FALSE")])
    access_token_format = peewee.CharField(max_length=10, null=True)  # None: [oauth.token] access_token_format
    resources = peewee.TextField(null=True)                          # RFC 8707 resources it may ask for
    # RFC 9126 §6: its authorization requests must be pushed (PAR).
    require_pushed_authorization_requests = peewee.BooleanField(default=False, constraints=[peewee.SQL("DEFAULT FALSE")])
    # RFC 8705 §2.1.2: tls_client_auth identifies the client by one of these.
    tls_client_auth_subject_dn = peewee.TextField(null=True)
    tls_client_auth_san = peewee.TextField(null=True)               # "dns:…", "uri:…", "ip:…" or "email:…"
    # RFC 8705 §3.4: its access tokens are bound to the certificate it presents.
    tls_client_certificate_bound_access_tokens = peewee.BooleanField(default=False,
                                                                     constraints=[peewee.SQL("DEFAULT FALSE")])
    profile = peewee.CharField(max_length=10, null=True)             # "fapi2": stricter than the server's
    # Schema version 4 (nullable, added to existing tables). None: the handler's RequireExplicitTyp.
    require_explicit_typ = peewee.BooleanField(null=True)

    class Meta:
        table_name = "oauth_client"


class AccessToken(BaseModel):
    """Issued access tokens, stored as SHA-256 of the token: a database leak reveals no usable token."""

    token_hash = peewee.CharField(max_length=64, primary_key=True)
    client_id = peewee.CharField(max_length=255, index=True)
    scope = peewee.TextField(default="")
    issued_at = peewee.BigIntegerField()
    expires_at = peewee.BigIntegerField(index=True)
    revoked = peewee.BooleanField(default=False)
    user_sub = peewee.CharField(max_length=64, null=True, index=True)  # None: a client's own token
    grant_id = peewee.CharField(max_length=64, null=True, index=True)  # the code / refresh family
    jkt = peewee.CharField(max_length=64, null=True)                   # RFC 9449 §6: bound to this DPoP key
    audience = peewee.TextField(null=True)                             # RFC 8707 resources, space-separated
    x5t_s256 = peewee.CharField(max_length=64, null=True)              # RFC 8705 §3: bound to this certificate

    class Meta:
        table_name = "oauth_access_token"


class User(BaseModel):
    """End users and admins. Passwords are stored as scrypt hashes (storage.users)."""

    sub = peewee.CharField(max_length=64, unique=True)             # stable, opaque subject identifier
    username = peewee.CharField(max_length=255, unique=True)
    password_hash = peewee.CharField(max_length=255)
    is_admin = peewee.BooleanField(default=False)
    claims = peewee.TextField(default="{}")                        # profile claims as JSON (OIDC Core §5.1)
    created_at = peewee.BigIntegerField()
    updated_at = peewee.BigIntegerField()

    class Meta:
        table_name = "users"


class UserSession(BaseModel):
    """A browser sign-in; the cookie carries a random value, the table its SHA-256."""

    session_hash = peewee.CharField(max_length=64, primary_key=True)
    user_sub = peewee.CharField(max_length=64, index=True)
    auth_time = peewee.BigIntegerField()
    expires_at = peewee.BigIntegerField(index=True)

    class Meta:
        table_name = "user_session"


class Consent(BaseModel):
    """Scopes a user has approved for a client, so the consent page is asked once."""

    user_sub = peewee.CharField(max_length=64)
    client_id = peewee.CharField(max_length=255)
    scopes = peewee.TextField(default="")
    granted_at = peewee.BigIntegerField()

    class Meta:
        table_name = "oauth_consent"
        primary_key = peewee.CompositeKey("user_sub", "client_id")


class AuthorizationCode(BaseModel):
    """RFC 6749 §4.1.2: single use, short-lived, bound to everything the authorization request said."""

    code_hash = peewee.CharField(max_length=64, primary_key=True)
    grant_id = peewee.CharField(max_length=64, unique=True)        # tokens issued from this code carry it
    client_id = peewee.CharField(max_length=255)
    user_sub = peewee.CharField(max_length=64)
    redirect_uri = peewee.TextField()
    redirect_uri_sent = peewee.BooleanField(default=True)           # False: omitted, the only registered one
    scope = peewee.TextField(default="")
    nonce = peewee.TextField(null=True)
    code_challenge = peewee.CharField(max_length=128, null=True)
    code_challenge_method = peewee.CharField(max_length=10, null=True)
    auth_time = peewee.BigIntegerField()
    issued_at = peewee.BigIntegerField()
    expires_at = peewee.BigIntegerField(index=True)
    used = peewee.BooleanField(default=False)
    reused = peewee.BooleanField(default=False)                    # a second redemption was attempted
    dpop_jkt = peewee.CharField(max_length=64, null=True)          # RFC 9449 §10: redeemed with this key only
    resources = peewee.TextField(null=True)                        # RFC 8707 §2.1, space-separated

    class Meta:
        table_name = "oauth_authorization_code"


class RefreshToken(BaseModel):
    """Refresh tokens, stored hashed. Each use rotates: the old row becomes `rotated`; presenting a
    rotated one again revokes its whole family (every token with the same grant_id)."""

    token_hash = peewee.CharField(max_length=64, primary_key=True)
    grant_id = peewee.CharField(max_length=64, index=True)
    client_id = peewee.CharField(max_length=255, index=True)
    user_sub = peewee.CharField(max_length=64, index=True)
    scope = peewee.TextField(default="")
    auth_time = peewee.BigIntegerField()
    issued_at = peewee.BigIntegerField()
    expires_at = peewee.BigIntegerField(index=True)
    state = peewee.CharField(max_length=10, default="active")      # active, rotated, revoked
    jkt = peewee.CharField(max_length=64, null=True)               # RFC 9449 §5: a public client's, bound
    resources = peewee.TextField(null=True)                        # RFC 8707: what the grant may address

    class Meta:
        table_name = "oauth_refresh_token"


class AuthFailure(BaseModel):
    """Recent failed client authentications, for the console (written by a listener, purged by age)."""

    client_id = peewee.CharField(max_length=255, index=True)
    time = peewee.BigIntegerField(index=True)
    method = peewee.CharField(max_length=40, null=True)
    reason = peewee.CharField(max_length=64, null=True)
    alg = peewee.CharField(max_length=20, null=True)
    kid = peewee.CharField(max_length=255, null=True)
    remote_addr = peewee.CharField(max_length=64, null=True)
    # What the operator needs and the caller was not told (why a jwks_uri fetch failed…). Added
    # after schema version 2; nullable, so upgrade() adds it to an existing table.
    detail = peewee.CharField(max_length=255, null=True)

    class Meta:
        table_name = "oauth_auth_failure"


class ClientActivity(BaseModel):
    """IDN_OAUTH_CLIENT_ACTIVITY: per client and hour, how often each counter moved (tokens issued,
    failures by reason, the shape of accepted client assertions). Every node adds its counts to
    the same rows (storage.activity), so the console shows the whole deployment."""

    client_id = peewee.CharField(max_length=255, column_name="CLIENT_ID")
    hour = peewee.BigIntegerField(column_name="EPOCH_HOUR", index=True)   # seconds since the epoch // 3600
    name = peewee.CharField(max_length=64, column_name="COUNTER")         # "issued", "failure:<reason>", "aud:issuer"…
    count = peewee.BigIntegerField(column_name="TOTAL")
    last_time = peewee.BigIntegerField(column_name="LAST_TIME")           # the latest event counted in the row

    class Meta:
        table_name = "IDN_OAUTH_CLIENT_ACTIVITY"
        primary_key = peewee.CompositeKey("client_id", "hour", "name")


class SchemaVersion(BaseModel):
    version = peewee.IntegerField()
    applied_at = peewee.BigIntegerField()

    class Meta:
        table_name = "schema_version"


class InitialAccessToken(BaseModel):
    """RFC 7591 §3: a bearer token an administrator hands out that lets its holder register
    clients; stored as SHA-256, limited in time and in number of uses."""

    token_hash = peewee.CharField(max_length=64, primary_key=True)
    created_at = peewee.BigIntegerField()
    expires_at = peewee.BigIntegerField(index=True)
    remaining_uses = peewee.IntegerField()

    class Meta:
        table_name = "oauth_initial_access_token"


class RegistrationAccessToken(BaseModel):
    """RFC 7592 §3: the bearer token a registered client manages its own registration with;
    stored as SHA-256, bound to that one client."""

    token_hash = peewee.CharField(max_length=64, primary_key=True)
    client_id = peewee.CharField(max_length=255, index=True)
    issued_at = peewee.BigIntegerField()

    class Meta:
        table_name = "oauth_registration_access_token"


TABLES = [JTI, DPoPJTI, RevokedJWT, PushedAuthorizationRequest, Client, AccessToken, User, UserSession, Consent, AuthorizationCode, RefreshToken, AuthFailure,
          ClientActivity, SchemaVersion, InitialAccessToken, RegistrationAccessToken]

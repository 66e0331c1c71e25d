"""Tables. Column types are chosen to have the same definition on SQLite, PostgreSQL and MariaDB:
times are integer seconds since the epoch (UTC), lists are space-separated text, JSON is text."""

from __future__ import annotations

import peewee

from storage.database import database_proxy

SCHEMA_VERSION = 1


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
    created_at = peewee.BigIntegerField()
    updated_at = peewee.BigIntegerField()

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

    class Meta:
        table_name = "oauth_access_token"


class SchemaVersion(BaseModel):
    version = peewee.IntegerField()
    applied_at = peewee.BigIntegerField()

    class Meta:
        table_name = "schema_version"


TABLES = [JTI, Client, AccessToken, SchemaVersion]

"""Command line: `flask --app app clients|keystore|assertion|jti|db …`."""

from __future__ import annotations

import json
import sys
import time
import uuid

import click
from cryptography.hazmat.primitives import hashes, serialization
from flask import Flask, current_app
from flask.cli import AppGroup

from keystore.jwk import SIGNING_ALGORITHMS, InvalidKey, parse_jwks
from keystore.jwks_uri import JWKSFetchError, check_jwks_uri
from keystore.signing import default_alg, sign
from keystore.store import KeystoreError
from server import playground
from storage import clients as client_store
from storage import codes as code_store
from storage import refresh as refresh_store
from storage import users as user_store
from storage.clients import AUTH_METHODS
from storage.models import UserSession
from storage.purge import purge_all
from storage.schema import upgrade

clients_cli = AppGroup("clients", help="Register and inspect OAuth clients.")
keystore_cli = AppGroup("keystore", help="The primary keystore: certificates by alias.")
assertion_cli = AppGroup("assertion", help="Client assertions for testing and examples.")
jti_cli = AppGroup("jti", help="The IDN_OIDC_JTI replay table.")
db_cli = AppGroup("db", help="The identity database schema.")
users_cli = AppGroup("users", help="End users who sign in at the authorization endpoint.")
admin_cli = AppGroup("admin", help="Administrators of the console and the registration API.")


def _services():
    return current_app.extensions["idp"].services


def _print(obj) -> None:
    click.echo(json.dumps(obj, indent=2))


@clients_cli.command("create")
@click.option("--client-id", required=True)
@click.option("--auth-method", required=True, type=click.Choice(AUTH_METHODS))
@click.option("--client-name", default="")
@click.option("--grant-type", "grant_types", multiple=True, default=("client_credentials",), show_default=True)
@click.option("--scope", "scopes", multiple=True)
@click.option("--redirect-uri", "redirect_uris", multiple=True)
@click.option("--jwks-file", type=click.File("rb"), help="The client's public keys as a JWKS document.")
@click.option("--jwks-uri", help="Where the server fetches the client's public keys.")
@click.option("--signing-alg", type=click.Choice(SIGNING_ALGORITHMS), help="Pin token_endpoint_auth_signing_alg.")
@click.option("--audience-policy", type=click.Choice(["strict", "legacy"]))
@click.option("--token-reuse", type=click.Choice(["allow", "prevent"]))
def clients_create(client_id, auth_method, client_name, grant_types, scopes, redirect_uris, jwks_file, jwks_uri,
                   signing_alg, audience_policy, token_reuse):
    """Register a client and print it as JSON (with the generated secret, once, for secret methods).

    A private_key_jwt client with neither --jwks-file nor --jwks-uri uses the certificate stored in
    the primary keystore under its client id as alias."""
    if not 0 < len(client_id) <= 255 or any(ord(c) < 0x20 or ord(c) == 0x7f for c in client_id):
        raise click.BadParameter("1 to 255 printable characters", param_hint="--client-id")
    jwks = None
    if auth_method != "private_key_jwt" and (jwks_file or jwks_uri or signing_alg):
        raise click.UsageError("--jwks-file, --jwks-uri and --signing-alg apply to private_key_jwt only")
    if jwks_file and jwks_uri:
        raise click.UsageError("give --jwks-file or --jwks-uri, not both")
    if jwks_file:
        raw = jwks_file.read()
        try:
            parse_jwks(raw)
        except InvalidKey as exc:
            raise click.UsageError(f"--jwks-file: {exc}") from None
        jwks = json.dumps(json.loads(raw), separators=(",", ":"))
    if jwks_uri:
        fetch = _services().settings.jwks_fetch
        try:
            check_jwks_uri(jwks_uri, require_https=fetch["require_https"], allowed_hosts=fetch["allowed_hosts"])
        except JWKSFetchError as exc:
            raise click.UsageError(f"--jwks-uri: {exc}") from None
    try:
        client, secret = client_store.create(
            client_id, auth_method, client_name=client_name, grant_types=grant_types, scopes=scopes,
            redirect_uris=redirect_uris, jwks=jwks, jwks_uri=jwks_uri, signing_alg=signing_alg,
            audience_policy=audience_policy, token_reuse=token_reuse)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    out = client.public_view()
    if secret:
        out["client_secret"] = secret
    _print(out)
    if auth_method == "private_key_jwt" and not jwks and not jwks_uri:
        if _services().keystore().trusted_certificate(client_id) is None:
            click.echo(f"note: no certificate with alias {client_id} in the keystore yet; import one with "
                       f"`flask keystore import-cert --alias {client_id} --file CERT`", err=True)


@clients_cli.command("list")
def clients_list():
    _print([c.public_view() for c in client_store.all_clients()])


@clients_cli.command("show")
@click.argument("client_id")
def clients_show(client_id):
    client = client_store.get(client_id)
    if client is None:
        raise click.ClickException("no such client")
    _print(client.public_view())


@clients_cli.command("delete")
@click.argument("client_id")
def clients_delete(client_id):
    if not client_store.delete(client_id):
        raise click.ClickException("no such client")
    click.echo(f"deleted {client_id}")


@keystore_cli.command("import-cert")
@click.option("--alias", required=True, help="The client id, for a client's certificate.")
@click.option("--file", "cert_file", required=True, type=click.File("rb"), help="PEM or DER certificate.")
def keystore_import(alias, cert_file):
    """Import a trusted certificate, as `keytool -import -alias ALIAS -file FILE` does."""
    try:
        entry = _services().keystore().import_certificate(alias, cert_file.read())
    except KeystoreError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"imported {entry.alias} ({entry.certificate.subject.rfc4514_string()})")


@keystore_cli.command("list")
def keystore_list():
    rows = []
    for entry in _services().keystore().entries():
        cert = entry.certificate
        rows.append({
            "alias": entry.alias, "kind": entry.kind, "subject": cert.subject.rfc4514_string(),
            "not_after": cert.not_valid_after_utc.isoformat(),
            "sha256": cert.fingerprint(hashes.SHA256()).hex(":").upper(),
        })
    _print(rows)


@assertion_cli.command("create")
@click.option("--client-id", required=True)
@click.option("--key", "key_file", required=True, type=click.File("rb"), help="The client's private key (PEM).")
@click.option("--alg", type=click.Choice(SIGNING_ALGORITHMS))
@click.option("--kid")
@click.option("--aud", help="Default: the issuer.")
@click.option("--lifetime", type=int, default=300, show_default=True, help="Seconds until exp.")
def assertion_create(client_id, key_file, alg, kid, aud, lifetime):
    """Print a fresh signed client assertion (RFC 7523 §3) for copy and paste into curl."""
    try:
        key = serialization.load_pem_private_key(key_file.read(), password=None)
    except (ValueError, TypeError):
        raise click.UsageError("--key must be an unencrypted PEM private key") from None
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": aud or _services().settings.issuer,
              "jti": str(uuid.uuid4()), "iat": now, "exp": now + lifetime}
    try:
        click.echo(sign(key, alg or default_alg(key), claims, {"kid": kid} if kid else None))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


@jti_cli.command("purge")
def jti_purge():
    """Delete expired IDN_OIDC_JTI rows in small batches."""
    click.echo(f"deleted {_services().replay.purge_all()} expired rows")


@db_cli.command("purge")
def db_purge():
    """Delete expired rows in small batches: IDN_OIDC_JTI, access and refresh tokens, authorization
    codes (a day past expiry) and browser sessions."""
    services = _services()
    db = services.db
    sessions = purge_all(db, UserSession, UserSession.expires_at, int(time.time()))
    click.echo(f"deleted {services.replay.purge_all()} expired jti rows, "
               f"{services.tokens.purge_all()} expired access tokens, "
               f"{refresh_store.purge_every(db)} expired refresh tokens, "
               f"{code_store.purge(db)} expired authorization codes, {sessions} expired sessions")


@db_cli.command("upgrade")
def db_upgrade():
    """Create missing tables and record the schema version."""
    click.echo(f"schema version {upgrade(_services().db)}")


# --- users and admins --------------------------------------------------------------------------

def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


def _create_account(username: str, password_stdin: bool, is_admin: bool, claims: dict) -> None:
    try:
        account = user_store.create(username, _read_password(password_stdin), is_admin=is_admin, claims=claims)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    _print({"sub": account.sub, "username": account.username, "is_admin": account.is_admin, **account.claims})


@users_cli.command("create")
@click.option("--username", required=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
@click.option("--name", help="The name claim (profile scope).")
@click.option("--email", help="The email claim (email scope).")
@click.option("--email-verified", is_flag=True)
def users_create(username, password_stdin, name, email, email_verified):
    """Register an end user (password hashed with scrypt)."""
    claims = {"preferred_username": username}
    if name:
        claims["name"] = name
    if email:
        claims["email"] = email
        claims["email_verified"] = email_verified
    _create_account(username, password_stdin, False, claims)


@users_cli.command("list")
def users_list():
    _print([{"sub": a.sub, "username": a.username, "is_admin": a.is_admin} for a in user_store.all_users()])


@users_cli.command("delete")
@click.option("--username", required=True)
def users_delete(username):
    """Delete a user (admin or not), end their sessions and revoke their tokens."""
    if not user_store.delete(username):
        raise click.UsageError(f"no user {username}")
    click.echo(f"deleted {username}")


@users_cli.command("set-password")
@click.option("--username", required=True)
@click.option("--password-stdin", is_flag=True)
def users_set_password(username, password_stdin):
    try:
        changed = user_store.set_password(username, _read_password(password_stdin))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if not changed:
        raise click.UsageError(f"no user {username}")
    click.echo(f"password changed for {username}")


@admin_cli.command("create")
@click.option("--username", required=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
def admin_create(username, password_stdin):
    """Register an administrator of the console and the registration API."""
    _create_account(username, password_stdin, True, {"preferred_username": username})


def register_cli(app: Flask) -> None:
    for group in (clients_cli, keystore_cli, assertion_cli, jti_cli, db_cli, users_cli, admin_cli):
        app.cli.add_command(group)
    app.cli.add_command(playground.command)

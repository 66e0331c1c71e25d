"""Command line: `flask --app app clients|keystore|assertion|jti|db …`."""

from __future__ import annotations

import datetime
import json
import sys
import time
import uuid
from pathlib import Path

import click
from cryptography.hazmat.primitives import hashes, serialization
from flask import Flask
from flask.cli import AppGroup

from keystore.certificates import certificate_key, x5c_validity
from keystore.jwk import SIGNING_ALGORITHMS, InvalidKey, parse_jwks
from keystore.signing import default_alg, sign
from keystore.store import TRUSTED_CERT_ENTRY, KeystoreError
from core.profile import FAPI2
from server import current
from server.client_metadata import ACCESS_TOKEN_FORMATS, MetadataError, check_client_id, keys_from_jwks, validate
from storage import clients as client_store
from storage import codes as code_store
from storage import consents as consent_store
from storage import par as par_store
from storage import refresh as refresh_store
from storage import users as user_store
from storage.clients import AUTH_METHODS
from storage.models import RevokedJWT, UserSession
from storage.purge import purge_all
from storage.schema import upgrade

clients_cli = AppGroup("clients", help="Register and inspect OAuth clients.")
keystore_cli = AppGroup("keystore", help="The primary keystore: certificates by alias.")
assertion_cli = AppGroup("assertion", help="Client assertions for testing and examples.")
jti_cli = AppGroup("jti", help="The IDN_OIDC_JTI replay table.")
db_cli = AppGroup("db", help="The identity database schema.")
users_cli = AppGroup("users", help="End users who sign in at the authorization endpoint.")
admin_cli = AppGroup("admin", help="Administrators of the console and the registration API.")


def _print(obj) -> None:
    click.echo(json.dumps(obj, indent=2))


# The option of `clients create` that carries each metadata field, for error messages.
_CREATE_OPTIONS = {"client_id": "--client-id", "client_name": "--client-name", "grant_types": "--grant-type",
                   "response_types": "--grant-type", "scope": "--scope", "redirect_uris": "--redirect-uri",
                   "token_endpoint_auth_method": "--auth-method", "jwks": "--jwks-file", "jwks_uri": "--jwks-uri",
                   "token_endpoint_auth_signing_alg": "--signing-alg", "audience_policy": "--audience-policy",
                   "token_reuse": "--token-reuse", "require_explicit_typ": "--require-explicit-typ",
                   "dpop_bound_access_tokens": "--dpop-bound-access-tokens",
                   "require_dpop_nonce": "--require-dpop-nonce", "access_token_format": "--access-token-format",
                   "resources": "--resource", "require_pushed_authorization_requests": "--require-par",
                   "tls_client_certificate_bound_access_tokens": "--tls-bound-tokens",
                   "tls_client_auth_subject_dn": "--tls-subject-dn", "tls_client_auth_san_dns": "--tls-san-dns",
                   "tls_client_auth_san_uri": "--tls-san-uri", "tls_client_auth_san_ip": "--tls-san-ip",
                   "tls_client_auth_san_email": "--tls-san-email", "profile": "--profile"}


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
@click.option("--require-explicit-typ/--no-require-explicit-typ", default=None,
              help="Its assertions must (or need not) carry typ client-authentication+jwt (RFC 7523bis). "
                   "Default: the private_key_jwt handler's RequireExplicitTyp.")
@click.option("--dpop-bound-access-tokens", is_flag=True,
              help="Every access token is DPoP-bound; a token request without a DPoP proof is refused (RFC 9449).")
@click.option("--require-dpop-nonce", is_flag=True, help="DPoP proofs must carry a server nonce (RFC 9449 §8).")
@click.option("--access-token-format", type=click.Choice(ACCESS_TOKEN_FORMATS),
              help="Opaque or RFC 9068 JWT access tokens. Default: [oauth.token] access_token_format.")
@click.option("--resource", "resources", multiple=True,
              help="An absolute URI the client may ask tokens for (RFC 8707); without any, it may send no resource.")
@click.option("--require-par", is_flag=True,
              help="Its authorization requests must be pushed (RFC 9126 §6), whatever [oauth.par] required says.")
@click.option("--tls-bound-tokens", is_flag=True,
              help="Every access token is bound to the client's TLS certificate (RFC 8705 §3.4).")
@click.option("--tls-subject-dn", metavar="DN",
              help="tls_client_auth: the subject DN of the client's certificate (RFC 4514, e.g. CN=client,O=Example).")
@click.option("--tls-san-dns", metavar="NAME", help="tls_client_auth: a dNSName subjectAltName of its certificate.")
@click.option("--tls-san-uri", metavar="URI", help="tls_client_auth: a URI subjectAltName of its certificate.")
@click.option("--tls-san-ip", metavar="ADDRESS",
              help="tls_client_auth: an iPAddress subjectAltName of its certificate.")
@click.option("--tls-san-email", metavar="EMAIL",
              help="tls_client_auth: an rfc822Name subjectAltName of its certificate.")
@click.option("--profile", type=click.Choice([FAPI2]),
              help="Hold the client to FAPI 2.0 whatever the server's [oauth] profile. Default: the server's.")
def clients_create(client_id, auth_method, client_name, grant_types, scopes, redirect_uris, jwks_file, jwks_uri,
                   signing_alg, audience_policy, token_reuse, require_explicit_typ, dpop_bound_access_tokens,
                   require_dpop_nonce, access_token_format, resources, require_par, tls_bound_tokens, tls_subject_dn,
                   tls_san_dns, tls_san_uri, tls_san_ip, tls_san_email, profile):
    """Register a client and print it as JSON (with the generated secret, once, for secret methods).

    A private_key_jwt client with neither --jwks-file nor --jwks-uri uses the certificate stored in
    the primary keystore under its client id as alias; a self_signed_tls_client_auth client needs
    one of them. A tls_client_auth client is named by exactly one --tls-subject-dn or --tls-san-*.
    The rules are the registration API's (server.client_metadata)."""
    metadata = {"token_endpoint_auth_method": auth_method, "client_name": client_name,
                "grant_types": list(grant_types), "scope": " ".join(scopes), "redirect_uris": list(redirect_uris),
                "jwks_uri": jwks_uri, "token_endpoint_auth_signing_alg": signing_alg,
                "audience_policy": audience_policy, "token_reuse": token_reuse,
                "require_explicit_typ": require_explicit_typ,
                "dpop_bound_access_tokens": dpop_bound_access_tokens, "require_dpop_nonce": require_dpop_nonce,
                "access_token_format": access_token_format, "resources": list(resources),
                "require_pushed_authorization_requests": require_par,
                "tls_client_certificate_bound_access_tokens": tls_bound_tokens,
                "tls_client_auth_subject_dn": tls_subject_dn, "tls_client_auth_san_dns": tls_san_dns,
                "tls_client_auth_san_uri": tls_san_uri, "tls_client_auth_san_ip": tls_san_ip,
                "tls_client_auth_san_email": tls_san_email, "profile": profile}
    try:
        check_client_id(client_id)
        if jwks_file:
            metadata["jwks"] = json.loads(keys_from_jwks(jwks_file.read())[0])
        fields = validate(metadata, current.services().settings,
                          grant_types_supported=sorted(current.chain().grants))
    except MetadataError as exc:
        raise click.UsageError(f"{_CREATE_OPTIONS.get(exc.field, exc.field)}: {exc.message}") from None
    try:
        client, secret = client_store.create(client_id, **fields)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    out = client.public_view()
    if secret:
        out["client_secret"] = secret
    _print(out)
    if auth_method == "private_key_jwt" and not fields["jwks"] and not fields["jwks_uri"]:
        if current.services().keystore().trusted_certificate(client_id) is None:
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
    view = client.public_view()
    if client.jwks:
        view["certificates"] = _certificates(client.jwks)
    _print(view)


def _certificates(jwks: str) -> list[dict]:
    """The certificates a client's JWKS carries (an uploaded certificate's x5c) and their status
    as the token endpoint judges it now: "valid", "expired" or "not yet valid"."""
    validity = x5c_validity(jwks)
    now, skew = time.time(), current.services().settings.timestamp_skew
    try:
        keys = parse_jwks(jwks)
    except InvalidKey:
        return []
    return [{"kid": key.kid, "thumbprint": key.thumbprint, "not_after": _iso(period.not_after),
             "status": period.lapse(now, skew) or "valid"}
            for key in keys if (period := validity.get(key.thumbprint)) is not None]


def _iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).isoformat()


@clients_cli.command("delete")
@click.argument("client_id")
def clients_delete(client_id):
    if not client_store.delete(client_id):
        raise click.ClickException("no such client")
    click.echo(f"deleted {client_id}")


@clients_cli.command("report")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def clients_report(as_json):
    """Who a stricter setting would refuse: per client, the shape of its successful client
    assertions of the last 7 UTC days (aud form, typ, alg, lifetime) and how its tokens were bound,
    with the clients that AudiencePolicy=strict, RequireExplicitTyp=true or the FAPI 2.0 profile
    would refuse listed first, and why."""
    from handlers import client_activity  # the report's one implementation, shared with the console
    report = client_activity.report(current.chain(), current.services().settings, client_store.all_clients())
    if as_json:
        _print(report.as_json())
        return
    click.echo(_report_table(report))


def _report_table(report) -> str:
    """The report for a terminal: one line per client, then why each setting would refuse it."""
    def counts(values: dict[str, int]) -> str:
        return " ".join(f"{name}={count}" for name, count in values.items()) or "-"

    settings = report.settings
    lines = [f"Client assertions and tokens of the last {report.days} UTC days (today included); in force now: "
             f"AudiencePolicy {settings['AudiencePolicy']}, "
             f"RequireExplicitTyp {str(bool(settings['RequireExplicitTyp'])).lower()}, profile {settings['profile']}.",
             ""]
    header = ("CLIENT", "REFUSED BY", "ASSERTIONS", "AUD", "TYP", "ALG", "LIFETIME", "TOKENS", "DPOP")
    table = [header] + [(row.client_id, ", ".join(row.refused_by) or "-", str(row.assertions),
                         counts(row.group("aud")), counts(row.group("typ")), counts(row.group("alg")),
                         row.max_lifetime or "-", str(row.issued), str(row.dpop)) for row in report.rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for index, line in enumerate(table):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())
        row = report.rows[index - 1] if index else None
        if row is not None:
            lines += [f"    {setting}: {'; '.join(why)}" for setting, why in row.refused_by.items()]
            lines += [f"    note: {note}" for note in row.notes]
    if not report.rows:
        lines.append("(no clients registered)")
    return "\n".join(lines)


@keystore_cli.command("import-cert")
@click.option("--alias", required=True, help="The client id, for a client's certificate.")
@click.option("--file", "cert_file", required=True, type=click.File("rb"), help="PEM or DER certificate.")
def keystore_import(alias, cert_file):
    """Import a trusted certificate, as `keytool -import -alias ALIAS -file FILE` does."""
    try:
        entry = current.services().keystore().import_certificate(alias, cert_file.read())
    except KeystoreError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"imported {entry.alias} ({entry.certificate.subject.rfc4514_string()})")


CERTIFICATE_SUFFIXES = (".pem", ".crt", ".cer", ".der")
MAX_CERTIFICATE_FILE = 64 * 1024  # a certificate (with a chain) is a few kilobytes


def _certificate_file(path: Path) -> bytes:
    with path.open("rb") as handle:
        data = handle.read(MAX_CERTIFICATE_FILE + 1)
    if len(data) > MAX_CERTIFICATE_FILE:
        raise click.ClickException(f"{path} is larger than {MAX_CERTIFICATE_FILE} bytes: not a certificate")
    return data


@keystore_cli.command("import-certs")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, dir_okay=True))
def keystore_import_many(directory):
    """Import every certificate file of DIRECTORY (*.pem, *.crt, *.cer, *.der), each under its file
    name without the extension as alias (the client id), with one rewrite of the keystore: all of
    them, or none when one is refused. Hidden files (editors' and macOS's `._` companions) are
    not read."""
    files = sorted(p for p in Path(directory).iterdir()
                   if not p.name.startswith(".") and p.suffix.lower() in CERTIFICATE_SUFFIXES and p.is_file())
    if not files:
        raise click.ClickException(f"no certificate files ({', '.join(CERTIFICATE_SUFFIXES)}) in {directory}")
    try:
        entries = current.services().keystore().import_certificates([(p.stem, _certificate_file(p)) for p in files])
    except (KeystoreError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"imported {len(entries)} certificates")


@keystore_cli.command("list")
def keystore_list():
    rows = []
    for entry in current.services().keystore().entries():
        cert = entry.certificate
        row = {
            "alias": entry.alias, "kind": entry.kind, "subject": cert.subject.rfc4514_string(),
            "not_after": cert.not_valid_after_utc.isoformat(),
            "sha256": cert.fingerprint(hashes.SHA256()).hex(":").upper(),
        }
        if entry.kind == TRUSTED_CERT_ENTRY:
            try:
                certificate_key(cert)  # as the token endpoint loads a client's certificate
            except InvalidKey as exc:
                row["problem"] = f"unusable key: {exc}"
        rows.append(row)
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
    claims = {"iss": client_id, "sub": client_id, "aud": aud or current.services().settings.issuer,
              "jti": str(uuid.uuid4()), "iat": now, "exp": now + lifetime}
    try:
        click.echo(sign(key, alg or default_alg(key), claims, {"kid": kid} if kid else None))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


@jti_cli.command("purge")
def jti_purge():
    """Delete expired IDN_OIDC_JTI rows in small batches."""
    click.echo(f"deleted {current.services().replay.purge_all()} expired rows")


@db_cli.command("purge")
def db_purge():
    """Delete expired rows in small batches: IDN_OIDC_JTI, IDN_OAUTH_DPOP_JTI, access and refresh
    tokens, the deny-list of revoked JWT access tokens, authorization codes (a day past expiry),
    pushed authorization requests and browser sessions."""
    services = current.services()
    db = services.db
    now = int(time.time())
    sessions = purge_all(db, UserSession, UserSession.expires_at, now)
    denied = purge_all(db, RevokedJWT, RevokedJWT.exp_time, now)
    click.echo(f"deleted {services.replay.purge_all()} expired jti rows, "
               f"{services.dpop.replay.purge_all()} expired DPoP proof jti rows, "
               f"{denied} expired deny-list rows, "
               f"{services.tokens.purge_all()} expired access tokens, "
               f"{refresh_store.purge_every(db)} expired refresh tokens, "
               f"{code_store.purge(db)} expired authorization codes, "
               f"{par_store.purge_every(db, now)} expired pushed authorization requests, {sessions} expired sessions")


@db_cli.command("upgrade")
def db_upgrade():
    """Create missing tables and record the schema version."""
    click.echo(f"schema version {upgrade(current.services().db)}")


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


@users_cli.command("revoke-consent")
@click.option("--username", required=True)
@click.option("--client-id", required=True)
def users_revoke_consent(username, client_id):
    """Withdraw a user's consent to a client: the consent page is shown again, and the client's
    authorization codes, refresh tokens and access tokens for the user are revoked."""
    account = user_store.get_by_username(username)
    if account is None:
        raise click.UsageError(f"no user {username}")
    done = consent_store.withdraw(account.sub, client_id)
    if not (done.consent or done.codes or done.refresh_tokens or done.access_tokens):
        raise click.ClickException(f"{username} has no consent and no live tokens for client {client_id}")
    click.echo(f"{'withdrew the consent' if done.consent else 'no stored consent'} of {username} for {client_id}; "
               f"revoked {done.refresh_tokens} refresh tokens, {done.access_tokens} access tokens and "
               f"{done.codes} authorization codes")


@admin_cli.command("create")
@click.option("--username", required=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
def admin_create(username, password_stdin):
    """Register an administrator of the console and the registration API."""
    _create_account(username, password_stdin, True, {"preferred_username": username})


# --- the registration API ------------------------------------------------------------------------

dcr_cli = AppGroup("dcr", help="The client registration API (RFC 7591 / RFC 7592).")
initial_token_cli = AppGroup("initial-token", help="Initial access tokens: bearer tokens that may register clients.")
dcr_cli.add_command(initial_token_cli)


@initial_token_cli.command("create")
@click.option("--lifetime", type=click.IntRange(60, 365 * 86400), default=86400, show_default=True,
              help="Seconds the token stays valid.")
@click.option("--uses", type=click.IntRange(1, 10000), default=1, show_default=True,
              help="How many clients it may register.")
def initial_token_create(lifetime, uses):
    """Print a new initial access token (RFC 7591 §3), once: only its hash is stored."""
    token, expires_at = client_store.create_initial_token(lifetime, uses)
    _print({"initial_access_token": token, "expires_at": expires_at, "uses": uses})


@initial_token_cli.command("list")
def initial_token_list():
    """The live initial access tokens (by id: the start of the stored hash)."""
    _print(client_store.initial_tokens())


@initial_token_cli.command("revoke")
@click.argument("token_id")
def initial_token_revoke(token_id):
    """Revoke an initial access token by the id `list` shows."""
    if not client_store.revoke_initial_token(token_id):
        raise click.ClickException("no such initial access token")
    click.echo(f"revoked {token_id}")


def register_cli(app: Flask) -> None:
    for group in (clients_cli, keystore_cli, assertion_cli, jti_cli, db_cli, users_cli, admin_cli, dcr_cli):
        app.cli.add_command(group)
    app.cli.add_command(check_command)


# --- preflight -----------------------------------------------------------------------------------

@click.command("check")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as one JSON document.")
@click.option("--strict", is_flag=True, help="Exit 1 on warnings too, not only on errors.")
def check_command(as_json, strict):
    """Check what start-up does not: certificate expiry (primary and signing keys, TLS, client CAs,
    client certificates), clients' jwks_uri, clients the chain no longer accepts, the database
    schema version and the Redis of the rate limits. One line per finding; exit status 1 when
    any is an error (with --strict, a warning too), else 0. deployment.toml is read as start-up
    reads it: a mistake there prints start-up's message and exits 2."""
    from server import preflight

    services = current.services()
    findings = preflight.run(services.settings, services, current.chain())
    status = preflight.exit_status(findings, strict)
    if as_json:
        click.echo(preflight.render_json(findings, services.settings, strict))
    else:
        click.echo(preflight.render_text(findings, services.settings))
    sys.exit(status)

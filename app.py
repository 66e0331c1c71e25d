"""Entry point. `build_app()` builds the server from deployment.toml, `create_app()` is the
factory the flask CLI calls, and `python app.py` serves it under gunicorn (HTTPS with the
primary keystore's key pair)."""

from __future__ import annotations

import gc
import logging
import os
import sys
from dataclasses import dataclass

import peewee
from flask import Flask

import playground
from handlers import chain as handler_chain
from keystore.store import Keystore, KeystoreError
from core import config
from core import metrics as core_metrics
from server import authorize, console, registration, web
from server.cli import register_cli
from server.render import raw_error
from core.services import Services, build_services
from server.endpoints import discovery, health, introspection, metrics, par, revocation, token, userinfo
from storage.database import Checkpointer, close_all, describe, open_database, release
from storage.schema import upgrade
from storage.sql import compile_all


@dataclass
class IdP:
    services: Services
    chain: handler_chain.Chain


def open_keystore(settings: config.Settings, create: bool = True) -> Keystore:
    """The primary keystore; created (RSA 2048, self-signed for the hostname) the first time."""
    ks = settings.keystore
    path = settings.resolve(ks["file_name"])
    try:
        if not path.exists() and create:
            return Keystore.create(str(path), ks["type"], ks["password"], ks["alias"], settings.server["hostname"])
        return Keystore.load(str(path), ks["type"], ks["password"], ks["alias"])
    except KeystoreError as exc:
        raise settings.error(("keystore", "primary", "file_name"), str(exc)) from None


def build_app(deployment_toml: str | None = None) -> Flask:
    """Build the app; raises config.ConfigError with one line for any mistake in deployment.toml."""
    settings = config.load(deployment_toml)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # No log format here names a source file or thread (gunicorn's name the process id): skip
    # collecting them for every record (the logging HOWTO, "Optimization"); the audit log writes
    # two records per token request.
    logging._srcfile = None
    logging.logThreads = logging.logMultiprocessing = False
    try:
        db = open_database(settings.database_url, settings.path.parent)
    except ValueError as exc:
        raise settings.error(("database", "identity_db", "url"), str(exc)) from None
    pool = getattr(db, "_max_connections", None)  # peewee keeps the pool size there
    # Every request thread, plus a worker's two background threads (a purge batch, the activity flush).
    if pool is not None and pool < settings.server["threads"] + BACKGROUND_CONNECTIONS:
        raise settings.error(("database", "identity_db", "url"),
                             f"max_connections ({pool}) must be at least [server] threads + {BACKGROUND_CONNECTIONS} "
                             f"({settings.server['threads'] + BACKGROUND_CONNECTIONS})")
    services = build_services(settings, db, open_keystore(settings))
    try:
        services.keys()  # the access token signing key exists and fits [oauth.token] signing_alg
    except KeystoreError as exc:
        raise settings.error(("oauth", "token", "signing_key_alias"), str(exc)) from None
    chain = handler_chain.build(settings, services)
    compile_all()  # the hot statements' SQL, once, for this database (the chain's listeners included)

    app = Flask(__name__, template_folder="server/templates", static_folder=None)
    app.extensions["idp"] = IdP(services, chain)
    for module in (token, introspection, revocation, par, userinfo, discovery, health, authorize, console,
                   registration):
        app.register_blueprint(module.bp)
    app.after_request(web.set_cookies)
    web.register_error_handlers(app)
    register_cli(app)
    app.cli.add_command(playground.command)  # the sample client, an application of its own

    @app.teardown_appcontext
    def _release_db(exc):
        release(db)

    app.wsgi_app = token.TokenEndpoint(app.wsgi_app, app.extensions["idp"], lambda: release(db))
    if services.metrics is not None:  # outermost: it times and counts every answer, and serves /metrics
        app.wsgi_app = metrics.RequestMetrics(app.wsgi_app, app.extensions["idp"])
    return app


def create_app(deployment_toml: str | None = None) -> Flask:
    """The factory `flask --app app …` and WSGI servers call: a configuration mistake is
    printed as its one line and ends the process, never as a traceback."""
    try:
        return build_app(deployment_toml)
    except config.ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        sys.exit(2)


def ready_message(settings: config.Settings, keystore_path) -> str:
    """What an operator wants to know once the server listens (no secrets: the database URL
    without user or password)."""
    server = settings.server
    scheme = "https" if server["tls"] else "http"
    monitoring = settings.monitoring
    metrics_at = (f"{scheme}://{server['bind_address']}:{monitoring['port'] or server['port']}/metrics"
                  if monitoring["enabled"] else "off")
    return "\n".join([
        f"serving on {scheme}://{server['bind_address']}:{server['port']} ({server['workers']} workers, "
        f"{server['threads']} threads each)",
        f"  issuer     {settings.issuer}",
        f"  console    {settings.base_url}/console",
        f"  keystore   {keystore_path}",
        f"  database   {describe(settings.database_url, settings.path.parent)}",
        f"  config     {settings.path}",
        f"  metrics    {metrics_at}",
    ])


# Connections a worker's background threads may hold besides its request threads'.
BACKGROUND_CONNECTIONS = 2

# How gunicorn serves the application, whatever deployment.toml says (bench/floor.py serves the
# stack's floor with exactly these).
GUNICORN_OPTIONS = {
    "worker_class": "gthread",
    "keepalive": 5,
    "timeout": 30,
    "graceful_timeout": 10,
    "limit_request_line": 8190,
    "limit_request_fields": 100,
    "accesslog": None,
    "errorlog": "-",
    "loglevel": "info",
    "preload_app": True,
    "control_socket_disable": True,  # several servers may run on one machine
}


def serve(deployment_toml: str | None = None) -> None:
    """Prepare (keystore, schema, TLS files) in the master, then run gunicorn's workers."""
    import ssl

    from gunicorn import util as gunicorn_util
    from gunicorn.app.base import BaseApplication

    try:
        loaded = config.load(deployment_toml)
    except config.ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    if loaded.monitoring["enabled"]:
        # Before the app and its metrics exist: the workers share their values through files in
        # a directory emptied at every start (README, "Metrics").
        metrics_dir = loaded.resolve("var/metrics")
        try:
            core_metrics.enable_multiprocess(metrics_dir)
        except OSError as exc:
            print(f"start-up error: cannot prepare {metrics_dir}: {exc.strerror}", file=sys.stderr)
            sys.exit(3)
    app = create_app(deployment_toml)
    idp: IdP = app.extensions["idp"]
    settings = idp.services.settings
    try:
        upgrade(idp.services.db)
    except peewee.PeeweeException as exc:
        first_line = (str(exc).strip().splitlines() or [""])[0][:200]
        print(f"database error: {settings.database_url.split('@')[-1]}: {exc.__class__.__name__}: {first_line}",
              file=sys.stderr)
        sys.exit(3)
    close_all(idp.services.db)  # never share a connection with the forked workers
    # What start-up built lives as long as the server: out of the collector's sight, a full
    # collection in a worker walks only what requests made (a 15-40 ms pause otherwise), and
    # the workers' copies of these pages stay shared (the gc module's documentation, gc.freeze).
    gc.freeze()

    server = settings.server
    binds = [f"{server['bind_address']}:{server['port']}"]
    if settings.monitoring["enabled"] and settings.monitoring["port"]:
        # A second listener of every worker, for /metrics only (server.endpoints.metrics).
        binds.append(f"{server['bind_address']}:{settings.monitoring['port']}")
    options = {**GUNICORN_OPTIONS, "bind": binds, "workers": server["workers"], "threads": server["threads"]}
    if server["tls"]:
        tls_dir = settings.resolve("var/tls")
        try:
            tls_dir.mkdir(parents=True, exist_ok=True)
            os.chmod(tls_dir, 0o700)
            options["certfile"], options["keyfile"] = idp.services.keystore().write_tls_files(str(tls_dir))
        except OSError as exc:
            print(f"start-up error: cannot write the TLS files to {tls_dir}: {exc.strerror}", file=sys.stderr)
            sys.exit(3)
        if server["client_certificates"] == "optional":
            # RFC 8705 over this server's own TLS: ask every client for a certificate and accept
            # a connection without one (the token endpoint serves other methods too). A
            # certificate that is sent must chain to a CA in client_ca_file or be one listed in
            # client_self_signed_file, or the handshake fails (which of the two it is, the
            # authenticator checks again: handlers.tls_client_auth).
            trusted = b"".join(settings.resolve(server[key]).read_bytes()
                               for key in ("client_ca_file", "client_self_signed_file") if server[key])
            trust_file = tls_dir / "client-trust.pem"
            trust_file.write_bytes(trusted)
            options["cert_reqs"] = ssl.CERT_OPTIONAL
            options["ca_certs"] = str(trust_file)
        if settings.profile == "fapi2":
            # FAPI 2.0 Security Profile §5.2.1: TLS 1.2 or later (TLS 1.3 suites are all fine),
            # and for TLS 1.2 only the cipher suites BCP 195 recommends (RFC 9325 §4.2), in
            # OpenSSL's names: TLS_ECDHE_{ECDSA,RSA}_WITH_AES_{128_GCM_SHA256,256_GCM_SHA384}.
            bcp195_ciphers = ":".join(("ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
                                       "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384"))

            def fapi2_tls(conf, default_context):
                context = default_context()  # certificate, key, cert_reqs and ca_certs as above
                context.minimum_version = ssl.TLSVersion.TLSv1_2
                context.set_ciphers(bcp195_ciphers)
                return context
            options["ssl_context"] = fapi2_tls

    # gunicorn answers malformed or oversized HTTP itself, in HTML; make those answers JSON too.
    # `reason` is gunicorn's fixed status phrase, never request data.
    gunicorn_util.write_error = lambda sock, status, reason, mesg: gunicorn_util.write_nonblock(
        sock, raw_error(status, reason))

    def post_fork(arbiter, worker):
        if idp.services.metrics is not None:
            idp.services.metrics.worker_started()
        Checkpointer(idp.services.db).start()  # SQLite: WAL checkpoints off the request path

    options["post_fork"] = post_fork
    if idp.services.metrics is not None:
        options["child_exit"] = lambda arbiter, worker: core_metrics.worker_exited(worker.pid)
    options["when_ready"] = lambda arbiter: print(ready_message(settings, idp.services.keystore().path),
                                                  file=sys.stderr, flush=True)

    class Server(BaseApplication):
        def load_config(self):
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self):
            return app

    Server().run()


if __name__ == "__main__":
    serve(sys.argv[1] if len(sys.argv) > 1 else None)

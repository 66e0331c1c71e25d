"""Headless Chromium for the browser tests: Debian's /usr/bin/chromium driven by
/usr/bin/chromedriver (tests/setup-system.sh installs both).

Selenium never downloads anything: the driver's path is passed explicitly through Service, which
skips Selenium Manager, and the browser's background traffic (updates, sync, metrics) is off.
The server's self-signed certificate is trusted by its public key alone
(--ignore-certificate-errors-spki-list), so any other certificate error still fails the test.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT_SECONDS = 30


def require_chromium() -> None:
    """Browser tests are never skipped: without the browser they fail and say what to run."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        pytest.fail(f"{' and '.join(missing)} not found: run tests/setup-system.sh "
                    f"(installs Debian's chromium and chromium-driver)", pytrace=False)


def spki_sha256(cert_pem: str | Path) -> str:
    """base64(SHA-256(SubjectPublicKeyInfo)) of the first certificate in a PEM file: the form
    Chromium's --ignore-certificate-errors-spki-list takes."""
    cert = x509.load_pem_x509_certificate(Path(cert_pem).read_bytes())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


@contextmanager
def chromium(profile_dir: Path, *, trust_cert: str | Path | None = None,
             http_proxy: str | None = None) -> Iterator["WebDriver"]:  # noqa: F821
    """A headless Chromium with a fresh profile in `profile_dir`.

    trust_cert: a PEM certificate whose key is trusted for HTTPS (the server's self-signed one).
    http_proxy: host:port through which plain-HTTP requests go, loopback included (RedirectCatcher).
    """
    require_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile_dir.mkdir(parents=True, exist_ok=True)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    arguments = [
        "--headless=new", f"--user-data-dir={profile_dir / 'profile'}", "--window-size=1280,1600",
        "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-default-apps", "--password-store=basic", "--lang=en-US",
    ]
    if os.geteuid() == 0:
        arguments.append("--no-sandbox")   # Chromium's sandbox refuses to run as root
    if trust_cert is not None:
        arguments.append(f"--ignore-certificate-errors-spki-list={spki_sha256(trust_cert)}")
    if http_proxy is not None:
        # Only http:// URLs use the proxy; "<-loopback>" removes the implicit bypass of localhost.
        arguments += [f"--proxy-server=http={http_proxy}", "--proxy-bypass-list=<-loopback>"]
    for argument in arguments:
        options.add_argument(argument)
    service = Service(executable_path=CHROMEDRIVER, log_output=str(profile_dir / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(WAIT_SECONDS)
    try:
        yield driver
    except BaseException:
        driver.save_screenshot(str(profile_dir / "failure.png"))   # what the browser showed
        raise
    finally:
        driver.quit()


def wait_until(driver, condition: Callable, message: str, timeout: float = WAIT_SECONDS):
    """Wait for condition(driver) to be truthy; on timeout the failure shows the page."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait
    try:
        return WebDriverWait(driver, timeout).until(condition)
    except TimeoutException:
        body = driver.find_element("tag name", "body").text[:2000] if driver.current_url else ""
        pytest.fail(f"{message}; at {driver.current_url}:\n{body}", pytrace=False)


def wait_for_element(driver, element_id: str, timeout: float = WAIT_SECONDS):
    from selenium.webdriver.support import expected_conditions
    return wait_until(driver, expected_conditions.presence_of_element_located(("id", element_id)),
                      f"no element with id {element_id!r}", timeout)


def wait_for_url(driver, prefix: str, timeout: float = WAIT_SECONDS) -> str:
    wait_until(driver, lambda d: d.current_url.startswith(prefix), f"the browser never reached {prefix}", timeout)
    return driver.current_url


class RedirectCatcher:
    """A local HTTP proxy for Chromium's plain-HTTP requests: it records every URL asked for and
    answers a small page itself, so nothing listening on the URL's port (there may be anything
    there, or nothing) ever sees the request. Used to capture an authorization response —
    the code in the redirect URI's query — without letting a client redeem it."""

    def __init__(self) -> None:
        self.urls: list[str] = []
        catcher = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                catcher.urls.append(self.path)   # a proxy receives the absolute URL
                body = b"<!doctype html><title>captured</title><p id=captured>captured</p>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "RedirectCatcher":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def first(self, prefix: str) -> str | None:
        return next((url for url in self.urls if url.startswith(prefix)), None)

#!/usr/bin/env bash
# The system packages the test suite needs on Debian: keytool (a JRE) for the keystore tests,
# Chromium and its driver for the browser tests, curl for the documented requests, npm for the
# interoperability tests, Prometheus for the metrics test (it scrapes a running server). Installs only
# what is missing, so a machine that has everything is not touched (and needs no root).
set -euo pipefail

missing=()
command -v keytool >/dev/null || missing+=(openjdk-17-jre-headless)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
command -v curl >/dev/null || missing+=(curl)
# npm installs the interop tests' client library and the Node.js binary it runs on (tests/interop).
command -v npm >/dev/null || missing+=(npm)
[ -x /usr/bin/prometheus ] || missing+=(prometheus)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

if ! command -v apt-get >/dev/null; then
  echo "tests/setup-system.sh: missing ${missing[*]} and apt-get is not available; install them" \
       "(the browser tests use /usr/bin/chromium and /usr/bin/chromedriver)" >&2
  exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null; then
  as_root=(sudo)
else
  echo "tests/setup-system.sh: missing ${missing[*]}; as root run: apt-get install ${missing[*]}" >&2
  exit 1
fi

echo "tests/setup-system.sh: installing ${missing[*]}"
"${as_root[@]}" apt-get update
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"

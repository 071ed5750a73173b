#!/usr/bin/env bash
# The browser tests drive Debian's chromium through chromedriver (test tools never download a
# browser). Install both with apt-get when missing and we are root; otherwise say what to do.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing chromium and chromium-driver for the browser tests..."
  apt-get -o DPkg::Lock::Timeout=300 update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq chromium chromium-driver >/dev/null
  exit 0
fi
echo "chromium/chromedriver not found: install Debian's chromium and chromium-driver (browser tests will be skipped)." >&2

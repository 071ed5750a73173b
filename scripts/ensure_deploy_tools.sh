#!/usr/bin/env bash
# The deploy checks (tests/deploy/) use shellcheck, nginx, rsync (the installer's dry run) and
# openssl; systemd-analyze comes with Debian. Install what is missing with apt-get when we are root; otherwise say what to do
# (the checks that need a missing tool are skipped, with the reason, never failed).
set -euo pipefail
missing=()
command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v rsync >/dev/null 2>&1 || missing+=(rsync)
if [ "${#missing[@]}" -eq 0 ]; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing ${missing[*]} for the deploy checks..."
  # RUNLEVEL=1: the nginx package must not start a server (port 80) on a test machine.
  if apt-get -o DPkg::Lock::Timeout=300 update -qq >/dev/null &&
    RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null; then
    exit 0
  fi
  echo "apt-get could not install ${missing[*]}: the deploy checks that need them will be skipped." >&2
  exit 0
fi
echo "${missing[*]} not found: install them (apt-get install ${missing[*]}) or the deploy checks that need them are skipped." >&2

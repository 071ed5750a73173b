#!/usr/bin/env bash
# CI, after the tests: the install guide rehearsed for real on a new Debian 12 machine
# (scripts/rehearse_install.sh, twice in a chroot made for this run and removed after it).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "$(id -u)" -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "the install rehearsal needs root on Debian/Ubuntu (debootstrap, mount, chroot)" >&2
    exit 1
fi
if ! command -v debootstrap >/dev/null 2>&1; then
    apt-get -o DPkg::Lock::Timeout=300 update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends debootstrap >/dev/null
fi
work="$(mktemp -d)"
status=0
# Twice in one chroot: a new install, then the installer over it (the upgrade in place).
scripts/rehearse_install.sh "$work/chroot" || status=$?
if [[ "$status" -eq 0 ]]; then
    scripts/rehearse_install.sh "$work/chroot" || status=$?
fi
# The rehearsal unmounts what it mounted; never remove through a mount that is left.
if grep -q " $work/" /proc/mounts; then
    echo "mounts left under $work: not removing it" >&2
    exit 1
fi
rm -rf --one-file-system "$work"
exit "$status"

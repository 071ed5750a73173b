#!/usr/bin/env bash
# CI, after the tests: the install guide rehearsed for real on a new Debian 12 machine
# (scripts/rehearse_install.sh), three times in one chroot made for this run and removed after:
#   1. booted with systemd (systemd-nspawn --boot): a new install, the installer's systemd path;
#   2. booted again: the upgrade in place, under systemd;
#   3. not booted (a plain chroot): the installer's path without a running systemd.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "$(id -u)" -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "the install rehearsal needs root on Debian/Ubuntu (debootstrap, mount, chroot)" >&2
    exit 1
fi
missing=()
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v systemd-nspawn >/dev/null 2>&1 || missing+=(systemd-container)
if ((${#missing[@]})); then
    apt-get -o DPkg::Lock::Timeout=300 update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi
work="$(mktemp -d)"
status=0
for mode in --boot --boot --no-boot; do
    args=("$work/chroot")
    [[ "$mode" == --boot ]] && args=(--boot "$work/chroot")
    scripts/rehearse_install.sh "${args[@]}" || status=$?
    ((status == 0)) || break
done
# The rehearsal unmounts what it mounted; never remove through a mount that is left.
if grep -q " $work/" /proc/mounts; then
    echo "mounts left under $work: not removing it" >&2
    exit 1
fi
rm -rf --one-file-system "$work"
exit "$status"

#!/usr/bin/env bash
# Rehearse docs/operations.md "Install and upgrade" on a new Debian 12 machine: a bookworm
# chroot made with debootstrap, on a host without a running systemd.
#
#   sudo scripts/rehearse_install.sh [--boot] DIR
#
# With --boot the chroot is booted with systemd-nspawn (systemd as its PID 1) before the
# installer runs, as a real server is: the installer takes its systemd path (services enabled
# and started, the unit restarted or reloaded, the /healthz probe), and systemctl and the
# journal are used for real instead of being replaced. Without it, the installer's
# no-systemd path is rehearsed, and the script starts by hand what systemd would.
#
# DIR is the chroot (made on the first run, reused after: a second run of the installer inside
# it is the "upgrade in place" path). The script copies this checkout to /root/messaging-cron
# inside, runs `DOMAIN=... deploy/install.sh` there for real, starts by hand what systemd
# would start (gunicorn with the ExecStart of the installed unit, cron, nginx), does the
# guide's follow-up steps (superuser, API token, cron list/status, SMS_PROVIDER=twilio pointed
# at scripts/fake_twilio.py), enqueues one SMS through nginx, waits for the tick that the real
# cron daemon runs to deliver it, scrapes /metrics and /healthz through nginx, and prints which
# steps ran for real, which were only checked and which were replaced. It exits 1 if a check
# failed. Every process started in DIR is stopped and the mounts removed when it exits.
#
# Variables (optional):
#   DOMAIN=rehearsal.example.org        the install's DOMAIN (resolved to 127.0.0.1 by curl)
#   DEBIAN_MIRROR=http://deb.debian.org/debian
#   DELIVERY_TIMEOUT=180                seconds to wait for the tick to send the SMS
#
# The chroot shares the host's network: nginx needs ports 80 and 443 and gunicorn 8001 free
# on the host, and the chroot's PostgreSQL takes the first port from 5432 up that is free.

set -Euo pipefail
umask 022

usage() { awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "$0"; }
BOOT=no
if [[ "${1:-}" == --boot ]]; then
    BOOT=yes
    shift
fi
[[ $# -eq 1 && "$1" != -* ]] || {
    usage >&2
    exit 2
}
DIR="$(realpath -m "$1")"
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
DOMAIN="${DOMAIN:-rehearsal.example.org}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DELIVERY_TIMEOUT="${DELIVERY_TIMEOUT:-180}"
CHECKOUT=/root/messaging-cron
APP_DIR=/srv/messaging-cron
APP_USER=messaging
UNIT=/etc/systemd/system/messaging-cron-web.service
STATE=/root/rehearsal # inside the chroot: logs, pid files and the fake provider's record
SUPERUSER=rehearsal
TWILIO_SID="AC$(printf '%032d' 0)"
TWILIO_TOKEN="rehearsal-twilio-token"
STARTED=$SECONDS

note() { printf '\n=== %s\n' "$*"; }
die() {
    printf '\nERROR: %s\n' "$*" >&2
    exit 1
}

[[ "$(id -u)" -eq 0 ]] || die "run me as root (debootstrap, mount and chroot need it)."
[[ "$DIR" != / && "$DIR" != "$SRC" && "$DIR/" != "$SRC/"* ]] || die "DIR must be a directory outside the checkout, not /."
for tool in debootstrap chroot mount umount git tar ss flock; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (apt-get install debootstrap git iproute2)."
done
if [[ "$BOOT" == yes ]]; then
    for tool in systemd-nspawn nsenter; do
        command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (apt-get install systemd-container util-linux)."
    done
fi

# --- The result table ----------------------------------------------------------------------
STEP_NAMES=()
STEP_HOWS=()
STEP_RESULTS=()
FAILED=0
# record STEP HOW RESULT: HOW is "ran for real", "only checked" or "replaced by ..."; RESULT
# is ok or FAILED (anything but ok counts as a failure).
record() {
    STEP_NAMES+=("$1")
    STEP_HOWS+=("$2")
    STEP_RESULTS+=("$3")
    [[ "$3" == ok ]] || FAILED=1
    printf '    [%s] %s (%s)\n' "$3" "$1" "$2"
}
# check STEP HOW COMMAND...: run COMMAND and record whether it succeeded.
check() {
    local name=$1 how=$2
    shift 2
    if "$@"; then record "$name" "$how" ok; else record "$name" "$how" FAILED; fi
}

print_table() {
    local i width=4
    for i in "${!STEP_NAMES[@]}"; do ((${#STEP_NAMES[i]} > width)) && width=${#STEP_NAMES[i]}; done
    printf '\n%-*s | %-7s | %s\n' "$width" "step" result how
    printf '%s\n' "$(printf '%*s' "$((width + 60))" '' | tr ' ' -)"
    for i in "${!STEP_NAMES[@]}"; do
        printf '%-*s | %-7s | %s\n' "$width" "${STEP_NAMES[i]}" "${STEP_RESULTS[i]}" "${STEP_HOWS[i]}"
    done
}

# --- Inside the chroot -----------------------------------------------------------------------
CLEAN_ENV=(/usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 TERM=dumb)
NSPAWN_PID=""
INIT_PID="" # the booted container's systemd (--boot), as this host sees it
in_root() {
    if [[ -n "$INIT_PID" ]]; then
        nsenter -t "$INIT_PID" -a -r -w -- "${CLEAN_ENV[@]}" "$@"
    else
        chroot "$DIR" "${CLEAN_ENV[@]}" "$@"
    fi
}
# manage.py as the service user, the way docs/operations.md runs it.
manage() { in_root runuser -u "$APP_USER" -- env -C "$APP_DIR" .venv/bin/python manage.py "$@"; }
# curl inside the chroot, to nginx on this host, with DOMAIN resolved to 127.0.0.1 and the
# self-signed certificate trusted.
curl_site() { in_root curl -sS --max-time 30 --resolve "$DOMAIN:443:127.0.0.1" --resolve "$DOMAIN:80:127.0.0.1" \
    --cacert "/etc/letsencrypt/live/$DOMAIN/fullchain.pem" "$@"; }

# Processes whose root directory is the chroot.
chroot_pids() {
    local proc pid
    for proc in /proc/[0-9]*; do
        pid=${proc#/proc/}
        [[ "$pid" != "$$" && "$(readlink "$proc/root" 2>/dev/null)" == "$DIR" ]] && printf '%s\n' "$pid"
    done
    return 0
}

MOUNTS=()
cleanup() {
    local status=$? pids mount_point i
    trap - EXIT INT TERM
    if [[ -n "$NSPAWN_PID" ]] && kill -0 "$NSPAWN_PID" 2>/dev/null; then
        note "Powering off the booted $DIR"
        in_root systemctl poweroff 2>/dev/null
        for _ in $(seq 1 60); do
            kill -0 "$NSPAWN_PID" 2>/dev/null || break
            sleep 0.5
        done
        if kill -0 "$NSPAWN_PID" 2>/dev/null; then
            printf '    still up after 30 s: killing systemd-nspawn\n'
            kill -KILL "$NSPAWN_PID" 2>/dev/null
        fi
        wait "$NSPAWN_PID" 2>/dev/null
        INIT_PID=""
        # What ran inside through nsenter died with the machine; the nsenter processes that
        # started it (and the subshells of this script's background jobs) are ours to end.
        local job
        for job in $(jobs -p); do
            pkill -KILL -P "$job" 2>/dev/null
            kill -KILL "$job" 2>/dev/null
        done
        wait 2>/dev/null
    fi
    # Only a run that mounted the chroot's /proc started anything in it.
    if ((${#MOUNTS[@]})) && [[ -d "$DIR/proc/self" ]]; then
        note "Stopping what this run started in $DIR"
        if [[ -x "$DIR/usr/bin/pg_lsclusters" ]]; then
            in_root pg_lsclusters --no-header 2>/dev/null | while read -r version cluster _ state _; do
                [[ "$state" == online* ]] && in_root pg_ctlcluster "$version" "$cluster" stop --mode fast
            done
        fi
        [[ -f "$DIR/run/nginx.pid" ]] && in_root nginx -s quit 2>/dev/null
        mapfile -t pids < <(chroot_pids)
        if ((${#pids[@]})); then
            kill -TERM "${pids[@]}" 2>/dev/null
            for _ in $(seq 1 20); do
                mapfile -t pids < <(chroot_pids)
                ((${#pids[@]})) || break
                sleep 0.5
            done
            mapfile -t pids < <(chroot_pids)
            if ((${#pids[@]})); then
                printf '    still running after 10 s, killed: %s\n' "${pids[*]}"
                kill -KILL "${pids[@]}" 2>/dev/null
                sleep 1
            fi
        fi
        mapfile -t pids < <(chroot_pids)
        ((${#pids[@]})) && printf 'WARNING: processes still running in %s: %s\n' "$DIR" "${pids[*]}" >&2
    fi
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
        mount_point=${MOUNTS[i]}
        umount "$mount_point" 2>/dev/null || umount -l "$mount_point" || printf 'WARNING: could not unmount %s\n' "$mount_point" >&2
    done
    if ((${#STEP_NAMES[@]})); then
        print_table
        printf '\nTook %d s. Log of this run: %s\n' "$((SECONDS - STARTED))" "$DIR$STATE/"
        if ((FAILED)) && ((status == 0)); then status=1; fi
        ((status == 0)) && printf 'Every check passed.\n' || printf 'Some step FAILED (exit %s).\n' "$status"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mount_in() { # mount_in TARGET MOUNT-ARGS...
    local target="$DIR$1"
    shift
    mkdir -p "$target"
    mount "$@" "$target" || die "mount $* $target failed"
    MOUNTS+=("$target")
}

port_free() { ! ss -Hltn "sport = :$1" | grep -q .; }

# ---------------------------------------------------------------------------------------------
note "Chroot $DIR"
mkdir -p "$DIR"
# One run at a time in DIR: the lock is held until this script exits.
# (Long-lived children are started with 9>&-, so none keeps holding it after this run.)
exec 9>"$DIR/.rehearsal-lock"
flock -n 9 || die "another rehearsal runs in $DIR."
if [[ -f "$DIR/.rehearsal-base" ]]; then
    record "a new Debian 12 machine" "replaced by: the chroot of an earlier run (debootstrap skipped)" ok
else
    # What a Debian 12 server has before the guide starts: Python 3.11 (step "Needs"), systemd
    # (its systemctl; it is not running here), curl and ca-certificates for the checks.
    t0=$SECONDS
    if debootstrap --variant=minbase \
        --include=python3.11,systemd,ca-certificates,curl,procps,iproute2,openssl \
        bookworm "$DIR" "$DEBIAN_MIRROR"; then
        # A Debian 12 installation's sources: debootstrap writes only the release itself.
        printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb %s-security bookworm-security main\n' \
            "$DEBIAN_MIRROR" "$DEBIAN_MIRROR" "$DEBIAN_MIRROR" >"$DIR/etc/apt/sources.list"
        touch "$DIR/.rehearsal-base"
        record "a new Debian 12 machine" "replaced by: debootstrap bookworm chroot ($((SECONDS - t0)) s)" ok
    else
        record "a new Debian 12 machine" "replaced by: debootstrap bookworm chroot" FAILED
        exit 1
    fi
fi
[[ -z "$(chroot_pids)" ]] || die "processes of an earlier run still run in $DIR: $(chroot_pids | tr '\n' ' ')"
for port in 80 443 8001; do
    port_free "$port" || die "port $port is taken on this host, and the chroot shares its network: free it first."
done

cp /etc/resolv.conf "$DIR/etc/resolv.conf"
if [[ "$BOOT" == yes ]]; then
    # A booted machine: package scripts start their services (an earlier chroot run's
    # policy-rc.d would stop them).
    rm -f "$DIR/usr/sbin/policy-rc.d"
    install -d -m 0700 "$DIR$STATE"
    note "Booting $DIR: systemd-nspawn --boot (the host's network, systemd as the machine's PID 1)"
    systemd-nspawn -D "$DIR" --register=no --keep-unit --boot --console=passive -q >"$DIR$STATE/boot.log" 2>&1 9>&- &
    NSPAWN_PID=$!
    for _ in $(seq 1 50); do
        INIT_PID="$(pgrep -P "$NSPAWN_PID" | head -n 1)"
        [[ -n "$INIT_PID" ]] && break
        sleep 0.2
    done
    SYSTEM_STATE=""
    booted() {
        [[ -n "$INIT_PID" ]] || return 1
        for _ in $(seq 1 120); do
            SYSTEM_STATE="$(in_root systemctl is-system-running 2>/dev/null)"
            [[ "$SYSTEM_STATE" == running || "$SYSTEM_STATE" == degraded ]] && return 0
            sleep 0.5
        done
        return 1
    }
    check "a machine booted with systemd" "ran for real: systemd-nspawn --boot" booted
    printf '    systemd: %s\n' "${SYSTEM_STATE:-not up, see $DIR$STATE/boot.log}"
    [[ -n "$SYSTEM_STATE" ]] || exit 1
else
    mount_in /proc -t proc proc
    mount_in /sys --bind /sys
    mount_in /dev --bind /dev
    mount_in /dev/pts --bind /dev/pts
    mount_in /dev/shm -t tmpfs -o mode=1777,nosuid,nodev tmpfs
fi
# A machine on this network trusts the certificate authorities this host added locally (an
# egress proxy's, say), or pip cannot reach PyPI: the same ones go into the chroot's store.
shopt -s nullglob
local_cas=(/usr/local/share/ca-certificates/*.crt)
shopt -u nullglob
if ((${#local_cas[@]})); then
    cp "${local_cas[@]}" "$DIR/usr/local/share/ca-certificates/"
    in_root update-ca-certificates >/dev/null 2>&1 || die "update-ca-certificates failed in the chroot"
    record "  the network's CA certificates" "replaced by: this host's /usr/local/share/ca-certificates copied in" ok
fi
if [[ "$BOOT" == no ]]; then
    # As in any chroot: package scripts start no service (there is no init to own them). The
    # services the install needs are started below, by the installer or by hand.
    printf '#!/bin/sh\nexit 101\n' >"$DIR/usr/sbin/policy-rc.d"
    chmod 0755 "$DIR/usr/sbin/policy-rc.d"
fi
in_root install -d -m 0700 "$STATE"
LOG="$DIR$STATE"

# ---------------------------------------------------------------------------------------------
note "Step 1: the checkout in $CHECKOUT"
# What a clone holds: the files git knows (tracked, and new ones not ignored), from the working
# tree, so uncommitted changes are rehearsed too. No .git, .venv, .env or var/.
rm -rf "$DIR$CHECKOUT"
mkdir -p "$DIR$CHECKOUT"
if git -C "$SRC" ls-files -z --cached --others --exclude-standard |
    tar -C "$SRC" --null --ignore-failed-read -T - -cf - 2>/dev/null | tar -C "$DIR$CHECKOUT" -xf -; then
    record "1. get a checkout" "replaced by: copy of the working tree's git files (git clone needs the network)" ok
else
    record "1. get a checkout" "replaced by: copy of the working tree's git files" FAILED
    exit 1
fi
record "2. dry run (optional)" "only checked: tests/deploy runs it in CI" ok

# ---------------------------------------------------------------------------------------------
ENV_FILE="$DIR$APP_DIR/.env"
UPGRADE=no
if [[ -f "$ENV_FILE" ]]; then
    UPGRADE=yes
    env_before="$(grep -E '^(SECRET_KEY|CRON_SECRET|DATABASE_URL|SMS_PROVIDER)=' "$ENV_FILE" | sha256sum)"
fi
note "Step 3: DOMAIN=$DOMAIN deploy/install.sh ($([[ $UPGRADE == yes ]] && echo "again: the upgrade in place" || echo "first install"))"
t0=$SECONDS
in_root env -C "$CHECKOUT" DOMAIN="$DOMAIN" deploy/install.sh 2>&1 | tee "$LOG/install.log"
install_status=${PIPESTATUS[0]}
INSTALL_SECONDS=$((SECONDS - t0))
if grep -q '^    installing: ' "$LOG/install.log"; then
    apt_note="apt-get install $(sed -n 's/^    installing: //p' "$LOG/install.log")"
else
    apt_note="packages all present, no apt-get"
fi
user_note="$(sed -n '/^==> System user/{n;s/^ *//p;}' "$LOG/install.log")"
[[ "$user_note" == created ]] && user_note="useradd" || user_note="user kept"
if ((install_status == 0)); then
    record "3. deploy/install.sh$([[ $UPGRADE == yes ]] && echo " (upgrade in place)")" \
        "ran for real (${INSTALL_SECONDS} s): $apt_note; $user_note, psql as postgres, pip, check --deploy, migrate, createcachetable, collectstatic as root" ok
else
    record "3. deploy/install.sh" "ran for real: exit $install_status, see $LOG/install.log" FAILED
    exit 1
fi
installed_checks() {
    local ok=0
    for path in "$APP_DIR/.env" /etc/cron.d/messaging-cron "$UNIT" /etc/logrotate.d/messaging-cron \
        /etc/nginx/sites-available/messaging-cron; do
        [[ -f "$DIR$path" ]] || {
            printf '    missing: %s\n' "$path"
            ok=1
        }
    done
    return "$ok"
}
check "  files: .env, cron.d, unit, logrotate, nginx site" "ran for real (written by the installer)" installed_checks
if [[ "$BOOT" == yes ]]; then
    check "  systemctl enable messaging-cron-web" "ran for real" in_root systemctl is-enabled --quiet messaging-cron-web
else
    check "  systemctl enable messaging-cron-web" "ran for real (offline: symlink in multi-user.target.wants)" \
        in_root systemctl is-enabled --quiet messaging-cron-web
fi
if grep -q 'security.W009' "$LOG/install.log"; then
    record "  check --deploy" "ran for real: security.W009 (SECRET_KEY too short)" FAILED
else
    check "  check --deploy" "ran for real" grep -q 'System check identified no issues' "$LOG/install.log"
fi
# Without systemd the installer must not claim it started or probed the web service.
honest_about_systemd() {
    grep -q 'NOT started or reloaded: systemd is not running' "$LOG/install.log" &&
        grep -q 'GET /healthz not probed' "$LOG/install.log" &&
        ! grep -q -e 'service (re)started' -e 'service reloaded' -e 'GET /healthz: 200' "$LOG/install.log"
}
# With systemd it must have (re)started or reloaded it, and had 200 from /healthz.
started_by_systemd() {
    grep -q -e 'service (re)started' -e 'service reloaded' "$LOG/install.log" &&
        grep -q 'GET /healthz: 200' "$LOG/install.log" && in_root systemctl is-active --quiet messaging-cron-web
}
if [[ "$BOOT" == yes ]]; then
    check "  systemctl restart/reload messaging-cron-web, then GET /healthz on gunicorn" \
        "ran for real (the installer, under systemd)" started_by_systemd
else
    check "  installer says the service was not started" "ran for real (no running systemd)" honest_about_systemd
fi
if [[ "$UPGRADE" == yes ]]; then
    check "  upgrade keeps .env (secrets, DATABASE_URL, SMS_PROVIDER)" "ran for real" \
        test "$(grep -E '^(SECRET_KEY|CRON_SECRET|DATABASE_URL|SMS_PROVIDER)=' "$ENV_FILE" | sha256sum)" = "$env_before"
fi
secret_key_length() {
    local key
    key="$(sed -n 's/^SECRET_KEY=//p' "$ENV_FILE" | head -n 1)"
    printf '    SECRET_KEY: %d characters\n' "${#key}"
    ((${#key} >= 50))
}
check "  SECRET_KEY of 50+ characters" "ran for real" secret_key_length
record "  logrotate rules" "only checked: logrotate --debug by the installer (no nightly run waited for)" ok
cluster_online() { in_root pg_lsclusters --no-header | grep -q ' online '; }
if [[ "$BOOT" == yes ]]; then
    check "  PostgreSQL cluster" "ran for real (started by systemd)" cluster_online
else
    check "  PostgreSQL cluster" "replaced by: pg_ctlcluster start (the installer's no-systemd path; systemd would start it)" cluster_online
fi
DB_URL_PORT="$(sed -n 's#^DATABASE_URL=postgres://[^@]*@[^:/]*:\([0-9]*\)/.*#\1#p' "$DIR$APP_DIR/.env" | head -n 1)"
CLUSTER_PORT="$(in_root pg_lsclusters --no-header | awk '{print $3; exit}')"
check "  .env DATABASE_URL port = the cluster's ($CLUSTER_PORT)" "ran for real" test "$DB_URL_PORT" = "$CLUSTER_PORT"

# ---------------------------------------------------------------------------------------------
gunicorn_up() {
    for _ in $(seq 1 30); do
        if in_root curl -sS -o /dev/null --max-time 5 -H "Host: $DOMAIN" -H "X-Forwarded-Proto: https" \
            http://127.0.0.1:8001/healthz 2>/dev/null; then return 0; fi
        sleep 1
    done
    return 1
}
if [[ "$BOOT" == yes ]]; then
    note "What systemd started: messaging-cron-web, cron"
    web_active() { in_root systemctl is-active --quiet messaging-cron-web && gunicorn_up; }
    check "  systemctl start messaging-cron-web" "ran for real (by the installer, under systemd)" web_active
    check "  cron daemon" "ran for real (systemctl enable --now cron, by the installer)" in_root systemctl is-active --quiet cron
else
    note "What systemd would start: gunicorn (the unit's ExecStart), cron"
    # The unit's value of KEY, continuation lines joined.
    unit_value() {
        awk -v key="$1" '
            collecting { line = $0; more = sub(/\\$/, "", line); value = value " " line; if (!more) exit; next }
            index($0, key "=") == 1 {
                value = substr($0, length(key) + 2); more = sub(/\\$/, "", value)
                if (!more) exit
                collecting = 1
            }
            END { print value }
        ' "$DIR$UNIT" | tr -s ' '
    }
    EXEC_START="$(unit_value ExecStart)"
    WORKDIR="$(unit_value WorkingDirectory)"
    UNIT_USER="$(unit_value User)"
    UNIT_GROUP="$(unit_value Group)"
    UNIT_UMASK="$(unit_value UMask)"
    mapfile -t UNIT_ENV < <(sed -n 's/^Environment=//p' "$DIR$UNIT")
    printf '    ExecStart=%s\n' "$EXEC_START"
    # Like systemd: as User/Group, in WorkingDirectory, with Environment= and UMask=, the
    # process's output to a log file instead of the journal.
    in_root runuser -u "$UNIT_USER" -g "$UNIT_GROUP" -- env -C "$WORKDIR" "${UNIT_ENV[@]}" \
        sh -c "umask $UNIT_UMASK && exec $EXEC_START" >>"$LOG/gunicorn.log" 2>&1 9>&- &
    check "  systemctl start messaging-cron-web" "replaced by: the unit's ExecStart as $UNIT_USER, by hand" gunicorn_up
    GUNICORN_PID=""
    # The master is the gunicorn whose parent is not a gunicorn.
    for pid in $(chroot_pids); do
        [[ "$(tr '\0' ' ' <"/proc/$pid/cmdline")" == *"/.venv/bin/gunicorn config.wsgi"* ]] || continue
        parent="$(ps -o ppid= -p "$pid" | tr -d ' ')"
        [[ "$(tr '\0' ' ' <"/proc/$parent/cmdline" 2>/dev/null)" == *gunicorn* ]] || GUNICORN_PID=$pid
    done
    check "  cron daemon" "replaced by: /usr/sbin/cron started by hand (systemctl enable --now cron)" in_root /usr/sbin/cron
fi

# ---------------------------------------------------------------------------------------------
note "Step 4: TLS and the admin account"
# A self-signed certificate where certbot would put the real one.
in_root install -d -m 0755 "/etc/letsencrypt/live/$DOMAIN"
check "  certbot certonly" "replaced by: a self-signed certificate (openssl) at the certbot paths" \
    in_root openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=$DOMAIN" \
    -addext "subjectAltName=DNS:$DOMAIN" -keyout "/etc/letsencrypt/live/$DOMAIN/privkey.pem" \
    -out "/etc/letsencrypt/live/$DOMAIN/fullchain.pem" 2>>"$LOG/errors.log"
check "  ln -s the site into sites-enabled" "ran for real" \
    in_root ln -sfn /etc/nginx/sites-available/messaging-cron /etc/nginx/sites-enabled/messaging-cron
check "  nginx -t" "ran for real" in_root nginx -t -q
if [[ "$BOOT" == yes ]]; then
    check "  systemctl reload nginx" "ran for real" in_root systemctl reload nginx
else
    check "  systemctl reload nginx" "replaced by: nginx started by hand (the package did not start it: policy-rc.d)" in_root nginx
fi
if manage shell -c "from django.contrib.auth import get_user_model as m; import sys; sys.exit(not m().objects.filter(username='$SUPERUSER').exists())" >/dev/null 2>&1; then
    record "  createsuperuser" "ran for real on an earlier run (user $SUPERUSER exists)" ok
else
    check "  createsuperuser" "ran for real (--noinput, DJANGO_SUPERUSER_* in the environment)" \
        in_root runuser -u "$APP_USER" -- env -C "$APP_DIR" DJANGO_SUPERUSER_USERNAME="$SUPERUSER" \
        DJANGO_SUPERUSER_EMAIL="$SUPERUSER@$DOMAIN" DJANGO_SUPERUSER_PASSWORD="$(head -c 18 /dev/urandom | base64)" \
        .venv/bin/python manage.py createsuperuser --noinput
fi
TOKEN="$(manage drf_create_token "$SUPERUSER" 2>>"$LOG/errors.log" | sed -n 's/^Generated token \([0-9a-f]*\) for user .*/\1/p')"
check "  drf_create_token (an API key)" "ran for real" test -n "$TOKEN"

# ---------------------------------------------------------------------------------------------
note "Step 5: SMS_PROVIDER=twilio, pointed at the fake Twilio"
rm -f "$LOG/twilio.port" "$LOG/twilio.jsonl"
in_root python3 "$CHECKOUT/scripts/fake_twilio.py" --account-sid "$TWILIO_SID" --auth-token "$TWILIO_TOKEN" \
    --port-file "$STATE/twilio.port" --record "$STATE/twilio.jsonl" >>"$LOG/fake_twilio.log" 2>&1 9>&- &
for _ in $(seq 1 50); do
    [[ -s "$LOG/twilio.port" ]] && break
    sleep 0.1
done
TWILIO_PORT="$(cat "$LOG/twilio.port" 2>/dev/null)"
check "  fake Twilio on 127.0.0.1:${TWILIO_PORT:-?}" "replaced by: scripts/fake_twilio.py (api.twilio.com)" test -n "$TWILIO_PORT"
# Edit .env as an operator would: the example's SMS_PROVIDER line changed, Twilio's keys set.
set_env() { # set_env KEY VALUE: replace the KEY= line, or append one
    local file="$DIR$APP_DIR/.env"
    if grep -q "^$1=" "$file"; then sed -i "s#^$1=.*#$1=$2#" "$file"; else printf '%s=%s\n' "$1" "$2" >>"$file"; fi
}
set_env SMS_PROVIDER twilio
set_env TWILIO_ACCOUNT_SID "$TWILIO_SID"
set_env TWILIO_AUTH_TOKEN "$TWILIO_TOKEN"
set_env TWILIO_FROM_NUMBER +15005550006
set_env TWILIO_API_BASE_URL "http://127.0.0.1:$TWILIO_PORT"
record "  provider keys in .env" "ran for real (sed on $APP_DIR/.env)" ok
# systemctl reload = the unit's ExecReload: HUP to the master; wait for new workers.
reload_gunicorn() {
    [[ -n "$GUNICORN_PID" ]] || return 1
    kill -HUP "$GUNICORN_PID" && sleep 3 && gunicorn_up
}
reload_by_systemd() { in_root systemctl reload messaging-cron-web && sleep 3 && gunicorn_up; }
if [[ "$BOOT" == yes ]]; then
    check "  systemctl reload messaging-cron-web" "ran for real" reload_by_systemd
else
    check "  systemctl reload messaging-cron-web" "replaced by: kill -HUP of gunicorn's master (the unit's ExecReload)" reload_gunicorn
fi

# ---------------------------------------------------------------------------------------------
note "Step 6: check"
manage cron list >"$LOG/cron-list.txt" 2>&1
check "  manage cron list" "ran for real" grep -q process-scheduled "$LOG/cron-list.txt"
sed 's/^/    /' "$LOG/cron-list.txt"
manage cron status >"$LOG/cron-status.txt" 2>&1
status_exit=$?
sed 's/^/    /' "$LOG/cron-status.txt"
# Right after an install no job has run yet: exit 0 (all fine) or 1 (a job overdue) are both
# answers; 2 and up mean the command itself broke.
check "  manage cron status (exit $status_exit)" "ran for real" test "$status_exit" -le 1
healthz_ok() { curl_site -f "https://$DOMAIN/healthz" | grep -q '"ok": *true'; }
redirects() { curl_site -o /dev/null -w '%{http_code}' "http://$DOMAIN/healthz" | grep -qx 301; }
check "  curl https://$DOMAIN/healthz" "ran for real (through nginx, TLS)" healthz_ok
check "  http://$DOMAIN/ redirects to https" "ran for real (nginx port 80)" redirects

# ---------------------------------------------------------------------------------------------
note "A test SMS through the API, delivered by the tick that cron runs"
# A fictional number (555-01xx) that is valid E.164; a new one each run, to find it at the fake.
RECIPIENT="+1415555$(printf "%04d" "$((100 + RANDOM % 100))")"
tick_lines_before=0 # no tick.log before cron's first tick
[[ ! -f "$DIR$APP_DIR/var/log/tick.log" ]] || tick_lines_before="$(wc -l <"$DIR$APP_DIR/var/log/tick.log")"
curl_site -o "$STATE/enqueue.json" -w '%{http_code}\n' -X POST "https://$DOMAIN/api/messages/" \
    -H "Authorization: Token $TOKEN" -H "Content-Type: application/json" \
    -d "{\"channel\": \"sms\", \"to\": \"$RECIPIENT\", \"body\": \"rehearsal of the install\"}" >"$LOG/enqueue.status" 2>>"$LOG/errors.log"
MESSAGE_ID="$(sed -n 's/.*"id": *"\([^"]*\)".*/\1/p' "$LOG/enqueue.json" 2>/dev/null | head -n 1)"
check "  POST /api/messages/ (Token auth) -> 201" "ran for real (through nginx)" \
    sh -c "grep -qx 201 '$LOG/enqueue.status' && test -n '$MESSAGE_ID'"
printf '    message %s to %s\n' "$MESSAGE_ID" "$RECIPIENT"
message_status() {
    curl_site -H "Authorization: Token $TOKEN" "https://$DOMAIN/api/messages/$MESSAGE_ID/" 2>/dev/null |
        sed -n 's/.*"status": *"\([a-z_]*\)".*/\1/p' | head -n 1
}
t0=$SECONDS
status=""
while ((SECONDS - t0 < DELIVERY_TIMEOUT)) && [[ -n "$MESSAGE_ID" ]]; do
    status="$(message_status)"
    [[ "$status" == sent || "$status" == delivered || "$status" == failed ]] && break
    sleep 5
done
printf '    after %d s: status %s\n' "$((SECONDS - t0))" "${status:-?}"
check "  message sent by the cron tick (${status:-?}, $((SECONDS - t0)) s)" "ran for real (cron daemon -> tick -> process-scheduled -> twilio SDK)" \
    test "$status" = sent
provider_got_it() { grep -F "\"To\": \"$RECIPIENT\"" "$LOG/twilio.jsonl" 2>/dev/null | grep -qF '"status": 201'; }
check "  the fake Twilio got the SMS" "ran for real (POST /2010-04-01/Accounts/<sid>/Messages.json, Basic auth)" provider_got_it
printf '    tail var/log/tick.log:\n'
tail -n 5 "$DIR$APP_DIR/var/log/tick.log" 2>/dev/null | sed 's/^/      /'
tick_lines_after="$(wc -l <"$DIR$APP_DIR/var/log/tick.log" 2>/dev/null || echo 0)"
check "  tail var/log/tick.log (grew by $((tick_lines_after - tick_lines_before)) lines)" "ran for real" \
    test "$tick_lines_after" -gt "$tick_lines_before"

# ---------------------------------------------------------------------------------------------
note "Metrics through nginx"
CRON_SECRET="$(sed -n 's/^CRON_SECRET=//p' "$DIR$APP_DIR/.env" | head -n 1)"
curl_site -o "$STATE/metrics.txt" -w '%{http_code}\n' -H "Authorization: Bearer $CRON_SECRET" \
    "https://$DOMAIN/metrics" >"$LOG/metrics.status" 2>>"$LOG/errors.log"
check "  GET /metrics (Bearer CRON_SECRET) -> 200" "ran for real (through nginx)" grep -qx 200 "$LOG/metrics.status"
metrics_parse() {
    in_root "$APP_DIR/.venv/bin/python" - "$STATE/metrics.txt" <<'PY'
import sys
from prometheus_client.parser import text_string_to_metric_families

families = {f.name: f for f in text_string_to_metric_families(open(sys.argv[1]).read())}
runs = [s for s in families["messaging_cron_job_runs"].samples
        if s.name == "messaging_cron_job_runs_total" and s.labels.get("cron_job") == "process-scheduled"
        and s.labels.get("status") == "succeeded"]
sent = [s for s in families["messaging_cron_delivery_attempts"].samples
        if s.labels.get("outcome") == "sent"]
print(f"    {len(families)} metric families; process-scheduled succeeded runs: {runs[0].value if runs else 0:g};"
      f" sent attempts: {sent[0].value if sent else 0:g}")
sys.exit(0 if runs and runs[0].value >= 1 and sent and sent[0].value >= 1 else 1)
PY
}
check "  /metrics parses, shows process-scheduled runs and a sent attempt" "ran for real (prometheus_client's parser)" metrics_parse

# ---------------------------------------------------------------------------------------------
# The Nth ```sh block under "## HEADING" in the installed guide, as written.
docs_block() {
    awk -v heading="## $1" -v n="$2" '
        $0 == heading { section = 1; next }
        section && /^## / { exit }
        section && /^```sh$/ { if (++count == n) { grab = 1 }; next }
        grab && /^```$/ { exit }
        grab { print }
    ' "$DIR$APP_DIR/docs/operations.md"
}
if [[ "$BOOT" == yes ]]; then
    note "Backup and restore: the guide's commands as written"
    MANAGE_HELPER="$(grep -m 1 '^manage() {' "$DIR$APP_DIR/docs/operations.md")"
    BACKUP="$(docs_block "Backup and restore" 1)"
    RESTORE="$(docs_block "Backup and restore" 2)"
    printf '%s\n' "$BACKUP" "$RESTORE" | sed 's/^/    $ /'
    DUMP="/root/messaging-$(date +%F).dump"
    rm -f "$DIR$DUMP"
    backup() { in_root bash -euc "cd $APP_DIR; $BACKUP" >>"$LOG/backup.log" 2>&1 && [[ -s "$DIR$DUMP" ]]; }
    check "  backup: pg_dump and .env" "ran for real" backup
    # The restore, with the backup just made (its one line that names a file).
    # shellcheck disable=SC2001 # the pattern is anchored to a line start
    RESTORE="$(sed "s#^dump=[^ ]*#dump=$DUMP#" <<<"$RESTORE")"
    restore() { in_root bash -euc "cd $APP_DIR; $MANAGE_HELPER; $RESTORE" >>"$LOG/restore.log" 2>&1; }
    check "  restore: tick and web stopped, dropdb, createdb, pg_restore, migrate, started again" "ran for real" restore
    after_restore() {
        [[ -f "$DIR/etc/cron.d/messaging-cron" ]] && in_root systemctl is-active --quiet messaging-cron-web &&
            gunicorn_up && [[ "$(message_status)" == sent ]]
    }
    check "  after the restore: the tick back, the web up, the test SMS still sent" "ran for real (through nginx)" after_restore
else
    record "  backup and restore" "not run without --boot (it stops and starts the web service)" ok
fi

manage cron status >"$LOG/cron-status-after.txt" 2>&1
status_exit=$?
check "  manage cron status after the ticks (exit $status_exit)" "ran for real" test "$status_exit" -eq 0
sed 's/^/    /' "$LOG/cron-status-after.txt"
if [[ "$BOOT" == yes ]]; then
    # Into a file first: under pipefail, grep -q quitting early would fail journalctl's write.
    journal_has_workers() {
        in_root journalctl -u messaging-cron-web --no-pager -n 200 >"$LOG/journal-web.txt" &&
            grep -q 'Booting worker' "$LOG/journal-web.txt"
    }
    check "  web log (journalctl -u messaging-cron-web)" "ran for real" journal_has_workers
    no_failed_units() {
        local failed
        failed="$(in_root systemctl list-units --failed --plain --no-legend | awk '{print $1}')"
        [[ -z "$failed" ]] || printf '    failed units: %s\n' "$failed"
        [[ -z "$failed" ]]
    }
    check "  systemctl --failed (none)" "ran for real" no_failed_units
else
    record "  web log (journalctl -u messaging-cron-web)" "replaced by: gunicorn's output in $STATE/gunicorn.log" ok
fi
record "  EMAIL_PROVIDER=resend, CRON_ALERT_EMAILS" "not run: no fake Resend here (alerts are only logged)" ok

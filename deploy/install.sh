#!/usr/bin/env bash
# Install or upgrade the messaging cron platform on a Debian/Ubuntu server.
#
#   sudo deploy/install.sh                   install, or upgrade in place (from a checkout)
#   deploy/install.sh --root /tmp/dry-run    dry run: render every file into that directory,
#                                            print each system command instead of running it
#
# Run it again after every update of the checkout: each step checks before it acts. It keeps
# .env (and its secrets), var/ (logs, locks), the virtualenv and an nginx site you have edited.
# Other files in the install directory are replaced by the checkout's.
#
# What it does: installs missing system packages (rsync, cron, logrotate, nginx, PostgreSQL
# when the database is on this host, venv support), writes .env with generated secrets on the
# first run, creates the system user, copies the project into the install directory,
# creates the PostgreSQL role and database that DATABASE_URL names, builds .venv, runs check,
# migrate, createcachetable and collectstatic, installs /etc/cron.d/messaging-cron (the tick,
# from `manage.py cron crontab --cron-d-user USER`), the systemd unit running gunicorn, the
# logrotate rules and the nginx site, then probes /healthz.
#
# Without a running systemd (a chroot, a container) it still installs and enables the units,
# starts a stopped local PostgreSQL cluster with pg_ctlcluster (the install needs it), but
# starts no service: it says so, and how to start them.
#
# Variables (all optional):
#   INSTALL_DIR=/srv/messaging-cron   where the project lives
#   APP_USER=messaging                system user that runs the jobs and the web process
#   DOMAIN=example.com                public host name: ALLOWED_HOSTS, nginx server_name, cert
#   PYTHON=python3.11                 interpreter for the virtualenv (a dry run also renders
#                                     the crontab with it, so it needs Django: .venv/bin/python)
#   DB_NAME=messaging DB_USER=messaging   the database and role a new .env points at
#   DB_PORT=5432                      port in a new .env's DATABASE_URL (default: the port of
#                                     this host's PostgreSQL cluster, from pg_lsclusters)

set -Eeuo pipefail
umask 022

ROOT=""
while (($#)); do
    case "$1" in
        --root) ROOT="${2:?--root needs a directory}" && shift 2 ;;
        --root=*) ROOT="${1#--root=}" && shift ;;
        -h | --help) sed -n '2,32p' "$0" && exit 0 ;;
        *) printf 'unknown argument: %s (see %s --help)\n' "$1" "$0" >&2 && exit 2 ;;
    esac
done
ROOT="${ROOT%/}"

INSTALL_DIR="${INSTALL_DIR:-/srv/messaging-cron}"
INSTALL_DIR="${INSTALL_DIR%/}"
APP_USER="${APP_USER:-messaging}"
DOMAIN="${DOMAIN:-example.com}"
PYTHON="${PYTHON:-python3.11}"
DB_NAME="${DB_NAME:-messaging}"
DB_USER="${DB_USER:-messaging}"
NEW_DB_PORT="${DB_PORT:-}"
SERVICE=messaging-cron-web
SITE=messaging-cron
SRC_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
ENV_FILE="$ROOT$INSTALL_DIR/.env"
VENV_PY="$INSTALL_DIR/.venv/bin/python"
WORK_FILES=()

step() { printf '\n==> %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
warn() { printf '\nWARNING: %s\n' "$*" >&2; }
die() {
    printf '\nERROR: %s\n' "$*" >&2
    exit 1
}
on_error() {
    local status=$? line=$1 command=$2
    printf '\nERROR: line %s: "%s" failed (exit %s).\n' "$line" "$command" "$status" >&2
    printf 'Nothing after that step was done. Fix the cause, then run %s again.\n' "$0" >&2
    exit "$status"
}
trap 'on_error "$LINENO" "$BASH_COMMAND"' ERR
trap 'rm -f -- "${WORK_FILES[@]}"' EXIT

dry_run() { [[ -n "$ROOT" ]]; }

# systemd is the init of this machine (sd_booted()). A dry run prints the systemd commands.
systemd_running() { dry_run || [[ -d /run/systemd/system ]]; }

# This host's PostgreSQL clusters, one a line: version, name, port, status (pg_lsclusters).
local_clusters() {
    if command -v pg_lsclusters >/dev/null 2>&1; then
        pg_lsclusters --no-header 2>/dev/null | awk '{print $1, $2, $3, $4}'
    fi
}

# A command that changes the system: run it, or in a dry run print it.
sys() {
    if dry_run; then
        printf '    would run:'
        printf ' %q' "$@"
        printf '\n'
    else
        "$@"
    fi
}

work_file() {
    # A temporary file, removed when the script exits; its name is left in WORK_FILE.
    WORK_FILE="$(mktemp)"
    WORK_FILES+=("$WORK_FILE")
}

# First value of KEY in .env (django-environ keeps the first of duplicate keys), unquoted.
env_value() {
    local value
    value="$(sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*//p" "$ENV_FILE" | head -n 1)"
    value="${value%$'\r'}"
    value="${value#[\"\']}"
    value="${value%[\"\']}"
    printf '%s' "$value"
}

# A file from deploy/ on stdout, with the install directory, user and domain filled in.
render() {
    sed -e "s#/srv/messaging-cron#${INSTALL_DIR}#g" \
        -e "s/example\.com/${DOMAIN}/g" \
        -e "s/^User=messaging\$/User=${APP_USER}/" \
        -e "s/^Group=messaging\$/Group=${APP_GROUP}/" \
        -e "s/^\([[:space:]]*su \)messaging messaging\$/\1${APP_USER} ${APP_GROUP}/" \
        "$1"
}

# Write stdin to DEST (under the root) with MODE unless DEST already has that content;
# sets CHANGED=yes/no.
install_content() {
    local mode=$1 dest=$ROOT$2
    work_file
    cat >"$WORK_FILE"
    if [[ -f "$dest" ]] && cmp -s "$WORK_FILE" "$dest"; then
        CHANGED=no
    else
        install -D -m "$mode" "$WORK_FILE" "$dest"
        CHANGED=yes
    fi
}

# manage.py as the service user (what cron and the web process will be).
manage() { sys runuser -u "$APP_USER" -- env -C "$INSTALL_DIR" "$VENV_PY" manage.py "$@"; }

# ---------------------------------------------------------------------------------------------
step "Checking the basics"
if dry_run; then
    [[ "$ROOT" == /* && "$(realpath -m "$ROOT")" != / ]] || die "--root needs an absolute directory other than /."
    command -v rsync >/dev/null 2>&1 || die "a dry run copies the project with rsync: apt-get install rsync"
    install -d "$ROOT"
    info "DRY RUN into $ROOT: files are rendered there, system commands only printed"
else
    [[ "$(id -u)" -eq 0 ]] || die "run me as root: sudo $0 (or try a dry run: $0 --root /tmp/messaging-cron-root)"
    command -v apt-get >/dev/null 2>&1 || die "this installer is for Debian/Ubuntu (no apt-get here)."
    command -v systemctl >/dev/null 2>&1 || die "systemd is required (no systemctl here)."
    systemd_running || warn "systemd is not running here (a chroot or a container?). The units are
installed and enabled for the next boot, but no service is started: the end says how to start
them by hand. A stopped local PostgreSQL cluster is started with pg_ctlcluster (the install needs it)."
fi
[[ -f "$SRC_DIR/manage.py" && -f "$SRC_DIR/requirements.txt" ]] ||
    die "$SRC_DIR does not look like a checkout of the project (no manage.py / requirements.txt)."
[[ "$INSTALL_DIR" =~ ^/[A-Za-z0-9._/-]+$ ]] ||
    die "INSTALL_DIR must be an absolute path of letters, digits and . _ - / (got '$INSTALL_DIR')."
[[ "$APP_USER" =~ ^[a-z_][a-z0-9_-]*$ ]] || die "APP_USER '$APP_USER' is not a valid user name."
[[ "$DOMAIN" =~ ^[A-Za-z0-9.-]+$ ]] || die "DOMAIN '$DOMAIN' is not a host name."
[[ "$DB_NAME" =~ ^[a-z_][a-z0-9_]*$ && "$DB_USER" =~ ^[a-z_][a-z0-9_]*$ ]] ||
    die "DB_NAME and DB_USER must be lower-case letters, digits and _."
command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found. Install Python 3.11
(Debian 12: apt-get install python3.11 python3.11-venv), or set PYTHON=/path/to/python3.11."
"$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 11))' ||
    die "$PYTHON is older than 3.11."
[[ "$DOMAIN" != example.com ]] || warn "DOMAIN is not set: using example.com. Run with DOMAIN=your.domain
(it goes into a new .env's ALLOWED_HOSTS and the nginx site)."
info "checkout:    $SRC_DIR"
info "install dir: $INSTALL_DIR"
info "user:        $APP_USER"

# ---------------------------------------------------------------------------------------------
step "System packages"
# PostgreSQL is needed here when the database is on this host; a DATABASE_URL the installer
# adds to .env always is.
pg_wanted=yes
existing_url=""
[[ ! -f "$ENV_FILE" ]] || existing_url="$(env_value DATABASE_URL)"
if [[ -n "$existing_url" ]]; then
    existing_host="$("$PYTHON" "$SRC_DIR/deploy/envfile.py" dburl "$existing_url" | cut -d $'\x1f' -f 1)"
    case "$existing_url:$existing_host" in
        postgres*:127.0.0.1 | postgres*:localhost | postgres*:::1 | postgres*:) ;;
        *) pg_wanted=no ;;
    esac
fi
packages=()
command -v rsync >/dev/null 2>&1 || packages+=(rsync)
command -v cron >/dev/null 2>&1 || [[ -x /usr/sbin/cron ]] || packages+=(cron)
command -v flock >/dev/null 2>&1 || packages+=(util-linux)
command -v logrotate >/dev/null 2>&1 || [[ -x /usr/sbin/logrotate ]] || packages+=(logrotate)
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || packages+=(nginx)
if [[ "$pg_wanted" == yes ]] && ! command -v pg_lsclusters >/dev/null 2>&1; then packages+=(postgresql); fi
"$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1 || packages+=("$(basename "$PYTHON")-venv")
if ((${#packages[@]})); then
    info "installing: ${packages[*]}"
    sys apt-get update -q
    sys env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${packages[@]}"
else
    info "all present"
fi
if systemd_running; then
    sys systemctl enable --now --quiet cron || warn "could not enable the cron service; check it runs."
else
    systemctl enable --quiet cron 2>/dev/null || true
    info "cron: enabled for the next boot, not started (no running systemd): start it yourself"
fi

# ---------------------------------------------------------------------------------------------
step "Settings: $INSTALL_DIR/.env"
install -d -m 0755 "$ROOT$INSTALL_DIR"
# A new .env points at this host's PostgreSQL: DB_PORT, else the port of its first online
# cluster, else of its first cluster (a host where 5432 is taken gets 5433), else 5432.
if [[ -z "$NEW_DB_PORT" ]]; then
    NEW_DB_PORT="$(local_clusters | awk '$4 ~ /^online/ {print $3; exit}')"
    [[ -n "$NEW_DB_PORT" ]] || NEW_DB_PORT="$(local_clusters | awk '{print $3; exit}')"
    NEW_DB_PORT="${NEW_DB_PORT:-5432}"
fi
[[ "$NEW_DB_PORT" =~ ^[0-9]+$ ]] || die "DB_PORT must be a port number (got '$NEW_DB_PORT')."
# Only keys the file does not set yet are written: an existing .env keeps every value.
added="$("$PYTHON" "$SRC_DIR/deploy/envfile.py" write "$ENV_FILE" "$SRC_DIR/.env.example" \
    DEBUG=false "ALLOWED_HOSTS=$DOMAIN" "CSRF_TRUSTED_ORIGINS=https://$DOMAIN" \
    "SECRET_KEY={secret:50}" "CRON_SECRET={secret}" \
    "DATABASE_URL=postgres://$DB_USER:{secret}@127.0.0.1:$NEW_DB_PORT/$DB_NAME" \
    CACHE_URL=dbcache://cron_cache)"
if [[ -n "$added" ]]; then
    info "written: $added (secrets generated: SECRET_KEY with secrets.token_urlsafe(50), the others with token_urlsafe(32))"
else
    info "kept as it is (every setting the installer needs is there)"
fi
for name in SECRET_KEY CRON_SECRET; do
    if [[ -z "$(env_value "${name}_FILE")" && "$(env_value "$name")" == *change-me* ]]; then
        die "$name in $ENV_FILE is still the example placeholder. Set a long random value
(for example the output of: python3 -c 'import secrets; print(secrets.token_urlsafe(50))'),
or delete the line and run $0 again to have one generated."
    fi
done
database_url="$(env_value DATABASE_URL)"
[[ "$database_url" != *change-me* ]] ||
    die "DATABASE_URL in $ENV_FILE still holds the example password: set a real one, or delete the line and run $0 again."
IFS=$'\x1f' read -r DB_HOST DB_PORT DB_ROLE DB_PASSWORD DB_DATABASE < <("$PYTHON" "$SRC_DIR/deploy/envfile.py" dburl "$database_url")
db_local=no
if [[ "$database_url" == postgres* ]]; then
    case "$DB_HOST" in 127.0.0.1 | localhost | ::1 | "") db_local=yes ;; esac
elif [[ "$database_url" == sqlite* && "$database_url" != "sqlite:///$INSTALL_DIR/var/"* ]]; then
    warn "DATABASE_URL points at an SQLite file outside $INSTALL_DIR/var/: the web service can
write only under var/ (ProtectSystem=strict), and the service user must own the file."
fi
case "$(env_value DEBUG)" in
    false | False | no | off | 0) ;;
    *) warn "DEBUG is on in $ENV_FILE. Fine for a trial; on a server reachable from the internet set DEBUG=false." ;;
esac
[[ -n "$(env_value CRON_ALERT_EMAILS)" ]] || warn "CRON_ALERT_EMAILS is empty: job alerts will only be logged, not emailed."

# ---------------------------------------------------------------------------------------------
step "System user $APP_USER"
if id -u "$APP_USER" >/dev/null 2>&1; then
    APP_GROUP="$(id -gn "$APP_USER")"
    info "exists"
else
    sys useradd --system --user-group --home-dir "$INSTALL_DIR" --no-create-home \
        --shell /usr/sbin/nologin --comment "messaging cron platform" "$APP_USER"
    APP_GROUP="$APP_USER"
    info "created"
fi

# ---------------------------------------------------------------------------------------------
step "Project files in $INSTALL_DIR"
install_real="$(realpath -m "$ROOT$INSTALL_DIR")"
if [[ "$install_real" == "$SRC_DIR" ]]; then
    info "running from the install directory itself: files kept as they are"
else
    [[ "$install_real/" != "$SRC_DIR/"* ]] || die "INSTALL_DIR must not be inside the checkout."
    # Code is root-owned and read-only for the service user; --delete removes files dropped
    # from the project, but never touches the excluded paths.
    rsync -a --delete --no-owner --no-group --chmod=Dgo-w,Fgo-w \
        --exclude=/.git --exclude=/.venv --exclude=/var --exclude=/.env \
        --exclude=/staticfiles --exclude=/db.sqlite3 --exclude=__pycache__/ \
        --exclude=/.pytest_cache --exclude=/.ruff_cache \
        "$SRC_DIR/" "$ROOT$INSTALL_DIR/"
    chmod 0755 "$ROOT$INSTALL_DIR"
    sys chown root:root "$INSTALL_DIR"
    info "copied from the checkout"
fi
chmod 0640 "$ENV_FILE"
sys chown "root:$APP_GROUP" "$INSTALL_DIR/.env"
for dir in var var/log var/run var/locks; do install -d -m 0750 "$ROOT$INSTALL_DIR/$dir"; done
# Files someone created by hand as root (a manual run, a lock) would block the service user.
sys chown -R "$APP_USER:$APP_GROUP" "$INSTALL_DIR/var"
info ".env readable by $APP_GROUP only; var/{log,run,locks} owned by $APP_USER"

# ---------------------------------------------------------------------------------------------
step "PostgreSQL role $DB_ROLE and database $DB_DATABASE"
if [[ "$database_url" != postgres* ]]; then
    info "DATABASE_URL is not PostgreSQL: nothing to create"
elif [[ "$db_local" == no ]]; then
    info "the database is on $DB_HOST: create the role and database there (docs/operations.md)"
else
    # The cluster that holds DATABASE_URL's port: a URL on a port no local cluster uses would
    # only fail later, in migrate, with "connection refused".
    clusters="$(local_clusters)"
    if [[ -z "$clusters" ]]; then
        dry_run || die "no PostgreSQL cluster on this host (pg_lsclusters lists none), and DATABASE_URL
in $ENV_FILE points at this host. Create one (pg_createcluster 15 main --start), or point
DATABASE_URL at another server, then run $0 again."
        info "no local PostgreSQL cluster yet: a real install gets one with the postgresql package"
        cluster=""
    else
        cluster="$(awk -v port="$DB_PORT" '$3 == port {print; exit}' <<<"$clusters")"
        [[ -n "$cluster" ]] || die "DATABASE_URL in $ENV_FILE is on port $DB_PORT of this host, but no local
PostgreSQL cluster uses that port. The clusters here (version, name, port, status):
$(awk '{print "    " $0}' <<<"$clusters")
Set the port of one of them in DATABASE_URL (or DB_PORT=... for a new .env), then run $0 again."
    fi
    read -r pg_version pg_cluster _ pg_status <<<"${cluster:-- - - -}"
    if [[ -n "$cluster" && "$pg_status" != online* ]]; then
        if systemd_running; then
            sys systemctl enable --now --quiet postgresql
            sys systemctl start "postgresql@$pg_version-$pg_cluster"
        else
            warn "PostgreSQL $pg_version/$pg_cluster is down and systemd is not running: starting it with
pg_ctlcluster. Nothing restarts it after a reboot of this chroot or container."
            pg_ctlcluster "$pg_version" "$pg_cluster" start
        fi
    elif systemd_running; then
        sys systemctl enable --now --quiet postgresql
    fi
    # The password travels in the environment, never on a command line (see database.sql).
    # From / : psql as postgres cannot enter the directory the installer was started from.
    if dry_run; then
        sys runuser -u postgres -- env -C / psql -X -q -v ON_ERROR_STOP=1 -p "$DB_PORT" \
            -v role="$DB_ROLE" -v db="$DB_DATABASE" -f "$SRC_DIR/deploy/database.sql"
    else
        DB_PASSWORD="$DB_PASSWORD" runuser -u postgres -- env -C / psql -X -q -v ON_ERROR_STOP=1 -p "$DB_PORT" \
            -v role="$DB_ROLE" -v db="$DB_DATABASE" <"$SRC_DIR/deploy/database.sql"
        info "role has the password of .env; database exists (cluster $pg_version/$pg_cluster, port $DB_PORT)"
    fi
fi

# ---------------------------------------------------------------------------------------------
step "Python virtualenv"
want_version="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [[ -x "$ROOT$VENV_PY" ]]; then
    have_version="$("$ROOT$VENV_PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    [[ "$have_version" == "$want_version" ]] ||
        die "$INSTALL_DIR/.venv uses Python $have_version, not $want_version. Remove it
(rm -rf $INSTALL_DIR/.venv) and run $0 again to rebuild it."
    info "kept (Python $have_version)"
else
    sys "$PYTHON" -m venv --clear "$INSTALL_DIR/.venv"
fi
sys "$VENV_PY" -m pip install --quiet --disable-pip-version-check --upgrade pip
sys "$VENV_PY" -m pip install --quiet --disable-pip-version-check -r "$INSTALL_DIR/requirements.txt"
# The service user cannot write __pycache__ in the root-owned tree: compile once here.
sys "$VENV_PY" -m compileall -q -x '/\.venv/' "$INSTALL_DIR"

# ---------------------------------------------------------------------------------------------
step "Django: check, migrate, cache table, static files"
manage check --deploy
manage migrate --noinput
manage createcachetable
# staticfiles/ sits in the root-owned tree and is only read (by nginx): build it as root.
sys env -C "$INSTALL_DIR" "$VENV_PY" manage.py collectstatic --noinput --verbosity 0

# ---------------------------------------------------------------------------------------------
step "Cron: /etc/cron.d/$SITE"
crontab_args=(cron crontab --project-dir "$INSTALL_DIR" --cron-d-user "$APP_USER")
if dry_run; then
    # No virtualenv in a dry run: the checkout renders it with $PYTHON (which needs Django).
    "$PYTHON" -c 'import django' 2>/dev/null ||
        die "a dry run renders the crontab with $PYTHON, which cannot import Django: run it with PYTHON=.venv/bin/python"
    crontab_text="$(env -C "$SRC_DIR" DEBUG=true "$PYTHON" manage.py "${crontab_args[@]}")"
else
    crontab_text="$(runuser -u "$APP_USER" -- env -C "$INSTALL_DIR" "$VENV_PY" manage.py "${crontab_args[@]}")"
fi
install_content 0644 "/etc/cron.d/$SITE" <<<"$crontab_text"
info "/etc/cron.d/$SITE $([[ "$CHANGED" == yes ]] && echo installed || echo unchanged): the tick, as $APP_USER, output in var/log/"
# Installers before /etc/cron.d put the tick in the user's own crontab: remove it, once.
# Only the tick's line goes: anything else the operator keeps in that crontab stays.
if command -v crontab >/dev/null 2>&1 && crontab -l -u "$APP_USER" 2>/dev/null | grep -q 'manage.py cron tick'; then
    if dry_run; then
        printf '    would run: crontab -l -u %q | grep -v "manage.py cron tick" | crontab -u %q -\n' "$APP_USER" "$APP_USER"
    else
        crontab -l -u "$APP_USER" | grep -v 'manage.py cron tick' | crontab -u "$APP_USER" -
    fi
    info "removed the old tick line from the crontab of $APP_USER (now in /etc/cron.d); its other lines are kept"
fi
if [[ -f /etc/cron.allow ]] && ! grep -qx "$APP_USER" /etc/cron.allow; then
    warn "/etc/cron.allow exists and does not list $APP_USER: add it, or cron may refuse the jobs."
fi

# ---------------------------------------------------------------------------------------------
step "systemd unit $SERVICE"
install_content 0644 "/etc/systemd/system/$SERVICE.service" < <(render "$SRC_DIR/deploy/$SERVICE.service")
unit_changed=$CHANGED
if ! systemd_running; then
    # Enabling works offline (it only makes the symlink); starting needs systemd.
    systemctl enable --quiet "$SERVICE"
    warn "$SERVICE is installed and enabled, but NOT started or reloaded: systemd is not running.
On a machine booted with systemd it starts at boot; here, start what its ExecStart says as
$APP_USER in $INSTALL_DIR (see /etc/systemd/system/$SERVICE.service), or restart the gunicorn
you started (kill -HUP its master) so that it loads the new code."
else
    sys systemctl daemon-reload
    sys systemctl enable --quiet "$SERVICE"
fi
if dry_run; then
    sys systemctl reload-or-restart "$SERVICE"
elif ! systemd_running; then
    info "GET /healthz not probed: the service was not started"
elif [[ "$unit_changed" == yes ]] || ! systemctl is-active --quiet "$SERVICE"; then
    systemctl restart "$SERVICE"
    info "unit installed; service (re)started"
else
    # Graceful: new workers load the new code and .env, old ones finish their requests.
    systemctl reload "$SERVICE"
    info "unit unchanged; service reloaded"
fi

if ! dry_run && systemd_running; then
    # Probe /healthz directly on gunicorn, as one of the ALLOWED_HOSTS and as if over HTTPS.
    probe_host="$(env_value ALLOWED_HOSTS)"
    probe_host="${probe_host%%,*}"
    probe_host="${probe_host// /}"
    probe_host="${probe_host#.}"
    [[ -n "$probe_host" && "$probe_host" != "*" ]] || probe_host=localhost
    healthy=no
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        if "$VENV_PY" - "$probe_host" >/dev/null 2>&1 <<'PY'; then
import sys, urllib.request
request = urllib.request.Request(
    "http://127.0.0.1:8001/healthz",
    headers={"Host": sys.argv[1], "X-Forwarded-Proto": "https"},
)
with urllib.request.urlopen(request, timeout=5) as response:
    sys.exit(0 if response.status == 200 else 1)
PY
            healthy=yes
            break
        fi
        sleep 1
    done
    if [[ "$healthy" == yes ]]; then
        info "GET /healthz: 200 (database reachable from the web process)"
    else
        warn "GET http://127.0.0.1:8001/healthz (Host: $probe_host) did not answer 200. Look at:
    journalctl -u $SERVICE -n 50 --no-pager"
    fi
fi

# ---------------------------------------------------------------------------------------------
step "logrotate rules"
install_content 0644 "/etc/logrotate.d/$SITE" < <(render "$SRC_DIR/deploy/logrotate")
info "/etc/logrotate.d/$SITE $([[ "$CHANGED" == yes ]] && echo installed || echo unchanged)"
if dry_run; then
    sys logrotate --debug "/etc/logrotate.d/$SITE"
elif ! logrotate --debug "/etc/logrotate.d/$SITE" >/dev/null 2>&1; then
    warn "logrotate --debug /etc/logrotate.d/$SITE reports a problem; run it to see which."
fi

# ---------------------------------------------------------------------------------------------
step "nginx site"
site_available="/etc/nginx/sites-available/$SITE"
site_enabled="/etc/nginx/sites-enabled/$SITE"
work_file
site_new="$WORK_FILE"
render "$SRC_DIR/deploy/nginx.conf" >"$site_new"
if [[ ! -f "$ROOT$site_available" ]]; then
    install -D -m 0644 "$site_new" "$ROOT$site_available"
    info "installed $site_available (not enabled yet: see the next steps)"
elif cmp -s "$site_new" "$ROOT$site_available"; then
    info "$site_available unchanged"
else
    install -m 0644 "$site_new" "$ROOT$site_available.dist"
    info "kept your edited $site_available; the shipped version is $site_available.dist"
    info "compare: diff -u $site_available $site_available.dist"
fi
if dry_run; then
    sys nginx -t
elif [[ -e "$site_enabled" ]]; then
    if ! nginx -t >/dev/null 2>&1; then
        warn "nginx -t fails, nginx not reloaded. Run nginx -t to see why."
    elif ! systemd_running; then
        warn "nginx -t passes, but nginx was not reloaded: systemd is not running. If nginx runs, reload it
with: nginx -s reload"
    elif systemctl reload nginx; then
        info "enabled; nginx reloaded"
    else
        warn "systemctl reload nginx failed: is nginx running? (systemctl status nginx)"
    fi
fi

# ---------------------------------------------------------------------------------------------
run_as="cd $INSTALL_DIR && runuser -u $APP_USER -- .venv/bin/python manage.py"
if dry_run; then step "Dry run done: the files are in $ROOT. Next steps"; else step "Installed. Next steps"; fi
if ! systemd_running; then
    cat <<EOF
  0. systemd is not running here, so nothing was started or reloaded but PostgreSQL. On a
     machine booted with systemd, cron, nginx and $SERVICE start at boot. Here, start them
     yourself: cron (/usr/sbin/cron), nginx, and as $APP_USER in $INSTALL_DIR the ExecStart of
     /etc/systemd/system/$SERVICE.service. "systemctl reload" below means: kill -HUP the
     process (gunicorn's master, nginx).
EOF
fi
cat <<EOF
  1. nginx, once: get a certificate for $DOMAIN, then enable the site:
       certbot certonly --webroot -w /var/www/html -d $DOMAIN
       ln -s $site_available $site_enabled
       nginx -t && systemctl reload nginx
  2. An admin account, once:
       $run_as createsuperuser
  3. Look at the jobs and their health (exit 1 = a job is failing or overdue):
       $run_as cron list
       $run_as cron status
  4. Logs: the tick and each job in $INSTALL_DIR/var/log/<job>.log, web in journalctl -u $SERVICE.
  5. Provider keys and CRON_ALERT_EMAILS go in $INSTALL_DIR/.env, then: systemctl reload $SERVICE
  Operations guide: $INSTALL_DIR/docs/operations.md
EOF

#!/usr/bin/env bash
# Install or update the messaging cron platform on a Debian/Ubuntu server.
#
#   sudo deploy/install.sh          (as root, from a checkout of the project)
#
# Run it again after every update of the checkout: each step checks before it acts. It keeps
# .env, var/ (logs, locks), the virtualenv and an nginx site you have edited. Other files in
# the install directory are replaced by the checkout's.
#
# What it does: installs missing system packages (rsync, cron, logrotate, nginx, venv
# support), creates the system user, copies the project into the install directory, builds
# .venv with Python 3.11 and requirements.txt, creates var/log, var/run and var/locks owned
# by the user, runs migrate, createcachetable and collectstatic, installs the user's crontab
# from `manage.py cron crontab`, the systemd unit, the nginx site and the logrotate rules.
#
# Variables (all optional):
#   INSTALL_DIR=/srv/messaging-cron   where the project lives
#   APP_USER=messaging                system user that runs the jobs and the web process
#   PYTHON=python3.11                 interpreter for the virtualenv

set -Eeuo pipefail
umask 022

INSTALL_DIR="${INSTALL_DIR:-/srv/messaging-cron}"
INSTALL_DIR="${INSTALL_DIR%/}"
APP_USER="${APP_USER:-messaging}"
PYTHON="${PYTHON:-python3.11}"
SERVICE=messaging-cron-web
SITE=messaging-cron
SRC_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
ENV_FILE="$INSTALL_DIR/.env"
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

# A file from deploy/ on stdout, with the install directory and user filled in.
render() {
    sed -e "s#/srv/messaging-cron#${INSTALL_DIR}#g" \
        -e "s/^User=messaging\$/User=${APP_USER}/" \
        -e "s/^Group=messaging\$/Group=${APP_GROUP}/" \
        -e "s/^\([[:space:]]*su \)messaging messaging\$/\1${APP_USER} ${APP_GROUP}/" \
        "$1"
}

# render SRC into DEST (mode 0644) unless DEST already has that content; sets CHANGED=yes/no.
install_rendered() {
    local src=$1 dest=$2
    work_file
    render "$src" >"$WORK_FILE"
    if [[ -f "$dest" ]] && cmp -s "$WORK_FILE" "$dest"; then
        CHANGED=no
    else
        install -m 0644 "$WORK_FILE" "$dest"
        CHANGED=yes
    fi
}

# manage.py as the service user (what cron and the web process will be).
manage() { (cd "$INSTALL_DIR" && runuser -u "$APP_USER" -- "$VENV_PY" manage.py "$@"); }

# ---------------------------------------------------------------------------------------------
step "Checking the basics"
[[ "$(id -u)" -eq 0 ]] || die "run me as root: sudo $0"
command -v apt-get >/dev/null 2>&1 || die "this installer is for Debian/Ubuntu (no apt-get here)."
command -v systemctl >/dev/null 2>&1 || die "systemd is required (no systemctl here)."
[[ -f "$SRC_DIR/manage.py" && -f "$SRC_DIR/requirements.txt" ]] ||
    die "$SRC_DIR does not look like a checkout of the project (no manage.py / requirements.txt)."
[[ "$INSTALL_DIR" =~ ^/[A-Za-z0-9._/-]+$ ]] ||
    die "INSTALL_DIR must be an absolute path of letters, digits and . _ - / (got '$INSTALL_DIR')."
[[ "$APP_USER" =~ ^[a-z_][a-z0-9_-]*$ ]] || die "APP_USER '$APP_USER' is not a valid user name."
info "checkout:    $SRC_DIR"
info "install dir: $INSTALL_DIR"
info "user:        $APP_USER"

if [[ ! -f "$ENV_FILE" ]]; then
    die "$ENV_FILE does not exist. The installer never invents settings; create it first:

    mkdir -p $INSTALL_DIR
    cp $SRC_DIR/.env.example $ENV_FILE
    chmod 600 $ENV_FILE
    editor $ENV_FILE     # DEBUG=false, SECRET_KEY, CRON_SECRET, ALLOWED_HOSTS,
                         # CSRF_TRUSTED_ORIGINS, DATABASE_URL, CRON_ALERT_EMAILS ...

then run $0 again."
fi

for name in SECRET_KEY CRON_SECRET; do
    if [[ -z "$(env_value "${name}_FILE")" && "$(env_value "$name")" == *change-me* ]]; then
        die "$name in $ENV_FILE is still the example placeholder. Set a long random value
(for example the output of: python3 -c 'import secrets; print(secrets.token_urlsafe(48))'),
or point ${name}_FILE at a file holding one, then run $0 again."
    fi
done

debug="$(env_value DEBUG)"
case "${debug,,}" in
    false | no | off | 0) ;;
    *) warn "DEBUG is on in $ENV_FILE (it is on unless .env says DEBUG=false). Fine for a
trial; on a server reachable from the internet set DEBUG=false." ;;
esac

database_url="$(env_value DATABASE_URL)"
if [[ -z "$database_url" ]]; then
    die "DATABASE_URL is not set in $ENV_FILE, so the project would use db.sqlite3 in
$INSTALL_DIR, which the service user cannot write. Set DATABASE_URL to PostgreSQL
(postgres://USER:PASSWORD@HOST:5432/NAME), or for a single-host trial to
sqlite:///$INSTALL_DIR/var/db.sqlite3, then run $0 again."
elif [[ "$database_url" == sqlite* && "$database_url" != "sqlite:///$INSTALL_DIR/var/"* ]]; then
    warn "DATABASE_URL points at an SQLite file outside $INSTALL_DIR/var/: the web service can
write only under var/ (ProtectSystem=strict), and the service user must own the file."
fi

if [[ -z "$(env_value CRON_ALERT_EMAILS)" ]]; then
    warn "CRON_ALERT_EMAILS is empty: job alerts will only be logged, not emailed."
fi

# ---------------------------------------------------------------------------------------------
step "System packages"
packages=()
command -v rsync >/dev/null 2>&1 || packages+=(rsync)
command -v crontab >/dev/null 2>&1 || packages+=(cron)
command -v flock >/dev/null 2>&1 || packages+=(util-linux)
command -v logrotate >/dev/null 2>&1 || packages+=(logrotate)
command -v nginx >/dev/null 2>&1 || packages+=(nginx)
command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found. Install Python 3.11
(Debian 12: apt-get install python3.11 python3.11-venv), or set PYTHON=/path/to/python3.11."
"$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 11))' ||
    die "$PYTHON is older than 3.11."
"$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1 || packages+=("$(basename "$PYTHON")-venv")
if ((${#packages[@]})); then
    info "installing: ${packages[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${packages[@]}"
else
    info "all present"
fi
systemctl enable --now --quiet cron 2>/dev/null || warn "could not enable the cron service; check it runs."

# ---------------------------------------------------------------------------------------------
step "System user $APP_USER"
if id -u "$APP_USER" >/dev/null 2>&1; then
    info "exists"
else
    useradd --system --user-group --home-dir "$INSTALL_DIR" --no-create-home \
        --shell /usr/sbin/nologin --comment "messaging cron platform" "$APP_USER"
    info "created"
fi
APP_GROUP="$(id -gn "$APP_USER")"

# ---------------------------------------------------------------------------------------------
step "Project files in $INSTALL_DIR"
install_real="$(realpath -m "$INSTALL_DIR")"
if [[ "$install_real" == "$SRC_DIR" ]]; then
    info "running from the install directory itself: files kept as they are"
else
    [[ "$install_real/" != "$SRC_DIR/"* ]] || die "INSTALL_DIR must not be inside the checkout."
    install -d -m 0755 "$INSTALL_DIR"
    # Code is root-owned and read-only for the service user; --delete removes files dropped
    # from the project, but never touches the excluded paths.
    rsync -a --delete --no-owner --no-group --chmod=Dgo-w,Fgo-w \
        --exclude=/.git/ --exclude=/.venv/ --exclude=/var/ --exclude=/.env \
        --exclude=/staticfiles/ --exclude=/db.sqlite3 --exclude=__pycache__/ \
        --exclude=/.pytest_cache/ --exclude=/.ruff_cache/ \
        "$SRC_DIR/" "$INSTALL_DIR/"
    chown root:root "$INSTALL_DIR"
    chmod 0755 "$INSTALL_DIR"
    info "copied from the checkout"
fi
chown "root:$APP_GROUP" "$ENV_FILE"
chmod 0640 "$ENV_FILE"
install -d -o "$APP_USER" -g "$APP_GROUP" -m 0750 \
    "$INSTALL_DIR/var" "$INSTALL_DIR/var/log" "$INSTALL_DIR/var/run" "$INSTALL_DIR/var/locks"
# Files someone created by hand as root (a manual run, a lock) would block the service user.
chown -R "$APP_USER:$APP_GROUP" "$INSTALL_DIR/var"
info ".env readable by $APP_GROUP only; var/{log,run,locks} owned by $APP_USER"

# ---------------------------------------------------------------------------------------------
step "Python virtualenv"
want_version="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [[ -x "$VENV_PY" ]]; then
    have_version="$("$VENV_PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    [[ "$have_version" == "$want_version" ]] ||
        die "$INSTALL_DIR/.venv uses Python $have_version, not $want_version. Remove it
(rm -rf $INSTALL_DIR/.venv) and run $0 again to rebuild it."
    info "kept (Python $have_version)"
else
    "$PYTHON" -m venv --clear "$INSTALL_DIR/.venv"
    info "created with Python $want_version"
fi
"$VENV_PY" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$VENV_PY" -m pip install --quiet --disable-pip-version-check -r "$INSTALL_DIR/requirements.txt"
info "requirements.txt installed"
# The service user cannot write __pycache__ in the root-owned tree: compile once here.
mapfile -t packages_dirs < <(find "$INSTALL_DIR" -mindepth 2 -maxdepth 2 -name __init__.py \
    -not -path "$INSTALL_DIR/.venv/*" -printf '%h\n')
if ((${#packages_dirs[@]})); then
    "$VENV_PY" -m compileall -q "${packages_dirs[@]}" >/dev/null ||
        warn "compileall reported errors (see above); the imports will show them too."
fi

# ---------------------------------------------------------------------------------------------
step "Django: check, migrate, cache table, static files"
manage check --deploy
manage migrate --noinput
manage createcachetable
# staticfiles/ sits in the root-owned tree and is only read (by nginx): build it as root.
(cd "$INSTALL_DIR" && "$VENV_PY" manage.py collectstatic --noinput --verbosity 0)
info "done"

# ---------------------------------------------------------------------------------------------
step "Crontab of $APP_USER"
if [[ -f /etc/cron.allow ]] && ! grep -qx "$APP_USER" /etc/cron.allow; then
    warn "/etc/cron.allow exists and does not list $APP_USER: add it, or cron will refuse the jobs."
fi
work_file
manage cron crontab --project-dir "$INSTALL_DIR" >"$WORK_FILE"
# The generated file is the user's whole crontab (a dedicated user has nothing else in it).
crontab -u "$APP_USER" "$WORK_FILE"
info "installed: the tick line, which reads every schedule from the database (crontab -l -u $APP_USER)"

# ---------------------------------------------------------------------------------------------
step "systemd unit $SERVICE"
install_rendered "$SRC_DIR/deploy/$SERVICE.service" "/etc/systemd/system/$SERVICE.service"
systemctl daemon-reload
systemctl enable --quiet "$SERVICE"
if [[ "$CHANGED" == yes ]] || ! systemctl is-active --quiet "$SERVICE"; then
    systemctl restart "$SERVICE"
    info "unit installed; service (re)started"
else
    # Graceful: new workers load the new code and .env, old ones finish their requests.
    systemctl reload "$SERVICE"
    info "unit unchanged; service reloaded"
fi

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

# ---------------------------------------------------------------------------------------------
step "logrotate rules"
install_rendered "$SRC_DIR/deploy/logrotate" "/etc/logrotate.d/$SITE"
if logrotate --debug "/etc/logrotate.d/$SITE" >/dev/null 2>&1; then
    info "/etc/logrotate.d/$SITE $([[ "$CHANGED" == yes ]] && echo installed || echo unchanged)"
else
    warn "logrotate --debug /etc/logrotate.d/$SITE reports a problem; run it to see which."
fi

# ---------------------------------------------------------------------------------------------
step "nginx site"
site_available="/etc/nginx/sites-available/$SITE"
site_enabled="/etc/nginx/sites-enabled/$SITE"
if [[ ! -d /etc/nginx/sites-available ]]; then
    warn "/etc/nginx/sites-available does not exist: install deploy/nginx.conf by hand."
else
    work_file
    site_new="$WORK_FILE"
    render "$SRC_DIR/deploy/nginx.conf" >"$site_new"
    if [[ ! -f "$site_available" ]]; then
        install -m 0644 "$site_new" "$site_available"
        info "installed $site_available (not enabled yet: see the next steps)"
    elif cmp -s "$site_new" "$site_available"; then
        info "$site_available unchanged"
    else
        install -m 0644 "$site_new" "$site_available.dist"
        info "kept your edited $site_available; the shipped version is $site_available.dist"
        info "compare: diff -u $site_available $site_available.dist"
    fi
    if [[ -e "$site_enabled" ]]; then
        if nginx -t >/dev/null 2>&1; then
            systemctl reload nginx
            info "enabled; nginx reloaded"
        else
            warn "nginx -t fails, nginx not reloaded. Run nginx -t to see why."
        fi
    fi
fi

# ---------------------------------------------------------------------------------------------
run_as="cd $INSTALL_DIR && runuser -u $APP_USER -- .venv/bin/python manage.py"
step "Installed. Next steps"
cat <<EOF
  1. nginx, once: in $site_available replace example.com (server_name and
     certificate paths) with your domain, get a certificate, then enable the site:
       ln -s $site_available $site_enabled
       nginx -t && systemctl reload nginx
  2. An admin account, once:
       $run_as createsuperuser
  3. Look at the jobs and their health (exit 1 = a job is failing or overdue):
       $run_as cron list
       $run_as cron status
  4. Logs: job runs in $INSTALL_DIR/var/log/<job>.log, web in journalctl -u $SERVICE.
  5. Schedules, timezones and the enabled flag are read from the database every minute:
     change them in the admin, no need to run this installer again.
  Operations guide: $INSTALL_DIR/docs/operations.md
EOF

"""Project settings, read from the environment (and `.env` when present).

With nothing set the project runs on SQLite with console providers and DEBUG on; with
DEBUG off it refuses to start without SECRET_KEY and CRON_SECRET. Every variable is listed,
with a comment, in `.env.example`.
"""

import ipaddress
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").is_file():
    env.read_env(BASE_DIR / ".env")


def env_secret(name: str, default: str = "") -> str:
    """A secret from NAME, or from the file named by NAME_FILE (systemd credentials,
    container secrets); the file wins when both are set."""
    path = env.str(f"{name}_FILE", default="")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={path} cannot be read: {exc.strerror}") from exc
    return env.str(name, default=default)


def _require(name: str, value: object) -> None:
    if not value:
        raise ImproperlyConfigured(
            f"{name} is not set: set it in .env (see .env.example) or as {name}_FILE, "
            "or set DEBUG=true for a local trial."
        )


MIN_SECRET_LENGTH = 32


def _require_strong(name: str, value: str) -> None:
    """Refuse .env.example's placeholders and short secrets. The message names the variable
    and the length, never the value: start-up errors end up in journals and CI logs."""
    hint = "e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'"
    if value.lower().startswith("change-me"):
        raise ImproperlyConfigured(f"{name} is still the placeholder from .env.example: replace it, {hint}")
    if len(value) < MIN_SECRET_LENGTH:
        raise ImproperlyConfigured(
            f"{name} is too short ({len(value)} characters): use at least {MIN_SECRET_LENGTH}, {hint}"
        )


DEBUG = env.bool("DEBUG", default=True)
SECRET_KEY = env_secret("SECRET_KEY")
CRON_SECRET = [s.strip() for s in env_secret("CRON_SECRET").split(",") if s.strip()]

if not DEBUG:
    _require("SECRET_KEY", SECRET_KEY)
    _require("CRON_SECRET", CRON_SECRET)
    _require_strong("SECRET_KEY", SECRET_KEY)
    for _i, _secret in enumerate(CRON_SECRET, 1):
        _require_strong("CRON_SECRET" if len(CRON_SECRET) == 1 else f"CRON_SECRET (entry {_i})", _secret)
if not SECRET_KEY:
    # Only reachable with DEBUG on: a fixed key is fine for a laptop trial.
    SECRET_KEY = "insecure-local-development-key-do-not-use-in-production"

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "scheduling",
    "messaging",
    "analytics",
    "notifications",
    "schedules",
    "campaigns",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Early: sees every error below it (Django's 404/500 pages, debug pages) and makes the
    # ones under /api/ JSON; refuses an oversized /api/ body before anything reads it.
    "config.api_errors.ApiErrorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "notifications.context_processors.unread",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=0)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The demo runs jobs and the web server at once; wait for the writer instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {}).update({"timeout": 20})
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]  # the favicon (also served at /favicon.ico by config.views)
LOGIN_URL = "/admin/login/"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAdminUser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "UNAUTHENTICATED_USER": None,
    # Errors as {"error": "...", "fields": {...}} (the interface in the README).
    "EXCEPTION_HANDLER": "config.api_errors.api_exception_handler",
}

# --- Security (production: DEBUG off, behind nginx terminating TLS) -------------------------
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
# Preload is a commitment (HTTPS for every subdomain, for months): set false to opt out.
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
X_FRAME_OPTIONS = "DENY"

# --- Cron jobs ------------------------------------------------------------------------------
CRON_ALERT_EMAILS = env.list("CRON_ALERT_EMAILS", default=[])
CRON_ALERT_AFTER_FAILURES = env.int("CRON_ALERT_AFTER_FAILURES", default=1)
CRON_PARTIAL_FAILING_AFTER = env.int("CRON_PARTIAL_FAILING_AFTER", default=3)
CRON_MIN_FREE_MB = env.int("CRON_MIN_FREE_MB", default=500)
CRON_MAX_LOAD = env.float("CRON_MAX_LOAD", default=4.0)
# Overload skips of one job in a row after which it counts as unhealthy and alerts (0: never).
CRON_OVERLOAD_ALERT_AFTER = env.int("CRON_OVERLOAD_ALERT_AFTER", default=3)
CRON_RUN_RETENTION_DAYS = env.int("CRON_RUN_RETENTION_DAYS", default=30)
CRON_LOCK_DIR = env.str("CRON_LOCK_DIR", default=str(BASE_DIR / "var" / "locks"))
# A direct PostgreSQL connection for the job locks when DATABASE_URL goes through PgBouncer in
# transaction mode (a session advisory lock needs one server session for the whole run).
CRON_LOCK_DATABASE_URL = env_secret("CRON_LOCK_DATABASE_URL", default="")
CRON_AUTH_FAILURES_PER_MINUTE = env.int("CRON_AUTH_FAILURES_PER_MINUTE", default=20)
# Proxies whose X-Real-IP header names the caller for the failed-auth throttle.
CRON_TRUSTED_PROXIES = env.list("CRON_TRUSTED_PROXIES", default=["127.0.0.1", "::1"])
CRON_IDEMPOTENCY_HOURS = env.int("CRON_IDEMPOTENCY_HOURS", default=24)
CRON_EXTRA_JOB_MODULES = env.list("CRON_EXTRA_JOB_MODULES", default=[])
# Who may scrape GET /metrics without the cron secret: addresses or networks ("10.0.0.0/8"),
# as the trusted proxy reports the caller (see CRON_TRUSTED_PROXIES).
METRICS_ALLOWED_IPS = env.list("METRICS_ALLOWED_IPS", default=["127.0.0.1", "::1"])
for _entry in METRICS_ALLOWED_IPS:
    try:
        ipaddress.ip_network(_entry, strict=False)
    except ValueError as exc:
        raise ImproperlyConfigured(f"METRICS_ALLOWED_IPS: {exc} (an address or a network such as 10.0.0.0/8)") from exc

# --- Providers ------------------------------------------------------------------------------
SMS_PROVIDER = env.str("SMS_PROVIDER", default="console")
EMAIL_PROVIDER = env.str("EMAIL_PROVIDER", default="console")
TWILIO_ACCOUNT_SID = env.str("TWILIO_ACCOUNT_SID", default="")
TWILIO_AUTH_TOKEN = env_secret("TWILIO_AUTH_TOKEN")
TWILIO_FROM_NUMBER = env.str("TWILIO_FROM_NUMBER", default="")
TWILIO_API_BASE_URL = env.str("TWILIO_API_BASE_URL", default="")
# Send allowances, requests per second (0: not paced), shared by every process on every host
# when the database is PostgreSQL: the account's for SMS from a number, each number's own
# (0: none), the Messaging Service's for SMS through it.
TWILIO_SEND_RATE = env.float("TWILIO_SEND_RATE", default=10.0)
TWILIO_SENDER_RATE = env.float("TWILIO_SENDER_RATE", default=0.0)
TWILIO_MESSAGING_SERVICE_SID = env.str("TWILIO_MESSAGING_SERVICE_SID", default="")
TWILIO_MESSAGING_SERVICE_RATE = env.float("TWILIO_MESSAGING_SERVICE_RATE", default=TWILIO_SEND_RATE)
RESEND_API_KEY = env_secret("RESEND_API_KEY")
RESEND_FROM_EMAIL = env.str("RESEND_FROM_EMAIL", default="")
RESEND_API_URL = env.str("RESEND_API_URL", default="https://api.resend.com")
RESEND_SEND_RATE = env.float("RESEND_SEND_RATE", default=2.0)
# Emails per Resend /emails/batch request (at most 100); 0 = 100 when EMAIL_PROVIDER=resend,
# 1 = one request per email.
RESEND_BATCH_SIZE = env.int("RESEND_BATCH_SIZE", default=0)
RESEND_WEBHOOK_SECRET = env_secret("RESEND_WEBHOOK_SECRET")
PROVIDER_TIMEOUT_SECONDS = env.float("PROVIDER_TIMEOUT_SECONDS", default=10.0)
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="")
DEFAULT_FROM_EMAIL = RESEND_FROM_EMAIL or "cron@localhost"
# Django's mail API (used for cron alerts) goes through the configured email provider.
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="messaging.delivery.mail_backend.ProviderEmailBackend")

# --- Delivery -------------------------------------------------------------------------------
DELIVERY_CONCURRENCY = env.int("DELIVERY_CONCURRENCY", default=8)
# Processes `manage.py process_scheduled` sends from (each with DELIVERY_CONCURRENCY threads per
# channel); 0 = one per CPU core. Never more than there are due messages; 1 = in-process.
DELIVERY_WORKERS = env.int("DELIVERY_WORKERS", default=0)
if DELIVERY_WORKERS < 0:
    raise ImproperlyConfigured(
        f"DELIVERY_WORKERS={DELIVERY_WORKERS} is below 0: set a number of processes, or 0 for one per core"
    )
DELIVERY_BATCH_SIZE = env.int("DELIVERY_BATCH_SIZE", default=100)
DELIVERY_LEASE_SECONDS = env.int("DELIVERY_LEASE_SECONDS", default=300)
DELIVERY_MAX_ATTEMPTS = env.int("DELIVERY_MAX_ATTEMPTS", default=5)
# After this many transient errors in a row on one provider, a run stops using it (an outage
# must not burn every message's attempts); 0 turns the breaker off.
DELIVERY_BREAKER_THRESHOLD = env.int("DELIVERY_BREAKER_THRESHOLD", default=20)
# A timed-out or 5xx SMS is looked up at Twilio no sooner than this (its list must show it).
DELIVERY_RECONCILE_DELAY_SECONDS = env.int("DELIVERY_RECONCILE_DELAY_SECONDS", default=120)
# A delivery report whose message is not known yet is kept this long for its send to be recorded.
DELIVERY_REPORT_RETENTION_HOURS = env.int("DELIVERY_REPORT_RETENTION_HOURS", default=72)
QUIET_HOURS = env.str("QUIET_HOURS", default="08:00-21:00")
# How far ahead a message may be queued: a send_at years out is almost always a typo'd year.
ENQUEUE_HORIZON_DAYS = env.int("ENQUEUE_HORIZON_DAYS", default=365)
# Campaigns the process-campaigns tick locks and launches per transaction.
CAMPAIGNS_TICK_BATCH_SIZE = env.int("CAMPAIGNS_TICK_BATCH_SIZE", default=200)
if CAMPAIGNS_TICK_BATCH_SIZE < 1:
    raise ImproperlyConfigured(
        f"CAMPAIGNS_TICK_BATCH_SIZE={CAMPAIGNS_TICK_BATCH_SIZE} must be 1 or more: fix it in .env."
    )
# Threads visiting batches at once (each with its own database connection); see campaigns.tick.
CAMPAIGNS_TICK_THREADS = env.int("CAMPAIGNS_TICK_THREADS", default=2)
if CAMPAIGNS_TICK_THREADS < 1:
    raise ImproperlyConfigured(f"CAMPAIGNS_TICK_THREADS={CAMPAIGNS_TICK_THREADS} must be 1 or more: fix it in .env.")
if ENQUEUE_HORIZON_DAYS < 1:
    raise ImproperlyConfigured(f"ENQUEUE_HORIZON_DAYS={ENQUEUE_HORIZON_DAYS} must be 1 or more: fix it in .env.")
# Days back `daily` fills a missing day: 14, the two weeks `weekly-summary` compares, so the
# summary finds them aggregated (otherwise its first Monday aggregates them itself, 2x slower).
ANALYTICS_BACKFILL_DAYS = env.int("ANALYTICS_BACKFILL_DAYS", default=14)
if ANALYTICS_BACKFILL_DAYS < 1:
    raise ImproperlyConfigured(f"ANALYTICS_BACKFILL_DAYS={ANALYTICS_BACKFILL_DAYS} must be 1 or more: fix it in .env.")

for _name in ("SMS_PROVIDER", "EMAIL_PROVIDER"):
    _allowed = {"SMS_PROVIDER": {"twilio", "console"}, "EMAIL_PROVIDER": {"resend", "console"}}[_name]
    if globals()[_name] not in _allowed:
        raise ImproperlyConfigured(f"{_name}={globals()[_name]!r} is not one of {sorted(_allowed)}: fix it in .env.")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "config.jsonlog.JsonFormatter"}},
    "handlers": {"stdout": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"}},
    "root": {"handlers": ["stdout"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # The Twilio SDK logs every request's URL and headers at INFO: noise, and costly.
        "twilio.http_client": {"level": "WARNING"},
    },
}

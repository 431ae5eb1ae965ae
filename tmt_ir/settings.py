"""Settings, read from the environment.

Defaults run locally with nothing installed: SQLite (WAL) in var/ and Celery on kombu's
filesystem transport in var/. DATABASE_URL and CELERY_BROKER_URL switch to PostgreSQL and
Redis. DJANGO_PRODUCTION=1 turns on the hardening `manage.py check --deploy` asks for.
django-environ raises ImproperlyConfigured on a value it cannot parse (a bad bool, int or URL),
so a typo in the environment stops start-up instead of silently falling back.
"""

import socket
from datetime import time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import environ
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("TMT_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

env = environ.Env()

PRODUCTION = env.bool("DJANGO_PRODUCTION", default=False)
DEBUG = env.bool("DJANGO_DEBUG", default=not PRODUCTION)

if PRODUCTION:
    SECRET_KEY = env.str("DJANGO_SECRET_KEY")  # no default: production must set it
    if len(SECRET_KEY) < 50:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be at least 50 characters")
else:
    SECRET_KEY = env.str(
        "DJANGO_SECRET_KEY",
        default="dev-only-insecure-key-3f9c1e2b7a6d4c8e9f0a1b2c3d4e5f60718293a4b5c6d7e8",
    )

ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# -- apps, middleware, URLs, templates ------------------------------------------------------------

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_fsm",  # its admin templates (transition buttons)
    "django_htmx",
    "django_filters",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    # Lowest layer first: each app may import only the ones listed before it (lint-imports).
    "incidents",
    "incidents.oncall",
    "incidents.notifications",
    "incidents.escalation",
    "incidents.monitoring",
    "incidents.recovery",
    "incidents.runbooks",
    "incidents.api",
    "incidents.status",
    "corsheaders",
    "incidents.live",
    "reports",
    "drills",
    "incidents.devtools",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django_permissions_policy.PermissionsPolicyMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # Only the public status JSON and banner script answer other origins (CORS_URLS_REGEX).
    "corsheaders.middleware.CorsMiddleware",
    "django.middleware.common.CommonMiddleware",
    # Repeat reads of the public status page and its JSON, from a copy (see the module).
    "incidents.status.middleware.StatusAnswerMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Every page needs a login unless its view is marked @login_not_required
    # (the login page and the public status page).
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "tmt_ir.urls"
WSGI_APPLICATION = "tmt_ir.wsgi.application"
ASGI_APPLICATION = "tmt_ir.asgi.application"

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
                "incidents.monitoring.context_processors.trading_halt",
            ],
            "builtins": ["incidents.templatetags.incident_tags"],
        },
    },
]

# -- database and cache ---------------------------------------------------------------------------

DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web process read while a worker writes; IMMEDIATE takes the write lock at
    # BEGIN so two writers queue on busy_timeout instead of failing with "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # A claimer cut off mid-transaction (a network partition, a frozen host) holds its rows'
    # locks until the server notices; meanwhile other dispatchers skip those rows. Keepalives
    # notice a dead peer in about 25 s, and a transaction left idle is ended after a minute.
    _idle = env.int("DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_S", default=60)
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
            "options": f"-c idle_in_transaction_session_timeout={_idle * 1000}",
        }
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {"default": env.cache_url("CACHE_URL", default="locmemcache://")}

# -- accounts, login throttling and HTTP security -------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
# Password guessing on the login page and the admin's (django-axes): after this many failures
# for one account, or from one address, logging in is refused for the cool-off time, even with
# the right password. Admins see the attempts in the admin and lift a lock by deleting them.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("TMT_LOGIN_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("TMT_LOGIN_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # each on its own: per account, per address
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
# The client's address as the API's throttles read it (TMT_API_NUM_PROXIES behind a proxy).
AXES_CLIENT_IP_CALLABLE = "incidents.api.throttling.client_address"
LOGIN_REDIRECT_URL = "incidents:dashboard"
LOGOUT_REDIRECT_URL = "login"

SESSION_COOKIE_HTTPONLY = True
# htmx sends the token from the page (hx-headers on <body>), so the cookie can stay out of JS.
CSRF_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
# In every mode, so the browser tests run under the same policy as production. Scripts and
# styles come only from our own static files: no inline <script>, <style> or style="...", no
# eval (htmx is told so in base.html). data: images are the SVG icons inside Pico's and Swagger
# UI's stylesheets.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}
# Browser features no page of the portal uses, denied to it and to anything it might embed.
# Autoplay stays the site's own: the live pages' alert sound for a new major incident.
PERMISSIONS_POLICY: dict[str, list[str]] = {"autoplay": ["self"]} | {
    feature: []
    for feature in (
        "accelerometer",
        "camera",
        "display-capture",
        "geolocation",
        "gyroscope",
        "hid",
        "idle-detection",
        "magnetometer",
        "microphone",
        "midi",
        "payment",
        "publickey-credentials-get",
        "screen-wake-lock",
        "serial",
        "usb",
        "xr-spatial-tracking",
    )
}
if PRODUCTION:
    SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("DJANGO_HSTS_SECONDS", default=31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

# -- time and the business calendar ---------------------------------------------------------------

LANGUAGE_CODE = "en-gb"
USE_I18N = True
# Dates shown and typed as ISO 8601, times on the 24-hour clock (tmt_ir/formats/).
FORMAT_MODULE_PATH = ["tmt_ir.formats"]
# Incident IDs and the report template are in UTC; TIME_ZONE is only how times are shown.
USE_TZ = True
TIME_ZONE = env.str("TMT_DISPLAY_TIME_ZONE", default="UTC")

# The business-day calendar (Sev4's "next business day", "within a business day" notifications).
TMT_BUSINESS_TIME_ZONE = env.str("TMT_BUSINESS_TIME_ZONE", default="Europe/London")
try:
    TMT_BUSINESS_DAY_OPENS = time.fromisoformat(env.str("TMT_BUSINESS_DAY_OPENS", default="09:00"))
    TMT_BUSINESS_DAY_CLOSES = time.fromisoformat(env.str("TMT_BUSINESS_DAY_CLOSES", default="17:30"))
    ZoneInfo(TMT_BUSINESS_TIME_ZONE)
except (ValueError, ZoneInfoNotFoundError) as exc:
    raise ImproperlyConfigured(f"Bad business-day setting: {exc}") from exc

# -- static files, media, uploads -----------------------------------------------------------------

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env.str("DJANGO_STATIC_ROOT", default=str(VAR_DIR / "staticfiles")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# Outside production whitenoise serves straight from the source folders (no collectstatic).
WHITENOISE_USE_FINDERS = not PRODUCTION
WHITENOISE_AUTOREFRESH = DEBUG
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env.str("DJANGO_MEDIA_ROOT", default=str(VAR_DIR / "media")))
TMT_BACKUP_DIR = Path(env.str("TMT_BACKUP_DIR", default=str(VAR_DIR / "backups")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
    # Backup artefacts (dumps, archives, manifests): a folder by default; any Django storage
    # (e.g. django-storages' S3 backend for an S3-compatible store) with TMT_BACKUP_STORAGE_BACKEND
    # and its options as JSON in TMT_BACKUP_STORAGE_OPTIONS.
    "backups": {
        "BACKEND": env.str("TMT_BACKUP_STORAGE_BACKEND", default="django.core.files.storage.FileSystemStorage"),
        "OPTIONS": env.json("TMT_BACKUP_STORAGE_OPTIONS", default={"location": str(TMT_BACKUP_DIR)}),
    },
}

# Evidence uploads (the seed's "Preserve Evidence"): size cap and the file types accepted.
EVIDENCE_MAX_BYTES = env.int("TMT_EVIDENCE_MAX_BYTES", default=25 * 1024 * 1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

# -- email ----------------------------------------------------------------------------------------

# Email (escalations and status updates); EMAIL_URL e.g. smtp+tls://user:pass@host:587
_email = env.email_url("EMAIL_URL", default="consolemail://")
EMAIL_BACKEND = _email["EMAIL_BACKEND"]
for _key in ("EMAIL_HOST", "EMAIL_PORT", "EMAIL_HOST_USER", "EMAIL_HOST_PASSWORD", "EMAIL_FILE_PATH"):
    if _email.get(_key):
        globals()[_key] = _email[_key]
# A mail configuration that cannot deliver must stop start-up, not fail every page at 3 a.m.:
# filemail:// without a folder passes django-environ and then raises inside each send.
if EMAIL_BACKEND.endswith("filebased.EmailBackend") and not _email.get("EMAIL_FILE_PATH"):
    raise ImproperlyConfigured("EMAIL_URL filemail:// needs a folder, e.g. filemail:///var/mail/tmt")
if EMAIL_BACKEND.endswith("smtp.EmailBackend") and not _email.get("EMAIL_HOST"):
    raise ImproperlyConfigured("EMAIL_URL smtp:// needs a host, e.g. smtp://mail.example:25")
EMAIL_USE_TLS = bool(_email.get("EMAIL_USE_TLS", False))
EMAIL_USE_SSL = bool(_email.get("EMAIL_USE_SSL", False))
# A hung mail server must fail the attempt (and retry) rather than hold a worker indefinitely.
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="tmt-incidents@localhost")

# -- paging: the notifications outbox and the dispatcher ------------------------------------------

# Where links in pages and emails point.
TMT_SITE_URL = env.str("TMT_SITE_URL", default="http://127.0.0.1:8000")
# SMS and voice pages go to an HTTP provider: POST JSON {to, channel: sms|voice, body, reference}.
TMT_SMS_PROVIDER_URL = env.str("TMT_SMS_PROVIDER_URL", default="")
TMT_SMS_PROVIDER_TOKEN = env.str("TMT_SMS_PROVIDER_TOKEN", default="")
TMT_NOTIFY_MAX_ATTEMPTS = env.int("TMT_NOTIFY_MAX_ATTEMPTS", default=5)
TMT_NOTIFY_BACKOFF_SECONDS = env.int("TMT_NOTIFY_BACKOFF_SECONDS", default=10)
TMT_NOTIFY_HTTP_TIMEOUT = env.float("TMT_NOTIFY_HTTP_TIMEOUT", default=5.0)
if TMT_SMS_PROVIDER_URL and not TMT_SMS_PROVIDER_URL.startswith(("http://", "https://")):
    raise ImproperlyConfigured("TMT_SMS_PROVIDER_URL must be an http:// or https:// URL")
# Acknowledging from the page (incidents/notifications/acks.py): each page's one-tap link works
# once, for this long after the page is first sent; the link's page answers each client address
# this often (a responder taps once; a guesser of links is slowed down).
TMT_ACK_LINK_TTL_SECONDS = env.int("TMT_ACK_LINK_TTL_SECONDS", default=3600)
TMT_ACK_LINK_THROTTLE = env.str("TMT_ACK_LINK_THROTTLE", default="30/min")
# The provider's inbound SMS replies and voice keypresses are signed with this shared secret
# (HMAC-SHA256 of "<timestamp>.<body>"); unset, they are refused. A signature older or newer than
# the window is refused too, so a recorded request cannot be replayed later.
TMT_SMS_PROVIDER_WEBHOOK_SECRET = env.str("TMT_SMS_PROVIDER_WEBHOOK_SECRET", default="")
TMT_SMS_PROVIDER_SIGNATURE_WINDOW_SECONDS = env.int("TMT_SMS_PROVIDER_SIGNATURE_WINDOW_SECONDS", default=300)
if TMT_ACK_LINK_TTL_SECONDS < 60 or TMT_SMS_PROVIDER_SIGNATURE_WINDOW_SECONDS < 1:
    raise ImproperlyConfigured(
        "TMT_ACK_LINK_TTL_SECONDS must be ≥ 60 and TMT_SMS_PROVIDER_SIGNATURE_WINDOW_SECONDS ≥ 1"
    )
# A row left "sending" this long is taken over by another dispatcher (its own was killed). It
# must outlast the longest send (the HTTP and mail timeouts), or a slow send would be doubled.
TMT_NOTIFY_TAKEOVER_SECONDS = env.float("TMT_NOTIFY_TAKEOVER_SECONDS", default=20.0)
if max(TMT_NOTIFY_HTTP_TIMEOUT, EMAIL_TIMEOUT) + 2 >= TMT_NOTIFY_TAKEOVER_SECONDS:
    raise ImproperlyConfigured(
        "TMT_NOTIFY_TAKEOVER_SECONDS must exceed TMT_NOTIFY_HTTP_TIMEOUT and EMAIL_TIMEOUT by 2 s"
    )
# The paging dispatcher: threads sending pages at once (each has at most one row in flight).
TMT_DISPATCHER_THREADS = env.int("TMT_DISPATCHER_THREADS", default=8)
# A duty (escalation firing, delivery, health polling, report rendering) silent this long opens
# an infrastructure incident; every process that does one records it at least every few seconds.
TMT_DUTY_STALE_SECONDS = env.float("TMT_DUTY_STALE_SECONDS", default=30.0)
if TMT_DISPATCHER_THREADS < 1 or TMT_DUTY_STALE_SECONDS < 5:
    raise ImproperlyConfigured("TMT_DISPATCHER_THREADS must be ≥ 1 and TMT_DUTY_STALE_SECONDS ≥ 5")

# -- monitoring: health polling, heartbeats, the emergency stop -----------------------------------

TMT_HEALTH_POLL_SECONDS = env.float("TMT_HEALTH_POLL_SECONDS", default=1.0)
# At most this many checks in flight per sweep (aiohttp; see incidents/monitoring/poller.py for the numbers).
TMT_HEALTH_POLL_CONCURRENCY = env.int("TMT_HEALTH_POLL_CONCURRENCY", default=200)
TMT_HEALTH_MAX_TARGETS_PER_SWEEP = env.int("TMT_HEALTH_MAX_TARGETS_PER_SWEEP", default=5000)
# Samples older than this are pruned; the health page's uptime looks back 7 days.
TMT_HEALTH_SAMPLE_RETENTION_DAYS = env.int("TMT_HEALTH_SAMPLE_RETENTION_DAYS", default=8)
# The trading database the seeded "Trading Database" health target checks (the seed's psql command).
# Read when the seed migration runs (the target is edited in the admin after that); a password in
# it is dropped: the target reads it from TMT_TRADING_DB_PASSWORD at each check.
TMT_TRADING_DATABASE_URL = env.str(
    "TMT_TRADING_DATABASE_URL", default="postgres://tmt_user@localhost:5432/tmt_production"
)
# The execution engine's health endpoint seeded as a target (the simulator serves it on 8004).
TMT_EXECUTION_ENGINE_HEALTH_URL = env.str("TMT_EXECUTION_ENGINE_HEALTH_URL", default="http://localhost:8004/health")
# Workers write a heartbeat this often and beat sends one through the broker; silent for longer
# than TMT_HEARTBEAT_STALE_SECONDS counts as dead (and opens an automated incident).
TMT_HEARTBEAT_SECONDS = env.float("TMT_HEARTBEAT_SECONDS", default=10.0)
TMT_HEARTBEAT_STALE_SECONDS = env.float("TMT_HEARTBEAT_STALE_SECONDS", default=60.0)
# The seed's "Trading Emergency Stop": POST {url}/api/v1/emergency-stop, GET .../emergency-status.
TMT_CIRCUIT_BREAKER_URL = env.str("TMT_CIRCUIT_BREAKER_URL", default="http://localhost:8001").rstrip("/")
TMT_CIRCUIT_BREAKER_TIMEOUT = env.float("TMT_CIRCUIT_BREAKER_TIMEOUT", default=5.0)
# While trading is halted, how often the portal asks the circuit breaker whether it still is.
TMT_HALT_RECHECK_SECONDS = env.float("TMT_HALT_RECHECK_SECONDS", default=5.0)
# System-state capture: log tails only inside these folders; probes run this many at a time.
TMT_CAPTURE_LOG_ROOTS = env.list("TMT_CAPTURE_LOG_ROOTS", default=["/var/log/tmt", str(VAR_DIR / "log")])
TMT_CAPTURE_CONCURRENCY = env.int("TMT_CAPTURE_CONCURRENCY", default=16)
if TMT_HALT_RECHECK_SECONDS < 1 or TMT_CAPTURE_CONCURRENCY < 1:
    raise ImproperlyConfigured("TMT_HALT_RECHECK_SECONDS and TMT_CAPTURE_CONCURRENCY must be at least 1")
if not TMT_CIRCUIT_BREAKER_URL.startswith(("http://", "https://")):
    raise ImproperlyConfigured("TMT_CIRCUIT_BREAKER_URL must be an http:// or https:// URL")
if TMT_HEALTH_POLL_CONCURRENCY < 1 or TMT_HEALTH_SAMPLE_RETENTION_DAYS < 1:
    raise ImproperlyConfigured("TMT_HEALTH_POLL_CONCURRENCY and TMT_HEALTH_SAMPLE_RETENTION_DAYS must be at least 1")
if not 0 < TMT_HEARTBEAT_SECONDS < TMT_HEARTBEAT_STALE_SECONDS:
    raise ImproperlyConfigured("TMT_HEARTBEAT_SECONDS must be positive and below TMT_HEARTBEAT_STALE_SECONDS")

# -- drills and training --------------------------------------------------------------------------

# The readiness gate: on-call and incident command need valid certifications, finished mentoring
# and the current procedures acknowledged (a manager may override with a recorded justification).
TMT_ENFORCE_READINESS = env.bool("TMT_ENFORCE_READINESS", default=True)
# Emergency-stop drills send their stop here; it must answer /health as the agent simulator
# (checked before every stop), so a drill can never halt real trading.
TMT_DRILL_AGENT_URL = env.str("TMT_DRILL_AGENT_URL", default="http://127.0.0.1:8001")

# -- backups and recovery points (incidents.recovery) ----------------------------------------------
# Work files are made and verified here before they are moved into the backup storage (a rename
# when both are on one file system).
TMT_BACKUP_WORK_DIR = Path(env.str("TMT_BACKUP_WORK_DIR", default=str(VAR_DIR / "backup-work")))
# Within the smallest non-zero seeded RPO (configuration, 15 min) with room for the run itself.
TMT_BACKUP_INTERVAL_SECONDS = env.float("TMT_BACKUP_INTERVAL_SECONDS", default=600.0)
TMT_RPO_CHECK_SECONDS = env.float("TMT_RPO_CHECK_SECONDS", default=60.0)
TMT_RPO_BREACH_SEVERITY = env.int("TMT_RPO_BREACH_SEVERITY", default=2)
# Where pg_dump and pg_restore are (blank: PATH); they must be as new as the servers dumped.
TMT_BACKUP_PG_BIN_DIR = env.str("TMT_BACKUP_PG_BIN_DIR", default="")
TMT_BACKUP_CONNECT_TIMEOUT = env.int("TMT_BACKUP_CONNECT_TIMEOUT", default=10)
TMT_BACKUP_TIMEOUT_SECONDS = env.int("TMT_BACKUP_TIMEOUT_SECONDS", default=3600)
TMT_BACKUP_RESTORE_JOBS = env.int("TMT_BACKUP_RESTORE_JOBS", default=2)
# Verification restores into a scratch database named with this prefix, on this server (blank:
# the source's own server, with the source's credentials, which then need CREATEDB).
TMT_BACKUP_SCRATCH_PREFIX = env.str("TMT_BACKUP_SCRATCH_PREFIX", default="tmt_backup_verify")
TMT_BACKUP_SCRATCH_DATABASE = (
    env.db_url("TMT_BACKUP_SCRATCH_DATABASE_URL") if env.str("TMT_BACKUP_SCRATCH_DATABASE_URL", default="") else {}
)
# A run with no progress for this long was interrupted (its worker died) and is failed.
TMT_BACKUP_STALE_AFTER = timedelta(seconds=TMT_BACKUP_TIMEOUT_SECONDS + 60)

# -- Celery: broker, queues, beat -----------------------------------------------------------------

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    for sub in ("queue", "processed", "control"):
        (_broker_dir / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TIMEZONE = "UTC"
# A task is acknowledged after it ran, so a worker killed mid-task leaves it for another;
# every task is idempotent against its row, so running twice is harmless.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
# Explicit queues so a slow PDF or a slow mail server never delays an escalation.
CELERY_TASK_ROUTES = {
    # Deadlines and pages are not here: the paging dispatcher (`manage.py run_dispatcher`)
    # takes them from the database, so they go on while the broker is down.
    # Reports: PDF rendering on its own queue.
    "incidents.monitoring.tasks.record_report_rendering_heartbeat": {"queue": "reports"},
    "reports.tasks.render_report": {"queue": "reports"},
    "reports.tasks.render_approved_review": {"queue": "reports"},
    # Drills and training: reminders are claimed rows, sent by the general worker.
    "drills.tasks.send_due_reminders": {"queue": "default"},
    "drills.tasks.record_mentored_responses": {"queue": "default"},
    # Monitoring: health sweeps and sample pruning on the health queue.
    "incidents.monitoring.tasks.poll_health_targets": {"queue": "health"},
    # On the default queue: its arrival proves beat -> broker -> the general worker.
    "incidents.monitoring.tasks.record_beat_heartbeat": {"queue": "default"},
    "incidents.monitoring.tasks.prune_health_samples": {"queue": "health"},
    "incidents.monitoring.tasks.recheck_trading_halt": {"queue": "health"},
    "incidents.status.tasks.roll_up_uptime": {"queue": "health"},
    "incidents.status.tasks.advance_maintenance": {"queue": "default"},
    # Backups on a queue and a worker of their own (minutes of pg_dump never delay a poll); the
    # RPO check on the general worker, so it goes on while a backup runs.
    "incidents.recovery.tasks.run_backup": {"queue": "backups"},
    "incidents.recovery.tasks.scheduled_backup": {"queue": "backups"},
    "incidents.recovery.tasks.check_rpo": {"queue": "default"},
}
CELERY_BEAT_SCHEDULE = {
    # Proves that the reports queue is consumed (a report asked for now would be rendered).
    "report-rendering-heartbeat": {
        "task": "incidents.monitoring.tasks.record_report_rendering_heartbeat",
        "schedule": 10.0,
        "options": {"expires": 10},
    },
    # Drills and training: reminders are rows claimed once; mentored responses are
    # found on resolved incidents' timelines (both idempotent, so a missed or doubled run is harmless).
    "drills-send-due-reminders": {
        "task": "drills.tasks.send_due_reminders",
        "schedule": 60.0,
        "options": {"expires": 120},
    },
    "drills-record-mentored-responses": {
        "task": "drills.tasks.record_mentored_responses",
        "schedule": 3600.0,
        "options": {"expires": 1800},
    },
    # Due targets are claimed in the database, so an overlapping or doubled sweep polls
    # nothing twice; a sweep message older than a few seconds is useless, hence expires.
    "poll-health-targets": {
        "task": "incidents.monitoring.tasks.poll_health_targets",
        "schedule": TMT_HEALTH_POLL_SECONDS,
        "options": {"expires": 5},
    },
    # Proves beat -> broker -> worker -> database; if these stop arriving, beat is silent.
    "beat-heartbeat": {
        "task": "incidents.monitoring.tasks.record_beat_heartbeat",
        "schedule": TMT_HEARTBEAT_SECONDS,
        "args": [f"beat@{socket.gethostname()}"],
        "options": {"expires": TMT_HEARTBEAT_SECONDS},
    },
    # While halted, the agent is asked again and again (one query and nothing else when not).
    "recheck-trading-halt": {
        "task": "incidents.monitoring.tasks.recheck_trading_halt",
        "schedule": TMT_HALT_RECHECK_SECONDS,
        "options": {"expires": TMT_HALT_RECHECK_SECONDS},
    },
    "prune-health-samples": {
        "task": "incidents.monitoring.tasks.prune_health_samples",
        "schedule": 3600.0,
        "options": {"expires": 1800},
    },
    # Scheduled backups give every RPO class a recovery point to measure; a run already going
    # makes the next one skip (backup_schedule_due).
    "recovery-scheduled-backup": {
        "task": "incidents.recovery.tasks.scheduled_backup",
        "schedule": TMT_BACKUP_INTERVAL_SECONDS,
        "options": {"expires": TMT_BACKUP_INTERVAL_SECONDS},
    },
    "recovery-check-rpo": {
        "task": "incidents.recovery.tasks.check_rpo",
        "schedule": TMT_RPO_CHECK_SECONDS,
        "options": {"expires": TMT_RPO_CHECK_SECONDS},
    },
    # The API's Idempotency-Keys are kept 24 hours (incidents/api/services/idempotency.py).
    # The status page's 90 days of uptime outlive the samples (pruned after a few days).
    "status-uptime-rollup": {
        "task": "incidents.status.tasks.roll_up_uptime",
        "schedule": 3600.0,
        "options": {"expires": 1800},
    },
    # Scheduled maintenance starts and ends on time, each with its notice.
    "status-maintenance-clock": {
        "task": "incidents.status.tasks.advance_maintenance",
        "schedule": 60.0,
        "options": {"expires": 60},
    },
    "purge-idempotency-keys": {
        "task": "incidents.api.tasks.purge_idempotency_keys",
        "schedule": 3600.0,
        "options": {"expires": 1800},
    },
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# -- the public status page -----------------------------------------------------------------------

# Origins (scheme://host[:port]) whose pages may read /status.json and load /status/embed.js,
# e.g. the trading platform's UI. Nothing else on the portal answers other origins.
CORS_ALLOWED_ORIGINS = env.list("TMT_STATUS_CORS_ORIGINS", default=[])
CORS_URLS_REGEX = r"^/status(\.json|/embed\.js)$"
CORS_ALLOW_METHODS = ["GET", "OPTIONS"]
# How long browsers and proxies may keep the page and its JSON; the server's own copy is
# replaced at once when something is published (and at the latest after this long).
TMT_STATUS_CACHE_SECONDS = env.int("TMT_STATUS_CACHE_SECONDS", default=15)
# Resolved incidents and completed maintenance stay on the page this many days (and the
# uptime bars cover as many).
TMT_STATUS_HISTORY_DAYS = env.int("TMT_STATUS_HISTORY_DAYS", default=90)
# Subscription requests accepted per client address and per email address / webhook URL, per
# hour; more are refused with 429 and nothing is sent.
TMT_STATUS_SUBSCRIBE_PER_IP_HOUR = env.int("TMT_STATUS_SUBSCRIBE_PER_IP_HOUR", default=10)
TMT_STATUS_SUBSCRIBE_PER_ADDRESS_HOUR = env.int("TMT_STATUS_SUBSCRIBE_PER_ADDRESS_HOUR", default=3)
# Networks a subscriber's webhook may point at although they are not public (CIDRs; empty in
# production: loopback, private and link-local addresses are refused).
TMT_STATUS_WEBHOOK_ALLOWED_NETWORKS = env.list("TMT_STATUS_WEBHOOK_ALLOWED_NETWORKS", default=[])
if TMT_STATUS_CACHE_SECONDS < 0 or TMT_STATUS_HISTORY_DAYS < 1:
    raise ImproperlyConfigured("TMT_STATUS_CACHE_SECONDS must be ≥ 0 and TMT_STATUS_HISTORY_DAYS ≥ 1")

# -- the REST API ---------------------------------------------------------------------------------

# The largest body the API reads (a 413 above): an Alertmanager batch at the cap of 500 alerts is
# about 1 MB with generous annotations. And how deep a body may nest (a 400 deeper): the deepest
# format taken, Grafana's, nests 4 levels.
TMT_API_MAX_BODY_BYTES = env.int("TMT_API_MAX_BODY_BYTES", default=2 * 1024 * 1024)
TMT_API_MAX_JSON_DEPTH = env.int("TMT_API_MAX_JSON_DEPTH", default=32)
if not 0 < TMT_API_MAX_BODY_BYTES <= DATA_UPLOAD_MAX_MEMORY_SIZE or TMT_API_MAX_JSON_DEPTH < 4:
    raise ImproperlyConfigured(
        "TMT_API_MAX_BODY_BYTES must be positive and at most DATA_UPLOAD_MAX_MEMORY_SIZE, TMT_API_MAX_JSON_DEPTH ≥ 4"
    )

REST_FRAMEWORK = {
    # Token first: DRF takes the first class's WWW-Authenticate, so a request without
    # credentials gets 401 "Bearer" (session auth alone would answer 403).
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "incidents.api.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON only: a form-encoded or multipart body is refused with 415, not half-parsed. The
    # parser refuses a body over the size and depth limits below before parsing it.
    "DEFAULT_PARSER_CLASSES": ["incidents.api.parsers.BoundedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["incidents.api.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "incidents.api.pagination.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.AnonRateThrottle",
        "incidents.api.throttling.TokenRateThrottle",
    ],
    # Per-token (per user for a browser session) and per-integration request budgets. They guard
    # the portal against a runaway script, not ordinary use: bench/api.py's load stays under
    # them. auth_failures: refused tokens per client address (token guessing).
    # Counted in the default cache: set CACHE_URL to Redis when several web processes run.
    "DEFAULT_THROTTLE_RATES": {
        "anon": env.str("TMT_API_THROTTLE_ANON", default="60/min"),
        "user": env.str("TMT_API_THROTTLE_USER", default="100000/hour"),
        "alerts": env.str("TMT_API_THROTTLE_ALERTS", default="200000/hour"),
        "auth_failures": env.str("TMT_API_THROTTLE_AUTH_FAILURES", default="30/min"),
    },
    "EXCEPTION_HANDLER": "incidents.api.exceptions.exception_handler",
    # Throttles identify clients by address; X-Forwarded-For is trusted only from this many
    # proxies in front of the web tier (0: never, so a client cannot pick its own address).
    "NUM_PROXIES": env.int("TMT_API_NUM_PROXIES", default=0),
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "TMT Incident Response Portal API",
    "VERSION": "1.0.0",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "incidents.api.schema.add_error_responses",
    ],
    # Several models have a `state`; name each choice set after its model in generated clients.
    "ENUM_NAME_OVERRIDES": {
        "IncidentStateEnum": "incidents.models.incident.State",
        "HealthStateEnum": "incidents.monitoring.models.HealthTarget.State",
        "DrillStateEnum": "drills.models.DrillState",
        "ActionItemStateEnum": "reports.models.ActionItem.State",
        "TimelineKindEnum": "incidents.models.timeline.TimelineEntry.Kind",
        "ActionItemKindEnum": "reports.models.ActionItem.Kind",
        "StatusUpdateStatusEnum": "incidents.models.incident.STATUS_UPDATE_WORDS",
        "PublicStatusEnum": "incidents.status.models.PublicStatus",
        "AlertStatusEnum": "incidents.api.alert_payloads.STATUSES",
    },
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "DESCRIPTION": (
        "Incidents, their lifecycle, timeline, status updates, escalations, health, drills, "
        "certifications and action items, plus alert ingestion from monitoring. Authenticate with "
        "a personal token (`Authorization: Bearer <token>`) or, in a browser, your session."
    ),
}

# -- live pages ----------------------------------------------------------------------------------

# How often each event-stream process reads the change table (the push delay's floor); how often
# a page polls its fragments when the stream is down; the stream's keep-alive and lifetime (a
# page reconnects at once, checked again); how long change rows are kept.
TMT_LIVE_RELAY_INTERVAL = env.float("TMT_LIVE_RELAY_INTERVAL", default=0.2)
TMT_LIVE_POLL_SECONDS = env.int("TMT_LIVE_POLL_SECONDS", default=10)
TMT_LIVE_HEARTBEAT_SECONDS = env.float("TMT_LIVE_HEARTBEAT_SECONDS", default=15.0)
TMT_LIVE_STREAM_MAX_SECONDS = env.float("TMT_LIVE_STREAM_MAX_SECONDS", default=300.0)
TMT_LIVE_EVENT_RETENTION_MINUTES = env.int("TMT_LIVE_EVENT_RETENTION_MINUTES", default=10)
if not (0 < TMT_LIVE_RELAY_INTERVAL <= 5 and TMT_LIVE_POLL_SECONDS >= 1 and TMT_LIVE_HEARTBEAT_SECONDS > 0):
    raise ImproperlyConfigured("TMT_LIVE_RELAY_INTERVAL must be in (0, 5], TMT_LIVE_POLL_SECONDS at least 1")

# -- logging --------------------------------------------------------------------------------------

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}

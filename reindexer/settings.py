"""Django settings. Everything deployment-specific comes from the environment (see README)."""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
import django

from reindexer.conf import ReindexerSettings

BASE_DIR = Path(__file__).resolve().parent.parent
REINDEXER = ReindexerSettings.from_environ()
REINDEXER.data_dir.mkdir(parents=True, exist_ok=True)

DEBUG = os.environ.get("DJANGO_DEBUG", "").lower() in {"1", "true", "yes", "on"}


def _secret_key() -> str:
    key = os.environ.get("DJANGO_SECRET_KEY")
    if key:
        return key
    # Development only: a key generated once and kept in the (git-ignored) data dir.
    key_file = REINDEXER.data_dir / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = [
    h.strip()
    for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",")
    if h.strip()
]
CSRF_TRUSTED_ORIGINS = [
    o.strip() for o in os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()
]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_htmx",
    "ninja",  # its Swagger UI docs, from its bundled static files rather than a CDN
    "reindexer",
    "dashboard",
    "axes",
]

# A job spec is a few kB; a bigger body is refused (400) before anything parses it.
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as axes asks: it turns a locked-out login into the lock-out page.
    "axes.middleware.AxesMiddleware",
]

# Template partials ({% partialdef %}, "page.html#name") are built into Django 6; on 5.2 the
# django-template-partials package provides the same tag and loader, so templates are the same.
PARTIALS_BUILT_IN = django.VERSION >= (6, 0)
if not PARTIALS_BUILT_IN:
    INSTALLED_APPS.append("template_partials")

ROOT_URLCONF = "reindexer.urls"
ASGI_APPLICATION = "reindexer.asgi.application"
WSGI_APPLICATION = None

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
            "builtins": [] if PARTIALS_BUILT_IN else ["template_partials.templatetags.partials"],
        },
    },
]


def _databases() -> dict[str, Any]:
    url = os.environ.get("DATABASE_URL")
    if url:
        db: dict[str, Any] = dict(dj_database_url.parse(url, conn_max_age=0))
        options = db.setdefault("OPTIONS", {})
        if db["ENGINE"] == "django.db.backends.sqlite3":
            options.update(_SQLITE_OPTIONS)
        elif db["ENGINE"] == "django.db.backends.postgresql":
            # The URL's own query parameters (?keepalives_idle=...) win over these.
            db["OPTIONS"] = {**_POSTGRES_OPTIONS, **options}
        return {"default": db}
    return {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": REINDEXER.data_dir / "reindexer.sqlite3",
            "OPTIONS": _SQLITE_OPTIONS,
            # One test database per test run, so that two runs in one checkout never collide.
            "TEST": {"NAME": str(REINDEXER.data_dir / f"test-reindexer-{os.getpid()}.sqlite3")},
        }
    }


# WAL lets readers (dashboard) and the writer (worker) overlap; IMMEDIATE takes the write lock at
# BEGIN so that claims serialise instead of failing with "database is locked" mid-transaction.
# A checkpoint every 100 pages (not SQLite's 1,000) keeps the WAL small and reused in place: on a
# full disk, a job's failure then still fits in the WAL's room, where a large WAL of new pages
# (the content hashes) could neither be checkpointed nor grow.
_SQLITE_OPTIONS: dict[str, Any] = {
    "transaction_mode": "IMMEDIATE",
    "timeout": 20,
    "init_command": (
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=100;"
    ),
}

# libpq options, so that a worker cut off from PostgreSQL (a partition: its packets vanish, no
# refusal comes back) notices within about 10-15 s instead of the kernel's minutes, and rides it
# out as it rides a restart: keepalives for an idle connection (5 s idle, then 3 probes 2 s
# apart), tcp_user_timeout (ms) for a request the server never acknowledges. The pgvector store
# uses the same (reindexer.stores.pgvector.LIVENESS_OPTIONS).
_POSTGRES_OPTIONS: dict[str, Any] = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 15_000,
}

DATABASES = _databases()
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# axes first: it refuses a locked-out login before the password is checked. It has no
# get_user(), so force_login() and sessions keep using ModelBackend. Client.login() must pass
# request=HttpRequest(), since axes needs the request.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# The dashboard's time format, in the admin too. The "en" locale's own formats would win over
# DATETIME_FORMAT, so the override lives in a format module; these cover any other language.
FORMAT_MODULE_PATH = ["reindexer.formats"]
DATETIME_FORMAT = SHORT_DATETIME_FORMAT = "Y-m-d H:i:s T"

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = REINDEXER.data_dir / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise warns on every request when it is missing
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# whitenoise serves straight from the finders, so no collectstatic step is needed to run.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

# Login throttling (django-axes, database handler: shared by every web process, and shown in
# the admin). A lock-out holds per account and, separately, per client address; the API's
# bearer tokens never go through authenticate(), so they are not affected.
AXES_FAILURE_LIMIT = REINDEXER.login_failure_limit
AXES_COOLOFF_TIME = timedelta(minutes=REINDEXER.login_cooloff_minutes)
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_HTTP_RESPONSE_CODE = 429
# The client address is REMOTE_ADDR unless a header set by a trusted proxy is configured:
# otherwise any client could pick a fresh address per request in X-Forwarded-For.
AXES_IPWARE_META_PRECEDENCE_ORDER = (
    (REINDEXER.client_ip_header, "REMOTE_ADDR") if REINDEXER.client_ip_header else ("REMOTE_ADDR",)
)

# Content-Security-Policy: only our own scripts, styles and connections ('self' covers the
# websocket to our own host in CSP Level 3 browsers). One dict for both implementations.
CSP_DIRECTIVES: dict[str, list[str]] = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:"],  # base.html's favicon is a data: URL
    "connect-src": ["'self'"],
    "frame-ancestors": ["'none'"],
    "form-action": ["'self'"],
    "base-uri": ["'none'"],
}
if django.VERSION >= (6, 0):
    MIDDLEWARE.insert(1, "django.middleware.csp.ContentSecurityPolicyMiddleware")
    SECURE_CSP = CSP_DIRECTIVES
else:
    MIDDLEWARE.insert(1, "csp.middleware.CSPMiddleware")
    CONTENT_SECURITY_POLICY = {"DIRECTIVES": CSP_DIRECTIVES}

# Production behind TLS (REINDEXER_HTTPS=1 or DJANGO_SECURE=1), for a reverse proxy that
# terminates TLS and sets X-Forwarded-Proto (it must overwrite any value the client sent).
if REINDEXER.https:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = 365 * 24 * 3600
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    # Preloading is an enrolment of the whole registrable domain in the browsers' lists, hard
    # to undo, and the operator's call rather than this app's; so its check is silenced.
    SECURE_HSTS_PRELOAD = False
    SILENCED_SYSTEM_CHECKS = ["security.W021"]


def _channel_layers() -> dict[str, Any]:
    if REINDEXER.redis_url:
        return {
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {
                    "hosts": [REINDEXER.redis_url],
                    # One member per web process (dashboard.fanout), re-joined on its tick every
                    # few seconds: a killed process drops out of the groups within this time.
                    "group_expiry": int(os.environ.get("REINDEXER_CHANNEL_GROUP_EXPIRY", "120")),
                    # A message is only a job id and stale within seconds; the hub's channel
                    # takes every job's messages, so it may hold a burst of them.
                    "expiry": 10,
                    "capacity": 1000,
                },
            }
        }
    # Without Redis, the in-memory layer serves only in-process fan-out; the consumers' database
    # relay (dashboard.relay) is what carries the worker's progress across processes.
    return {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


CHANNEL_LAYERS = _channel_layers()

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    # Not propagated: daphne installs a root handler, which would print every line twice.
    "loggers": {
        name: {
            "handlers": ["console"],
            "level": os.environ.get("REINDEXER_LOG_LEVEL", "INFO"),
            "propagate": False,
        }
        for name in ("reindexer", "dashboard")
    },
}

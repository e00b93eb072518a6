"""Slipway settings: everything comes from the environment (django-environ).

With nothing set you get the embedded default: SQLite in WAL mode, an in-memory
channel layer, Celery running in-process. `DATABASE_URL`, `REDIS_URL` and
`CELERY_BROKER_URL` switch to the production runtime; `SLIPWAY_ENV=production`
refuses to start without `SECRET_KEY` and `ALLOWED_HOSTS` and never runs DEBUG.
"""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from django.core.management.utils import get_random_secret_key

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()

SLIPWAY_ENV = env.str("SLIPWAY_ENV", default="embedded")
PRODUCTION = SLIPWAY_ENV == "production"
DATA_DIR = Path(env.str("SLIPWAY_DATA_DIR", default=str(BASE_DIR / "var")))


def _embedded_secret_key() -> str:
    # One key for every process of the embedded runtime, kept beside its database.
    path = DATA_DIR / "secret_key"
    if not path.exists():
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(get_random_secret_key())
        path.chmod(0o600)
    return path.read_text().strip()


if PRODUCTION:
    missing = [name for name in ("SECRET_KEY", "ALLOWED_HOSTS") if not env.str(name, default="")]
    if missing:
        raise ImproperlyConfigured(
            f"SLIPWAY_ENV=production needs {' and '.join(missing)} set in the environment (slipway.E001)."
        )
    SECRET_KEY = env.str("SECRET_KEY")
    ALLOWED_HOSTS = env.list("ALLOWED_HOSTS")
    DEBUG = False
else:
    SECRET_KEY = env.str("SECRET_KEY", default="") or _embedded_secret_key()
    ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
    DEBUG = env.bool("DEBUG", default=False)

CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Where people reach Slipway: links in notifications point here.
SLIPWAY_BASE_URL = env.str("SLIPWAY_BASE_URL", default=f"http://127.0.0.1:{env.int('PORT', default=8000)}")
# A worker running a step renews its lease every third of this; once it lapses another worker takes the step over.
SLIPWAY_STEP_LEASE_SECONDS = env.float("SLIPWAY_STEP_LEASE_SECONDS", default=5.0)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "channels",
    "releases",
    "environments",
    "flags",
    "monitoring",
    "dashboard",
]

MIDDLEWARE = [
    "config.errors.BodySizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "config.errors.DomainErrorMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
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
            ],
        },
    },
]

# --- database -------------------------------------------------------------
# At most this many requests run Django code at once per process (each holds a database connection).
WEB_MAX_CONCURRENT_REQUESTS = env.int("WEB_MAX_CONCURRENT_REQUESTS", default=20)
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'slipway.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    if DATABASES["default"]["NAME"] != ":memory:":
        Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    DATABASES["default"]["OPTIONS"] = {
        # IMMEDIATE takes the write lock at BEGIN: no "database is locked" upgrade failures mid-transaction.
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
else:
    # ASGI runs each request's sync code in a fresh thread, and the worker closes its connection after each task:
    # a pool per process hands them an open connection instead of a new one each time (a new PostgreSQL
    # connection costs milliseconds and a backend process; a rollout's reconciler runs once per wave).
    # Persistent connections (CONN_MAX_AGE) would pile up per thread and cannot be combined with the pool.
    if env.bool("DATABASE_POOL", default=True):
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": 1, "max_size": env.int("DATABASE_POOL_MAX_SIZE", default=WEB_MAX_CONCURRENT_REQUESTS + 10),
            "timeout": 30}
    else:
        DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=0))
        DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- channels, cache, celery ---------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # channels-redis waits for messages in a BZPOPMIN of 5 s (RedisChannelLayer.brpop_timeout), and
            # redis-py 8 gives every read a 5 s socket timeout by default: an idle socket's read timed out just as
            # Redis answered "nothing yet", and the consumer died with it. Reads must outlast the blocking pop.
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 15}],
                       "prefix": env.str("CHANNEL_PREFIX", default="slipway")},
        }
    }
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="memory://")
# No broker configured: the embedded runtime runs a worker thread inside the web process.
CELERY_IN_PROCESS = CELERY_BROKER_URL.startswith("memory://")
if CELERY_IN_PROCESS:  # kombu's memory transport sleeps this long when its queue is empty (default: 1 s)
    CELERY_BROKER_TRANSPORT_OPTIONS = {"polling_interval": 0.005}
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Two Slipways may share a broker (vhost): each enqueues to and consumes its own queue.
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_QUEUE", default="celery")
# Beat runs once per installation; its record of the last runs belongs with the data, not in the checkout.
CELERY_BEAT_SCHEDULE_FILENAME = env.str("CELERY_BEAT_SCHEDULE_FILENAME",
                                        default=str(DATA_DIR / "celerybeat-schedule"))
CELERY_BEAT_SCHEDULER = "config.celery:Scheduler"  # creates that directory
CELERY_BEAT_SCHEDULE = {
    # Releases held by a freeze window start by themselves when it ends.
    "recheck-blocked-releases": {"task": "releases.tasks.recheck_blocked_releases", "schedule": 30.0},
    # Timeouts, pauses and agents gone offline move rollouts even when no agent reports.
    "check-rollouts": {"task": "releases.tasks.check_rollouts", "schedule": 2.0},
    "apply-flag-schedules": {"task": "flags.tasks.apply_flag_schedules", "schedule": 10.0},
    # New errors and error rates after recent releases: alerts, and rollbacks where the environment asks.
    "check-new-errors": {"task": "monitoring.tasks.check_new_errors", "schedule": 30.0},
}

# --- auth -----------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
if env.bool("SLIPWAY_FAST_PASSWORD_HASHING", default=False) and not PRODUCTION:
    # Test runs only: PBKDF2's deliberate slowness costs seconds per suite and guards nothing there.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard:overview"
LOGOUT_REDIRECT_URL = "login"

# Production serves people over HTTPS: session and CSRF cookies are Secure, so a browser on plain http:// never
# sends them back and every form fails its CSRF check (the failure page says so: config.errors.csrf_failure).
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=PRODUCTION)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=PRODUCTION)
CSRF_FAILURE_VIEW = "config.errors.csrf_failure"
# A proxy terminating TLS says so in X-Forwarded-Proto; trust it only when the proxy sets (overwrites) it.
if env.bool("TRUST_X_FORWARDED_PROTO", default=PRODUCTION):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)  # usually the proxy's job
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]  # load balancers probe over plain HTTP
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)

# --- i18n -----------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

# --- static ---------------------------------------------------------------
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(DATA_DIR / "staticfiles")))
# Embedded runs serve straight from static/; production serves collectstatic's output.
WHITENOISE_USE_FINDERS = not PRODUCTION
if not PRODUCTION:
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns at every start without it
WHITENOISE_AUTOREFRESH = DEBUG

# --- API ------------------------------------------------------------------
API_MAX_BODY_BYTES = 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = API_MAX_BODY_BYTES
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "config.api.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["config.api.HasScope"],
    "DEFAULT_PAGINATION_CLASS": "config.api.Pagination",
    "PAGE_SIZE": 25,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "config.errors.api_exception_handler",
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Slipway API",
    "DESCRIPTION": "Register builds, promote releases, toggle flags. Authenticate with `Authorization: Bearer <token>`."
                   "\n\n[← Back to Slipway](/)",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1/",
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI from our own static files: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {"AnalysisRunStatusEnum": "monitoring.models.AnalysisRun.Status"},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}, "celery": {"level": "WARNING"},
                "kombu": {"level": "ERROR"}},
}

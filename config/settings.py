"""Slipway settings: everything comes from the environment (django-environ).

With nothing set you get the embedded default: SQLite in WAL mode, an in-memory
channel layer, Celery running in-process. `DATABASE_URL`, `REDIS_URL` and
`CELERY_BROKER_URL` switch to the production runtime; `SLIPWAY_ENV=production`
refuses to start without `SECRET_KEY` and `ALLOWED_HOSTS` (system check slipway.E001) and never runs DEBUG.
"""

from pathlib import Path

import environ
from django.core.management.utils import get_random_secret_key
from django.utils.csp import CSP

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
    # Missing values are reported by the system check slipway.E001 (`manage.py check --deploy`), and every process
    # refuses to start on them (config.checks.refuse_to_start): an empty SECRET_KEY signs nothing.
    SECRET_KEY = env.str("SECRET_KEY", default="")
    ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[])
    DEBUG = False
    SLIPWAY_MISSING_SETTINGS = [
        name for name, value in (("SECRET_KEY", SECRET_KEY), ("ALLOWED_HOSTS", ALLOWED_HOSTS)) if not value
    ]
else:
    SECRET_KEY = env.str("SECRET_KEY", default="") or _embedded_secret_key()
    ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
    DEBUG = env.bool("DEBUG", default=False)
    SLIPWAY_MISSING_SETTINGS = []

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
    "axes",  # before releases: releases/admin.py replaces its attempts admin with one that unlocks, audited
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
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "config.errors.DomainErrorMiddleware",
    "axes.middleware.AxesMiddleware",  # a locked-out log-in gets config.logins.lockout_response
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
                "django.template.context_processors.csp",  # {{ csp_nonce }} for the rare inline <script>
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
            "min_size": 1,
            "max_size": env.int("DATABASE_POOL_MAX_SIZE", default=WEB_MAX_CONCURRENT_REQUESTS + 10),
            "timeout": 30,
        }
    else:
        DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=0))
        DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- channels, cache, celery ---------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
# Events waiting for one live-view consumer, at most (see "Slow browsers" in docs/architecture.md).
LIVE_CHANNEL_CAPACITY = 50
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # channels-redis waits for messages in a BZPOPMIN of 5 s (RedisChannelLayer.brpop_timeout), and
            # redis-py 8 gives every read a 5 s socket timeout by default: an idle socket's read timed out just as
            # Redis answered "nothing yet", and the consumer died with it. Reads must outlast the blocking pop.
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_timeout": 15}],
                "prefix": env.str("CHANNEL_PREFIX", default="slipway"),
                # Bounded: a consumer whose channel holds this many events gets no more until it reads (each
                # event makes it re-read the whole state, so a dropped one is made good by the next).
                "capacity": LIVE_CHANNEL_CAPACITY,
                "expiry": 60,
            },
        }
    }
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": LIVE_CHANNEL_CAPACITY, "expiry": 60},
        }
    }
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
# The rollout reconciler's tasks run the gates, and an analysis gate holds its worker slot for its whole window:
# production may give them a queue (and workers) of their own, so that waiting analyses never delay flag
# schedules, alerts or notifications (docs/operations.md, "Sizing workers for analyses").
CELERY_ROLLOUT_QUEUE = env.str("CELERY_ROLLOUT_QUEUE", default="")
if CELERY_ROLLOUT_QUEUE and not CELERY_IN_PROCESS:
    CELERY_TASK_ROUTES = {
        "releases.tasks.advance_rollout": {"queue": CELERY_ROLLOUT_QUEUE},
        "releases.tasks.check_rollouts": {"queue": CELERY_ROLLOUT_QUEUE},
    }
# The embedded worker's threads: tasks run side by side, so an analysis gate waiting out its window (one thread)
# leaves the others to other rollouts, flag schedules, new-error checks and notifications.
SLIPWAY_WORKER_THREADS = env.int("SLIPWAY_WORKER_THREADS", default=4)
# Beat runs once per installation; its record of the last runs belongs with the data, not in the checkout.
CELERY_BEAT_SCHEDULE_FILENAME = env.str(
    "CELERY_BEAT_SCHEDULE_FILENAME", default=str(DATA_DIR / "celerybeat-schedule")
)
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
# Failed log-ins (django-axes, config/logins.py): LOGIN_FAILURE_LIMIT failures for one username, or from one address,
# lock it out for LOGIN_COOLOFF_MINUTES after the last attempt (an attempt during the lockout, from an address that
# failed, pushes its end back);
# the cool-off doubles with each lockout of that username or address within a day, up to LOGIN_COOLOFF_MAX_MINUTES.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
LOGIN_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
LOGIN_COOLOFF_MINUTES = env.float("LOGIN_COOLOFF_MINUTES", default=15.0)
LOGIN_COOLOFF_MAX_MINUTES = env.float("LOGIN_COOLOFF_MAX_MINUTES", default=24 * 60.0)
AXES_FAILURE_LIMIT = LOGIN_FAILURE_LIMIT
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # either one locks
AXES_COOLOFF_TIME = "config.logins.cool_off"
AXES_HANDLER = "config.logins.LockoutHandler"
AXES_LOCKOUT_CALLABLE = "config.logins.lockout_response"
AXES_RESET_ON_SUCCESS = (
    False  # else one known account, logged into now and then, would reset its address's count
)
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = True
AXES_CLIENT_IP_CALLABLE = (
    "config.logins.client_address"  # uvicorn resolved the proxy's X-Forwarded-For already
)
AXES_VERBOSE = False  # Slipway's own audit event says it once
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
# HSTS: on in production (a year), once HTTPS works everywhere; subdomains of Slipway's own host name included.
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000 if PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=PRODUCTION)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
SILENCED_SYSTEM_CHECKS = [
    # Preloading is a decision for the whole registered domain, not Slipway's: opt in with SECURE_HSTS_PRELOAD=1.
    "security.W021",
    # Redirecting to HTTPS is the proxy's job (docs/operations.md); SECURE_SSL_REDIRECT=1 makes Slipway do it too.
    "security.W008",
]

# Content-Security-Policy (Django's own middleware): scripts and styles from Slipway's origin only, no inline code,
# no eval (htmx runs with allowEval=false and without its injected indicator styles: templates/base.html). An inline
# <script> needs nonce="{{ csp_nonce }}"; inline style attributes and <style> elements are refused.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],  # Swagger UI's icons are data: URLs
    "font-src": [CSP.SELF],
    "connect-src": [CSP.SELF],  # fetches and the live views' WebSockets (same origin)
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}

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
    "EXCEPTION_HANDLER": "config.api_errors.api_exception_handler",
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "config.api.BrowsableAPIRenderer",
    ],
    "DEFAULT_PARSER_CLASSES": ["config.parsers.BoundedJSONParser"],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "DEFAULT_THROTTLE_CLASSES": ["config.throttles.TokenBucketThrottle"],
}

# --- rate limits (token buckets; "20/s", "600/min", or "off") ----------------
# The REST API, per API token (or signed-in user): shared by every process through Redis when REDIS_URL is set.
API_RATE_LIMIT = env.str("API_RATE_LIMIT", default="20/s")
API_RATE_BURST = env.int("API_RATE_BURST", default=200)
# Per client address, for API requests without valid credentials (no token, a wrong or revoked one).
API_ANONYMOUS_RATE_LIMIT = env.str("API_ANONYMOUS_RATE_LIMIT", default="2/s")
API_ANONYMOUS_RATE_BURST = env.int("API_ANONYMOUS_RATE_BURST", default=30)
# OFREP, per token for the whole installation: each web process enforces its share (the limit / WEB_PROCESSES) in
# memory, so the hot path never waits on Redis. Addresses without a valid token get the anonymous limit, per process.
OFREP_RATE_LIMIT = env.str("OFREP_RATE_LIMIT", default="6000/s")
OFREP_RATE_BURST = env.int("OFREP_RATE_BURST", default=12000)
WEB_PROCESSES = env.int("WEB_PROCESSES", default=1)
RATE_LIMIT_PREFIX = env.str("CHANNEL_PREFIX", default="slipway") + ":ratelimit"
SPECTACULAR_SETTINGS = {
    "TITLE": "Slipway API",
    "DESCRIPTION": "Register builds, promote releases, toggle flags. Authenticate with `Authorization: Bearer <token>`."
    "\n\n[← Back to Slipway](/)",
    "VERSION": "1",
    "OAS_VERSION": "3.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1/",
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI from our own static files: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "AnalysisRunStatusEnum": "monitoring.models.AnalysisRun.Status",
        "RolloutStatusEnum": "releases.models.Rollout.Status",
        "MetricSourceKindEnum": "monitoring.models.MetricSource.Kind",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "config.schema.add_shared_errors",
    ],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "celery": {"level": "WARNING"},
        "kombu": {"level": "ERROR"},
    },
}

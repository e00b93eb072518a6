"""System checks: production must not run on the embedded defaults.

`manage.py check --deploy` reports every one of them; `slipway.E001` (no SECRET_KEY or ALLOWED_HOSTS) also runs
without `--deploy`, so `manage.py serve`/`migrate` refuse to start on it, and the ASGI app and Celery refuse through
`refuse_to_start` (uvicorn and celery run no system checks).
"""

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured


def _missing_essentials() -> list[str]:
    return (
        list(settings.SLIPWAY_MISSING_SETTINGS) if settings.PRODUCTION else []
    )  # computed in config/settings.py


def _essentials_message(missing: list[str]) -> str:
    return (
        f"SLIPWAY_ENV=production needs {' and '.join(missing)} set in the environment (docs/operations.md)."
    )


@register(Tags.security)
def production_essentials(app_configs, **kwargs):
    missing = _missing_essentials()
    return [Error(_essentials_message(missing), id="slipway.E001")] if missing else []


def refuse_to_start() -> None:
    """Raise before serving anything when slipway.E001 fails: an empty SECRET_KEY signs nothing."""
    if missing := _missing_essentials():
        raise ImproperlyConfigured(_essentials_message(missing) + " (slipway.E001)")


@register(Tags.security, deploy=True)
def production_settings(app_configs, **kwargs):
    if not settings.PRODUCTION:
        return []
    errors: list[CheckMessage] = []
    if settings.DEBUG:
        errors.append(Error("DEBUG is on in production.", id="slipway.E002"))
    if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        errors.append(Error("Production runs on PostgreSQL: set DATABASE_URL.", id="slipway.E003"))
    if not settings.SESSION_COOKIE_SECURE or not settings.CSRF_COOKIE_SECURE:
        errors.append(
            Error(
                "Session and CSRF cookies must be Secure in production: unset SESSION_COOKIE_SECURE and "
                "CSRF_COOKIE_SECURE (they default to on).",
                id="slipway.E004",
            )
        )
    if not settings.SECURE_CSP:
        errors.append(Error("The Content-Security-Policy is off (SECURE_CSP is empty).", id="slipway.E005"))
    if not settings.REDIS_URL:
        errors.append(
            Warning(
                "REDIS_URL is unset: live views only hear events from their own process, never from "
                "workers or other web processes (docs/operations.md).",
                id="slipway.W001",
            )
        )
    if settings.CELERY_BROKER_URL.startswith("memory://"):
        errors.append(
            Warning(
                "CELERY_BROKER_URL is memory://: tasks never leave the web process and no separate "
                "worker or beat can run (docs/operations.md).",
                id="slipway.W002",
            )
        )
    return errors

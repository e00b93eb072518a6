"""System checks: production must not run on the embedded defaults."""

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register


@register(Tags.security, deploy=True)
def production_settings(app_configs, **kwargs):
    if not settings.PRODUCTION:
        return []
    errors = []
    if settings.DEBUG:
        errors.append(Error("DEBUG is on in production.", id="slipway.E002"))
    if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        errors.append(Error("Production runs on PostgreSQL: set DATABASE_URL.", id="slipway.E003"))
    if not settings.REDIS_URL:
        errors.append(Warning("REDIS_URL is unset: live views only hear events from their own process, never from "
                              "workers or other web processes (docs/operations.md).", id="slipway.W001"))
    if settings.CELERY_BROKER_URL.startswith("memory://"):
        errors.append(Warning("CELERY_BROKER_URL is memory://: tasks never leave the web process and no separate "
                              "worker or beat can run (docs/operations.md).", id="slipway.W002"))
    return errors

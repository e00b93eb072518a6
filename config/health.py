"""Load balancers' checks: `/healthz` (liveness: this process answers and reaches its database) and `/readyz`
(readiness: every service this process needs answers — database, Redis when configured, the broker when not
`memory://`). A failed part is named in a 503."""

from __future__ import annotations

from functools import cache

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

TIMEOUT = 2.0  # seconds per part: a probe must answer before the load balancer gives up on it


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for load balancers: 200 when the database answers, 503 when it does not."""
    error = _database()
    if error:
        return JsonResponse({"status": "error", "database": error}, status=503)
    return JsonResponse({"status": "ok", "database": "ok"})


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: 200 when the database, Redis and the broker (those configured) answer; else 503 naming them."""
    parts = {"database": _database()}
    if settings.REDIS_URL:
        parts["redis"] = _redis(settings.REDIS_URL)
    if not settings.CELERY_BROKER_URL.startswith("memory://"):
        parts["broker"] = _broker(settings.CELERY_BROKER_URL)
    failed = sorted(name for name, error in parts.items() if error)
    body = {name: error or "ok" for name, error in parts.items()}
    if failed:
        return JsonResponse({"status": "error", "failed": failed, **body}, status=503)
    return JsonResponse({"status": "ok", **body})


def _database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as error:
        return f"unreachable: {type(error).__name__}"
    return None


@cache
def _redis_client(url: str):
    import redis

    # One pool per process and URL: probes every few seconds must not open a connection each.
    return redis.Redis.from_url(url, socket_connect_timeout=TIMEOUT, socket_timeout=TIMEOUT)


def _redis(url: str) -> str | None:
    import redis

    try:
        _redis_client(url).ping()
    except redis.RedisError as error:
        return f"unreachable: {type(error).__name__}"
    return None


def _broker(url: str) -> str | None:
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=TIMEOUT) as broker:
            broker.ensure_connection(max_retries=1, timeout=TIMEOUT)
    except Exception as error:  # kombu raises its transport's own errors (amqp, redis, socket)
        return f"unreachable: {type(error).__name__}"
    return None

"""Rate limits of the REST API: a token bucket per API token (or signed-in user), and per client address for
requests without valid credentials. Shared by every process through Redis when `REDIS_URL` is set."""

from __future__ import annotations

import functools
import math

from django.conf import settings
from rest_framework import exceptions
from rest_framework.throttling import BaseThrottle

from config.ratelimit import Buckets, LocalBuckets, Rate, RedisBuckets


@functools.cache
def _buckets(rate: Rate, redis_url: str, prefix: str) -> Buckets:
    if not redis_url:
        return LocalBuckets(rate)
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)
    return RedisBuckets(rate, client, prefix=prefix)


def buckets(kind: str) -> Buckets | None:
    """The buckets of `"api"` (per token or user) or `"anonymous"` (per address); None when that limit is off."""
    if kind == "api":
        rate = Rate.parse(settings.API_RATE_LIMIT, settings.API_RATE_BURST)
    else:
        rate = Rate.parse(settings.API_ANONYMOUS_RATE_LIMIT, settings.API_ANONYMOUS_RATE_BURST)
    if rate is None:
        return None
    return _buckets(rate, settings.REDIS_URL, f"{settings.RATE_LIMIT_PREFIX}:{kind}:")


def client_address(request) -> str:
    # uvicorn puts the proxy's X-Forwarded-For client here when the proxy is trusted (FORWARDED_ALLOW_IPS).
    return request.META.get("REMOTE_ADDR") or "unknown"


def charge_address(request) -> None:
    """Count a request without valid credentials against its address; Throttled once that runs out."""
    limit = buckets("anonymous")
    if limit is not None and (wait := limit.take(client_address(request))):
        raise exceptions.Throttled(wait)


class TokenBucketThrottle(BaseThrottle):
    """Per token (or session user); per address for anonymous requests. Answers 429 with Retry-After."""

    def allow_request(self, request, view) -> bool:
        token = getattr(request.auth, "pk", None)
        user = request.user
        if token is not None:
            kind, key = "api", f"token:{token}"
        elif user is not None and user.is_authenticated:
            kind, key = "api", f"user:{user.pk}"
        else:
            kind, key = "anonymous", client_address(request)
        limit = buckets(kind)
        self._wait = limit.take(key) if limit is not None else 0.0
        return not self._wait

    def wait(self) -> float:
        return self._wait


def retry_after(wait: float | None) -> int:
    return max(1, math.ceil(wait or 1))

"""Shared fixtures. The suite runs on real PostgreSQL and Redis (`make test` points at them)."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings as hypothesis_settings
from rest_framework.test import APIClient

from tests import factories

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs an event loop

# Property tests judge results, not speed: on a loaded 2-core CI machine one example can take past Hypothesis's
# 200 ms deadline, which failed a correct test (tests/flags/test_history.py). Speed lives in `make bench`.
hypothesis_settings.register_profile("slipway", deadline=None)
hypothesis_settings.load_profile("slipway")


def pytest_configure(config):
    from django.conf import settings

    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("postgresql"):
        import psycopg

        try:
            psycopg.connect(
                host=db["HOST"] or "127.0.0.1",
                port=db["PORT"] or 5432,
                user=db["USER"],
                dbname="postgres",
                connect_timeout=3,
            ).close()
        except psycopg.OperationalError:
            pytest.exit(f"PostgreSQL is unreachable at {db['HOST']}:{db['PORT']} — start it (see README).", 3)
    elif not os.environ.get("SLIPWAY_TEST_SQLITE"):
        pytest.exit(
            "Tests run on PostgreSQL: use `make test` (or set DATABASE_URL; SLIPWAY_TEST_SQLITE=1 to force SQLite).",
            3,
        )
    if settings.REDIS_URL:
        import redis

        try:
            redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=3).ping()
        except redis.exceptions.ConnectionError:
            pytest.exit(f"Redis is unreachable at {settings.REDIS_URL} — start it (see README).", 3)


@pytest.fixture
def user(db):
    return factories.UserFactory()


@pytest.fixture
def admin_user(db):
    return factories.UserFactory(username="root", is_superuser=True, is_staff=True)


@pytest.fixture
def app(db, user):
    application = factories.ApplicationFactory(slug="shop", name="Shop")
    factories.MembershipFactory(user=user, application=application, role="admin")
    return application


def token_client(user, *scopes, environment=None) -> APIClient:
    """An API client authenticated with a fresh bearer token of the given scopes."""
    from releases.permissions import Actor
    from releases.services import do_create_api_token

    _, key = do_create_api_token(Actor.system(), user, name="test", scopes=scopes, environment=environment)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


@pytest.fixture
def ci(user, app):
    """CI's client: the app's admin user through a releases:read+write token."""
    return token_client(user, "releases:read", "releases:write")


@pytest.fixture
def live_slipway(transactional_db):
    """Slipway served by uvicorn in a subprocess, on the test database: the real ASGI stack over HTTP."""
    from tests.live import LiveSlipway

    server = LiveSlipway.start()
    yield server
    server.stop()


def pytest_collection_modifyitems(config, items):
    """`@pytest.mark.postgres` tests need row locks and real concurrency: skipped, with the reason, elsewhere."""
    from django.conf import settings

    if settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL (row locks, concurrency): run `make test`")
    for item in items:
        if item.get_closest_marker("postgres"):
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _api_contract(monkeypatch):
    """Each REST API response a test produces must match the OpenAPI schema (tests/contract.py)."""
    from tests import contract

    contract.install(monkeypatch)


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    """Each test starts with full rate-limit buckets: the suite's many requests from 127.0.0.1 add up otherwise."""
    from django.conf import settings

    from config import throttles
    from flags import ofrep_asgi

    throttles._buckets.cache_clear()
    ofrep_asgi._limits.built_from = None
    if settings.REDIS_URL:
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL)
        keys = list(client.scan_iter(f"{settings.RATE_LIMIT_PREFIX}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()

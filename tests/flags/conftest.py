"""OFREP is served by one ASGI route (config.asgi → flags/ofrep_asgi.py): tests call it in this process."""

import asyncio

import httpx
import pytest

from flags.snapshots import snapshots
from releases import access


def closing(function):
    """The route's database work runs on executor threads that end with each call's event loop: hand their
    connections back, or the test database cannot be dropped."""

    def wrapper(*args, **kwargs):
        from django.db import connection

        try:
            return function(*args, **kwargs)
        finally:
            connection.close()

    return wrapper


@pytest.fixture
def served_ofrep(transactional_db, monkeypatch):
    """`call(path, body, key=…, headers=…, method=…)` → httpx.Response from the production ASGI application."""
    from config.asgi import application
    from flags import ofrep_asgi

    monkeypatch.setattr(ofrep_asgi, "_lookup_token", closing(ofrep_asgi._lookup_token))
    monkeypatch.setattr(access, "refresh", closing(access.refresh))
    monkeypatch.setattr(snapshots, "get", closing(snapshots.get))
    snapshots.clear()
    access.clear()
    ofrep_asgi._tokens.clear()

    def call(path, body=None, *, key=None, headers=None, method="POST"):
        async def send():
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                return await client.request(
                    method,
                    path,
                    json=body,
                    headers={**({"Authorization": f"Bearer {key}"} if key else {}), **(headers or {})},
                )

        return asyncio.run(send())

    yield call
    snapshots.clear()
    access.clear()
    ofrep_asgi._tokens.clear()

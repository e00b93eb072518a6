"""OFREP respects roles on the served route (config.asgi → flags/ofrep_asgi.py): a revoked membership or token
fails at once in the process that revoked it, and within a fraction of a second in every other process."""

import asyncio
import json
import time
import urllib.error
import urllib.request

import httpx
import pytest

from flags.snapshots import snapshots
from releases import access
from releases.permissions import Actor
from releases.services import do_create_api_token, do_grant_role, do_revoke_api_token, do_revoke_role
from tests import factories
from tests.flags.conftest import closing

FLAGS = "/ofrep/v1/evaluate/flags"


@pytest.fixture
def setup(transactional_db, monkeypatch):
    from flags import ofrep_asgi
    from flags.services import do_create_flag, do_set_flag_state

    monkeypatch.setattr(ofrep_asgi, "_lookup_token", closing(ofrep_asgi._lookup_token))
    monkeypatch.setattr(access, "refresh", closing(access.refresh))
    monkeypatch.setattr(snapshots, "get", closing(snapshots.get))

    snapshots.clear()
    access.clear()
    ofrep_asgi._tokens.clear()
    admin = factories.UserFactory(username="boss")
    app = factories.ApplicationFactory(slug="shop")
    factories.MembershipFactory(user=admin, application=app, role="admin")
    production = factories.EnvironmentFactory(application=app, name="production", position=2)
    flag = do_create_flag(Actor.system(), app, key="new-checkout")
    do_set_flag_state(Actor.system(), flag, production, enabled=True)
    pm = factories.UserFactory(username="pm")
    membership, _ = do_grant_role(Actor(admin), app, pm, "flag_editor", production)
    token, key = do_create_api_token(Actor(pm), pm, name="sdk", scopes=["flags:read"], environment=production)
    yield {
        "admin": admin,
        "app": app,
        "production": production,
        "pm": pm,
        "membership": membership,
        "token": token,
        "key": key,
    }
    snapshots.clear()
    access.clear()
    ofrep_asgi._tokens.clear()


def served(key: str, path: str = FLAGS + "/new-checkout") -> int:
    """One request through the production ASGI application, in this process."""
    from config.asgi import application

    async def call():
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            response = await client.post(
                path, json={"context": {"targetingKey": "u1"}}, headers={"Authorization": f"Bearer {key}"}
            )
            return response.status_code

    return asyncio.run(call())


def test_revoked_membership_is_refused_at_once_by_the_served_route(setup):
    key = setup["key"]
    assert served(key) == 200
    assert served(key, FLAGS) == 200  # cached now: no database on these
    do_revoke_role(Actor(setup["admin"]), setup["membership"])
    assert served(key) == 403
    assert served(key, FLAGS) == 403
    do_grant_role(Actor(setup["admin"]), setup["app"], setup["pm"], "viewer")
    assert served(key) == 200  # granting applies at once too


def test_revoked_token_is_refused_at_once_by_the_served_route(setup):
    assert served(setup["key"]) == 200
    do_revoke_api_token(Actor(setup["pm"]), setup["token"])
    assert served(setup["key"]) == 401


def test_other_processes_refuse_within_a_fraction_of_a_second(live_slipway, setup):
    """The live server is another process: it learns of the revoke from the database, in the background."""

    def call() -> int:
        request = urllib.request.Request(
            live_slipway.url + FLAGS,
            data=json.dumps({"context": {}}).encode(),
            method="POST",
            headers={"Authorization": f"Bearer {setup['key']}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    assert call() == 200
    time.sleep(0.3)
    assert call() == 200  # past the access check interval: the background check found nothing new
    do_revoke_role(Actor(setup["admin"]), setup["membership"])
    revoked_at = time.monotonic()
    while call() != 403:
        assert time.monotonic() - revoked_at < 2.0, "the other process still serves the revoked user's token"
        time.sleep(0.02)
    # Measured: about CHECK_EVERY (0.25 s) plus one small query; the token cache alone would take TOKEN_TTL (10 s).
    assert time.monotonic() - revoked_at < 2.0

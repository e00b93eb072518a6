"""Production's live path across processes: two ASGI servers (uvicorn, `serve --no-embedded`) on the Redis channel
layer, a Celery worker on RabbitMQ advancing the rollout, a browser-like WebSocket client on each server."""

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import urllib.request

import pytest
from django.test import Client

from environments.models import Target
from releases.models import Release, RolloutStep
from releases.permissions import Actor
from releases.services import do_create_api_token
from tests import factories
from tests.live import ROOT, LiveSlipway, database_url

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
BROKER = "amqp://guest:guest@127.0.0.1:5672//"
HOSTS = [f"web-{n}" for n in range(1, 5)]
RANK = {"pending": 0, "running": 1, "succeeded": 2, "failed": 2, "skipped": 2, "cancelled": 2}
ROW = re.compile(r'<tr data-target="([^"]+)" data-action="([^"]+)" data-status="([^"]+)"[^>]*>')
HEAD = re.compile(r'<header id="release-head" class="release-head" data-status="([^"]+)"')


def view(message: str) -> tuple[str | None, dict[tuple[str, str], str]]:
    """What a pushed message says: the release's status (if it carries the header) and each step's status."""
    head = HEAD.search(message)
    return (head.group(1) if head else None), {(t, a): s for t, a, s in ROW.findall(message)}


def test_two_servers_and_a_worker_every_viewer_sees_every_step_in_order(tmp_path):
    import kombu
    import websockets

    assert os.environ.get("REDIS_URL"), "make test sets REDIS_URL: the servers share the Redis channel layer"
    try:
        with kombu.Connection(BROKER, connect_timeout=3) as connection:
            connection.ensure_connection(max_retries=1)
    except Exception as error:
        pytest.fail(f"RabbitMQ unreachable at 127.0.0.1:5672: {error}")
    queue = f"live-{os.getpid()}"
    env = {
        "CELERY_BROKER_URL": BROKER,
        "CELERY_QUEUE": queue,
        "CHANNEL_PREFIX": f"slipway-live-{os.getpid()}",
    }
    app = factories.ApplicationFactory(slug="shop")
    production = factories.EnvironmentFactory(
        application=app,
        name="production",
        position=1,
        requires_approval=True,
        driver="command",
        deploy_command="sleep 0.5",  # one deploy at a time, half a second apart: each is its own state
        strategy={"kind": "rolling", "batch_size": 1},
    )
    for name in HOSTS:
        Target.objects.create(environment=production, name=name, token_hash=f"h-{name}", version="1.0.0")
    admin = factories.UserFactory(username="boss", is_superuser=True)
    _, key = do_create_api_token(Actor.system(), admin, name="ci", scopes=["admin"])
    v2 = factories.ArtifactFactory(application=app, version="2.0.0")
    release = Release.objects.create(  # waiting for approval: no rollout, no rollout group yet
        application=app, environment=production, artifact=v2, status="pending_approval", requested_by=admin
    )
    client = Client()
    client.force_login(admin)
    session = client.cookies["sessionid"].value

    servers = [LiveSlipway.start(extra_env=env) for _ in range(2)]
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "solo", "-Q", queue]
        + ["--loglevel", "WARNING"],
        cwd=ROOT,
        env={**os.environ, **env, "DATABASE_URL": database_url(), "SLIPWAY_DEMO_FLEET": "0"},
        stdout=(tmp_path / "worker.log").open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    async def watch(server, ready: asyncio.Event, seen: list):
        ws_url = server.url.replace("http://", "ws://") + f"/ws/releases/{release.pk}/"
        headers = {"Cookie": f"sessionid={session}", "Origin": server.url}
        async with websockets.connect(ws_url, additional_headers=headers, max_size=None) as socket:
            seen.append(view(await asyncio.wait_for(socket.recv(), 10)))  # the catch-up
            ready.set()
            while seen[-1][0] != "succeeded" or any(s != "succeeded" for s in seen[-1][1].values()):
                seen.append(view(await asyncio.wait_for(socket.recv(), 40)))

    def force(server):
        request = urllib.request.Request(
            f"{server.url}/api/v1/applications/shop/releases/{release.pk}/force/",
            data=json.dumps({"reason": "multi-process live test"}).encode(),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        return json.load(urllib.request.urlopen(request, timeout=10))

    async def scenario():
        readiness = [asyncio.Event(), asyncio.Event()]
        views: list[list] = [[], []]
        watchers = [
            asyncio.create_task(watch(server, ready, seen))
            for server, ready, seen in zip(servers, readiness, views, strict=True)
        ]
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readiness)), 15)
        await asyncio.to_thread(force, servers[0])  # on the first server; the worker does the rest
        await asyncio.wait_for(asyncio.gather(*watchers), 50)
        return views

    try:
        views = asyncio.run(scenario())
    finally:
        for server in servers:
            server.stop()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=15)

    steps = {
        (s.target_name, s.action): s.status
        for s in RolloutStep.objects.filter(rollout__release=release).order_by("index")
    }
    assert Release.objects.get(pk=release.pk).status == "succeeded"
    assert sorted(t for t, a in steps if a == "deploy") == HOSTS
    for seen in views:
        assert seen[0] == ("pending_approval", {})  # caught up before anything happened
        # In order: a step never goes back (nor disappears), the release's status only moves forward.
        for before, after in zip(seen, seen[1:], strict=False):
            for step, status in before[1].items():
                assert step in after[1] and RANK[after[1][step]] >= RANK[status], (step, before, after)
        # Every step: each deploy's completion is a state the viewer saw (0, 1, 2, 3, 4 hosts deployed).
        deployed = [sum(1 for (t, a), s in v.items() if a == "deploy" and s == "succeeded") for _, v in seen]
        assert sorted(set(deployed)) == list(range(len(HOSTS) + 1)), deployed
        statuses = [status for status, _ in seen if status]
        assert statuses.index("deploying") < statuses.index("succeeded")
        # The final state, exactly the database's.
        assert seen[-1] == ("succeeded", steps)

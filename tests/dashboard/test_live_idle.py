"""An idle live view stays open: uvicorn in a subprocess, channels-redis on the real Redis, a real WebSocket client."""

import time

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from releases.models import RolloutStep
from tests import factories
from tests.dashboard.test_live import rollout_fixture
from tests.live import LiveSlipway

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_idle_socket_stays_open_and_gets_the_next_event(client):
    assert settings.REDIS_URL, "needs Redis (make test sets REDIS_URL)"
    _, rollout = rollout_fixture()
    client.force_login(factories.UserFactory(username="watcher", is_superuser=True))
    server = LiveSlipway.start(extra_env={"REDIS_URL": settings.REDIS_URL})
    try:
        ws_url = server.url.replace("http://", "ws://") + f"/ws/releases/{rollout.release_id}/"
        with connect(
            ws_url,
            origin=server.url,
            open_timeout=10,
            additional_headers={"Cookie": f"sessionid={client.cookies['sessionid'].value}"},
        ) as ws:
            assert '<header id="release-head"' in ws.recv(timeout=10)  # the page's state, at once
            # Longer than any of the Redis timeouts involved (BZPOPMIN's 5 s, redis-py's socket timeout).
            started = time.monotonic()
            try:
                message = ws.recv(timeout=60)
                pytest.fail(f"unexpected message while idle: {message[:200]}")
            except TimeoutError:
                pass
            except ConnectionClosed as closed:
                pytest.fail(
                    f"idle socket closed after {time.monotonic() - started:.1f} s ({closed}); "
                    f"server log: {server.log_path.read_text()[-1500:]}"
                )
            RolloutStep.objects.create(
                rollout=rollout,
                index=1,
                wave=0,
                target_name="web-1",
                action="deploy",
                version="2.0.0",
                status="running",
            )
            async_to_sync(get_channel_layer().group_send)(
                f"rollout.{rollout.pk}", {"type": "rollout.changed", "rollout_id": rollout.pk}
            )
            html = ws.recv(timeout=10)
        assert (
            html.lstrip().startswith('<section class="card" id="rollout">') and 'data-target="web-1"' in html
        )
        assert "TimeoutError" not in server.log_path.read_text()
    finally:
        server.stop()

"""One ASGI app: HTTP through Django, WebSockets (/ws/) through Channels with session auth."""

import asyncio
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()

from config.checks import refuse_to_start  # noqa: E402

refuse_to_start()  # uvicorn runs no system checks: slipway.E001 stops the process here

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up first)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402

from config.routing import websocket_urlpatterns  # noqa: E402
from environments import agent_asgi  # noqa: E402
from flags.ofrep_asgi import PREFIX, ofrep_app  # noqa: E402
from monitoring import envelope_asgi  # noqa: E402

# Django runs each request's sync code on a thread of its own, each with its own database connection: without a
# bound, a burst of requests (a thousand agents registering at once) opens more connections than the database
# allows. Requests past the bound wait here, holding nothing.
_django_slots = asyncio.Semaphore(settings.WEB_MAX_CONCURRENT_REQUESTS)


async def http_app(scope, receive, send):
    # Flag evaluation is the hottest path: it skips Django's middleware stack (see flags/ofrep_asgi.py).
    path = scope["path"]
    if path == PREFIX or path.startswith(PREFIX + "/"):
        return await ofrep_app(scope, receive, send)
    if agent_asgi.handles(path):  # agents' long-polls and reports, batched (see environments/agent_asgi.py)
        return await agent_asgi.agent_app(scope, receive, send)
    if envelope_asgi.handles(
        path
    ):  # errors from sentry-sdk, written in batches (see monitoring/envelope_asgi.py)
        return await envelope_asgi.envelope_app(scope, receive, send)
    async with _django_slots:
        return await django_asgi_app(scope, receive, send)


application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)

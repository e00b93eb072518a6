"""One ASGI app: HTTP through Django, WebSockets (/ws/) through Channels with session auth."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up first)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from config.routing import websocket_urlpatterns  # noqa: E402
from environments.agent_asgi import PATH as AGENT_WORK  # noqa: E402
from environments.agent_asgi import agent_work_app  # noqa: E402
from flags.ofrep_asgi import PREFIX, ofrep_app  # noqa: E402


async def http_app(scope, receive, send):
    # Flag evaluation is the hottest path: it skips Django's middleware stack (see flags/ofrep_asgi.py).
    path = scope["path"]
    if path == PREFIX or path.startswith(PREFIX + "/"):
        return await ofrep_app(scope, receive, send)
    if path == AGENT_WORK:
        return await agent_work_app(scope, receive, send)
    return await django_asgi_app(scope, receive, send)


application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)

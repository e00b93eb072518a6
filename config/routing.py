"""WebSocket routes (session auth): live views. Any other path is refused cleanly."""

from django.urls import path, re_path

from dashboard.consumers import (
    ApplicationConsumer,
    EnvironmentConsumer,
    FlagConsumer,
    FlagsConsumer,
    InboxConsumer,
    InboxCountConsumer,
    NotFoundConsumer,
    OverviewConsumer,
    ReleaseConsumer,
    RolloutConsumer,
)

websocket_urlpatterns: list = [
    path("ws/releases/<int:pk>/", ReleaseConsumer.as_asgi()),
    path("ws/rollouts/<int:pk>/", RolloutConsumer.as_asgi()),
    path("ws/environments/<int:pk>/", EnvironmentConsumer.as_asgi()),
    path("ws/applications/<int:pk>/", ApplicationConsumer.as_asgi()),
    path("ws/overview/", OverviewConsumer.as_asgi()),
    path("ws/applications/<int:pk>/flags/", FlagsConsumer.as_asgi()),
    path("ws/flags/<int:pk>/", FlagConsumer.as_asgi()),
    path("ws/me/", InboxCountConsumer.as_asgi()),
    path("ws/inbox/", InboxConsumer.as_asgi()),
    re_path(r"", NotFoundConsumer.as_asgi()),
]

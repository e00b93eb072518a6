"""WebSocket routes (session auth): live views. Any other path is refused cleanly."""

from django.urls import path, re_path

from dashboard.consumers import NotFoundConsumer, ReleaseConsumer, RolloutConsumer

websocket_urlpatterns: list = [
    path("ws/releases/<int:pk>/", ReleaseConsumer.as_asgi()),
    path("ws/rollouts/<int:pk>/", RolloutConsumer.as_asgi()),
    re_path(r"", NotFoundConsumer.as_asgi()),
]

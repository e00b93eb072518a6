"""WebSocket routes (session auth): live views."""

from django.urls import path

from dashboard.consumers import RolloutConsumer

websocket_urlpatterns: list = [
    path("ws/rollouts/<int:pk>/", RolloutConsumer.as_asgi()),
]

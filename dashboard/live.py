"""The one helper that publishes to the channel layer. Messages carry ids only; consumers re-read."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from functools import partial

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction


def publish_on_commit(group: str, type: str, **ids: int | str) -> None:
    message = {"type": type, **ids}
    json.dumps(message)  # fail in the caller, not later inside a callback
    transaction.on_commit(partial(_send, group, message), robust=True)


def publish_to_users_on_commit(users: Callable[[], Iterable[int]], type: str, **ids: int | str) -> None:
    """To each `user.<id>` group of the ids `users()` gives after commit (who sees what, as it is then)."""
    message = {"type": type, **ids}
    json.dumps(message)
    transaction.on_commit(partial(_send_to_users, users, message), robust=True)


def _send_to_users(users: Callable[[], Iterable[int]], message: dict) -> None:
    for user_id in sorted(users()):
        _send(f"user.{int(user_id)}", message)


def _send(group: str, message: dict) -> None:
    layer = get_channel_layer()
    if layer is not None:
        async_to_sync(layer.group_send)(group, message)

"""The one helper that publishes to the channel layer. Messages carry ids only; consumers re-read."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Iterable
from functools import partial

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import transaction


def publish_on_commit(group: str, type: str, **ids: int | str) -> None:
    # `event` names this one publication: the consumers of one process that receive it render it once.
    message = {"type": type, **ids, "event": uuid.uuid4().hex}
    json.dumps(message)  # fail in the caller, not later inside a callback
    transaction.on_commit(partial(_send, group, message), robust=True)


def publish_to_users_on_commit(users: Callable[[], Iterable[int]], type: str, **ids: int | str) -> None:
    """To each `user.<id>` group of the ids `users()` gives after commit (who sees what, as it is then)."""
    message = {"type": type, **ids, "event": uuid.uuid4().hex}
    json.dumps(message)
    transaction.on_commit(partial(_send_to_users, users, message), robust=True)


def _send_to_users(users: Callable[[], Iterable[int]], message: dict) -> None:
    for user_id in sorted(users()):
        _send(f"user.{int(user_id)}", message)


# The ASGI server's event loop, where the in-memory layer's consumers wait (set by the first live consumer).
_serving_loop: asyncio.AbstractEventLoop | None = None


def serving_on(loop: asyncio.AbstractEventLoop) -> None:
    global _serving_loop
    _serving_loop = loop


def _send(group: str, message: dict) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    loop = _serving_loop
    if isinstance(layer, InMemoryChannelLayer) and loop is not None and loop.is_running():
        # The in-memory layer's queues belong to the server's loop: a put from another loop (the in-process
        # worker's thread) would not wake the consumer waiting there until something else did — up to a second.
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if here is not loop:
            asyncio.run_coroutine_threadsafe(layer.group_send(group, message), loop).result(timeout=10)
            return
    async_to_sync(layer.group_send)(group, message)

"""The one helper that publishes to the channel layer. Messages carry ids only; consumers re-read."""

from __future__ import annotations

import json
from functools import partial

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction


def publish_on_commit(group: str, type: str, **ids: int | str) -> None:
    message = {"type": type, **ids}
    json.dumps(message)  # fail in the caller, not later inside a callback
    transaction.on_commit(partial(_send, group, message), robust=True)


def _send(group: str, message: dict) -> None:
    layer = get_channel_layer()
    if layer is not None:
        async_to_sync(layer.group_send)(group, message)

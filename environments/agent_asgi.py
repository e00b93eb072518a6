"""The agents' long-poll as a lean ASGI route (dispatched in config/asgi.py ahead of Django's middleware),
so a waiting agent holds neither a thread nor a database connection."""

from __future__ import annotations

import asyncio
import json
import time
from types import SimpleNamespace
from urllib.parse import parse_qs

from asgiref.sync import sync_to_async

from environments.agent_api import MAX_WAIT, POLL, _claim_job, _target_for

PATH = "/api/v1/agent/work"


async def _respond(send, status: int, body: dict | None = None) -> None:
    payload = json.dumps(body).encode() if body is not None else b""
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def _close_connection() -> None:
    from django.db import connection

    connection.close()


async def agent_work_app(scope, receive, send) -> None:
    if scope["method"] != "GET":
        return await _respond(send, 405, {"detail": "Use GET."})
    headers = {k.decode("latin-1").title(): v.decode("latin-1") for k, v in scope["headers"]}
    request = SimpleNamespace(headers=headers)
    target = await sync_to_async(_lookup, thread_sensitive=False)(request)
    if target is None:
        return await _respond(send, 401, {"detail": "Unknown agent token: register again."})
    try:
        wait = min(float(parse_qs(scope.get("query_string", b"").decode()).get("wait", ["20"])[0]), MAX_WAIT)
    except ValueError:
        return await _respond(send, 400, {"detail": "wait must be a number of seconds.", "field": "wait"})
    deadline = time.monotonic() + max(wait, 0)
    while True:
        job = await sync_to_async(_claim, thread_sensitive=False)(target)
        if job is not None:
            return await _respond(send, 200, {"job": job})
        if time.monotonic() >= deadline:
            await send({"type": "http.response.start", "status": 204, "headers": []})
            return await send({"type": "http.response.body", "body": b""})
        await asyncio.sleep(POLL)


def _lookup(request):
    try:
        return _target_for(request)
    finally:
        _close_connection()


def _claim(target):
    from django.utils import timezone

    from environments.models import Target

    try:
        Target.objects.filter(pk=target.pk).update(last_seen=timezone.now(), status=Target.Status.ONLINE)
        return _claim_job(target)
    finally:
        _close_connection()

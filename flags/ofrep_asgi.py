"""The OFREP evaluation path as a lean ASGI app, dispatched in `config/asgi.py` before Django's stack.

The only OFREP server (the protocol's shapes are in `flags/ofrep.py`): bearer token pinned to an environment with
`flags:read` whose user still has a role there, CORS exposing ETag, OFREP error shapes. The hot path touches no database: the
token and the compiled snapshot are cached in the process and refreshed in the background (the token every
`TOKEN_TTL` seconds; the snapshot when the environment's `flags_version` moves, checked about once a second), and
evaluation counts are batched. Rate limits (per token, and per address without a valid token) are token buckets in this
process's memory: `_Limits`.

Access changes apply at once: a cached token check remembers its application's `access_version` (read in the
same query as the token and its user's roles). Revoking a role or a pinned token moves that version; this process
learns it on commit, other processes within `releases.access.CHECK_EVERY` (a background read), and a request whose
check is older than the version it knows waits for a fresh check: 403 once the user has no role there.
"""

from __future__ import annotations

import asyncio
import math
import time

import orjson
from asgiref.sync import sync_to_async

from config.lean_asgi import read_body
from config.ratelimit import LocalBuckets, Rate
from flags.engine import ErrorCode, evaluate, evaluate_all
from flags.ofrep import (
    CORS_HEADERS,
    PREFIX,
    STATUS_OF_ERROR,
    bulk_answer,
    failure,
    general_error,
    parse_context,
    success,
)
from flags.snapshots import snapshots
from flags.usage import usage
from releases import access
from releases.models import Scope

TOKEN_TTL = 10.0
# key → (checked at, environment id, refusal, application id, the application's access_version at the check)
_tokens: dict[str, tuple[float, int | None, str | None, int | None, int]] = {}


def _lookup_token(key: str) -> tuple[int | None, str | None, int | None, int]:
    """(environment id, refusal, application id, access version) for a token key: one query."""
    from config.api import authenticate_token
    from releases.permissions import pinned_token_refusal

    token = authenticate_token(key)
    if token is None:
        return None, "Invalid or revoked token.", None, 0
    if not token.has_scope(Scope.FLAGS_READ) or token.environment_id is None:
        return None, "Use a flags:read token pinned to an environment (--environment app/env).", None, 0
    application = token.environment.application
    access.saw(application.pk, application.access_version, checked=True)
    refusal = pinned_token_refusal(token)
    return (None if refusal else token.environment_id), refusal, application.pk, application.access_version


_refreshing: set = set()


def _refresh_in_background(name, coroutine_factory) -> None:
    """One refresh at a time per item; requests keep using the cached value meanwhile (no thundering herd)."""
    if name in _refreshing:
        return
    _refreshing.add(name)

    async def run():
        try:
            await coroutine_factory()
        finally:
            _refreshing.discard(name)

    asyncio.get_running_loop().create_task(run())


_lookups: dict[str, asyncio.Task] = {}


def _behind(entry) -> bool:
    """True when this process knows of an access change newer than the entry's check."""
    application_id, version = entry[3], entry[4]
    known = access.known(application_id) if application_id is not None else None
    return known is not None and known[0] > version


async def _lookup_and_cache(key: str):
    # Requests for one key share one lookup: after an access change, a burst waits for a single query.
    task = _lookups.get(key)
    if task is None:
        task = _lookups[key] = asyncio.get_running_loop().create_task(_lookup_into_cache(key))
    return await asyncio.shield(task)


async def _lookup_into_cache(key: str):
    try:
        checked_at = time.monotonic()
        environment_id, refusal, application_id, version = await sync_to_async(
            _lookup_token, thread_sensitive=False
        )(key)
        entry = _tokens[key] = (checked_at, environment_id, refusal, application_id, version)
        return entry
    finally:
        _lookups.pop(key, None)


async def _checked(key: str):
    entry = await _lookup_and_cache(key)
    if _behind(
        entry
    ):  # the shared lookup began before a change this process has seen since: one more, after it
        entry = await _lookup_and_cache(key)
    return entry


async def _token(key: str) -> tuple[int | None, str | None]:
    entry = _tokens.get(key)
    if entry is None or _behind(entry):
        entry = await _checked(key)
        return entry[1], entry[2]
    checked_at, environment_id, refusal, application_id, _ = entry
    now = time.monotonic()
    if application_id is not None:
        known = access.known(application_id)
        if known is None or now - known[1] >= access.CHECK_EVERY:
            _refresh_in_background(
                ("access", application_id),
                lambda: sync_to_async(access.refresh, thread_sensitive=False)([application_id]),
            )
    if now - checked_at >= TOKEN_TTL:
        _refresh_in_background(("token", key), lambda: _lookup_and_cache(key))
    return environment_id, refusal


async def _snapshot(environment_id: int):
    entry = snapshots._entries.get(environment_id)
    if entry is None:
        return await sync_to_async(snapshots.get, thread_sensitive=False)(environment_id)
    if time.monotonic() - entry[1] >= 1.0:
        _refresh_in_background(
            ("snapshot", environment_id),
            lambda: sync_to_async(snapshots.get, thread_sensitive=False)(environment_id),
        )
    return entry[2]


async def _send(send, status: int, body: bytes = b"", extra: list | None = None) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *CORS_HEADERS,
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _Limits:
    """OFREP's rate limits, in this process's memory (no network round trip on the hot path): per token, its share of
    `OFREP_RATE_LIMIT` (divided by `WEB_PROCESSES`); per address for requests without a valid token."""

    def __init__(self):
        self.built_from = None

    def get(self):
        from django.conf import settings

        config = (
            settings.OFREP_RATE_LIMIT,
            settings.OFREP_RATE_BURST,
            settings.WEB_PROCESSES,
            settings.API_ANONYMOUS_RATE_LIMIT,
            settings.API_ANONYMOUS_RATE_BURST,
        )
        if config != self.built_from:  # settings are fixed in production; tests change them
            token_rate, anonymous_rate = Rate.parse(config[0], config[1]), Rate.parse(config[3], config[4])
            self.tokens = LocalBuckets(token_rate.divided(config[2])) if token_rate else None
            self.addresses = LocalBuckets(anonymous_rate.divided(config[2])) if anonymous_rate else None
            self.built_from = config
        return self


_limits = _Limits()


async def _rate_limited(send, wait: float) -> None:
    seconds = max(1, math.ceil(wait))
    await _send(
        send,
        429,
        general_error(f"Rate limit exceeded: retry in {seconds} s."),
        [(b"retry-after", str(seconds).encode())],
    )


def _address_wait(scope) -> float:
    addresses = _limits.get().addresses
    return addresses.take((scope.get("client") or ("unknown",))[0]) if addresses is not None else 0.0


async def ofrep_app(scope, receive, send) -> None:
    from django.conf import settings

    method = scope["method"]
    if method == "OPTIONS":
        return await _send(send, 204)
    if method != "POST":
        return await _send(send, 405, general_error("Use POST."))
    headers = dict(scope["headers"])
    scheme, _, key = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        if wait := _address_wait(scope):
            return await _rate_limited(send, wait)
        return await _send(send, 401, general_error("Send Authorization: Bearer <token>."))
    cached = _tokens.get(key)
    if (cached is None or cached[2]) and (
        wait := _address_wait(scope)
    ):  # an unknown key costs a query: per address
        return await _rate_limited(send, wait)
    environment_id, refusal = await _token(key)
    if refusal:
        status = 401 if refusal.startswith("Invalid") else 403
        return await _send(send, status, general_error(refusal))
    limits = _limits.get()
    if limits.tokens is not None and (wait := limits.tokens.take(key)):
        return await _rate_limited(send, wait)
    raw = await read_body(receive, settings.API_MAX_BODY_BYTES)
    flag_key = scope["path"][len(PREFIX) + 1 :] if scope["path"].startswith(PREFIX + "/") else None
    if raw is None:
        return await _send(send, 413, general_error("Body over 1 MB."))
    context, problem = parse_context(raw)
    if problem:
        body = {"errorCode": ErrorCode.INVALID_CONTEXT, "errorDetails": problem}
        if flag_key:
            body["key"] = flag_key
        return await _send(send, 400, orjson.dumps(body))
    snapshot = await _snapshot(environment_id)
    if flag_key:
        resolution = evaluate(snapshot, flag_key, context)
        if resolution.error_code:
            return await _send(
                send,
                STATUS_OF_ERROR.get(resolution.error_code, 400),
                orjson.dumps(failure(flag_key, resolution)),
            )
        usage.add_async(environment_id, [(flag_key, resolution)])
        return await _send(send, 200, orjson.dumps(success(flag_key, resolution)))
    body, etag, counted = bulk_answer(environment_id, snapshot.version, evaluate_all(snapshot, context))
    usage.count_async(counted)
    if headers.get(b"if-none-match") == etag:
        await send(
            {"type": "http.response.start", "status": 304, "headers": [*CORS_HEADERS, (b"etag", etag)]}
        )
        return await send({"type": "http.response.body", "body": b""})
    return await _send(send, 200, body, [(b"etag", etag)])

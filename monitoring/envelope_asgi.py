"""Sentry's ingestion protocol as a lean ASGI route (dispatched in config/asgi.py before Django's stack):
`POST /api/<application id>/envelope/` (what sentry-sdk 2.x sends) and the older `POST /api/<id>/store/`.

The key comes from `X-Sentry-Auth: Sentry sentry_key=…` (or `?sentry_key=`); keys and their application's
environments are cached in the process for `KEY_TTL` seconds (a rotated key stops working within about that).
Errors are stored by one writer thread per process in rounds: every error that arrived while the last round was
being written goes into the next one, in one transaction (`do_ingest_errors`). A request is answered once its
round has committed, `{"id": "<event id>"}` like Sentry; item types Slipway does not use (sessions,
transactions, client reports…) are accepted and ignored.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs

import orjson
from asgiref.sync import sync_to_async

from config import jsonbody
from config.lean_asgi import read_body
from monitoring.parsing import BadInput, ErrorIn, decompress, error_from_sentry, json_of, parse_envelope

log = logging.getLogger("slipway.monitoring")
PATH = re.compile(r"^/api/(\d+)/(envelope|store)/?$")
MAX_BODY = 1024 * 1024  # as sent (compressed or not)
MAX_INFLATED = 4 * 1024 * 1024
MAX_ROUND = 5_000  # errors written in one transaction at most
KEY_TTL = 10.0
ENVIRONMENTS_STALE = 1.0  # an unknown environment name re-reads the key's environments if older than this
_AUTH_PAIR = re.compile(r"(\w+)\s*=\s*([^,\s]*)")
CORS = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-allow-methods", b"POST, OPTIONS"),
    (
        b"access-control-allow-headers",
        b"Content-Type, Content-Encoding, X-Sentry-Auth, sentry-trace, baggage",
    ),
]


def handles(path: str) -> bool:
    return path.startswith("/api/") and PATH.match(path) is not None


# --- keys --------------------------------------------------------------------------------------------------------

_keys: dict[str, tuple[float, object]] = {}


def _lookup(public_key: str):
    from monitoring.selectors import ingest_key_info

    return ingest_key_info(public_key)


async def _key_info(public_key: str, *, fresher_than: float | None = None):
    cached = _keys.get(public_key)
    limit = KEY_TTL if fresher_than is None else fresher_than
    if cached is not None and time.monotonic() - cached[0] < limit:
        return cached[1]
    info = await sync_to_async(_lookup, thread_sensitive=False)(public_key)
    _keys[public_key] = (time.monotonic(), info)
    if len(_keys) > 10_000:  # guessed keys must not grow the cache without bound
        _keys.pop(next(iter(_keys)))
    return info


def sentry_key(headers: dict[bytes, bytes], query_string: bytes) -> str:
    for name in (b"x-sentry-auth", b"authorization"):
        value = headers.get(name, b"").decode("latin-1")
        if value[:7].lower() == "sentry ":
            pairs = dict(_AUTH_PAIR.findall(value[7:]))
            if pairs.get("sentry_key"):
                return pairs["sentry_key"]
    if query_string:
        return parse_qs(query_string.decode("latin-1")).get("sentry_key", [""])[0]
    return ""


# --- the writer --------------------------------------------------------------------------------------------------


class ErrorWriter:
    """One thread per process writes errors in rounds; each request waits for the round that holds its errors."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="error-writer")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._pending: list[tuple[list, asyncio.Future]] = []

    async def write(self, rows: list) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._wake = loop, asyncio.Event()
            loop.create_task(self._run())
        done = loop.create_future()
        self._pending.append((rows, done))
        self._wake.set()
        await done

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            taken, size = 0, 0
            while taken < len(self._pending) and (
                size == 0 or size + len(self._pending[taken][0]) <= MAX_ROUND
            ):
                size += len(self._pending[taken][0])
                taken += 1
            batch, self._pending = self._pending[:taken], self._pending[taken:]
            if self._pending:
                self._wake.set()
            if not batch:
                continue
            try:
                await loop.run_in_executor(self._executor, _store, [row for rows, _ in batch for row in rows])
            except Exception as error:
                log.exception("storing %s errors failed", size)
                for _, done in batch:
                    if not done.done():
                        done.set_exception(error)
                continue
            for _, done in batch:
                if not done.done():
                    done.set_result(None)


def _store(rows: list) -> None:
    from monitoring.services import do_ingest_errors

    try:
        do_ingest_errors(rows)
    except Exception:
        from django.db import connection

        connection.close()  # a broken connection is replaced on the next round
        raise


WRITER = ErrorWriter()


# --- the app -----------------------------------------------------------------------------------------------------


async def envelope_app(scope, receive, send) -> None:
    method = scope["method"]
    if method == "OPTIONS":
        return await _respond(send, 204, None)
    if method != "POST":
        return await _respond(send, 405, {"detail": "Use POST."})
    match = PATH.match(scope["path"])
    project_id, endpoint = int(match.group(1)), match.group(2)
    headers = dict(scope["headers"])
    public_key = sentry_key(headers, scope.get("query_string", b""))
    if not public_key:
        return await _respond(
            send, 401, {"detail": "Send X-Sentry-Auth: Sentry sentry_key=<key> (the DSN's key)."}
        )
    info = await _key_info(public_key)
    if info is None or info.application_id != project_id:
        return await _respond(
            send,
            401,
            {
                "detail": "Unknown or revoked key for this project: copy the DSN from "
                "the application's page again."
            },
        )
    raw = await read_body(receive, MAX_BODY)
    if raw is None:
        return await _respond(send, 413, {"detail": f"The body is larger than {MAX_BODY // 1024} KiB."})
    try:
        body = decompress(raw, headers.get(b"content-encoding", b"").decode("latin-1"), MAX_INFLATED)
        if endpoint == "store":
            event = json_of(body)
            if not isinstance(event, dict):
                raise BadInput("The event is not a JSON object.", field="event")
            events = [(0, event)]
        else:
            events = parse_envelope(body)
        errors = [error_from_sentry(event, info.slug, item=number) for number, event in events]
        rows = await _locate(public_key, info, errors, [n for n, _ in events])
    except jsonbody.BodyError as error:
        return await _respond(
            send, 400, {"detail": f"The event is not JSON: {error.detail}", "field": "event"}
        )
    except BadInput as bad:
        body = {"detail": bad.detail}
        if bad.field:
            body["field"] = bad.field
        if bad.item is not None:
            body["item"] = bad.item
        return await _respond(send, bad.status, body)
    if rows:
        try:
            await WRITER.write(rows)
        except asyncio.CancelledError:
            raise
        except Exception:
            return await _respond(send, 503, {"detail": "Slipway could not store this now; try again."})
    return await _respond(send, 200, {"id": errors[0].event_id} if errors else {})


async def _locate(public_key: str, info, errors: list[ErrorIn], items: list[int]) -> list:
    from monitoring.services import Located

    rows = []
    for error, item in zip(errors, items, strict=True):
        environment_id = info.environments.get(error.environment)
        if environment_id is None:
            info = await _key_info(public_key, fresher_than=ENVIRONMENTS_STALE)  # created since we cached it?
            if info is None:
                raise BadInput(
                    "This key was revoked: copy the DSN from the application's page again.", status=401
                )
            environment_id = info.environments.get(error.environment)
        if environment_id is None:
            known = ", ".join(sorted(info.environments))
            raise BadInput(
                f"Item {item} (event): '{error.environment}' is not an environment of {info.slug} "
                f"(it has: {known or 'none yet'}). Set environment= in sentry_sdk.init.",
                field="environment",
                item=item,
            )
        rows.append(Located(info.application_id, environment_id, error))
    return rows


ERROR_CODES = {400: "invalid", 401: "not_authenticated", 403: "forbidden", 404: "not_found", 413: "too_large"}
ERROR_CODES |= {415: "unsupported_media_type", 429: "rate_limited"}


async def _respond(send, status: int, body: dict | None) -> None:
    if status >= 400:
        log.warning("error ingestion refused (%s): %s", status, (body or {}).get("detail"))
        fields = dict(body or {})
        code = fields.pop("code", ERROR_CODES.get(status, "invalid"))
        # the API's error shape: {"code", "detail"}, plus "field" and {<field>: [detail]} for a field's error
        body = jsonbody.error_body(code, fields.pop("detail", ""), field=fields.pop("field", None), **fields)
    payload = orjson.dumps(body) if body is not None else b""
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()), *CORS]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})

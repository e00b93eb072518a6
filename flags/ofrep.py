"""The OpenFeature Remote Evaluation Protocol's shapes: requests parsed, results and errors as OFREP writes them.

Served only by the lean ASGI route in `flags/ofrep_asgi.py` (dispatched by `config/asgi.py` before Django's
stack): one implementation, and the tests drive that one. This module holds what the protocol says, free of
any transport.
"""

from __future__ import annotations

import hashlib

import orjson

from config import jsonbody
from flags.engine import ErrorCode, Resolution

PREFIX = "/ofrep/v1/evaluate/flags"
CORS_HEADERS = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-allow-methods", b"POST, OPTIONS"),
    (b"access-control-allow-headers", b"Authorization, Content-Type, If-None-Match"),
    (b"access-control-expose-headers", b"ETag, Retry-After"),
    (b"access-control-max-age", b"600"),
]
STATUS_OF_ERROR = {
    ErrorCode.FLAG_NOT_FOUND: 404,
    ErrorCode.INVALID_CONTEXT: 400,
    ErrorCode.PARSE_ERROR: 400,
    ErrorCode.TARGETING_KEY_MISSING: 400,
    ErrorCode.TYPE_MISMATCH: 400,
}


def success(key: str, r: Resolution) -> dict:
    return {
        "key": key,
        "value": r.value,
        "reason": r.reason,
        "variant": r.variant,
        "metadata": dict(r.metadata or {}),
    }


def failure(key: str, r: Resolution) -> dict:
    return {"key": key, "errorCode": r.error_code, "errorDetails": r.error_details or r.error_code}


def general_error(details: str) -> bytes:
    return orjson.dumps({"errorCode": "GENERAL", "errorDetails": details})


def parse_context(raw: bytes):
    """(context, None) or (None, what is wrong)."""
    try:
        # Bounded like every body (config/jsonbody.py): nesting, 64-bit integers, finite floats, no NUL.
        body = jsonbody.parse(raw, max_bytes=len(raw) or 1, empty={})
    except jsonbody.BodyError as error:
        return None, f"The body is not acceptable JSON: {error.detail}"
    if not isinstance(body, dict):
        return None, "The body must be an object with a `context` object."
    context = body.get("context", {})
    if not isinstance(context, dict):
        return None, "`context` must be an object."
    return context, None


def bulk_body(snapshot_version: str, results: dict[str, Resolution]) -> tuple[bytes, bytes]:
    """The bulk answer and its ETag: the ETag covers the flags and the context, so the same both → 304."""
    body = orjson.dumps(
        {"flags": [failure(k, r) if r.error_code else success(k, r) for k, r in results.items()]}
    )
    return body, _etag(snapshot_version, body)


def _etag(snapshot_version: str, body: bytes) -> bytes:
    return (
        '"' + hashlib.blake2b(snapshot_version.encode() + body, digest_size=12).hexdigest() + '"'
    ).encode()


# A compiled snapshot answers with resolutions made once (flags/engine: evaluation allocates nothing on the common
# paths), so one flag's entry in a bulk answer is the same bytes each time that resolution is served: written once
# per snapshot, with the evaluation counter's key. Keyed by the resolution's id, the entry holds the resolution
# itself, so the id cannot be reused while the entry lives; errors (made per call) are written each time.
MAX_PIECES = 20_000  # per environment; a snapshot has a handful of resolutions per flag
_Piece = tuple[Resolution, str, bytes, tuple[int, str, str]]
_pieces: dict[int, tuple[str, dict[int, _Piece]]] = {}  # environment id → (snapshot version, pieces)


def bulk_answer(
    environment_id: int, snapshot_version: str, results: dict[str, Resolution]
) -> tuple[bytes, bytes, list[tuple[int, str, str]]]:
    """`bulk_body`'s answer and ETag (the same bytes), and the evaluation counts' keys `(environment id, flag,
    variant)` of the flags answered without error."""
    cached = _pieces.get(environment_id)
    if cached is None or cached[0] != snapshot_version:
        cached = _pieces[environment_id] = (snapshot_version, {})
    pieces = cached[1]
    parts: list[bytes] = []
    counted: list[tuple[int, str, str]] = []
    for key, resolution in results.items():
        piece = pieces.get(id(resolution))
        if piece is None or piece[0] is not resolution or piece[1] != key:
            if resolution.error_code:
                parts.append(orjson.dumps(failure(key, resolution)))
                continue
            piece = (
                resolution,
                key,
                orjson.dumps(success(key, resolution)),
                (environment_id, key, resolution.variant or ""),
            )
            if len(pieces) < MAX_PIECES:
                pieces[id(resolution)] = piece
        parts.append(piece[2])
        counted.append(piece[3])
    body = b'{"flags":[' + b",".join(parts) + b"]}"
    return body, _etag(snapshot_version, body), counted

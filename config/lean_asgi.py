"""Helpers for the lean ASGI routes that skip Django's middleware (OFREP evaluation, the agents' hot routes)."""

from __future__ import annotations


async def read_body(receive, limit: int) -> bytes | None:
    """The request body, or None when it is larger than `limit` bytes (the caller answers 413)."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)

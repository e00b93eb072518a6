"""One bounded JSON body parser for every HTTP route: size, nesting, numbers and text checked before any caller
(or the database) sees the value. Pure: no Django import, so the lean ASGI routes and the Django views share it.

    try:
        body = jsonbody.parse(raw, max_bytes=1024 * 1024)
    except jsonbody.BodyError as error:
        return error.status, error.as_json()        # 413 too_large, 400 invalid_json / too_deep / out_of_range

`error_body` builds every route's error body (the API's and the lean ASGI routes'), so they share one shape.

Nesting is measured without recursion (brackets outside strings, innermost pairs peeled in C), so a 100,000-deep
array costs a few regex passes, never a RecursionError. Integers must fit a 64-bit signed int (PostgreSQL's
bigint), floats must be finite, strings must be valid Unicode without NUL (neither can be stored in PostgreSQL
text): a value that passes can be written anywhere.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 32
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)

_STRINGS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_INNERMOST = re.compile(rb"[\[{][\]}]")
_SUSPECT_ESCAPE = re.compile(
    rb"\\u(?:0000|[dD][89a-fA-F])"
)  # NUL or a surrogate: the only escapes to look at
# orjson parses 10x faster than the standard parser with its hooks, and refuses by itself what the hooks refuse
# (infinite floats, unpaired surrogates, invalid UTF-8) except two things it lets through: a NUL escape, and an
# integer past 64 bits (read as a float past 2**64, or an int up to 2**64). A body without a NUL escape whose value
# holds no number that large is taken as orjson reads it; any other body goes through the standard parser, which
# names what is wrong (tests/test_jsonbody.py checks both paths agree).
_NUL_ESCAPE = b"\\u0000"


class BodyError(Exception):
    """A body refused, with the HTTP status and the project's `{"code", "detail"}` error shape."""

    def __init__(self, status: int, code: str, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.field = status, code, detail, field

    def as_json(self) -> dict[str, Any]:
        return error_body(self.code, self.detail, field=self.field)


def too_large(max_bytes: int = MAX_BYTES) -> BodyError:
    """The 413 of a body over `max_bytes`, for routes that refuse it while reading (before `parse`)."""
    return BodyError(413, "too_large", f"The body is larger than {_size(max_bytes)}.")


def error_body(code: str, detail: str, *, field: str | None = None, **extra: Any) -> dict[str, Any]:
    """The one error body of every route, the API's and the lean ASGI ones alike (OpenAPI's `Error`):
    `{"code", "detail"}`; an error about one field adds `"field"` and, as DRF keys its own, `{<field>: [detail]}`;
    `extra` adds what the condition names (`index`, `templates`, …). `config.errors.SlipwayError.as_json`, the
    agents' routes (`environments.jobs.refused`) and the envelope route all build their bodies here."""
    body: dict[str, Any] = {"code": code, "detail": detail}
    if field:
        body["field"] = field
        body.setdefault(field, [detail])
    body.update(extra)
    return body


def parse(
    raw: bytes | str,
    *,
    max_bytes: int = MAX_BYTES,
    max_depth: int = MAX_DEPTH,
    empty: Any = None,
    replace_nul: bool = False,
) -> Any:
    """The JSON value of `raw` (`empty` for an empty body), or BodyError.

    `replace_nul`: NUL characters in strings become U+FFFD instead of refusing the body (for free text such as a
    command's output, where refusing would lose the whole report).
    """
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    if len(raw) > max_bytes:
        raise too_large(max_bytes)
    if not raw.strip():
        return empty
    if deeper_than(raw, max_depth):
        raise BodyError(400, "too_deep", f"The JSON is nested more than {max_depth} levels deep.")
    if _NUL_ESCAPE not in raw:
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass  # the standard parser below says why
        else:
            if _numbers_fit(value):
                return value
    try:
        value = json.loads(raw, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except (ValueError, RecursionError) as error:  # RecursionError: unbalanced input the scan let through
        raise BodyError(400, "invalid_json", f"The body is not valid JSON: {_reason(error)}.") from None
    if _SUSPECT_ESCAPE.search(raw):
        value = _clean_strings(value, replace_nul)
    return value


def _numbers_fit(value: Any) -> bool:
    """Whether every number in orjson's `value` is one the standard parser would have given: integers within 64
    bits signed, floats below 2**63 (a larger one may have been an integer too long for orjson). Without recursion."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = item.__class__
        if kind is dict:
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
        elif kind is int:
            if not INT64_MIN <= item <= INT64_MAX:
                return False
        elif kind is float and not -_FLOAT_BOUND < item < _FLOAT_BOUND:
            return False
    return True


_FLOAT_BOUND = float(2**63)


def deeper_than(raw: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether the arrays and objects of `raw` nest more than `limit` levels deep.

    Strings are blanked, every other byte but brackets dropped, then the innermost pairs peeled off one level per
    pass (in C); at most `limit` + 1 passes. Brackets that never pair (not JSON) count only past the limit.
    """
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    brackets, peeled = _STRINGS.sub(b"", raw).translate(None, _NOT_BRACKETS), 1
    for _ in range(limit):
        brackets, peeled = _INNERMOST.subn(b"", brackets)
        if not brackets or not peeled:
            break
    return len(brackets) > 0 and (peeled > 0 or len(brackets) > limit)


def positive_id(value: Any, field: str, *, status: int = 400) -> int:
    """`value` as a database id: an int (not a bool, not a float) from 1 to 2**63 - 1, or BodyError."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= INT64_MAX:
        raise BodyError(
            status,
            "invalid" if status == 400 else "not_found",
            f"{field}: a positive integer id below 2**63.",
            field=field,
        )
    return value


def id_from_path(text: str) -> int | None:
    """A URL segment as a database id (ASCII digits, 1 to 2**63 - 1), or None: no such row can exist."""
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        return None
    value = int(text)
    return value if 0 < value <= INT64_MAX else None


# --- hooks --------------------------------------------------------------------------------------


def _int(text: str) -> int:
    if len(text.lstrip("-")) > 19 or not INT64_MIN <= (value := int(text)) <= INT64_MAX:
        raise BodyError(400, "out_of_range", f"The number {text[:30]} does not fit a 64-bit integer.")
    return value


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BodyError(400, "out_of_range", f"The number {text[:30]} is too large.")
    return value


def _constant(name: str) -> float:
    raise BodyError(400, "invalid_json", f"{name} is not a JSON number.")


def _clean_strings(value: Any, replace_nul: bool) -> Any:
    """Refuse lone surrogates; refuse or replace NUL — in keys and values, without recursion."""

    def clean(text: str) -> str:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise BodyError(
                400, "invalid_json", "A string holds an unpaired surrogate (\\ud800–\\udfff)."
            ) from None
        if "\x00" in text:
            if not replace_nul:
                raise BodyError(400, "invalid_json", "A string holds a NUL character (\\u0000).")
            text = text.replace("\x00", "\ufffd")
        return text

    if isinstance(value, str):
        return clean(value)
    stack = [value] if isinstance(value, list | dict) else []
    while stack:
        container = stack.pop()
        items = list(container.items()) if isinstance(container, dict) else list(enumerate(container))
        if isinstance(container, dict):
            container.clear()
        for key, item in items:
            if isinstance(item, str):
                item = clean(item)
            elif isinstance(item, list | dict):
                stack.append(item)
            container[clean(key) if isinstance(key, str) else key] = item  # type: ignore[index]
    return value


def _reason(error: Exception) -> str:
    if isinstance(error, RecursionError):
        return "nested too deeply"
    if isinstance(error, UnicodeDecodeError):
        return "not UTF-8"
    return str(error).split(":")[0] if isinstance(error, json.JSONDecodeError) else "unreadable"


def _size(limit: int) -> str:
    if limit % (1024 * 1024) == 0:
        return f"{limit // (1024 * 1024)} MB"
    return f"{limit // 1024} KiB" if limit % 1024 == 0 else f"{limit} bytes"

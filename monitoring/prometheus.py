"""Prometheus' HTTP API as an analysis source: query templates, escaping, and a client that never raises or hangs.

No Django import. :func:`query_range` and :func:`query` return a :class:`Fetched`, whatever happens: the points
Prometheus returned, or ``missing`` saying in words why there is no data (connection refused, timed out after
2 s, HTTP 503, ``status: error``, no series, only NaN). Each call runs in its own daemon thread and the caller
waits at most ``timeout`` seconds for it, so a server that accepts the connection and then trickles bytes, or a
host name that takes a minute to resolve, cannot hold an analysis up.

Query templates (``sum(rate(http_errors{version="{{version}}"}[1m]))``) take three placeholders, each of which
must stand inside a double-quoted PromQL string (a label matcher's value), checked when a template is saved:

* ``{{version}}`` and ``{{environment}}``: the value, escaped for a double-quoted string; use them with ``=``;
* ``{{target}}``: the targets as a regular expression (each name's RE2 metacharacters escaped, joined by ``|``;
  ``.*`` when no target is named), then escaped for the string; use it with ``=~``.

Everything outside printable ASCII is written as ``\\u`` escapes, so no value (a version like ``1.4.0"}``, a
newline, U+FFFD, which Prometheus' lexer mistakes for bad UTF-8) can end the string early or break the query.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit, urlunsplit

import httpx
import orjson

__all__ = [
    "PLACEHOLDERS",
    "Fetched",
    "PrometheusConfig",
    "QueryInvalid",
    "check_query_template",
    "escape_regex",
    "escape_string",
    "query",
    "query_range",
    "render_query",
    "shown_url",
]

PLACEHOLDERS = ("version", "environment", "target")
MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_POINTS = 100_000  # across all series of one answer
_RE2_SPECIAL = frozenset(r"\.+*?()|[]{}^$")


class QueryInvalid(ValueError):
    """A query template that cannot be rendered safely; ``position`` is 0-based."""

    def __init__(self, message: str, *, position: int) -> None:
        self.message = message
        self.position = position
        super().__init__(f"{message} at position {position + 1}")


@dataclass(frozen=True, slots=True, kw_only=True)
class PrometheusConfig:
    url: str
    timeout: float = 5.0
    bearer_token: str = ""
    username: str = ""
    password: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Fetched:
    """What a source returned for one query: points (epoch seconds, value) sorted by time, or why there are none."""

    query: str
    points: tuple[tuple[float, float], ...] = ()
    series: int = 0
    dropped: int = 0  # NaN or infinite values left out
    missing: str | None = None
    labels: tuple[dict[str, str], ...] = field(default=(), repr=False)

    @property
    def values(self) -> list[float]:
        return [v for _, v in self.points]


# --------------------------------------------------------------------------- templates


def escape_string(value: str) -> str:
    """`value` as the inside of a double-quoted PromQL string: printable ASCII as is, `\\` and `"` escaped,
    everything else as `\\uXXXX` / `\\UXXXXXXXX`."""
    out = []
    for char in value:
        code = ord(char)
        if char in '\\"':
            out.append("\\" + char)
        elif 0x20 <= code < 0x7F:
            out.append(char)
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out)


def escape_regex(value: str) -> str:
    """`value` matched literally by an RE2 regular expression."""
    return "".join("\\" + c if c in _RE2_SPECIAL else c for c in value)


def _placeholders(template: str) -> list[tuple[int, int, str, bool]]:
    """(start, end, name, inside a double-quoted string) of each `{{name}}`; QueryInvalid on an unknown name or an
    unterminated string."""
    found = []
    quote = ""
    quote_at = 0
    i = 0
    while i < len(template):
        char = template[i]
        if quote:
            if char == "\\" and quote != "`":
                i += 2
                continue
            if char == quote:
                quote = ""
            elif char == "\n" and quote != "`":
                raise QueryInvalid("a string is not closed before the end of the line", position=quote_at)
        elif char in "\"'`":
            quote, quote_at = char, i
        elif char == "#":  # a comment runs to the end of the line
            end = template.find("\n", i)
            i = len(template) if end < 0 else end
            continue
        if template.startswith("{{", i):
            end = template.find("}}", i)
            name = template[i + 2 : end].strip() if end > 0 else ""
            if end < 0 or name not in PLACEHOLDERS:
                raise QueryInvalid(
                    f"unknown placeholder {template[i : end + 2 if end > 0 else i + 12]!r}: "
                    f"use {', '.join('{{' + p + '}}' for p in PLACEHOLDERS)}",
                    position=i,
                )
            found.append((i, end + 2, name, quote == '"'))
            i = end + 2
            continue
        i += 1
    if quote:
        raise QueryInvalid("a string is not closed", position=quote_at)
    return found


def check_query_template(template: str) -> frozenset[str]:
    """The placeholders a query template uses; QueryInvalid if one stands outside a double-quoted string."""
    if not template.strip():
        raise QueryInvalid("a query is required", position=0)
    names = set()
    for start, _, name, quoted in _placeholders(template):
        if not quoted:
            raise QueryInvalid(
                f"{{{{{name}}}}} must stand inside double quotes, as a label value "
                f'(`version="{{{{version}}}}"`, `instance=~"{{{{target}}}}"`)',
                position=start,
            )
        names.add(name)
    return frozenset(names)


def render_query(
    template: str, *, version: str, environment: str, targets: tuple[str, ...] | list[str] = ()
) -> str:
    """The template with each placeholder replaced by its escaped value (see the module doc)."""
    values = {
        "version": escape_string(version),
        "environment": escape_string(environment),
        "target": escape_string("|".join(escape_regex(t) for t in targets) if targets else ".*"),
    }
    out, last = [], 0
    for start, end, name, quoted in _placeholders(template):
        if not quoted:
            raise QueryInvalid(f"{{{{{name}}}}} must stand inside double quotes", position=start)
        out.append(template[last:start])
        out.append(values[name])
        last = end
    out.append(template[last:])
    return "".join(out)


# --------------------------------------------------------------------------- client


def shown_url(url: str) -> str:
    """The URL without credentials, for reasons and logs."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _epoch(when: datetime | float) -> float:
    return when.timestamp() if isinstance(when, datetime) else float(when)


def query_range(
    config: PrometheusConfig, promql: str, *, start: datetime | float, end: datetime | float, step: float
) -> Fetched:
    """`/api/v1/query_range` from start to end every `step` seconds; never raises, returns within `timeout`."""
    form = {
        "query": promql,
        "start": f"{_epoch(start):.3f}",
        "end": f"{_epoch(end):.3f}",
        "step": f"{step:g}",
    }
    return _fetch(config, "api/v1/query_range", form, promql)


def query(config: PrometheusConfig, promql: str, *, at: datetime | float | None = None) -> Fetched:
    """`/api/v1/query` at one instant (now by default); never raises, returns within `timeout`."""
    form = {"query": promql}
    if at is not None:
        form["time"] = f"{_epoch(at):.3f}"
    return _fetch(config, "api/v1/query", form, promql)


class _Missing(Exception):
    """Why a query gave no data, in words (caught inside this module)."""


def _fetch(config: PrometheusConfig, path: str, form: dict[str, str], promql: str) -> Fetched:
    where = f"prometheus at {shown_url(config.url)}"
    timeout = max(float(config.timeout), 0.001)
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["result"] = _request(config, path, form, promql, deadline=time.monotonic() + timeout)
        except _Missing as missing:
            box["missing"] = str(missing)
        except Exception as error:  # a source must never raise into an analysis
            box["missing"] = f"{type(error).__name__}: {error}"

    # The caller waits `timeout` at most; httpx's own timeouts end the thread soon after.
    thread = threading.Thread(target=run, name="prometheus-query", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive() or box.get("missing") == "timeout":
        return Fetched(query=promql, missing=f"{where}: timed out after {timeout:g} s")
    if "missing" in box:
        return Fetched(query=promql, missing=f"{where}: {box['missing']}")
    result = box["result"]
    assert isinstance(result, Fetched)
    if result.missing:
        return Fetched(
            query=promql, series=result.series, dropped=result.dropped, missing=f"{where}: {result.missing}"
        )
    return result


def _request(
    config: PrometheusConfig, path: str, form: dict[str, str], promql: str, *, deadline: float
) -> Fetched:
    url = config.url.rstrip("/") + "/" + path
    headers = {"Accept": "application/json"}
    auth = None
    if config.bearer_token:
        headers["Authorization"] = f"Bearer {config.bearer_token}"
    elif config.username or config.password:
        auth = httpx.BasicAuth(config.username, config.password)
    try:
        with (
            httpx.Client(
                timeout=httpx.Timeout(config.timeout), follow_redirects=False, trust_env=False
            ) as client,
            client.stream("POST", url, data=form, headers=headers, auth=auth) as response,
        ):
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_BODY_BYTES:
                    raise _Missing(f"answer larger than {MAX_BODY_BYTES // (1024 * 1024)} MiB")
                if time.monotonic() > deadline:
                    raise _Missing("timeout")
            status = response.status_code
    except httpx.TimeoutException:
        raise _Missing("timeout") from None
    except httpx.ConnectError as error:
        text = str(error)
        raise _Missing(
            "connection refused" if "refused" in text.lower() else f"cannot connect ({text})"
        ) from None
    except httpx.HTTPError as error:
        raise _Missing(f"{type(error).__name__}: {error}") from None
    return _parse(status, bytes(body), promql)


def _parse(status: int, body: bytes, promql: str) -> Fetched:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        payload = None
    if not isinstance(payload, dict):
        if status != 200:
            raise _Missing(f"HTTP {status}")
        raise _Missing("the answer is not JSON from Prometheus' API")
    if payload.get("status") != "success":
        kind = payload.get("errorType") or "error"
        message = str(payload.get("error") or "no message")[:300]
        raise _Missing(
            f"{'HTTP ' + str(status) + ', ' if status != 200 else ''}status: error ({kind}: {message})"
        )
    if status != 200:
        raise _Missing(f"HTTP {status}")
    data = payload.get("data")
    if not isinstance(data, dict):
        raise _Missing("the answer has no data")
    kind, result = data.get("resultType"), data.get("result")
    rows: list[tuple[dict, list]] = []
    if kind == "matrix" and isinstance(result, list):
        rows = [(s.get("metric") or {}, s.get("values") or []) for s in result if isinstance(s, dict)]
    elif kind == "vector" and isinstance(result, list):
        rows = [(s.get("metric") or {}, [s.get("value")]) for s in result if isinstance(s, dict)]
    elif kind == "scalar" and isinstance(result, list):
        rows = [({}, [result])]
    else:
        raise _Missing(f"unexpected result type {kind!r}")
    points: list[tuple[float, float]] = []
    dropped = total = 0
    for _, values in rows:
        for pair in values:
            total += 1
            if total > MAX_POINTS:
                raise _Missing(f"more than {MAX_POINTS:,} values: use a coarser step or aggregate the series")
            try:
                at, value = float(pair[0]), float(pair[1])
            except (TypeError, ValueError, IndexError):
                raise _Missing(f"a value is not a number: {str(pair)[:60]}") from None
            if math.isfinite(value):
                points.append((at, value))
            else:
                dropped += 1
    if not rows:
        return Fetched(query=promql, missing="no series matched")
    if not points:
        return Fetched(
            query=promql,
            series=len(rows),
            dropped=dropped,
            missing=f"only NaN or infinite values ({dropped})" if dropped else "no values",
        )
    points.sort(key=lambda p: p[0])
    return Fetched(
        query=promql,
        points=tuple(points),
        series=len(rows),
        dropped=dropped,
        labels=tuple({str(k): str(v) for k, v in m.items()} for m, _ in rows),
    )

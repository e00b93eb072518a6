"""Incoming signals checked and shaped: Sentry envelopes and events, the JSON error body, metric samples.
Pure: no Django import. Each parser returns frozen dataclasses or raises `BadInput` naming what is wrong.
"""

from __future__ import annotations

import gzip
import math
import re
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from config import jsonbody
from monitoring.fingerprint import Frame, fingerprint, normalise_message, parse_stacktrace, title, top_frames

MESSAGE_LIMIT = 2_000  # characters kept of an event's message
STACKTRACE_LIMIT = 16_000  # characters kept of its stack trace (the innermost end)
NAME_LIMIT = 100  # version, target, sample name, label key
TYPE_LIMIT = 200
LABEL_VALUE_LIMIT = 200
MAX_LABELS = 20
MAX_SAMPLES = 10_000  # per push request
MAX_FRAMES = 200  # per exception read for the stack trace text
METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:.]{0,99}$")
DEFAULT_ENVIRONMENT = "production"  # what sentry-sdk reports when `environment` is not set


class BadInput(ValueError):
    """Input refused: `field` names the JSON field, `item` the envelope item (0-based), `status` 400 or 413."""

    def __init__(
        self,
        detail: str,
        *,
        field: str | None = None,
        item: int | None = None,
        index: int | None = None,
        status: int = 400,
    ):
        super().__init__(detail)
        self.detail, self.field, self.item, self.index, self.status = detail, field, item, index, status


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorIn:
    """One error occurrence, ready to store: where it happened, what it was, and its group's fingerprint."""

    event_id: str
    environment: str
    version: str
    target: str
    type: str
    message: str
    stacktrace: str
    timestamp: datetime | None
    fingerprint: str
    title: str
    culprit: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class SampleIn:
    name: str
    value: float
    timestamp: datetime | None
    environment: str
    version: str = ""
    target: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)


# --- bodies ------------------------------------------------------------------------------------------------------


def decompress(raw: bytes, encoding: str, limit: int) -> bytes:
    """The body decoded per Content-Encoding, refused past `limit` bytes once inflated (413)."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return raw
    too_big = BadInput(f"The body inflates to more than {limit // 1024} KiB.", status=413)
    try:
        if encoding in ("gzip", "x-gzip", "deflate"):
            wbits = 16 + zlib.MAX_WBITS if encoding != "deflate" else zlib.MAX_WBITS
            inflater = zlib.decompressobj(wbits)
            out = inflater.decompress(raw, limit + 1)
            if len(out) > limit or inflater.unconsumed_tail:
                raise too_big
            return out
        if encoding == "br":
            import brotli

            decoder = brotli.Decompressor()
            out = decoder.process(raw, output_buffer_limit=limit + 1)
            if len(out) > limit or not decoder.is_finished():
                raise too_big
            return out
    except (zlib.error, gzip.BadGzipFile, EOFError) as e:
        raise BadInput(f"The body is not valid {encoding}: {e}.", field="Content-Encoding") from None
    except BadInput:
        raise
    except Exception as e:  # brotli.error
        raise BadInput(f"The body is not valid {encoding}: {e}.", field="Content-Encoding") from None
    raise BadInput(
        f"Content-Encoding {encoding} is not supported: send gzip, deflate, br or none.",
        field="Content-Encoding",
        status=415,
    )


def json_of(raw: bytes) -> object:
    """A JSON value bounded like every body Slipway reads (config/jsonbody.py: nesting, 64-bit integers, finite
    floats); NUL in a string becomes U+FFFD (free text: an exception message is kept, not refused)."""
    return jsonbody.parse(raw, max_bytes=len(raw) + 1, replace_nul=True)


def parse_envelope(raw: bytes) -> list[tuple[int, dict]]:
    """The `event` items of a Sentry envelope as (item number, payload); other item types are skipped."""
    header_line, _, rest = raw.partition(b"\n")
    try:
        header = json_of(header_line) if header_line.strip() else {}
    except jsonbody.BodyError as error:
        raise BadInput(f"The envelope header is not JSON: {error.detail}", field="envelope header") from None
    if not isinstance(header, dict):
        raise BadInput("The envelope header is not a JSON object.", field="envelope header")
    events, position, number = [], 0, 0
    while position < len(rest):
        end = rest.find(b"\n", position)
        line = rest[position:] if end < 0 else rest[position:end]
        position = len(rest) if end < 0 else end + 1
        if not line.strip():
            continue
        try:
            item_header = json_of(line)
        except jsonbody.BodyError as error:
            raise BadInput(f"Item {number}: its header is not JSON: {error.detail}", item=number) from None
        if not isinstance(item_header, dict):
            raise BadInput(f"Item {number}: its header is not a JSON object.", item=number)
        length = item_header.get("length")
        if length is not None:
            if (
                isinstance(length, bool)
                or not isinstance(length, int)
                or length < 0
                or position + length > len(rest)
            ):
                raise BadInput(f"Item {number}: length {length!r} does not fit the envelope.", item=number)
            payload = rest[position : position + length]
            position += length
            if position < len(rest) and rest[position : position + 1] == b"\n":
                position += 1
        else:
            end = rest.find(b"\n", position)
            payload = rest[position:] if end < 0 else rest[position:end]
            position = len(rest) if end < 0 else end + 1
        if item_header.get("type") == "event":
            try:
                event = json_of(payload)
            except jsonbody.BodyError as error:
                raise BadInput(f"Item {number} (event): {error.detail}", item=number) from None
            if not isinstance(event, dict):
                raise BadInput(f"Item {number} (event): its payload is not a JSON object.", item=number)
            if "event_id" not in event and isinstance(header.get("event_id"), str):
                event["event_id"] = header["event_id"]
            events.append((number, event))
        number += 1
    return events


# --- errors ------------------------------------------------------------------------------------------------------


def error_from_sentry(event: dict, application_slug: str, item: int | None = None) -> ErrorIn:
    """An ErrorIn from a Sentry event payload (as sentry-sdk sends it)."""

    def bad(detail: str, name: str) -> BadInput:
        return BadInput(
            f"Item {item} (event): {detail}" if item is not None else detail, field=name, item=item
        )

    exception = event.get("exception")
    values = exception.get("values") if isinstance(exception, dict) else exception
    values = [v for v in values if isinstance(v, dict)] if isinstance(values, list) else []
    frames: list[Frame] = []
    if values:
        main = values[-1]  # Sentry lists chained exceptions oldest first: the last one is what was raised
        type_, message = _text(main.get("type")) or "Error", _text(main.get("value"))
        raw = main.get("stacktrace")
        stacktrace: dict = raw if isinstance(raw, dict) else {}
        raw = stacktrace.get("frames")
        raw_frames: list = raw if isinstance(raw, list) else []
        frames = [_frame(f) for f in raw_frames[-MAX_FRAMES:] if isinstance(f, dict)]
    else:
        type_ = "message"
        raw_entry = event.get("logentry")
        logentry: dict = raw_entry if isinstance(raw_entry, dict) else {}
        message_field = event.get("message")
        if isinstance(message_field, dict):
            logentry = {**message_field, **logentry}
            message_field = None
        # Group by the template ("Order %s failed"), show the formatted text.
        template = _text(logentry.get("message")) or _text(message_field)
        message = _text(logentry.get("formatted")) or template
        if not (template or message):
            raise bad("neither an exception nor a message.", "exception")
    release = event.get("release")
    if release is not None and not isinstance(release, str):
        raise bad("release must be a string.", "release")
    version = (release or "").strip()
    if version.startswith(application_slug + "@"):
        version = version[len(application_slug) + 1 :]  # Sentry's "package@version" convention
    environment = event.get("environment") or DEFAULT_ENVIRONMENT
    if not isinstance(environment, str):
        raise bad("environment must be a string.", "environment")
    custom = event.get("fingerprint")
    custom = [str(p) for p in custom] if isinstance(custom, list) else []
    group_message = message if values else (template or message)
    return ErrorIn(
        event_id=_event_id(event.get("event_id")),
        environment=environment.strip(),
        version=_bounded(version, NAME_LIMIT),
        target=_bounded(_text(event.get("server_name")).strip(), NAME_LIMIT),
        type=_bounded(type_, TYPE_LIMIT),
        message=message[:MESSAGE_LIMIT],
        stacktrace=_frames_text(frames),
        timestamp=_timestamp(event.get("timestamp"), lambda: bad("timestamp is not a time.", "timestamp")),
        fingerprint=fingerprint(type_, group_message, frames, custom),
        title=title(type_, group_message),
        culprit=_culprit(frames),
    )


def error_from_json(body: object) -> ErrorIn:
    """An ErrorIn from the plain JSON endpoint's body; BadInput names the field."""
    if not isinstance(body, dict):
        raise BadInput("The body must be a JSON object.", field="non_field_errors")
    environment = _required_text(body, "environment", NAME_LIMIT)
    type_ = _required_text(body, "type", TYPE_LIMIT)
    version = _optional_text(body, "version", NAME_LIMIT)
    target = _optional_text(body, "target", NAME_LIMIT)
    message = _optional_text(body, "message", None)
    stacktrace = _optional_text(body, "stacktrace", None)
    custom = body.get("fingerprint")
    if custom is not None and not (isinstance(custom, list) and all(isinstance(p, str) for p in custom)):
        raise BadInput("A list of strings.", field="fingerprint")
    frames = parse_stacktrace(stacktrace[-STACKTRACE_LIMIT * 4 :])
    if not frames and stacktrace.strip():
        # A trace in no format we read: its lines, numbers stripped, stand in for frames.
        lines = [ln.strip() for ln in stacktrace.strip().splitlines() if ln.strip()][:5]
        frames = [Frame(function=normalise_message(ln)) for ln in reversed(lines)]
    return ErrorIn(
        event_id=_event_id(body.get("event_id")),
        environment=environment,
        version=version,
        target=target,
        type=type_,
        message=message[:MESSAGE_LIMIT],
        stacktrace=stacktrace[-STACKTRACE_LIMIT:],
        timestamp=_timestamp(
            body.get("timestamp"),
            lambda: BadInput("Not a time: ISO 8601 or epoch seconds.", field="timestamp"),
        ),
        fingerprint=fingerprint(type_, message, frames, custom or ()),
        title=title(type_, message),
        culprit=_culprit(frames),
    )


def _frame(raw: dict) -> Frame:
    lineno = raw.get("lineno")
    return Frame(
        function=_text(raw.get("function"))[:200],
        module=_text(raw.get("module"))[:200],
        filename=_text(raw.get("filename") or raw.get("abs_path"))[:300],
        lineno=lineno if isinstance(lineno, int) and not isinstance(lineno, bool) else None,
        in_app=raw.get("in_app") if isinstance(raw.get("in_app"), bool) else None,
    )


def _frames_text(frames: list[Frame]) -> str:
    lines = [
        f'  File "{f.filename or f.module}", line {f.lineno if f.lineno is not None else "?"}, in {f.function}'
        for f in frames
    ]
    text = "\n".join(lines)
    return text[-STACKTRACE_LIMIT:]


def _culprit(frames: list[Frame]) -> str:
    top = top_frames(frames, 1)
    if not top:
        return ""
    return f"{top[0].module or top[0].filename} in {top[0].function}"[:300]


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _bounded(value: str, limit: int) -> str:
    return value[:limit]


def _required_text(body: dict, name: str, limit: int) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise BadInput("This field is required: a non-empty string.", field=name)
    if len(value) > limit:
        raise BadInput(f"At most {limit} characters.", field=name)
    return value.strip()


def _optional_text(body: dict, name: str, limit: int | None) -> str:
    value = body.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadInput("A string.", field=name)
    if limit is not None and len(value) > limit:
        raise BadInput(f"At most {limit} characters.", field=name)
    return value.strip() if limit is not None else value


def _event_id(value: object) -> str:
    if isinstance(value, str):
        hex_id = value.replace("-", "").lower()
        if len(hex_id) == 32 and all(c in "0123456789abcdef" for c in hex_id):
            return hex_id
    return uuid.uuid4().hex


def _timestamp(value: object, bad) -> datetime | None:
    if value is None:
        return None
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ValueError
            return datetime.fromtimestamp(value, UTC)
        if isinstance(value, str):
            parsed = datetime.fromisoformat(value)
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        pass
    raise bad()


# --- samples ------------------------------------------------------------------------------------------------------


def parse_samples(body: object) -> list[SampleIn]:
    """The samples of a push, all or none: BadInput names the first bad sample's index and field."""
    if isinstance(body, dict) and "samples" in body:
        body = body["samples"]
    if not isinstance(body, list):
        raise BadInput("Send a JSON list of samples.", field="non_field_errors")
    if len(body) > MAX_SAMPLES:
        raise BadInput(f"At most {MAX_SAMPLES} samples per request: split the batch.", status=413)
    samples = []
    for index, raw in enumerate(body):
        if not isinstance(raw, dict):
            raise BadInput("A sample is a JSON object.", index=index, field="")
        name = raw.get("name")
        if not isinstance(name, str) or not METRIC_NAME.match(name):
            raise BadInput(
                "A metric name: letters, digits, _ : . (at most 100, not starting with a digit).",
                index=index,
                field="name",
            )
        value = raw.get("value")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise BadInput("A finite number.", index=index, field="value")
        when = _timestamp(
            raw.get("timestamp"),
            lambda i=index: BadInput("Not a time: ISO 8601 or epoch seconds.", index=i, field="timestamp"),
        )
        labels = raw.get("labels")
        if not isinstance(labels, dict):
            raise BadInput("An object with at least an environment.", index=index, field="labels")
        if len(labels) > MAX_LABELS:
            raise BadInput(f"At most {MAX_LABELS} labels.", index=index, field="labels")
        for key, label in labels.items():
            if len(key) > NAME_LIMIT or not isinstance(label, str) or len(label) > LABEL_VALUE_LIMIT:
                raise BadInput(
                    f"Label values are strings of at most {LABEL_VALUE_LIMIT} characters "
                    f"(keys at most {NAME_LIMIT}).",
                    index=index,
                    field=f"labels.{key[:NAME_LIMIT]}",
                )
        environment = labels.get("environment")
        if not environment:
            raise BadInput("Which environment: a non-empty string.", index=index, field="labels.environment")
        version, target = labels.get("version", ""), labels.get("target", "")
        if len(version) > NAME_LIMIT or len(target) > NAME_LIMIT:
            field_name = "labels.version" if len(version) > NAME_LIMIT else "labels.target"
            raise BadInput(f"At most {NAME_LIMIT} characters.", index=index, field=field_name)
        extra = {k: v for k, v in labels.items() if k not in ("environment", "version", "target")}
        samples.append(
            SampleIn(
                name=name,
                value=float(value),
                timestamp=when,
                environment=environment,
                version=version,
                target=target,
                labels=extra,
            )
        )
    return samples

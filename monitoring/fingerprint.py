"""Error fingerprints: which events are "the same error". Pure: no Django import.

An event's fingerprint is its exception type plus its top in-app frames (module or file, and function; never the
line number, which moves with every unrelated edit). Without frames the normalised message stands in for them.
Messages are normalised by replacing what differs between occurrences of one error — UUIDs, hex strings, numbers
(ids, counts, durations, addresses) — with placeholders, so `KeyError: 'user-4711'` and `KeyError: 'user-12'` are
one group.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

TOP_FRAMES = 5
TITLE_LIMIT = 500

_UUID = re.compile(r"\b[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}\b")
_HEX_PREFIXED = re.compile(r"\b0[xX][0-9a-fA-F]+\b")
# A run of 7+ hex digits holding at least one digit: commit shas, object ids, tokens ("deadbeef" alone is a word).
_HEX = re.compile(r"\b(?=[0-9a-fA-F]*[0-9])[0-9a-fA-F]{7,}\b")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_SPACES = re.compile(r"\s+")
# Version-like and numbered path parts ("/srv/shop-1.4.0/", "/releases/20260101/") do not make a frame different.
_PATH_NUMBER = re.compile(r"\d+")


@dataclass(frozen=True, slots=True, kw_only=True)
class Frame:
    """One stack frame, innermost last (Sentry's order)."""

    function: str = ""
    module: str = ""
    filename: str = ""
    lineno: int | None = None
    in_app: bool | None = None


def normalise_message(message: str) -> str:
    """The message with UUIDs (`<uuid>`), hex ids and numbers (`<n>`) replaced and whitespace collapsed."""
    text = _UUID.sub("<uuid>", message)
    # Hex ids and numbers share one placeholder: an id is sometimes all digits ("1234567") and sometimes not.
    text = _HEX_PREFIXED.sub("<n>", text)
    text = _HEX.sub("<n>", text)
    text = _NUMBER.sub("<n>", text)
    return _SPACES.sub(" ", text).strip()


def _frame_key(frame: Frame) -> str:
    where = frame.module or _PATH_NUMBER.sub("<n>", frame.filename.replace("\\", "/"))
    return f"{where}:{frame.function}"


def top_frames(frames: Sequence[Frame], limit: int = TOP_FRAMES) -> list[Frame]:
    """The innermost `limit` in-app frames (all frames when none is marked in-app), innermost first."""
    in_app = [f for f in frames if f.in_app]
    chosen = in_app or [f for f in frames if f.in_app is not False] or list(frames)
    return list(reversed(chosen[-limit:]))


def fingerprint(type: str, message: str, frames: Sequence[Frame] = (), custom: Sequence[str] = ()) -> str:
    """A 32-hex-digit fingerprint; `custom` (Sentry's `fingerprint`, `{{ default }}` meaning this one) overrides."""
    parts = [type.strip()]
    keys = [_frame_key(f) for f in top_frames(frames)]
    parts += keys or [normalise_message(message)]
    default = _digest(parts)
    if custom:
        return _digest([default if part == "{{ default }}" else str(part) for part in custom])
    return default


def title(type: str, message: str) -> str:
    """What a group is called: `KeyError: 'user-<n>'`, first line only, bounded."""
    first_line = normalise_message(message.strip().splitlines()[0] if message.strip() else "")
    text = f"{type}: {first_line}" if type and first_line else (type or first_line or "Error")
    return text[:TITLE_LIMIT]


def _digest(parts: list[str]) -> str:
    return hashlib.blake2b("\x1f".join(parts).encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


# --- frames from a plain-text stack trace (the JSON endpoint) ---------------------------------------------------

_PYTHON_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<function>\S+)', re.M)
# JavaScript (`at fn (file.js:10:5)`, `at file.js:10:5`) and JVM (`at com.shop.Cart.add(Cart.java:42)`).
_AT_FRAME = re.compile(
    r"^\s*at (?:(?P<function>[^\s(]+) \((?P<file>[^()]+?)(?::(?P<line>\d+))?(?::\d+)?\)"
    r"|(?P<jvm>[\w$.<>]+)\((?P<jfile>[^():]*)(?::(?P<jline>\d+))?\)"
    r"|(?P<bare>\S+?)(?::(?P<bline>\d+))?(?::\d+)?)\s*$",
    re.M,
)


def parse_stacktrace(text: str) -> list[Frame]:
    """Frames from a Python traceback or a JavaScript/JVM `at …` trace, innermost last; [] when none is found."""
    frames = [
        Frame(function=m["function"], filename=m["file"], lineno=int(m["line"]))
        for m in _PYTHON_FRAME.finditer(text)
    ]
    if frames:
        return frames  # Python prints the innermost frame last already
    found = []
    for m in _AT_FRAME.finditer(text):
        if m["jvm"]:
            module, _, function = m["jvm"].rpartition(".")
            found.append(
                Frame(
                    function=function,
                    module=module,
                    filename=m["jfile"] or "",
                    lineno=int(m["jline"]) if m["jline"] else None,
                )
            )
        elif m["function"]:
            found.append(
                Frame(
                    function=m["function"], filename=m["file"], lineno=int(m["line"]) if m["line"] else None
                )
            )
        else:
            found.append(
                Frame(function="", filename=m["bare"], lineno=int(m["bline"]) if m["bline"] else None)
            )
    return list(reversed(found))  # JavaScript and the JVM print the innermost frame first

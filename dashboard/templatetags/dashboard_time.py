"""Short times for dense tables: "12 s ago", "1.4 s", and the machine-readable forms for <time datetime>."""

from __future__ import annotations

from datetime import datetime, timedelta

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.timesince import timesince, timeuntil

register = template.Library()


@register.filter
def ago(value: datetime | None, now: datetime | None = None) -> str:
    """`12 s ago`, `5 min ago`, `3 h ago`, `2 d ago`; empty for None."""
    if value is None:
        return ""
    seconds = int(((now or timezone.now()) - value).total_seconds())
    if seconds < 1:
        return "just now"  # includes a clock a little ahead of ours
    for unit, size in (("d", 86_400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


@register.filter
def duration(value: timedelta | None) -> str:
    """`0.4 s`, `12 s`, `3 min 5 s`, `1 h 2 min`; empty for None."""
    if value is None:
        return ""
    seconds = max(value.total_seconds(), 0.0)
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"


@register.filter
def iso_duration(value: timedelta | None) -> str:
    """An HTML duration string for <time datetime>, e.g. `PT1.25S`."""
    if value is None:
        return ""
    seconds = f"{max(value.total_seconds(), 0.0):.3f}".rstrip("0").rstrip(".")
    return f"PT{seconds}S"


@register.filter
def when(value: datetime | None) -> str:
    """`<time>` reading "20 minutes ago" (or "in 5 minutes"), the absolute time with its zone on hover; empty for
    None. One way to show a moment on every page."""
    if value is None:
        return ""
    now = timezone.now()
    relative = f"{timesince(value, now)} ago" if value <= now else f"in {timeuntil(value, now)}"
    if (now - value).total_seconds() < 60 and value <= now:
        relative = "just now"
    absolute = timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S %Z")
    return format_html('<time datetime="{}" title="{}">{}</time>', value.isoformat(), absolute, relative)

"""Moments as `when` ("20 minutes ago", the absolute time and zone on hover), durations ("1.4 s") and their
machine-readable forms for <time datetime>."""

from __future__ import annotations

from datetime import datetime, time, timedelta

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.timesince import timesince, timeuntil

from config import times

register = template.Library()


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
def when(value: datetime | time | None, style: str = "") -> str:
    """`<time>` reading "20 minutes ago" (or "in 5 minutes"), the absolute time with its zone on hover; with
    `when:"beside"`, the absolute time follows in the text too. Empty for None. A time of day (a recurring window's
    bounds) reads `09:00`; its zone is the window's own, said beside it. One way to show a moment on every page."""
    if value is None:
        return ""
    if not isinstance(value, datetime):
        clock = value.strftime("%H:%M")
        return format_html('<time datetime="{}">{}</time>', clock, clock)
    now = timezone.now()
    # Nearest minute ahead: a lockout ending in 14 min 59.9 s reads "in 15 minutes", not 14.
    ahead = f"in {timeuntil(value + timedelta(seconds=30), now)}"
    relative = f"{timesince(value, now)} ago" if value <= now else ahead
    if (now - value).total_seconds() < 60 and value <= now:
        relative = "just now"
    absolute = times.absolute(value)
    if style == "beside":
        return format_html(
            '<time datetime="{}" title="{}">{} <span class="muted">({})</span></time>',
            value.isoformat(),
            absolute,
            relative,
            absolute,
        )
    return format_html('<time datetime="{}" title="{}">{}</time>', value.isoformat(), absolute, relative)

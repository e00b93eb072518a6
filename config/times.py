"""A moment as people read it everywhere: `2026-12-05 20:12:03 CET`, in the configured time zone (`TIME_ZONE`) with
its abbreviation, or `UTC+04` where the zone has none. The pages' `when` filter shows it on hover; text written for
people outside a page (a rollout step's output) uses it as it stands."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone


def absolute(value: datetime) -> str:
    local = timezone.localtime(value)
    zone = local.strftime("%Z")
    if not zone[:1].isalpha():  # zones without an abbreviation print "+04": say it as an offset from UTC
        zone = f"UTC{zone}"
    return f"{local:%Y-%m-%d %H:%M:%S} {zone}"

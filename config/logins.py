"""Login throttling with django-axes: lockouts per username and per address, a cool-off that doubles with each
lockout of the same username or address within a day, audited; superusers unlock in the admin.

- `cool_off(request)` is `AXES_COOLOFF_TIME`: `LOGIN_COOLOFF_MINUTES` × 2^(lockouts in the last day − 1), at most
  `LOGIN_COOLOFF_MAX_MINUTES`. The lockouts are counted from the audit trail (`login.locked_out` events).
- `LockoutHandler` is axes' database handler, plus: one audit event when a lockout starts (not for each attempt
  made during it, which only pushes its end back when it comes from an address that failed), and expired attempts removed by each request's own cool-off.
- `lockout_response` is the login page again, 429 with Retry-After, saying until when.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_username, get_failure_limit
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth.forms import AuthenticationForm
from django.db import transaction
from django.db.models import Max, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

BACKOFF_WINDOW = timedelta(days=1)
_COOL_OFF = "_slipway_cool_off"


def _lockouts(username: str | None, address: str | None) -> int:
    from releases.models import AuditEvent

    who = Q(after__ip_address=address) if address else Q(pk__in=[])
    if username:
        who |= Q(after__username=username)
    return AuditEvent.objects.filter(
        who, kind="login.locked_out", created_at__gte=timezone.now() - BACKOFF_WINDOW
    ).count()


def cool_off(request: HttpRequest | None = None) -> timedelta:
    """How long a lockout of this request's username or address lasts after its last failed attempt."""
    base = timedelta(minutes=settings.LOGIN_COOLOFF_MINUTES)
    if request is None or not hasattr(request, "axes_ip_address"):
        return base
    if (cached := getattr(request, _COOL_OFF, None)) is not None:
        return cached
    count = _lockouts(get_client_username(request), request.axes_ip_address)
    longest = timedelta(minutes=max(settings.LOGIN_COOLOFF_MAX_MINUTES, settings.LOGIN_COOLOFF_MINUTES))
    value = min(longest, base * 2 ** min(max(count - 1, 0), 20))
    setattr(request, _COOL_OFF, value)
    return value


class LockoutHandler(AxesDatabaseHandler):
    def user_login_failed(self, sender, credentials: dict, request=None, **kwargs):
        super().user_login_failed(sender, credentials, request, **kwargs)
        if (
            request is not None
            and getattr(request, "axes_locked_out", False)
            and getattr(request, "axes_failures_since_start", 0) == get_failure_limit(request, credentials)
        ):
            _record_lockout(request, credentials)

    def clean_expired_user_attempts(self, request=None, credentials=None) -> int:
        # Axes deletes every attempt older than *this* request's cool-off; cool-offs differ per username and address
        # here, so: everyone's attempts past the longest cool-off, and this request's own past its own.
        longest = timedelta(minutes=max(settings.LOGIN_COOLOFF_MAX_MINUTES, settings.LOGIN_COOLOFF_MINUTES))
        count, _ = AccessAttempt.objects.filter(attempt_time__lt=timezone.now() - longest).delete()
        if request is not None and hasattr(request, "axes_ip_address"):
            threshold = (request.axes_attempt_time or timezone.now()) - cool_off(request)
            for attempts in self.filter_user_attempts(request, credentials):
                count += attempts.filter(attempt_time__lt=threshold).delete()[0]
        return count


def locked_until(request: HttpRequest, credentials: dict | None = None) -> datetime:
    handler = LockoutHandler()
    latest = [
        attempts.aggregate(latest=Max("attempt_time"))["latest"]
        for attempts in handler.filter_user_attempts(request, credentials)
    ]
    last = max((t for t in latest if t is not None), default=None) or timezone.now()
    return last + cool_off(request)


def _record_lockout(request: HttpRequest, credentials: dict | None) -> None:
    from releases.audit import record
    from releases.permissions import Actor

    username = get_client_username(request, credentials)
    address = request.axes_ip_address
    attempt = (
        AccessAttempt.objects.filter(Q(username=username) | Q(ip_address=address))
        .order_by("-attempt_time")
        .first()
    )
    if attempt is None:
        return
    with transaction.atomic():
        record(
            Actor.system(),
            "login.locked_out",
            attempt,
            after={
                "username": username,
                "ip_address": address,
                "failures": request.axes_failures_since_start,
            },
            note=f"{request.axes_failures_since_start} failed log-ins for {username!r} or from {address}.",
        )
    if hasattr(request, _COOL_OFF):
        delattr(request, _COOL_OFF)  # this lockout counts from now on: its cool-off may be longer


def lockout_response(
    request: HttpRequest, original_response=None, credentials: dict | None = None
) -> HttpResponse:
    """The login page, 429, saying when to try again (Retry-After too)."""
    until = locked_until(request, credentials)
    seconds = max(1, math.ceil((until - timezone.now()).total_seconds()))
    form = AuthenticationForm(request, initial={"username": get_client_username(request, credentials)})
    response = render(
        request,
        "registration/login.html",
        {
            "form": form,
            "next": request.POST.get("next", ""),
            "locked_until": until,
        },
        status=429,
    )
    response["Retry-After"] = str(seconds)
    return response


class AccessAttemptAdmin(admin.ModelAdmin):
    """Failed log-in attempts; "Unlock" deletes them and records who unlocked whom."""

    list_display = ["attempt_time", "username", "ip_address", "failures_since_start", "path_info"]
    search_fields = ["username", "ip_address"]
    readonly_fields = [
        "username",
        "ip_address",
        "user_agent",
        "attempt_time",
        "failures_since_start",
        "path_info",
    ]
    fields = readonly_fields
    actions = ["unlock"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # unlock instead: audited

    @admin.action(description="Unlock: forget these failed log-ins", permissions=["change"])
    def unlock(self, request, queryset) -> None:
        from releases.audit import record
        from releases.permissions import Actor

        with transaction.atomic():
            attempts = list(queryset.select_for_update())
            for attempt in attempts:
                record(
                    Actor(request.user),
                    "login.unlocked",
                    attempt,
                    after={"username": attempt.username, "ip_address": attempt.ip_address},
                )
            AccessAttempt.objects.filter(pk__in=[a.pk for a in attempts]).delete()
        self.message_user(request, f"Unlocked {len(attempts)} failed log-in record(s).", messages.SUCCESS)


def client_address(request: HttpRequest) -> str | None:
    # uvicorn puts the client behind a trusted proxy (FORWARDED_ALLOW_IPS) in REMOTE_ADDR: never read headers here.
    return request.META.get("REMOTE_ADDR") or None

"""After a deploy: errors the previous version did not have, and an error rate significantly above its, raise an
alert — once per release and error group (or kind) — to the application's notification hooks, and, where the
environment says so (`rollback_on_new_errors`), roll back to the previous version.

The decision is `monitoring.anomaly.compare_error_rates` (pure): the new version's errors since its release
finished against the previous version's in as long a window just before the release began — **per request** when
both versions' request counts were pushed (samples named `SLIPWAY_REQUESTS_SAMPLE`, default `http_requests`, each
the number of requests served since the sample before), so that traffic growing after a deploy raises nothing by
itself; otherwise per second of exposure, which the reason says. Counts come from the stored events; a group with more events than are kept per group (`ErrorEvent.KEEP_PER_GROUP`) is counted
from its hourly counts instead, each spread evenly between its first and last event.

Nothing in `releases` imports this module (the periodic task and the tests do): it may import
`releases.promotions` for the rollback without an import cycle.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Sum
from django.urls import reverse
from django.utils import timezone

from monitoring.anomaly import ErrorCount as Counted
from monitoring.anomaly import compare_error_rates
from monitoring.models import Alert, ErrorCount, ErrorEvent, ErrorGroup, Sample
from releases import audit
from releases.models import NotificationHook, Release
from releases.permissions import Actor
from releases.queue import enqueue_on_commit

log = logging.getLogger(__name__)


def watch_seconds() -> float:
    """How long after a release finishes its errors are compared with the previous version's (default an hour)."""
    return float(getattr(settings, "SLIPWAY_NEW_ERROR_WATCH_SECONDS", 3600))


def requests_sample() -> str:
    """The pushed samples that count requests served (each the number since the sample before)."""
    return str(getattr(settings, "SLIPWAY_REQUESTS_SAMPLE", "http_requests"))


PER_SECOND = (
    "rates per second of exposure, not per request: no {name} samples counted both versions' requests, so more "
    "traffic alone raises the rate"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    kind: str
    key: str
    group: ErrorGroup | None
    reason: str
    details: dict


def check_recent_releases(now: datetime | None = None) -> list[Alert]:
    """Periodic: every environment's release that finished within the watch period and still runs there."""
    now = now or timezone.now()
    recent = Release.objects.filter(
        kind=Release.Kind.DEPLOY,
        status=Release.Status.SUCCEEDED,
        finished_at__gte=now - timedelta(seconds=watch_seconds()),
    ).select_related("environment", "artifact", "previous_artifact", "application")
    raised: list[Alert] = []
    for release in recent:
        if release.environment.current_artifact_id == release.artifact_id:
            raised += do_check_new_errors(release, now=now)
    return raised


def do_check_new_errors(release: Release, *, now: datetime | None = None) -> list[Alert]:
    """Compare the release's version with the previous one and raise what is new; returns the alerts raised now
    (one already raised for the same release and group, or kind, is not raised again)."""
    findings = new_error_findings(release, now=now or timezone.now())  # reads only: no transaction held
    return [alert for finding in findings if (alert := _raise(release.pk, finding)) is not None]


def new_error_findings(release: Release, *, now: datetime) -> list[Finding]:
    previous = release.previous_artifact
    began = release.started_at or release.created_at
    since = release.finished_at or began
    seconds = min((now - since).total_seconds(), watch_seconds())
    if seconds < 1:
        return []
    window = (now - timedelta(seconds=seconds), now)
    before = (began - timedelta(seconds=seconds), began)
    environment = release.environment
    version = release.artifact.version
    current = _counts(environment.pk, version, *window)
    # A first deploy has no previous version: its new groups are compared with none in as long a window (each
    # alerts from about its 7th error), and there is no error rate to compare with.
    earlier = _counts(environment.pk, previous.version, *before) if previous is not None else {}
    windows = {
        "window": [window[0].isoformat(), window[1].isoformat()],
        "previous_window": [before[0].isoformat(), before[1].isoformat()] if previous is not None else None,
        "seconds": round(seconds, 3),
        "version": version,
        "previous_version": previous.version if previous is not None else None,
    }
    # Per request when both windows' requests are known; else per second, and the reason says so.
    requests = _requests(environment, version, *window)
    previous_requests = _requests(environment, previous.version, *before) if previous is not None else 0.0
    per_request = requests > 0 and previous_requests > 0
    exposure, previous_exposure = (requests, previous_requests) if per_request else (seconds, seconds)
    per = "" if per_request else "s"
    # (A first deploy compares with nothing in an equal window: per second or per request, the same question.)
    note = "" if per_request or previous is None else f" ({PER_SECOND.format(name=requests_sample())})"
    windows.update(
        exposure="requests" if per_request else "seconds",
        requests=requests or None,
        previous_requests=previous_requests or None,
    )
    findings = []
    groups = ErrorGroup.objects.in_bulk([g for g, n in current.items() if n > 0])
    for group_id, errors in sorted(current.items()):
        group = groups.get(group_id)
        if group is None or group.first_seen_version != version:
            continue  # not new in this version: the error rate below speaks for it
        change = compare_error_rates(
            Counted(errors=errors, exposure=exposure),
            Counted(errors=earlier.get(group_id, 0), exposure=previous_exposure),
            name=group.title,
            per=per,
            against="previous version" if previous is not None else "no previous version (first deploy)",
        )
        if change.increased:
            findings.append(
                Finding(
                    kind=Alert.Kind.NEW_ERROR,
                    key=group.fingerprint,
                    group=group,
                    reason=change.reason + note,
                    details={
                        **windows,
                        "errors": errors,
                        "previous_errors": earlier.get(group_id, 0),
                        "p_value": change.p_value,
                        "group": group.title,
                    },
                )
            )
    if previous is None:
        return findings
    # The rest: a new group that alerted already says why the rate rose; counting it again would alert twice.
    alerted = {f.group.pk for f in findings if f.group is not None}
    total = sum(n for g, n in current.items() if g not in alerted)
    previous_total = sum(n for g, n in earlier.items() if g not in alerted)
    change = compare_error_rates(
        Counted(errors=total, exposure=exposure),
        Counted(errors=previous_total, exposure=previous_exposure),
        name="all errors",
        per=per,
    )
    if change.increased:
        findings.append(
            Finding(
                kind=Alert.Kind.ERROR_RATE,
                key="",
                group=None,
                reason=change.reason + note,
                details={
                    **windows,
                    "errors": total,
                    "previous_errors": previous_total,
                    "ratio": None if change.ratio == float("inf") else change.ratio,
                    "p_value": change.p_value,
                },
            )
        )
    return findings


def _requests(environment, version: str, start: datetime, end: datetime) -> float:
    """Requests one version served in the window, from its pushed request-count samples (0: not known)."""
    total = Sample.objects.filter(
        application_id=environment.application_id,
        environment_id=environment.pk,
        name=requests_sample(),
        version=version,
        timestamp__gte=start,
        timestamp__lt=end,
    ).aggregate(n=Sum("value"))["n"]
    return float(total) if total and total > 0 else 0.0


def _counts(environment_id: int, version: str, start: datetime, end: datetime) -> dict[int, int]:
    """Errors per group of one version in the window, from the events kept — or, for groups that had more than are
    kept, from their hourly counts, whichever is more.

    An hourly count is spread over the span between its first and last event, not over the whole hour: a version
    that ran for the last five minutes of an hour had all of that hour's events in those five minutes, so a window
    over them counts them all whatever the minute it is now. (Counts stored without that span fall back to the
    hour.)"""
    counted = dict(
        ErrorEvent.objects.filter(
            group__environment_id=environment_id, version=version, timestamp__gte=start, timestamp__lt=end
        )
        .values("group_id")
        .annotate(n=Count("id"))
        .values_list("group_id", "n")
    )
    busy = ErrorGroup.objects.filter(environment_id=environment_id, count__gt=ErrorEvent.KEEP_PER_GROUP)
    hours = ErrorCount.objects.filter(
        group__in=busy, version=version, hour__gt=start - timedelta(hours=1), hour__lt=end
    )
    estimated: dict[int, float] = {}
    for group_id, hour, n, first, last in hours.values_list(
        "group_id", "hour", "count", "first_at", "last_at"
    ):
        estimated[group_id] = estimated.get(group_id, 0.0) + n * _share(start, end, hour, first, last)
    for group_id, estimate in estimated.items():
        counted[group_id] = max(counted.get(group_id, 0), round(estimate))
    return counted


def _share(
    start: datetime, end: datetime, hour: datetime, first: datetime | None, last: datetime | None
) -> float:
    """The share of an hourly count's events inside [start, end), taking them as spread evenly from the first to
    the last (the whole hour when those are unknown)."""
    if first is None or last is None:
        first, last = hour, hour + timedelta(hours=1)
    if last <= first:  # one instant: in or out
        return 1.0 if start <= first < end else 0.0
    overlap = (min(end, last) - max(start, first)).total_seconds()
    return min(max(overlap, 0.0) / (last - first).total_seconds(), 1.0)


@transaction.atomic(durable=True)
def _raise(release_id: int, finding: Finding) -> Alert | None:
    """One alert per release and group (or kind), audited, sent to the hooks after commit; rolls back when the
    environment says so (once per release)."""
    release = (
        Release.objects.select_for_update(of=("self",))
        .select_related("application", "environment", "artifact", "previous_artifact")
        .get(pk=release_id)
    )
    if Alert.objects.filter(release=release, kind=finding.kind, key=finding.key).exists():
        return None
    environment = release.environment
    roll_back = (
        environment.rollback_on_new_errors
        and release.previous_artifact_id is not None  # a first deploy has nothing to roll back to
        and environment.current_artifact_id == release.artifact_id
        and not Alert.objects.filter(release=release, rollback_requested=True).exists()
    )
    alert = Alert.objects.create(
        application=release.application,
        environment=environment,
        release=release,
        kind=finding.kind,
        key=finding.key,
        group=finding.group,
        reason=finding.reason,
        details=finding.details,
        rollback_requested=roll_back,
    )
    audit.record(
        Actor.system(),
        "alert.raised",
        alert,
        application=release.application,
        after={
            "kind": alert.kind,
            "release": release.pk,
            "version": release.artifact.version,
            "environment": environment.name,
            "rollback": roll_back,
            **finding.details,
        },
        note=finding.reason[:500],
    )
    payload = alert_message(alert)
    for hook in NotificationHook.objects.filter(application=release.application, active=True):
        if not hook.events or "alert" in hook.events:
            enqueue_on_commit("releases.tasks.deliver_notification", hook.pk, payload)
    if roll_back:
        enqueue_on_commit("monitoring.tasks.rollback_for_alert", alert.pk)
    return alert


def alert_message(alert: Alert) -> dict:
    """Slack-compatible, like the release notifications (`releases.notifications.message`)."""
    release = alert.release
    link = settings.SLIPWAY_BASE_URL.rstrip("/") + reverse("dashboard:release", args=[release.pk])
    what = f"{release.application.slug} {release.artifact.version} → {release.environment.name}"
    label = "New error" if alert.kind == Alert.Kind.NEW_ERROR else "Error rate up"
    text = f":rotating_light: {label} after <{link}|{what}>: {alert.reason}"
    if alert.rollback_requested and release.previous_artifact is not None:
        text += f"\nRolling back to {release.previous_artifact.version} (rollback_on_new_errors is on)."
    return {
        "text": text,
        "slipway": {
            "event": "alert",
            "alert": alert.pk,
            "kind": alert.kind,
            "release": release.pk,
            "application": release.application.slug,
            "environment": release.environment.name,
            "version": release.artifact.version,
            "rollback": alert.rollback_requested,
            "url": link,
            "details": alert.details,
        },
    }


def rollback_for_alert(alert_id: int) -> Release | None:
    """The environment's rollback to the version before the alerted release, as the system; nothing when the
    environment has moved on meanwhile (another release, or a person rolled back)."""
    from releases.exceptions import AlreadyDeployed
    from releases.promotions import do_rollback

    alert = Alert.objects.select_related("release__environment", "release__previous_artifact").get(
        pk=alert_id
    )
    release = alert.release
    if release.previous_artifact is None or release.environment.current_artifact_id != release.artifact_id:
        return None
    try:
        return do_rollback(
            Actor.system(),
            release.environment,
            artifact=release.previous_artifact,
            reason=f"alert #{alert.pk}: {alert.reason}"[:2000],
        )
    except AlreadyDeployed:
        return None

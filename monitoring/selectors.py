"""Reads for monitoring."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Prefetch, QuerySet, Sum

from environments.models import Environment
from monitoring.models import (
    Alert,
    AnalysisMeasurement,
    AnalysisRun,
    AnalysisTemplate,
    ErrorCount,
    ErrorGroup,
    IngestKey,
)
from releases.models import Application


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What the envelope route needs to know about an ingest key: its application and environments by name."""

    application_id: int
    slug: str
    environments: dict[str, int]


def ingest_key_info(public_key: str) -> KeyInfo | None:
    """The active key's application and environments (two queries), None for an unknown or revoked key."""
    key = (
        IngestKey.objects.select_related("application")
        .filter(public_key=public_key, revoked_at__isnull=True)
        .first()
    )
    if key is None:
        return None
    environments = dict(
        Environment.objects.filter(application_id=key.application_id).values_list("name", "pk")
    )
    return KeyInfo(key.application_id, key.application.slug, environments)


def active_ingest_key(application: Application) -> IngestKey | None:
    return IngestKey.objects.filter(application=application, revoked_at__isnull=True).first()


def error_groups(
    application: Application, *, environment: Environment | None = None, version: str | None = None
) -> QuerySet[ErrorGroup]:
    """Groups most recently seen first; with a version, only those seen in it, with `version_count` (its events
    in that version: a filter before the annotation makes both use one join)."""
    groups = ErrorGroup.objects.filter(application=application).select_related("environment")
    if environment is not None:
        groups = groups.filter(environment=environment)
    if version is not None:
        groups = groups.filter(counts__version=version).annotate(version_count=Sum("counts__count"))
    return groups.order_by("-last_seen", "-id")


def analysis_runs(
    application: Application, *, release_id: int | None = None, template: str | None = None
) -> QuerySet[AnalysisRun]:
    """Newest first, with environment and measurements (their raw values left unread): three queries a page."""
    runs = AnalysisRun.objects.filter(application=application).select_related("environment")
    if release_id is not None:
        runs = runs.filter(release_id=release_id)
    if template is not None:
        runs = runs.filter(template_name=template)
    measurements = AnalysisMeasurement.objects.defer("canary_values", "baseline_values").order_by("position")
    return runs.prefetch_related(Prefetch("measurements", queryset=measurements)).order_by("-id")


def release_analysis_runs(release_id: int, *, limit: int = 50) -> list[AnalysisRun]:
    """A release's runs, oldest first, with their measurements and raw values (for the charts): two queries."""
    measurements = AnalysisMeasurement.objects.order_by("position")
    runs = (
        AnalysisRun.objects.filter(release_id=release_id)
        .prefetch_related(Prefetch("measurements", queryset=measurements))
        .order_by("-id")[:limit]
    )
    return list(reversed(runs))


def release_alerts(release_id: int) -> list[Alert]:
    return list(Alert.objects.filter(release_id=release_id).order_by("id"))


def hourly_counts(group_ids: list[int], since: datetime, hours: int) -> dict[int, list[int]]:
    """Each group's events per hour over `hours` hours from `since` (an hour's start), oldest first: one query."""
    found: dict[int, list[int]] = {group_id: [0] * hours for group_id in group_ids}
    if not group_ids:
        return found
    rows = (
        ErrorCount.objects.filter(
            group_id__in=group_ids, hour__gte=since, hour__lt=since + timedelta(hours=hours)
        )
        .values("group_id", "hour")
        .annotate(n=Sum("count"))
        .values_list("group_id", "hour", "n")
    )
    for group_id, hour, n in rows:
        index = int((hour - since).total_seconds() // 3600)
        if 0 <= index < hours:
            found[group_id][index] += n
    return found


def analysis_run(application: Application, pk: int, *, with_values: bool = False) -> AnalysisRun | None:
    measurements = AnalysisMeasurement.objects.order_by("position")
    if not with_values:
        measurements = measurements.defer("canary_values", "baseline_values")
    return (
        AnalysisRun.objects.filter(application=application, pk=pk)
        .select_related("environment")
        .prefetch_related(Prefetch("measurements", queryset=measurements))
        .first()
    )


def unknown_strategy_template(application_id: int, strategy: dict | None) -> str | None:
    """Why a rollout strategy cannot run here — it names an analysis template the application does not have — or
    None. The message starts with the strategy's field (`analysis.template: …`), as strategy errors do."""
    named = [
        (key, spec["template"])
        for key in ("analysis", "watch")
        if isinstance(spec := (strategy or {}).get(key), dict) and isinstance(spec.get("template"), str)
    ]
    if not named:
        return None
    known = set(AnalysisTemplate.objects.filter(application_id=application_id).values_list("name", flat=True))
    for key, name in named:
        if name not in known:
            have = ", ".join(sorted(known)) or "none yet: create one under analysis-templates/"
            return f"{key}.template: no analysis template {name!r} in this application; it has: {have}"
    return None

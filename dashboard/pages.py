"""What each page shows, built once for the view that serves it and the consumer that keeps it true."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.db.models import Prefetch
from django.urls import reverse
from django.utils import timezone

from dashboard.progress import rollout_progress
from environments.models import Environment, FreezeWindow, RegistrationToken, Target
from flags.models import Flag, FlagState, Segment
from monitoring import selectors as monitoring
from monitoring.charts import ComparisonChart, Sparkline, comparison_chart, sparkline
from monitoring.judge import format_value
from monitoring.models import Alert, AnalysisMeasurement, AnalysisRun, ErrorGroup
from monitoring.selectors import active_ingest_key
from releases import selectors
from releases.batches import Coverage, approval_coverage, describe_releases, group_key
from releases.models import ApiToken, Application, Approval, Artifact, Membership, Release, Rollout
from releases.permissions import Actor, Permission, can, refusal

IN_FLIGHT = (Release.Status.APPROVED, Release.Status.QUEUED, Release.Status.DEPLOYING)

RELEASE_RELATED = ("application", "environment", "artifact", "previous_artifact", "requested_by", "forced_by")


@dataclass(slots=True)
class ReleaseCard:
    release: Release
    batch: object
    state: object
    blocked: list
    coverage: Coverage

    @property
    def mine(self) -> set[str]:
        return set(self.coverage.authors)

    @property
    def on_behalf(self) -> bool:
        return self.coverage.on_behalf

    @property
    def covers(self) -> list[str]:
        """Whose changes an approval here covers, as people read them."""
        return [g.username or g.author for g in self.batch.groups if group_key(g) in self.mine]

    @property
    def waiting_long(self) -> bool:
        """Batches must not pile up: warn once one waits longer than the environment allows."""
        if self.release.status != Release.Status.PENDING_APPROVAL:
            return False
        age = timezone.now() - self.release.created_at
        return age.total_seconds() > self.release.environment.pending_warn_hours * 3600

    @property
    def large(self) -> bool:
        return self.batch.change_count > self.release.environment.pending_warn_changes

    @property
    def waiting_for_me(self) -> bool:
        return self.release.status == Release.Status.PENDING_APPROVAL and self.coverage.refusal is None


def release_cards(releases, user) -> list[ReleaseCard]:
    """Cards for a list of releases, in a number of queries that does not grow with the list."""
    releases = list(releases)
    described = describe_releases(releases)
    cards = []
    for release in releases:
        facts = described[release.pk]
        coverage = approval_coverage(Actor(user), release, facts.batch, facts.state, facts.approvals)
        cards.append(ReleaseCard(release, facts.batch, facts.state, facts.blocked_by, coverage))
    return cards


def release_card(release: Release, user) -> ReleaseCard:
    return release_cards([release], user)[0]


def inbox_page(user) -> dict:
    """The approvals inbox: pending releases the user sees, theirs first; `approvals_waiting` counts theirs."""
    pending = (
        Release.objects.filter(
            status=Release.Status.PENDING_APPROVAL, application__in=selectors.applications_for(user)
        )
        .select_related("application", "environment", "artifact", "previous_artifact", "requested_by")
        .prefetch_related(Prefetch("approvals", queryset=Approval.objects.select_related("user")))
        .order_by("created_at")
    )
    cards = release_cards(pending, user)
    cards.sort(key=lambda c: not c.waiting_for_me)
    return {"cards": cards, "approvals_waiting": sum(card.waiting_for_me for card in cards)}


@dataclass(slots=True)
class MetricChart:
    measurement: AnalysisMeasurement
    unit: str
    chart: ComparisonChart

    @property
    def canary_mean(self) -> str | None:
        mean = (self.measurement.canary or {}).get("mean")
        return None if mean is None else format_value(mean, self.unit)

    @property
    def baseline_mean(self) -> str | None:
        mean = (self.measurement.baseline or {}).get("mean")
        return None if mean is None else format_value(mean, self.unit)

    @property
    def failed(self) -> bool:
        return self.measurement.outcome in ("high", "low", "nodata_fail") or self.measurement.check_phase in (
            "failed",
            "error",
        )


@dataclass(slots=True)
class RunView:
    run: AnalysisRun
    metrics: list[MetricChart]

    @property
    def verdict_reason(self) -> str:
        return self.run.reasons[0] if self.run.reasons else self.run.verdict

    @property
    def details(self) -> list[str]:
        """The reasons after the first, minus each metric's (shown beside its chart)."""
        own = {m.measurement.reason for m in self.metrics}
        return [reason for reason in self.run.reasons[1:] if reason not in own]


def _run_view(run: AnalysisRun) -> RunView:
    units = {
        m.get("name"): m.get("unit", "") for m in (run.config or {}).get("metrics", []) if isinstance(m, dict)
    }
    canary_window = (run.started_at.timestamp(), run.ended_at.timestamp())
    baseline_window = (
        (run.baseline_started_at.timestamp(), run.baseline_ended_at.timestamp())
        if run.baseline_started_at and run.baseline_ended_at
        else canary_window
    )
    metrics = []
    for measurement in run.measurements.all():
        unit = units.get(measurement.metric, "")
        chart = comparison_chart(
            measurement.canary_values,
            measurement.baseline_values,
            canary_window=canary_window,
            baseline_window=baseline_window,
            unit=unit,
            step=(run.config or {}).get("interval_seconds"),
        )
        metrics.append(MetricChart(measurement, unit, chart))
    return RunView(run, metrics)


@dataclass(slots=True)
class ReleaseAnalysis:
    """The release's analysis runs (charts, verdicts, reasons), its alerts, its error groups and, when it failed or
    was reverted, what says why at the top of the page."""

    runs: list[RunView]
    alerts: list[Alert]
    error_groups: list[ErrorGroup]
    version: str
    failed: bool

    @property
    def failing_runs(self) -> list[RunView]:
        return [view for view in self.runs if view.run.verdict == AnalysisRun.Verdict.FAIL]

    @property
    def held_runs(self) -> list[RunView]:
        return [view for view in self.runs if view.run.verdict in ("marginal", "inconclusive")]

    @property
    def new_groups(self) -> list[ErrorGroup]:
        return [group for group in self.error_groups if group.first_seen_version == self.version]

    @property
    def summary(self) -> bool:
        return self.failed and bool(self.failing_runs or self.alerts)


RELEASE_ERROR_GROUPS = 50


def release_analysis(release: Release, rollout: Rollout | None) -> ReleaseAnalysis:
    """Four queries, however many runs, metrics and error groups."""
    version = release.artifact.version
    groups = list(
        monitoring.error_groups(release.application, environment=release.environment, version=version)[
            :RELEASE_ERROR_GROUPS
        ]
    )
    groups.sort(key=lambda g: (g.first_seen_version != version, -(getattr(g, "version_count", 0) or 0)))
    failed = release.status in (Release.Status.FAILED, Release.Status.ROLLED_BACK) or (
        rollout is not None
        and rollout.status in (Rollout.Status.FAILED, Rollout.Status.REVERTING, Rollout.Status.REVERTED)
    )
    alerts = monitoring.release_alerts(release.pk)
    return ReleaseAnalysis(
        runs=[_run_view(run) for run in monitoring.release_analysis_runs(release.pk)],
        alerts=alerts,
        error_groups=groups,
        version=version,
        failed=failed or any(alert.rollback_requested for alert in alerts),
    )


def release_page(release_id: int, user) -> dict | None:
    """The release page's context: the card (status, approvals, blocked-by), the timeline and the rollout."""
    release = Release.objects.select_related(*RELEASE_RELATED).filter(pk=release_id).first()
    if release is None:
        return None
    rollout_id = Rollout.objects.filter(release=release).values_list("pk", flat=True).first()
    rollout = selectors.rollout_page(rollout_id) if rollout_id else None
    return {
        "card": release_card(release, user),
        # Why Force is disabled (shown, with the role it needs, to everyone who sees a held release), or None.
        "force_refusal": refusal(Actor(user), Permission.FORCE, release.application, release.environment),
        # Why the rollout's controls are disabled (Pause/Resume/Cancel, and Revert now, which needs rollback).
        "control_refusal": refusal(
            Actor(user), Permission.REGISTER_ARTIFACT, release.application, release.environment
        ),
        "revert_refusal": refusal(Actor(user), Permission.ROLLBACK, release.application, release.environment),
        "timeline": selectors.release_timeline(release),
        "rollout": rollout,
        "progress": rollout_progress(rollout) if rollout else None,
        "analysis": release_analysis(release, rollout),
    }


def environment_page(environment: Environment | int, user) -> dict | None:
    """The environment page's context: what it runs, what is in flight, its hosts, locks and freezes, history.

    Give the environment loaded with its application and current artifact, or its id."""
    if not isinstance(environment, Environment):
        environment = (
            Environment.objects.select_related("application", "current_artifact")
            .filter(pk=environment)
            .first()
        )
        if environment is None:
            return None
    history = list(selectors.releases_of(environment.application).filter(environment=environment)[:50])
    targets, blue_green = selectors.targets_with_slots(environment)
    return {
        "environment": environment,
        "history": history,
        "targets": targets,
        "blue_green": blue_green,
        "in_flight": [r for r in history if r.status in IN_FLIGHT],
        "rollback_targets": list(selectors.rollback_candidates(environment)[:20]),
        "locks": environment.locks.filter(released_at__isnull=True).select_related("locked_by"),
        "freezes": FreezeWindow.objects.filter(environment=environment).order_by("pk"),
        "can_rollback": can(Actor(user), Permission.ROLLBACK, environment.application, environment),
        # Why Lock (and Unlock of someone else's lock) is disabled: a person may always release their own lock.
        "lock_refusal": refusal(Actor(user), Permission.LOCK, environment.application, environment),
        "slipway_url": settings.SLIPWAY_BASE_URL.rstrip("/"),
    }


def active_rollout_of(environment_id: int) -> int | None:
    """The rollout running in an environment now, if any: its hosts' versions change with each step."""
    return (
        Rollout.objects.filter(
            release__environment_id=environment_id,
            status__in=(
                Rollout.Status.PENDING,
                Rollout.Status.RUNNING,
                Rollout.Status.PAUSED,
                Rollout.Status.REVERTING,
            ),
        )
        .values_list("pk", flat=True)
        .first()
    )


def promotions(environments: list[Environment]) -> list[tuple[Environment, object]]:
    """(environment, build) for each environment whose predecessor in the pipeline runs a build it does not."""
    return [
        (environment, before.current_artifact)
        for before, environment in zip(environments, environments[1:], strict=False)
        if before.current_artifact is not None
        and before.current_artifact_id != environment.current_artifact_id
    ]


def application_page(application: Application, user) -> dict:
    """The application page's context: its pipeline, what waits between environments, its builds; for `user`, why
    each promotion and "Show what would ship" are disabled (the role they need), or None where they may."""
    environments = list(selectors.environments_of(application))
    actor = Actor(user)
    return {
        "application": application,
        "environments": environments,
        "promotions": [
            (environment, build, refusal(actor, Permission.REGISTER_ARTIFACT, application, environment))
            for environment, build in promotions(environments)
        ],
        "release_refusal": refusal(actor, Permission.REGISTER_ARTIFACT, application),
        "artifacts": selectors.application_page(application),
        "waiting": selectors.releases_of(application).filter(
            status__in=[Release.Status.PENDING_APPROVAL, *IN_FLIGHT]
        ),
        "ingest_key": active_ingest_key(application),
    }


ERROR_RANGES = {"24h": (24, 1), "7d": (168, 6)}  # hours shown, hours per bar
ERRORS_PAGE_GROUPS = 100


@dataclass(slots=True)
class ErrorRow:
    group: ErrorGroup
    spark: Sparkline
    resolve_refusal: str | None = None  # why the viewer may not resolve it (None: they may)

    @property
    def in_range(self) -> int:
        return self.spark.total


def errors_page(
    application: Application,
    *,
    environment: Environment | None,
    span: str,
    actor: Actor | None = None,
    now=None,
) -> dict:
    """The application's error groups (most recent first, up to ERRORS_PAGE_GROUPS) with a sparkline of their
    events over the range, and whether `actor` may resolve each: three queries, however many groups."""
    hours, per_bar = ERROR_RANGES[span]
    now = now or timezone.now()
    end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    since = end - timedelta(hours=hours)
    groups = list(monitoring.error_groups(application, environment=environment)[:ERRORS_PAGE_GROUPS])
    counts = monitoring.hourly_counts([g.pk for g in groups], since, hours)
    refusals: dict[int, str | None] = {}  # per environment; roles are read once per user
    rows = []
    for group in groups:
        hourly = counts[group.pk]
        bars = [sum(hourly[i : i + per_bar]) for i in range(0, hours, per_bar)]
        if actor is not None and group.environment_id not in refusals:
            refusals[group.environment_id] = refusal(
                actor, Permission.RESOLVE_ERRORS, application, group.environment
            )
        rows.append(ErrorRow(group, sparkline(bars), refusals.get(group.environment_id, "Log in first.")))
    return {
        "application": application,
        "environments": list(
            Environment.objects.filter(application=application).order_by("position", "name")
        ),
        "environment": environment,
        "rows": rows,
        "span": span,
        "spans": list(ERROR_RANGES),
        "since": since,
        "bar_hours": per_bar,
        "limit": ERRORS_PAGE_GROUPS,
    }


@dataclass(slots=True)
class AuditRow:
    event: object
    label: str  # the object as people name it: "Release #12: 1.4.0 to production", "shop/production", "flag beta"
    url: str | None  # its page, while it exists


def audit_rows(events, viewer=None) -> list[AuditRow]:
    """Each event with a readable name and a link for its object: one query per kind of object on the page. A token
    links to the Tokens page for its own user (`viewer`) only: that page lists the viewer's tokens."""
    events = list(events)
    wanted: dict[str, set[int]] = {}
    for event in events:
        if event.object_id.isdigit():
            wanted.setdefault(event.object_type, set()).add(int(event.object_id))
    found: dict[str, dict[int, object]] = {}
    lookups = {
        "releases.release": Release.objects.select_related("application", "environment", "artifact"),
        "releases.artifact": Artifact.objects.select_related("application"),
        "flags.flag": Flag.objects.select_related("application"),
        "flags.flagstate": FlagState.objects.select_related("flag__application", "environment"),
        "environments.target": Target.objects.select_related("environment__application"),
        "environments.registrationtoken": RegistrationToken.objects.select_related(
            "environment__application"
        ),
        "flags.segment": Segment.objects.select_related("application"),
        "releases.membership": Membership.objects.select_related("application", "user", "environment"),
        "releases.apitoken": ApiToken.objects.select_related("user"),
        "monitoring.errorgroup": ErrorGroup.objects.select_related("application", "environment"),
        "releases.rollout": Rollout.objects.select_related("release__artifact", "release__environment"),
    }
    for object_type, queryset in lookups.items():
        if object_type in wanted:
            found[object_type] = queryset.in_bulk(wanted[object_type])

    def environment_link(environment) -> str:
        return reverse("dashboard:environment", args=[environment.application.slug, environment.name])

    rows = []
    for event in events:
        kind, key = event.object_type, int(event.object_id) if event.object_id.isdigit() else None
        target = found.get(kind, {}).get(key) if key is not None else None
        environment = event.environment
        label, url = event.object_repr, None
        if isinstance(target, Release):
            label = f"Release #{target.pk}: {target.artifact.version} to {target.environment.name}"
            url = reverse("dashboard:release", args=[target.pk])
        elif isinstance(target, Artifact):
            label, url = (
                f"build {target.version}",
                reverse("dashboard:application", args=[target.application.slug]),
            )
        elif isinstance(target, Flag):
            label = f"flag {target.key}"
            url = reverse("flags:detail", args=[target.application.slug, target.key])
        elif isinstance(target, FlagState):
            label = f"flag {target.flag.key} in {target.environment.name}"
            url = reverse("flags:detail", args=[target.flag.application.slug, target.flag.key])
        elif isinstance(target, Target):
            label, url = (
                f"host {target.name} in {target.environment.name}",
                environment_link(target.environment),
            )
        elif isinstance(target, RegistrationToken):  # events recorded before its name said the environment's
            label = f"registration token for {target.environment.label}"
            url = environment_link(target.environment)
        elif kind == "environments.environment" and environment is not None:
            label, url = f"{environment.application.slug}/{environment.name}", environment_link(environment)
        elif kind == "releases.application" and event.application is not None:
            label, url = (
                event.application.name,
                reverse("dashboard:application", args=[event.application.slug]),
            )
        elif isinstance(target, Segment):
            label = f"segment {target.name}"
            url = reverse("flags:list", args=[target.application.slug]) + "#segments"
        elif isinstance(target, Membership):
            where = f" on {target.environment.name}" if target.environment_id else ""
            label = f"{target.get_role_display().lower()} role of {target.user.get_username()}{where}"
            url = reverse("dashboard:members", args=[target.application.slug])
        elif (
            kind == "releases.membership" and event.application is not None
        ):  # revoked: the membership is gone
            url = reverse("dashboard:members", args=[event.application.slug])
        elif isinstance(target, ApiToken):
            label = f"API token {target.name} of {target.user.get_username()}"
            url = reverse("dashboard:tokens") if viewer is not None and target.user_id == viewer.pk else None
        elif isinstance(target, ErrorGroup):
            label = f"error {target.title[:80]} in {target.environment.name}"
            url = (
                reverse("dashboard:errors", args=[target.application.slug])
                + "?"
                + urlencode({"environment": target.environment.name})
            )
        elif isinstance(target, Rollout):
            release = target.release
            label = (
                f"rollout of release #{release.pk}: {release.artifact.version} to {release.environment.name}"
            )
            url = reverse("dashboard:release", args=[release.pk])
        elif kind == "releases.githubhook" and event.application is not None:
            label = f"GitHub hook for {event.application.name}"
            url = reverse("dashboard:application", args=[event.application.slug])
        elif kind in ("environments.lock", "environments.freezewindow") and environment is not None:
            what = "lock" if kind == "environments.lock" else "freeze window"
            label, url = f"{what} on {environment.name}", environment_link(environment)
        elif environment is not None:
            url = environment_link(environment)
        rows.append(AuditRow(event=event, label=label, url=url))
    return rows

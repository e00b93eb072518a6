"""Is it healthy: the signals that come in (error events grouped by fingerprint, metric samples) and the keys
applications send them with.

Error storage is bounded: a group keeps its newest `ErrorEvent.KEEP_PER_GROUP` events (up to twice that between
two prunes); how many there were, per version and hour, is in `ErrorCount`.
"""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models


class IngestKey(models.Model):
    """The public key in an application's Sentry DSN (`http://<key>@host/<application id>`). Rotating it revokes
    the old one: SDKs still configured with it get 401."""

    application = models.ForeignKey(
        "releases.Application", on_delete=models.CASCADE, related_name="ingest_keys"
    )
    public_key = models.CharField(max_length=32, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["application"], condition=models.Q(revoked_at=None), name="ingestkey_one_active"
            )
        ]

    def __str__(self) -> str:
        return f"{self.public_key[:8]}…"

    @staticmethod
    def new_public_key() -> str:
        return secrets.token_hex(16)

    @property
    def dsn(self) -> str:
        return dsn_for(self.public_key, self.application_id)


def dsn_for(public_key: str, application_id: int) -> str:
    """`http://<key>@<host>[/<path>]/<application id>`, from SLIPWAY_BASE_URL."""
    scheme, _, rest = settings.SLIPWAY_BASE_URL.rstrip("/").partition("://")
    return f"{scheme}://{public_key}@{rest}/{application_id}"


class ErrorGroup(models.Model):
    """Events of one fingerprint in one environment. `first_seen_version` makes it new in that version."""

    class Status(models.TextChoices):
        NEW = "new"
        REGRESSED = "regressed"  # seen again after it was resolved
        RESOLVED = "resolved"

    application = models.ForeignKey(
        "releases.Application", on_delete=models.CASCADE, related_name="error_groups"
    )
    environment = models.ForeignKey(
        "environments.Environment", on_delete=models.CASCADE, related_name="error_groups"
    )
    fingerprint = models.CharField(max_length=32)
    type = models.CharField(max_length=200)
    title = models.CharField(max_length=500)
    culprit = models.CharField(max_length=300, blank=True)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    count = models.PositiveBigIntegerField(default=0)
    first_seen_version = models.CharField(max_length=100, blank=True)
    last_seen_version = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.NEW)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["application", "environment", "fingerprint"], name="errorgroup_unique_fingerprint"
            )
        ]
        indexes = [models.Index(fields=["environment", "-last_seen"], name="errorgroup_env_recent")]

    def __str__(self) -> str:
        return self.title


class ErrorEvent(models.Model):
    """One occurrence, as sent (message and stack trace truncated); only a group's newest events are kept
    (`KEEP_PER_GROUP`, up to twice that between two prunes)."""

    KEEP_PER_GROUP = 100

    group = models.ForeignKey(ErrorGroup, on_delete=models.CASCADE, related_name="events")
    event_id = models.CharField(max_length=32)
    version = models.CharField(max_length=100, blank=True)
    target = models.CharField(max_length=100, blank=True)
    message = models.TextField(blank=True)
    stacktrace = models.TextField(blank=True)
    timestamp = models.DateTimeField()
    received_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["group", "-id"], name="errorevent_group_newest")]

    def __str__(self) -> str:
        return self.event_id


class ErrorCount(models.Model):
    """How many events a group had in one version during one hour (kept when the events themselves are not), and
    the first and last of them: a window over part of the hour counts the events spread over that span, not over
    the whole hour (a version that ran five minutes of it had all its events in those five minutes)."""

    group = models.ForeignKey(ErrorGroup, on_delete=models.CASCADE, related_name="counts")
    version = models.CharField(max_length=100, blank=True)
    hour = models.DateTimeField()
    count = models.PositiveBigIntegerField(default=0)
    first_at = models.DateTimeField(
        null=True, blank=True
    )  # null: counted before these were kept (whole hour)
    last_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["group", "version", "hour"], name="errorcount_unique")]

    def __str__(self) -> str:
        return f"{self.group_id} {self.version} {self.hour:%Y-%m-%d %H}h ×{self.count}"


class Sample(models.Model):
    """One measurement pushed (or recorded from agents' health checks): a name, a value and where it was taken."""

    application = models.ForeignKey("releases.Application", on_delete=models.CASCADE, related_name="+")
    environment = models.ForeignKey("environments.Environment", on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=100)
    value = models.FloatField()
    timestamp = models.DateTimeField()
    version = models.CharField(max_length=100, blank=True)
    target = models.CharField(max_length=100, blank=True)
    labels = models.JSONField(default=dict, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["application", "environment", "name", "version", "timestamp"], name="sample_series"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name}={self.value}"


class MetricSource(models.Model):
    """Where an analysis reads a metric: a Prometheus server, or the samples pushed to Slipway. The secret (a
    bearer token or a basic-auth password) is stored to be sent, never shown: the API and audit say only whether
    there is one."""

    class Kind(models.TextChoices):
        PROMETHEUS = "prometheus"
        PUSHED = "pushed"

    class Auth(models.TextChoices):
        NONE = "none"
        BEARER = "bearer"
        BASIC = "basic"

    class OnMissingData(models.TextChoices):
        FAIL = "fail"
        INCONCLUSIVE = "inconclusive"
        PASS = "pass"  # the metric is left out

    application = models.ForeignKey(
        "releases.Application", on_delete=models.CASCADE, related_name="metric_sources"
    )
    name = models.SlugField(max_length=63)
    kind = models.CharField(max_length=12, choices=Kind.choices)
    url = models.CharField(
        max_length=500, blank=True, help_text="Prometheus' base URL (its /api/v1/ is below)."
    )
    auth = models.CharField(max_length=8, choices=Auth.choices, default=Auth.NONE)
    username = models.CharField(max_length=200, blank=True)
    secret = models.CharField(max_length=2000, blank=True, help_text="Bearer token or basic-auth password.")
    timeout_seconds = models.FloatField(default=5.0)
    on_missing_data = models.CharField(
        max_length=12, choices=OnMissingData.choices, default=OnMissingData.INCONCLUSIVE
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["application", "name"], name="metricsource_unique_name")
        ]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class AnalysisTemplate(models.Model):
    """How to judge a version: metrics (source, query, direction, weight, optional threshold check), how long to
    measure (`count` × `interval_seconds`) and the score thresholds. Reused across environments."""

    application = models.ForeignKey(
        "releases.Application", on_delete=models.CASCADE, related_name="analysis_templates"
    )
    name = models.SlugField(max_length=63)
    description = models.TextField(blank=True)
    interval_seconds = models.PositiveIntegerField(default=60)
    count = models.PositiveIntegerField(default=10)
    pass_threshold = models.FloatField(default=95.0)
    marginal_threshold = models.FloatField(default=75.0)
    metrics = models.JSONField(default=list, help_text="Validated by monitoring.analysis.parse_metrics.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["application", "name"], name="analysistemplate_unique_name")
        ]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class AnalysisRun(models.Model):
    """One judgment of a canary version against a baseline over a window, with its verdict and reasons."""

    class Verdict(models.TextChoices):
        PASS = "pass"
        MARGINAL = "marginal"
        INCONCLUSIVE = "inconclusive"
        FAIL = "fail"

    class Status(models.TextChoices):
        COMPLETE = "complete"  # every metric was measured
        PARTIAL = "partial"  # some metrics had no data
        NO_DATA = "no_data"  # none had

    application = models.ForeignKey(
        "releases.Application", on_delete=models.CASCADE, related_name="analysis_runs"
    )
    template = models.ForeignKey(
        AnalysisTemplate, on_delete=models.SET_NULL, null=True, blank=True, related_name="runs"
    )
    template_name = models.CharField(max_length=63)
    config = models.JSONField(default=dict, help_text="The template as it was judged.")
    environment = models.ForeignKey("environments.Environment", on_delete=models.CASCADE, related_name="+")
    release = models.ForeignKey(
        "releases.Release", on_delete=models.SET_NULL, null=True, blank=True, related_name="analysis_runs"
    )
    rollout_id = models.PositiveBigIntegerField(null=True, blank=True)
    canary_version = models.CharField(max_length=100)
    baseline_version = models.CharField(max_length=100, blank=True)
    canary_targets = models.JSONField(default=list, blank=True)
    baseline_targets = models.JSONField(default=list, blank=True)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField()
    # The baseline's own window when it is not the canary's: the previous version before the rollout, once no
    # target is left on it (the last wave, the post-deploy watch).
    baseline_started_at = models.DateTimeField(null=True, blank=True)
    baseline_ended_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices)
    verdict = models.CharField(max_length=12, choices=Verdict.choices)
    score = models.FloatField(
        null=True, blank=True, help_text="The canary judge's score; null when it did not run."
    )
    reasons = models.JSONField(default=list, help_text="The verdict's reason first, then each metric's.")
    duration_ms = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["application", "-id"], name="analysisrun_app_newest"),
            models.Index(fields=["release", "-id"], name="analysisrun_release_newest"),
        ]

    def __str__(self) -> str:
        return f"{self.template_name} {self.canary_version}: {self.verdict}"


class AnalysisMeasurement(models.Model):
    """One metric of a run: what was asked, what came back (summarised, raw values capped), and its outcome."""

    MAX_VALUES = 2000

    run = models.ForeignKey(AnalysisRun, on_delete=models.CASCADE, related_name="measurements")
    position = models.PositiveSmallIntegerField()
    metric = models.CharField(max_length=63)
    source = models.CharField(max_length=63)
    source_kind = models.CharField(max_length=12)
    canary_query = models.TextField(blank=True)
    baseline_query = models.TextField(blank=True)
    outcome = models.CharField(
        max_length=12, help_text="pass, high, low, nodata, nodata_fail, missing or ignored."
    )
    check_phase = models.CharField(
        max_length=12, blank=True, help_text="The threshold check's phase, if any."
    )
    reason = models.TextField()
    canary = models.JSONField(default=dict, help_text="count, mean, min, max and quantiles.")
    baseline = models.JSONField(default=dict)
    canary_values = models.JSONField(
        default=list, help_text="[epoch seconds, value] pairs, at most MAX_VALUES."
    )
    baseline_values = models.JSONField(default=list)

    class Meta:
        ordering = ["run", "position"]

    def __str__(self) -> str:
        return f"{self.metric}: {self.outcome}"


class Alert(models.Model):
    """Something went wrong after a deploy: an error group new in the release's version, or an error rate
    significantly above the previous version's. Raised once per release and group (or kind): de-duplicated by
    the unique constraint, so a periodic check that sees the same thing again raises nothing."""

    class Kind(models.TextChoices):
        NEW_ERROR = "new_error"
        ERROR_RATE = "error_rate"

    application = models.ForeignKey("releases.Application", on_delete=models.CASCADE, related_name="alerts")
    environment = models.ForeignKey("environments.Environment", on_delete=models.CASCADE, related_name="+")
    release = models.ForeignKey("releases.Release", on_delete=models.CASCADE, related_name="alerts")
    kind = models.CharField(max_length=12, choices=Kind.choices)
    group = models.ForeignKey(ErrorGroup, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    key = models.CharField(
        max_length=64, blank=True, help_text="What makes it one alert: the group's fingerprint."
    )
    reason = models.TextField()
    details = models.JSONField(default=dict, help_text="Counts, windows, rates, ratio and p-value.")
    rollback_requested = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["release", "kind", "key"], name="alert_once_per_release")
        ]
        indexes = [models.Index(fields=["application", "-id"], name="alert_app_newest")]

    def __str__(self) -> str:
        return f"{self.kind} {self.key}: {self.reason[:60]}"

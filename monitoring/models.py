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

    application = models.ForeignKey("releases.Application", on_delete=models.CASCADE, related_name="ingest_keys")
    public_key = models.CharField(max_length=32, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["application"], condition=models.Q(revoked_at=None),
                                               name="ingestkey_one_active")]

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

    application = models.ForeignKey("releases.Application", on_delete=models.CASCADE, related_name="error_groups")
    environment = models.ForeignKey("environments.Environment", on_delete=models.CASCADE, related_name="error_groups")
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
        constraints = [models.UniqueConstraint(fields=["application", "environment", "fingerprint"],
                                               name="errorgroup_unique_fingerprint")]
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
    """How many events a group had in one version during one hour (kept when the events themselves are not)."""

    group = models.ForeignKey(ErrorGroup, on_delete=models.CASCADE, related_name="counts")
    version = models.CharField(max_length=100, blank=True)
    hour = models.DateTimeField()
    count = models.PositiveBigIntegerField(default=0)

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
        indexes = [models.Index(fields=["application", "environment", "name", "version", "timestamp"],
                                name="sample_series")]

    def __str__(self) -> str:
        return f"{self.name}={self.value}"

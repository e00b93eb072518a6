"""Feature flags: definitions per application, state per environment, segments, history and usage counts."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

KEY_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,127}$"


class Flag(models.Model):
    class Type(models.TextChoices):
        BOOLEAN = "boolean"
        STRING = "string"
        NUMBER = "number"
        OBJECT = "object"

    application = models.ForeignKey("releases.Application", on_delete=models.CASCADE, related_name="flags")
    key = models.CharField(max_length=128, validators=[RegexValidator(KEY_PATTERN)])
    name = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    type = models.CharField(max_length=10, choices=Type.choices, default=Type.BOOLEAN)
    variants = models.JSONField(default=dict)
    owner = models.CharField(max_length=150, blank=True)
    tags = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    archived_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["key"]
        constraints = [models.UniqueConstraint(fields=["application", "key"], name="flag_unique_key")]

    def __str__(self) -> str:
        return self.key


class FlagState(models.Model):
    """How a flag behaves in one environment: what the engine compiles."""

    flag = models.ForeignKey(Flag, on_delete=models.CASCADE, related_name="states")
    environment = models.ForeignKey(
        "environments.Environment", on_delete=models.CASCADE, related_name="flag_states"
    )
    enabled = models.BooleanField(default=False)
    off_variant = models.CharField(max_length=100)
    default_variant = models.CharField(max_length=100)
    rules = models.JSONField(default=list, blank=True)
    rollout = models.JSONField(null=True, blank=True)
    prerequisites = models.JSONField(default=list, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["flag", "environment"], name="flagstate_unique")]

    def __str__(self) -> str:
        return f"{self.flag_id}@{self.environment_id}"


class Segment(models.Model):
    """A named, reusable set of conditions (AND) that rules refer to."""

    application = models.ForeignKey("releases.Application", on_delete=models.CASCADE, related_name="segments")
    name = models.CharField(max_length=100, validators=[RegexValidator(KEY_PATTERN)])
    description = models.TextField(blank=True)
    conditions = models.JSONField(default=list)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["application", "name"], name="segment_unique_name")]

    def __str__(self) -> str:
        return self.name


class FlagEvent(models.Model):
    """A flag's history: every change with who, when and the state before and after (revertible)."""

    flag = models.ForeignKey(Flag, on_delete=models.CASCADE, related_name="events")
    environment = models.ForeignKey(
        "environments.Environment", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_label = models.CharField(max_length=200)
    kind = models.CharField(max_length=40)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.kind} {self.flag_id}"


class EvaluationCount(models.Model):
    """Evaluations per flag, variant and hour, aggregated in memory and flushed in batches."""

    environment = models.ForeignKey("environments.Environment", on_delete=models.CASCADE, related_name="+")
    flag_key = models.CharField(max_length=128)
    variant = models.CharField(max_length=100)
    hour = models.DateTimeField()
    count = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "flag_key", "variant", "hour"], name="evalcount_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.flag_key}={self.variant} ×{self.count}"


class ChangeRequest(models.Model):
    """A proposed change to a flag in an environment that needs a second person: proposer ≠ approver."""

    class Status(models.TextChoices):
        OPEN = "open"
        APPLIED = "applied"
        REJECTED = "rejected"

    flag = models.ForeignKey(Flag, on_delete=models.CASCADE, related_name="change_requests")
    environment = models.ForeignKey("environments.Environment", on_delete=models.CASCADE, related_name="+")
    changes = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    proposed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"change request #{self.pk} on {self.flag_id}"


class ScheduledChange(models.Model):
    """At `run_at`, apply `changes` (enabled, rollout, rules…) to a flag in an environment."""

    flag = models.ForeignKey(Flag, on_delete=models.CASCADE, related_name="schedules")
    environment = models.ForeignKey("environments.Environment", on_delete=models.CASCADE, related_name="+")
    changes = models.JSONField()
    run_at = models.DateTimeField(db_index=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    applied_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["run_at"]

    def __str__(self) -> str:
        return f"{self.flag_id} at {self.run_at}"

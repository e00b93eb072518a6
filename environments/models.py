"""Where things run: each application's pipeline of environments."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from releases.models import slug_validator


class Environment(models.Model):
    application = models.ForeignKey(
        "releases.Application", on_delete=models.CASCADE, related_name="environments"
    )
    name = models.CharField(max_length=63, validators=[slug_validator])
    position = models.PositiveIntegerField(help_text="Place in the pipeline: lower ships first.")
    requires_approval = models.BooleanField(default=False)

    class ApprovalPolicy(models.TextChoices):
        AUTHORS = "authors", "Every author in the batch approves their own changes"
        REVIEWERS = "reviewers", "N approvals from people outside the batch"
        NONE = "none", "No approval"

    approval_policy = models.CharField(
        max_length=10, choices=ApprovalPolicy.choices, default=ApprovalPolicy.AUTHORS
    )
    required_approvals = models.PositiveSmallIntegerField(default=1, help_text="For the reviewers policy.")
    auto_promote = models.BooleanField(default=False, help_text="Take every new artifact as soon as it can.")
    pending_warn_hours = models.PositiveIntegerField(default=24, help_text="Warn when a batch waits longer.")
    pending_warn_changes = models.PositiveIntegerField(
        default=20, help_text="Warn when a batch grows larger."
    )

    class Driver(models.TextChoices):
        AGENT = "agent", "Deploy agents on the targets"
        COMMAND = "command", "Slipway runs a command per target"
        WEBHOOK = "webhook", "Slipway calls a URL per target and waits for a signed callback"

    driver = models.CharField(max_length=10, choices=Driver.choices, default=Driver.AGENT)
    deploy_command = models.CharField(max_length=1000, blank=True, help_text="The command driver's command.")
    webhook_url = models.URLField(max_length=500, blank=True, help_text="The webhook driver's URL.")
    webhook_secret = models.CharField(
        max_length=200, blank=True, help_text="Signs calls and callbacks (HMAC SHA-256)."
    )
    pre_deploy_command = models.CharField(
        max_length=1000,
        blank=True,
        help_text="Run once before the first wave, e.g. backwards-compatible migrations.",
    )
    manual_gates = models.BooleanField(
        default=False, help_text="A person resumes the rollout after each wave."
    )
    strategy = models.JSONField(
        default=dict, blank=True, help_text='Rollout strategy, e.g. {"kind": "cautious"}.'
    )
    step_timeout_seconds = models.PositiveIntegerField(default=300)
    heartbeat_timeout_seconds = models.PositiveIntegerField(default=30)
    rollback_batch_size = models.PositiveIntegerField(
        null=True, blank=True, help_text="Empty: all targets at once."
    )
    smoke_test_urls = models.JSONField(default=list, blank=True)
    smoke_test_command = models.CharField(
        max_length=1000, blank=True, help_text="Run by the worker after every wave; exit 0 passes."
    )
    switch_command = models.CharField(
        max_length=1000,
        blank=True,
        help_text="Blue/green: moves traffic to SLIPWAY_SLOT (run by the worker).",
    )

    class Slot(models.TextChoices):
        BLUE = "blue"
        GREEN = "green"

    live_slot = models.CharField(
        max_length=5,
        choices=Slot.choices,
        default=Slot.BLUE,
        help_text="Blue/green: the slot serving traffic; moved by each switch.",
    )
    flag_change_requests = models.BooleanField(
        default=False, help_text="Flag changes here need a second person."
    )
    # db_default: workers of the release before this column still insert environments without it.
    rollback_on_new_errors = models.BooleanField(
        default=False,
        db_default=False,
        help_text="A new-error or error-rate alert after a release rolls back to the previous version.",
    )
    flags_version = models.PositiveBigIntegerField(
        default=0, help_text="Bumped by every flag change: snapshot caches compare it."
    )
    description = models.TextField(blank=True)
    current_artifact = models.ForeignKey(
        "releases.Artifact",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="What runs here now; moved only by deployment services.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["application_id", "position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["application", "name"], name="environment_unique_name"),
            models.UniqueConstraint(fields=["application", "position"], name="environment_unique_position"),
        ]

    def __str__(self) -> str:
        return f"{self.application_id}/{self.name}"

    @property
    def label(self) -> str:
        return f"{self.application.slug}/{self.name}"


class Lock(models.Model):
    """A person holds promotions to an environment until they unlock it."""

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="locks")
    reason = models.TextField()
    locked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    released_at = models.DateTimeField(null=True, blank=True)
    released_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"lock on {self.environment_id}: {self.reason[:40]}"


class FreezeWindow(models.Model):
    """No promotions inside the window: recurring (weekdays + times in a time zone) or one-off (start/end)."""

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="freezes")
    reason = models.CharField(max_length=500)
    # One-off range (UTC instants).
    starts_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)
    # Recurring: ISO weekdays (1 = Monday) and local times; end before start wraps past midnight.
    weekdays = models.JSONField(default=list, blank=True)
    start_time = models.TimeField(null=True, blank=True)
    end_time = models.TimeField(null=True, blank=True)
    timezone = models.CharField(max_length=64, default="UTC")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"freeze on {self.environment_id}: {self.reason[:40]}"


class Target(models.Model):
    """A host (or slot) of an environment, with the deploy agent registered on it.

    The agent authenticates with its own token (only the hash is kept) and heartbeats; a target whose agent
    misses heartbeats is offline and its running step fails.
    """

    class Status(models.TextChoices):
        ONLINE = "online"
        OFFLINE = "offline"

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="targets")
    name = models.CharField(max_length=100)
    hostname = models.CharField(max_length=255, blank=True)
    agent_version = models.CharField(max_length=40, blank=True)
    token_hash = models.CharField(max_length=64, unique=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ONLINE)
    version = models.CharField(max_length=100, blank=True, help_text="The artifact version it runs now.")
    last_seen = models.DateTimeField(null=True, blank=True)
    registered_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["environment_id", "name"]
        constraints = [models.UniqueConstraint(fields=["environment", "name"], name="target_unique_name")]

    def __str__(self) -> str:
        return self.name


class RegistrationToken(models.Model):
    """Lets agents join an environment as targets; only the hash is kept."""

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="registration_tokens")
    token_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"registration token for {self.environment.label}"

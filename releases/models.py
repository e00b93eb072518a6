"""What runs: applications, their immutable artifacts and the changes they bring, who may act, and the audit trail."""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator, RegexValidator
from django.db import models
from django.db.models.functions import Lower

from releases.exceptions import ArtifactImmutable

SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
SHA_PATTERN = r"^[0-9a-f]{40}$"
VERSION_PATTERN = r"^\S{1,100}$"

slug_validator = RegexValidator(
    SLUG_PATTERN, "Use 1–63 lowercase letters, digits and dashes, starting with a letter or digit."
)
sha_validator = RegexValidator(SHA_PATTERN, "Must be a 40-character lowercase hex commit sha.")

# A forge login (GitHub, GitLab; bots end in "[bot]") or an email address: what CI reports as a change's author.
LOGIN_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}(\[bot\])?$"
IDENTITY_HELP = "Give a login (letters, digits, '.', '_' or '-') or an email address."
_login_validator = RegexValidator(LOGIN_PATTERN, IDENTITY_HELP)
_email_validator = EmailValidator(IDENTITY_HELP)


def identity_validator(value: str) -> None:
    """A login or an email address, nothing else (no spaces, no markup)."""
    if len(value) > 254:
        raise ValidationError(IDENTITY_HELP)
    (_email_validator if "@" in value else _login_validator)(value)


def email_proves(email: str, identity: str) -> bool:
    """An identity is proven a user's when it is their email: an administrator sets it, nobody changes their own."""
    return bool(email) and email.lower() == identity.lower()


class Application(models.Model):
    slug = models.CharField(max_length=63, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=200)
    repository_url = models.URLField(max_length=500, blank=True)
    # Moves with every change of who may act here (roles granted or revoked, pinned tokens revoked): processes
    # caching token checks (the OFREP route) re-check a token when it moves. `db_default`: old code inserts rows.
    access_version = models.PositiveBigIntegerField(default=0, db_default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


class Change(models.Model):
    """A commit as CI reports it; stored once per application whatever number of artifacts bring it."""

    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="changes")
    sha = models.CharField(max_length=40, validators=[sha_validator])
    author = models.CharField(max_length=254, help_text="Login or email as CI reports it.")
    title = models.CharField(max_length=500)
    url = models.URLField(max_length=500, blank=True)
    committed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["application", "sha"], name="change_unique_sha")]
        ordering = ["committed_at", "id"]

    def __str__(self) -> str:
        return f"{self.sha[:8]} {self.title}"


class Artifact(models.Model):
    """One build, promoted unchanged through every environment. Never updated once registered."""

    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="artifacts")
    version = models.CharField(max_length=100, validators=[RegexValidator(VERSION_PATTERN, "No whitespace.")])
    commit = models.CharField(max_length=40, validators=[sha_validator])
    image = models.CharField(
        max_length=500, help_text="Image or package reference, e.g. an OCI reference with digest."
    )
    build_url = models.URLField(max_length=500, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    changes = models.ManyToManyField(Change, related_name="artifacts", blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["application", "version"], name="artifact_unique_version")
        ]
        indexes = [models.Index(fields=["application", "-created_at", "-id"], name="artifact_newest")]
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.application_id}:{self.version}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise ArtifactImmutable(f"Artifact {self.version} is immutable.")
        super().save(*args, **kwargs)


class AuthorIdentity(models.Model):
    """An extra login or email a team member commits under (username and email count already).

    Only a confirmed link maps changes to its user; a pending one is a request someone else must confirm.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        CONFIRMED = "confirmed"
        DECLINED = "declined"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="author_identities"
    )
    identity = models.CharField(max_length=254, validators=[identity_validator])
    # db_default: rows written by the previous release (no status) are the confirmed links they always were.
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.CONFIRMED, db_default=Status.CONFIRMED
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Who confirmed or declined it; empty when proven.",
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                Lower("identity"), condition=models.Q(status="confirmed"), name="identity_confirmed_unique_ci"
            ),
            models.UniqueConstraint(
                "user",
                Lower("identity"),
                condition=models.Q(status="pending"),
                name="identity_request_unique_ci",
            ),
        ]

    def __str__(self) -> str:
        return self.identity


class Role(models.TextChoices):
    VIEWER = "viewer", "Viewer"
    DEVELOPER = "developer", "Developer"
    RELEASE_MANAGER = "release_manager", "Release manager"
    FLAG_EDITOR = "flag_editor", "Flag editor"
    ADMIN = "admin", "Admin"


class Membership(models.Model):
    """A role on one application; a flag editor's role may be limited to one environment."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices)
    environment = models.ForeignKey(
        "environments.Environment", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "application", "role", "environment"], name="membership_unique"
            ),
            models.UniqueConstraint(
                fields=["user", "application", "role"],
                condition=models.Q(environment=None),
                name="membership_unique_app_wide",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.role} on {self.application}"


class Scope(models.TextChoices):
    RELEASES_READ = "releases:read"
    RELEASES_WRITE = "releases:write"
    APPROVALS_WRITE = "approvals:write"
    FLAGS_READ = "flags:read"
    FLAGS_WRITE = "flags:write"
    METRICS_WRITE = "metrics:write"
    ADMIN = "admin"


# Writing implies reading the same things; approving implies reading what you approve.
IMPLIED_BY: dict[str, set[str]] = {
    Scope.RELEASES_READ: {Scope.RELEASES_WRITE, Scope.APPROVALS_WRITE},
    Scope.FLAGS_READ: {Scope.FLAGS_WRITE},
}


class ApiToken(models.Model):
    """A bearer token acting as its user, narrowed to scopes and optionally one environment. Only its hash is kept."""

    PREFIX = "slw_"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    key_hash = models.CharField(max_length=64, unique=True)
    hint = models.CharField(max_length=12, help_text="First characters, to recognise a token in lists.")
    scopes = models.JSONField(default=list)
    environment = models.ForeignKey(
        "environments.Environment", null=True, blank=True, on_delete=models.CASCADE, related_name="api_tokens"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.hint}…)"

    @staticmethod
    def hash_key(key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()

    def has_scope(self, scope: str) -> bool:
        if scope in self.scopes or Scope.ADMIN in self.scopes:
            return True
        return any(implier in self.scopes for implier in IMPLIED_BY.get(scope, set()))


class AuditEvent(models.Model):
    """Who did what to which object, with before/after; written in the transaction of the write itself."""

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_label = models.CharField(max_length=200, help_text="Username, plus the token used, or 'system'.")
    kind = models.CharField(max_length=80)
    application = models.ForeignKey(
        Application, null=True, blank=True, on_delete=models.CASCADE, related_name="audit_events"
    )
    environment = models.ForeignKey(
        "environments.Environment",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The environment the object belongs to, when it belongs to one (for filtering the trail).",
    )
    object_type = models.CharField(max_length=80)
    object_id = models.CharField(max_length=80)
    object_repr = models.CharField(max_length=200)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["application", "-created_at"], name="audit_app_newest"),
            models.Index(fields=["environment", "-created_at"], name="audit_env_newest"),
        ]

    def __str__(self) -> str:
        return f"{self.actor_label} {self.kind} {self.object_repr}"


class Release(models.Model):
    """A request to put one artifact into one environment, and how it went.

    The state machine lives in `TRANSITIONS`; only services move a release, one audited step at a time.
    """

    class Status(models.TextChoices):
        PENDING_APPROVAL = "pending_approval"
        APPROVED = "approved"
        QUEUED = "queued"
        DEPLOYING = "deploying"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        ROLLED_BACK = "rolled_back"
        REJECTED = "rejected"
        CANCELLED = "cancelled"
        SUPERSEDED = "superseded"

    class Kind(models.TextChoices):
        DEPLOY = "deploy"
        ROLLBACK = "rollback"
        RECORDED = "recorded", "Recorded (deployed by another tool)"

    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="releases")
    environment = models.ForeignKey(
        "environments.Environment", on_delete=models.CASCADE, related_name="releases"
    )
    artifact = models.ForeignKey(Artifact, on_delete=models.PROTECT, related_name="releases")
    previous_artifact = models.ForeignKey(
        Artifact,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="What the environment ran when the release was asked for: the batch starts after it.",
    )
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.DEPLOY)
    forced_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="An admin who forced it past what blocked it.",
    )
    superseded_by = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(
        max_length=20, choices=Status.choices, default=Status.PENDING_APPROVAL, db_index=True
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.TextField(blank=True)
    strategy = models.JSONField(
        default=dict,
        blank=True,
        help_text="Overrides the environment's rollout strategy for this release; empty: none.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["environment", "status"], name="release_env_status")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.artifact.version if self.artifact_id else '?'} → {self.environment_id}"

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED


S = Release.Status
TRANSITIONS: dict[str, frozenset[str]] = {
    S.PENDING_APPROVAL: frozenset({S.APPROVED, S.REJECTED, S.CANCELLED, S.SUPERSEDED}),
    S.APPROVED: frozenset({S.QUEUED, S.CANCELLED, S.SUPERSEDED}),
    S.QUEUED: frozenset({S.DEPLOYING, S.CANCELLED, S.SUPERSEDED}),
    S.DEPLOYING: frozenset({S.SUCCEEDED, S.FAILED, S.CANCELLED}),
    S.SUCCEEDED: frozenset({S.ROLLED_BACK}),
    S.FAILED: frozenset(),
    S.ROLLED_BACK: frozenset(),
    S.REJECTED: frozenset(),
    S.CANCELLED: frozenset(),
    S.SUPERSEDED: frozenset(),
}
FINISHED = frozenset({S.SUCCEEDED, S.FAILED, S.ROLLED_BACK, S.REJECTED, S.CANCELLED, S.SUPERSEDED})
del S


class Approval(models.Model):
    """One person's decision on a release: for their own author group, on behalf of an unlinked author, or as a reviewer."""

    class Decision(models.TextChoices):
        APPROVE = "approve"
        REJECT = "reject"

    release = models.ForeignKey(Release, on_delete=models.CASCADE, related_name="approvals")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="approvals")
    decision = models.CharField(max_length=10, choices=Decision.choices)
    comment = models.TextField(blank=True)
    # The author groups this decision covers (lower-cased author keys); empty for a reviewer.
    authors = models.JSONField(default=list)
    on_behalf = models.BooleanField(
        default=False, help_text="A release manager decided for unlinked authors."
    )
    carried_over = models.BooleanField(
        default=False, help_text="Kept from a superseded release: same changes."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [models.UniqueConstraint(fields=["release", "user"], name="approval_one_per_user")]

    def __str__(self) -> str:
        return f"{self.user_id} {self.decision} #{self.release_id}"


class Blocker(models.Model):
    """An open deploy-blocking issue (e.g. an incident): it stops promotions to the environments it names."""

    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="blockers")
    title = models.CharField(max_length=300)
    url = models.URLField(max_length=500, blank=True)
    environments = models.ManyToManyField("environments.Environment", related_name="blockers")
    source = models.CharField(max_length=20, default="api")
    external_id = models.CharField(max_length=100, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.title


class NotificationHook(models.Model):
    """A Slack-compatible incoming-webhook URL told about an application's releases."""

    # "alert": new errors or an error rate up after a release (monitoring.alerts).
    EVENTS = ("waiting", "approved", "rejected", "deploying", "succeeded", "failed", "rolled_back", "alert")

    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="notification_hooks")
    url = models.URLField(max_length=500)
    events = models.JSONField(default=list, blank=True, help_text="Empty: every event.")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_status = models.CharField(max_length=200, blank=True)

    def __str__(self) -> str:
        return self.url


class GitHubHook(models.Model):
    """Inbound GitHub webhooks for one application: pushes register changes, labelled issues block deploys."""

    application = models.OneToOneField(Application, on_delete=models.CASCADE, related_name="github_hook")
    secret = models.CharField(max_length=200, help_text="The webhook's shared secret (HMAC SHA-256).")
    blocker_label = models.CharField(max_length=100, default="deploy-blocker")
    blocker_environments = models.JSONField(
        default=list, blank=True, help_text="Environment names; empty: all."
    )

    def __str__(self) -> str:
        return f"GitHub hook for {self.application.name}"


class Rollout(models.Model):
    """A release's way onto its targets: the plan's inputs and the reconciler's progress."""

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        PAUSED = "paused"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        REVERTING = "reverting"
        REVERTED = "reverted"
        CANCELLED = "cancelled"

    release = models.OneToOneField(Release, on_delete=models.CASCADE, related_name="rollout")
    strategy = models.JSONField(default=dict)
    targets = models.JSONField(
        default=list, help_text="Target names in deploy order, fixed when the rollout starts."
    )
    progress = models.JSONField(default=dict, help_text="releases.planning.Progress, serialized.")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    waiting_until = models.DateTimeField(null=True, blank=True, help_text="A pause gate ends here.")
    cancel_requested = models.BooleanField(
        default=False, help_text="Cancelled: touched targets go back, then it ends."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"rollout of release #{self.release_id}"


class RolloutStep(models.Model):
    """One thing done to one target (deploy, revert) or to the wave (smoke, pause, analysis, gate)."""

    OUTPUT_LIMIT = 64 * 1024

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        SKIPPED = "skipped"  # never started: the rollout was reverting by then

    rollout = models.ForeignKey(Rollout, on_delete=models.CASCADE, related_name="steps")
    index = models.PositiveIntegerField()
    wave = models.PositiveIntegerField(null=True)
    target = models.ForeignKey(
        "environments.Target", null=True, blank=True, on_delete=models.SET_NULL, related_name="steps"
    )
    target_name = models.CharField(max_length=100, blank=True)
    action = models.CharField(max_length=20)
    runs_on_server = models.BooleanField(default=False, help_text="Run by Slipway's worker, not by an agent.")
    lease_expires_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="A worker running this step renews it; once it lapses another takes over.",
    )
    attempts = models.PositiveSmallIntegerField(default=0, help_text="How often a worker started this step.")
    version = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    health = models.JSONField(null=True, blank=True)
    output = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["rollout_id", "index"]
        constraints = [models.UniqueConstraint(fields=["rollout", "index"], name="rolloutstep_unique_index")]
        indexes = [
            models.Index(fields=["target", "status"], name="step_target_status"),
            # Agents' jobs waiting to be claimed: few rows, read by every broker sweep.
            models.Index(fields=["index"], condition=models.Q(status="pending"), name="step_pending"),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.target_name} ({self.status})"

    @property
    def wave_number(self) -> int | None:
        """The wave as people (and the API) count it, from 1; `wave` is the planner's index, from 0."""
        return None if self.wave is None else self.wave + 1

"""Writers for releases: request, approve or reject, force, roll back, record; locks, freezes and blockers.

Each `do_*` is one durable transaction with its audit events; a release that becomes `queued` is handed to
`releases.dispatch.release_queued` after commit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, time

from django.db import transaction
from django.utils import timezone

from config.effects import after_commit
from config.errors import Invalid, SlipwayError
from dashboard.live import publish_on_commit
from environments.models import Environment, FreezeWindow, Lock
from environments.services import check_strategy
from releases import audit
from releases.batches import (
    Batch,
    approval_coverage,
    approval_state,
    blocked_by,
    compute_batch,
    group_key,
    group_signature,
    needs_approval,
    pipeline_reason,
    release_batch,
)
from releases.dispatch import release_queued
from releases.exceptions import (
    AlreadyDecided,
    AlreadyDeployed,
    FreezeWindowInvalid,
    LockReleased,
    MayNotDecide,
    NotARollbackCandidate,
    NothingToForce,
    NotPending,
    OutOfPipelineOrder,
    ReleaseNotFound,
)
from releases.lifecycle import publish_inbox_on_commit, transition
from releases.models import Application, Approval, Artifact, Blocker, Release
from releases.notifications import notify_on_commit
from releases.permissions import Actor, Permission, refusal, require
from releases.selectors import rollback_candidates

log = logging.getLogger(__name__)
OPEN = (Release.Status.PENDING_APPROVAL, Release.Status.APPROVED, Release.Status.QUEUED)


def _locked_environment(environment: Environment) -> Environment:
    # One promotion decision per environment at a time: racing requests queue on this row.
    return (
        Environment.objects.select_for_update(of=("self",))
        .select_related("application", "current_artifact")
        .get(pk=environment.pk)
    )


def _locked_release(release_id: int) -> Release:
    release = (
        Release.objects.select_for_update(of=("self",))
        .select_related("application", "environment", "artifact", "previous_artifact")
        .filter(pk=release_id)
        .first()
    )
    if release is None:
        raise ReleaseNotFound(f"No release #{release_id}.")
    return release


def _dispatch_on_commit(release: Release) -> None:
    after_commit(release_queued, release.pk, robust=False)


def _advance(actor: Actor, release: Release, batch: Batch | None = None) -> Release:
    """Move a release as far as it can go now: approved once approvals are complete, queued once unblocked.

    `batch`: the release's batch when the caller has it (`do_decide`), so it is computed once per request; the
    approval state read here is the one `blocked_by` checks."""
    approvals = list(release.approvals.all())
    state = None
    if release.status == Release.Status.PENDING_APPROVAL:
        batch = batch or release_batch(release)
        state = approval_state(release, batch, approvals)
        if state.complete:
            transition(actor, release, Release.Status.APPROVED)
    if release.status == Release.Status.APPROVED and not blocked_by(release, approvals, batch, state=state):
        transition(actor, release, Release.Status.QUEUED)
        _dispatch_on_commit(release)
    return release


@transaction.atomic(durable=True)
def do_request_release(
    actor: Actor,
    application: Application,
    *,
    environment: Environment,
    artifact: Artifact,
    reason: str = "",
    strategy: dict | None = None,
) -> Release:
    """Ask to put an artifact into an environment; a still-open release there is superseded by this one.

    `strategy` overrides the environment's rollout strategy for this release only (`check_strategy`: 400 naming
    `strategy` when it is not one a person may ask for).
    """
    environment = _locked_environment(environment)
    require(actor, Permission.REGISTER_ARTIFACT, application, environment)
    return _request(actor, environment, artifact, reason, strategy)


@dataclass(frozen=True, slots=True)
class ReleasePreview:
    """What asking for a release would do, before anything is created: the batch that would ship, every reason it
    would wait (approvals by whom, locks, freezes, blockers, pipeline order), the open releases it would replace."""

    environment: Environment
    artifact: Artifact
    batch: Batch
    blocked_by: list[dict]
    supersedes: list[Release]
    refusal: str | None  # why the actor may not ask for it, or why it cannot be asked for at all

    @property
    def ships_at_once(self) -> bool:
        return self.refusal is None and not self.blocked_by


def preview_release(actor: Actor, environment: Environment, artifact: Artifact) -> ReleasePreview:
    """The preview `do_request_release` answers to, read with the rules it applies (`blocked_by`, `pipeline_reason`)."""
    release = Release(
        application=environment.application,
        environment=environment,
        artifact=artifact,
        previous_artifact=environment.current_artifact,
        requested_by=actor.user,
    )
    batch = compute_batch(environment.current_artifact, artifact)
    why = refusal(actor, Permission.REGISTER_ARTIFACT, environment.application, environment)
    if environment.current_artifact_id == artifact.pk:
        why = f"{artifact.version} runs in {environment.name} already."
    elif why is None and (order := pipeline_reason(release)) is not None:
        why = f"Out of pipeline order: {order['detail']}."
    supersedes = list(
        Release.objects.filter(environment=environment, kind=Release.Kind.DEPLOY, status__in=OPEN)
        .select_related("artifact")
        .order_by("-created_at")
    )
    reasons = [r for r in blocked_by(release, approvals=[], batch=batch) if r["kind"] != "pipeline"]
    return ReleasePreview(environment, artifact, batch, reasons, supersedes, why)


def _request(
    actor: Actor, environment: Environment, artifact: Artifact, reason: str, strategy: dict | None = None
) -> Release:
    if environment.current_artifact_id == artifact.pk:
        raise AlreadyDeployed(f"{artifact.version} runs in {environment.name} already.", field="version")
    strategy = check_strategy(environment.application_id, strategy)
    release = Release(
        application=environment.application,
        environment=environment,
        artifact=artifact,
        previous_artifact=environment.current_artifact,
        requested_by=actor.user,
        reason=reason,
        strategy=strategy or {},
    )
    if (why := pipeline_reason(release)) is not None:
        raise OutOfPipelineOrder(f"Out of pipeline order: {why['detail']}.", extra={"blocked_by": [why]})
    release.save()
    audit.record(
        actor,
        "release.requested",
        release,
        application=environment.application,
        after={
            "environment": environment.name,
            "version": artifact.version,
            "strategy": release.strategy,
            "from_version": environment.current_artifact.version if environment.current_artifact else None,
        },
    )
    _supersede_open(actor, release)
    if needs_approval(environment):
        notify_on_commit(release)
        publish_inbox_on_commit(release)
        publish_on_commit(
            f"application.{release.application_id}",
            "application.changed",
            application_id=release.application_id,
        )
    else:
        transition(actor, release, Release.Status.APPROVED, note="No approval needed here.")
    return _advance(actor, release)


def _supersede_open(actor: Actor, release: Release) -> None:
    """Batches must not pile up: the newer release replaces open ones, keeping approvals whose changes are unchanged."""
    older = list(
        Release.objects.select_for_update(of=("self",))
        .filter(environment=release.environment, kind=Release.Kind.DEPLOY, status__in=OPEN)
        .exclude(pk=release.pk)
    )
    if not older:
        return
    new_groups = {group_key(g): group_signature(g) for g in release_batch(release).groups}
    for old in older:
        old_groups = {group_key(g): group_signature(g) for g in release_batch(old).groups}
        for approval in old.approvals.filter(decision=Approval.Decision.APPROVE):
            kept = [k for k in approval.authors if k in new_groups and new_groups[k] == old_groups.get(k)]
            if kept:
                Approval.objects.create(
                    release=release,
                    user=approval.user,
                    decision=approval.decision,
                    comment=approval.comment,
                    authors=kept,
                    on_behalf=approval.on_behalf,
                    carried_over=True,
                )
        old.superseded_by = release
        old.save(update_fields=["superseded_by"])
        transition(
            actor,
            old,
            Release.Status.SUPERSEDED,
            note=f"Superseded by #{release.pk} ({release.artifact.version}).",
        )


@transaction.atomic(durable=True)
def do_decide(actor: Actor, release_id: int, *, decision: str, comment: str = "") -> Approval:
    """Record one person's approval or rejection; a rejection stops the release, the last approval moves it on."""
    release = _locked_release(release_id)
    if release.status != Release.Status.PENDING_APPROVAL:
        raise NotPending(f"Release #{release.pk} is {release.status}: there is nothing to decide.")
    if release.approvals.filter(user=actor.user).exists():
        raise AlreadyDecided("You have decided on this release already.")
    batch = release_batch(release)
    approvals = list(release.approvals.all())
    coverage = approval_coverage(actor, release, batch, approval_state(release, batch, approvals), approvals)
    if coverage.refusal is not None:
        raise MayNotDecide(
            coverage.refusal, extra={"permission": coverage.permission} if coverage.permission else None
        )
    covers, on_behalf = list(coverage.authors), coverage.on_behalf
    assert actor.user is not None  # the coverage check refuses the system actor
    approval = Approval.objects.create(
        release=release,
        user=actor.user,
        decision=decision,
        comment=comment,
        authors=covers,
        on_behalf=on_behalf,
    )
    audit.record(
        actor,
        f"release.{'approval' if decision == 'approve' else 'rejection'}_given",
        release,
        application=release.application,
        after={"decision": decision, "authors": covers, "on_behalf": on_behalf},
        note=comment,
    )
    if decision == Approval.Decision.REJECT:
        transition(actor, release, Release.Status.REJECTED, note=comment)
    else:
        _advance(actor, release, batch)
    # Open release pages show each decision as it is given, not only the one that moves the release; a decision
    # changes what is left for others to approve.
    publish_on_commit(f"release.{release.pk}", "release.changed", release_id=release.pk)
    publish_inbox_on_commit(release)
    return approval


@transaction.atomic(durable=True)
def do_force_release(actor: Actor, release_id: int, *, reason: str) -> Release:
    """An admin ships a release past locks, freezes, blockers and missing approvals; the force is audited."""
    release = _locked_release(release_id)
    require(actor, Permission.FORCE, release.application, release.environment)
    if release.status not in (Release.Status.PENDING_APPROVAL, Release.Status.APPROVED):
        raise NothingToForce(f"Release #{release.pk} is {release.status}: nothing to force.")
    overridden = [
        r["detail"] for r in blocked_by(release)
    ]  # read before forcing: forced, locks stop counting
    release.forced_by = actor.user
    release.save(update_fields=["forced_by"])
    audit.record(
        actor,
        "release.forced",
        release,
        application=release.application,
        after={"blocked_by": overridden},
        note=reason,
    )
    if release.status == Release.Status.PENDING_APPROVAL:
        transition(actor, release, Release.Status.APPROVED, note="Forced.")
    if not [r for r in blocked_by(release) if r["kind"] == "deploying"]:
        transition(actor, release, Release.Status.QUEUED, note="Forced.")
        _dispatch_on_commit(release)
    return release


@transaction.atomic(durable=True)
def do_rollback(actor: Actor, environment: Environment, *, artifact: Artifact, reason: str) -> Release:
    """Put an earlier good artifact back: needs the rollback permission, not approvals; locks and freezes don't hold it."""
    environment = _locked_environment(environment)
    require(actor, Permission.ROLLBACK, environment.application, environment)
    if environment.current_artifact_id == artifact.pk:
        raise AlreadyDeployed(f"{artifact.version} runs in {environment.name} already.", field="version")
    if not rollback_candidates(environment).filter(pk=artifact.pk).exists():
        raise NotARollbackCandidate(
            f"{artifact.version} is not an earlier version that succeeded in {environment.name}: roll back "
            "to one of those (a newer version is released, not rolled back to).",
            field="version",
        )
    release = Release.objects.create(
        application=environment.application,
        environment=environment,
        artifact=artifact,
        previous_artifact=environment.current_artifact,
        kind=Release.Kind.ROLLBACK,
        status=Release.Status.APPROVED,
        requested_by=actor.user,
        reason=reason,
    )
    audit.record(
        actor,
        "release.rollback_requested",
        release,
        application=environment.application,
        before={"version": environment.current_artifact.version if environment.current_artifact else None},
        after={"version": artifact.version},
        note=reason,
    )
    return _advance(actor, release)


@transaction.atomic(durable=True)
def do_record_release(actor: Actor, environment: Environment, *, artifact: Artifact, status: str) -> Release:
    """Record a deployment another tool did, so Slipway knows what runs where."""
    environment = _locked_environment(environment)
    require(actor, Permission.REGISTER_ARTIFACT, environment.application, environment)
    release = Release.objects.create(
        application=environment.application,
        environment=environment,
        artifact=artifact,
        previous_artifact=environment.current_artifact,
        kind=Release.Kind.RECORDED,
        status=status,
        requested_by=actor.user,
        started_at=timezone.now(),
        finished_at=timezone.now(),
    )
    if status == Release.Status.SUCCEEDED:
        environment.current_artifact = artifact
        environment.save(update_fields=["current_artifact"])
    audit.record(
        actor,
        "release.recorded",
        release,
        application=environment.application,
        after={"version": artifact.version, "status": status},
    )
    return release


@transaction.atomic(durable=True)
def do_cancel_release(actor: Actor, release_id: int, *, reason: str = "") -> Release:
    """Withdraw a release that has not started deploying."""
    release = _locked_release(release_id)
    require(actor, Permission.REGISTER_ARTIFACT, release.application, release.environment)
    return transition(actor, release, Release.Status.CANCELLED, note=reason)


def recheck_environment(actor: Actor, environment_id: int) -> None:
    """Start approved releases whose way has cleared (after an unlock, a resolved blocker, a window's end)."""
    for release_id in (
        Release.objects.filter(environment_id=environment_id, status=Release.Status.APPROVED)
        .order_by("created_at")
        .values_list("pk", flat=True)
    ):
        with transaction.atomic():
            release = _locked_release(release_id)
            if release.status == Release.Status.APPROVED:
                _advance(actor, release)


def recheck_all(actor: Actor | None = None) -> None:
    actor = actor or Actor.system()
    for environment_id in (
        Release.objects.filter(status=Release.Status.APPROVED)
        .values_list("environment_id", flat=True)
        .distinct()
    ):
        recheck_environment(actor, environment_id)


def _recheck_on_commit(environment: Environment) -> None:
    after_commit(recheck_environment, Actor.system(), environment.pk, robust=False)


# --- locks, freeze windows, blockers ---------------------------------------------------------


def _publish_environment(environment_id: int) -> None:
    """Open environment pages show locks and freezes as they are set and lifted."""
    publish_on_commit(f"environment.{environment_id}", "environment.changed", environment_id=environment_id)


@transaction.atomic(durable=True)
def do_lock(actor: Actor, environment: Environment, *, reason: str) -> Lock:
    """Hold promotions to an environment until unlocked."""
    environment = _locked_environment(environment)
    require(actor, Permission.LOCK, environment.application, environment)
    lock = Lock.objects.create(environment=environment, reason=reason, locked_by=actor.user)
    audit.record(actor, "environment.locked", environment, application=environment.application, note=reason)
    _publish_environment(environment.pk)
    return lock


@transaction.atomic(durable=True)
def do_unlock(actor: Actor, lock: Lock) -> Lock:
    """Release a lock; waiting releases start if nothing else holds them."""
    lock = Lock.objects.select_for_update().select_related("environment__application").get(pk=lock.pk)
    if actor.user is None or lock.locked_by_id != actor.user.pk:
        require(actor, Permission.LOCK, lock.environment.application, lock.environment)
    if lock.released_at is not None:
        raise LockReleased("This lock was released already.")
    lock.released_at, lock.released_by = timezone.now(), actor.user
    lock.save(update_fields=["released_at", "released_by"])
    audit.record(
        actor,
        "environment.unlocked",
        lock.environment,
        application=lock.environment.application,
        note=lock.reason,
    )
    _recheck_on_commit(lock.environment)
    _publish_environment(lock.environment_id)
    return lock


@transaction.atomic(durable=True)
def do_create_freeze(
    actor: Actor,
    environment: Environment,
    *,
    reason: str,
    starts_at: datetime | None = None,
    ends_at: datetime | None = None,
    weekdays: list[int] | None = None,
    start_time: time | None = None,
    end_time: time | None = None,
    timezone_name: str = "UTC",
) -> FreezeWindow:
    """Add a one-off or recurring freeze window."""
    require(actor, Permission.LOCK, environment.application, environment)
    one_off = starts_at is not None or ends_at is not None
    recurring = bool(weekdays) or start_time is not None or end_time is not None
    if one_off == recurring:
        raise FreezeWindowInvalid(
            "Give either starts_at and ends_at, or weekdays with start_time and end_time.",
            field="non_field_errors",
        )
    if one_off and (starts_at is None or ends_at is None or ends_at <= starts_at):
        raise FreezeWindowInvalid("ends_at must come after starts_at.", field="ends_at")
    if recurring and (not weekdays or start_time is None or end_time is None or start_time == end_time):
        raise FreezeWindowInvalid(
            "A recurring window needs weekdays, and different start_time and end_time.", field="weekdays"
        )
    window = FreezeWindow.objects.create(
        environment=environment,
        reason=reason,
        starts_at=starts_at,
        ends_at=ends_at,
        weekdays=sorted(set(weekdays or [])),
        start_time=start_time,
        end_time=end_time,
        timezone=timezone_name,
        created_by=actor.user,
    )
    audit.record(
        actor,
        "freeze.created",
        window,
        application=environment.application,
        after={
            "reason": reason,
            "starts_at": str(starts_at) if starts_at else None,
            "ends_at": str(ends_at) if ends_at else None,
            "weekdays": window.weekdays,
            "start_time": str(start_time) if start_time else None,
            "end_time": str(end_time) if end_time else None,
            "timezone": timezone_name,
        },
    )
    _publish_environment(environment.pk)
    return window


@transaction.atomic(durable=True)
def do_delete_freeze(actor: Actor, window: FreezeWindow) -> None:
    """Remove a freeze window."""
    window = FreezeWindow.objects.select_related("environment__application").get(pk=window.pk)
    require(actor, Permission.LOCK, window.environment.application, window.environment)
    audit.record(
        actor,
        "freeze.deleted",
        window,
        application=window.environment.application,
        before={"reason": window.reason},
    )
    window.delete()
    _recheck_on_commit(window.environment)
    _publish_environment(window.environment_id)


@transaction.atomic(durable=True)
def do_open_blocker(
    actor: Actor,
    application: Application,
    *,
    title: str,
    environments: list[Environment],
    url: str = "",
    source: str = "api",
    external_id: str = "",
) -> Blocker:
    """Open a deploy-blocking issue on some environments."""
    for environment in environments:
        require(actor, Permission.LOCK, application, environment)
    if not environments:
        raise Invalid("Name at least one environment.", field="environments")
    blocker = Blocker.objects.create(
        application=application,
        title=title,
        url=url,
        source=source,
        external_id=external_id,
        created_by=actor.user,
    )
    blocker.environments.set(environments)
    audit.record(
        actor,
        "blocker.opened",
        blocker,
        application=application,
        after={"title": title, "environments": [e.name for e in environments], "url": url},
    )
    return blocker


@transaction.atomic(durable=True)
def do_resolve_blocker(actor: Actor, blocker: Blocker) -> Blocker:
    """Resolve a blocking issue; releases it held start if nothing else holds them."""
    blocker = Blocker.objects.select_for_update().get(pk=blocker.pk)
    environments = list(blocker.environments.select_related("application"))
    for environment in environments:
        require(actor, Permission.LOCK, blocker.application, environment)
    if blocker.resolved_at is None:
        blocker.resolved_at = timezone.now()
        blocker.save(update_fields=["resolved_at"])
        audit.record(actor, "blocker.resolved", blocker, application=blocker.application)
        for environment in environments:
            _recheck_on_commit(environment)
    return blocker


def batch_for(environment: Environment, artifact: Artifact):
    return compute_batch(environment.current_artifact, artifact)


def after_success(sender=None, *, release: Release, **kwargs) -> None:
    """A release succeeded (`releases.signals.release_succeeded`, connected in releases/apps.py): approved
    releases held by it may go now, and environments that auto-promote take the artifact."""
    recheck_environment(Actor.system(), release.environment_id)
    if release.kind == Release.Kind.DEPLOY:
        auto_promote(release.artifact_id)


def auto_promote(artifact_id: int) -> None:
    """Environments with auto_promote take the artifact as soon as the pipeline allows it."""
    artifact = Artifact.objects.select_related("application").get(pk=artifact_id)
    for environment in Environment.objects.filter(application_id=artifact.application_id, auto_promote=True):
        if (
            environment.current_artifact_id == artifact.pk
            or Release.objects.filter(environment=environment, artifact=artifact).exists()
        ):
            continue
        try:
            do_request_release(
                Actor.system(), artifact.application, environment=environment, artifact=artifact
            )
        except (
            SlipwayError
        ) as refusal:  # out of pipeline order: it will come when the previous stage succeeds
            log.info(
                "auto-promotion of %s to %s waits: %s", artifact.version, environment.name, refusal.detail
            )

"""What a release would ship (its batch), who must approve it, and what stops it: reads only."""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Q
from django.utils import timezone

from environments.models import Environment, FreezeWindow
from releases.models import Approval, Artifact, Blocker, Change, Release
from releases.permissions import Actor, Permission, can, refusal, users_with
from releases.selectors import AuthorGroup, group_by_author, users_for_authors


@dataclass(slots=True)
class Batch:
    from_version: str | None
    to_version: str
    groups: list[AuthorGroup]

    @property
    def change_count(self) -> int:
        return sum(len(g.changes) for g in self.groups)


def group_key(group: AuthorGroup) -> str:
    """A group's identity for approvals: the person if linked, else the author string."""
    return f"user:{group.user.pk}" if group.user is not None else f"author:{group.author.lower()}"


def group_signature(group: AuthorGroup) -> frozenset[str]:
    return frozenset(c.sha for c in group.changes)


def artifacts_between(environment_current: Artifact | None, target: Artifact) -> list[Artifact]:
    """Artifacts after the running one up to and including the target, oldest first."""
    qs = Artifact.objects.filter(application_id=target.application_id)
    qs = qs.filter(Q(created_at__lt=target.created_at) | Q(created_at=target.created_at, id__lte=target.id))
    if environment_current is not None:
        current = environment_current
        qs = qs.filter(Q(created_at__gt=current.created_at) | Q(created_at=current.created_at, id__gt=current.id))
    return list(qs.order_by("created_at", "id"))


def compute_batch(current: Artifact | None, target: Artifact, users: dict | None = None) -> Batch:
    """Every change the artifacts after `current` up to `target` introduce, once, grouped by author."""
    artifacts = artifacts_between(current, target)
    changes = Change.objects.filter(artifacts__in=artifacts).distinct().order_by("committed_at", "id")
    if current is not None:
        # A change that also came with the running artifact (or an older one) is not new.
        changes = changes.exclude(artifacts__in=Artifact.objects.filter(
            application_id=target.application_id).filter(
            Q(created_at__lt=current.created_at) | Q(created_at=current.created_at, id__lte=current.id)))
    changes = list(changes)
    if users is None:
        users = users_for_authors(c.author for c in changes)
    return Batch(from_version=current.version if current else None, to_version=target.version,
                 groups=group_by_author(changes, users))


def release_batch(release: Release) -> Batch:
    if release.kind == Release.Kind.ROLLBACK:
        return Batch(from_version=release.previous_artifact.version if release.previous_artifact else None,
                     to_version=release.artifact.version, groups=[])
    return compute_batch(release.previous_artifact, release.artifact)


def needs_approval(environment: Environment) -> bool:
    return environment.requires_approval and environment.approval_policy != Environment.ApprovalPolicy.NONE


@dataclass(slots=True)
class ApprovalState:
    """Who has decided and what is still missing, per the environment's policy."""

    by_group: dict[str, Approval | None] = field(default_factory=dict)
    # Groups a release manager approves on their author's behalf: no linked user, or one whose roles don't approve.
    for_others: set[str] = field(default_factory=set)
    reviewer_approvals: list[Approval] = field(default_factory=list)
    rejected: Approval | None = None
    missing: list[dict] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.missing and self.rejected is None


def approval_state(release: Release, batch: Batch, approvals: list[Approval]) -> ApprovalState:
    state = ApprovalState()
    environment = release.environment
    state.rejected = next((a for a in approvals if a.decision == Approval.Decision.REJECT), None)
    if release.kind != Release.Kind.DEPLOY or not needs_approval(environment):
        return state
    approved = [a for a in approvals if a.decision == Approval.Decision.APPROVE]
    if environment.approval_policy == Environment.ApprovalPolicy.AUTHORS:
        approvers = users_with(Permission.APPROVE_OWN, release.application_id, environment.pk,
                               {g.user.pk for g in batch.groups if g.user is not None})
        for group in batch.groups:
            key = group_key(group)
            decision = next((a for a in approved if key in a.authors), None)
            state.by_group[key] = decision
            who = group.username
            if who is None or group.user.pk not in approvers:
                state.for_others.add(key)
            if decision is not None:
                continue
            if who is None:
                detail = f"Waiting for {group.author} to approve their changes (no Slipway user is linked to this author)"
            elif key in state.for_others:
                detail = (f"Waiting for a release manager to approve {who}'s changes on their behalf "
                          f"({who} has no role that approves in {environment.name})")
            else:
                detail = f"Waiting for {who} to approve their changes"
            state.missing.append({"kind": "approval", "detail": detail,
                                  "cleared_by": ["a release manager, on their behalf"] if key in state.for_others
                                  else [who]})
    else:
        authors = {g.user.pk for g in batch.groups if g.user is not None}
        state.reviewer_approvals = [a for a in approved if a.user_id not in authors]
        needed = environment.required_approvals - len(state.reviewer_approvals)
        if needed > 0:
            state.missing.append({
                "kind": "approval",
                "detail": f"Waiting for {needed} more reviewer approval{'s' if needed > 1 else ''} "
                          "from people without changes in the batch",
                "cleared_by": ["a developer without changes in this batch"],
            })
    return state


@dataclass(frozen=True, slots=True)
class Coverage:
    """What one person's approval of a release would cover, or why they may not decide on it."""

    authors: tuple[str, ...] = ()
    on_behalf: bool = False
    refusal: str | None = None
    permission: str | None = None


def approval_coverage(actor: Actor, release: Release, batch: Batch, state: ApprovalState,
                      approvals: list[Approval]) -> Coverage:
    """Which author groups `actor` may approve on `release`: the one rule the API, the pages and the inbox share.

    Authors approve their own group when their role approves; a release manager approves, on their behalf, the
    groups nobody linked may approve (unlinked authors, or people whose role does not approve). Reviewers approve
    batches without changes of theirs.
    """
    if actor.user is not None and any(a.user_id == actor.user.pk for a in approvals):
        return Coverage(refusal="You have decided on this release already.")
    environment = release.environment
    if (why := refusal(actor, Permission.APPROVE_OWN, release.application, environment)) is not None:
        return Coverage(refusal=why, permission=str(Permission.APPROVE_OWN))
    mine = [group_key(g) for g in batch.groups if g.user is not None and g.user.pk == actor.user.pk]
    if environment.approval_policy != Environment.ApprovalPolicy.AUTHORS:
        if mine:
            return Coverage(refusal="Reviewers approve batches without their own changes.")
        return Coverage()
    own = [k for k in mine if k not in state.for_others]
    others = [k for k in state.by_group if k in state.for_others and state.by_group[k] is None and k not in mine]
    if others and can(actor, Permission.APPROVE_FOR_OTHERS, release.application, environment):
        return Coverage(authors=tuple(own + others), on_behalf=True)
    if not own:
        return Coverage(refusal="You have no changes in this batch to approve (release managers approve for "
                                "unlinked authors and for authors whose role does not approve).")
    return Coverage(authors=tuple(own))


def active_freezes(environment: Environment, now: datetime | None = None) -> list[FreezeWindow]:
    now = now or timezone.now()
    return [w for w in environment.freezes.all() if freeze_applies(w, now)]


def freeze_applies(window: FreezeWindow, now: datetime) -> bool:
    if window.starts_at is not None and window.ends_at is not None:
        return window.starts_at <= now < window.ends_at
    if not window.weekdays or window.start_time is None or window.end_time is None:
        return False
    local = now.astimezone(zoneinfo.ZoneInfo(window.timezone))
    t, day = local.time(), local.isoweekday()
    if window.start_time <= window.end_time:
        return day in window.weekdays and window.start_time <= t < window.end_time
    # Wraps past midnight: Friday 18:00–08:00 covers Friday evening and Saturday morning.
    previous_day = 7 if day == 1 else day - 1
    return (day in window.weekdays and t >= window.start_time) or (
        previous_day in window.weekdays and t < window.end_time)


def pipeline_reason(release: Release) -> dict | None:
    """An artifact goes to an environment only after it succeeded in the one before it."""
    environment = release.environment
    previous = (Environment.objects.filter(application_id=environment.application_id, position__lt=environment.position)
                .order_by("-position").first())
    if previous is None or release.kind != Release.Kind.DEPLOY:
        return None
    succeeded = previous.current_artifact_id == release.artifact_id or Release.objects.filter(
        environment=previous, artifact_id=release.artifact_id, status=Release.Status.SUCCEEDED).exists()
    if succeeded:
        return None
    return {"kind": "pipeline",
            "detail": f"{release.artifact.version} has not succeeded in {previous.name} yet",
            "cleared_by": [f"a successful release to {previous.name}"]}


def blocked_by(release: Release, approvals: list[Approval] | None = None, batch: Batch | None = None,
               now: datetime | None = None) -> list[dict]:
    """Every reason the release is not shipping now, each with who or what can clear it."""
    if release.is_finished or release.status == Release.Status.DEPLOYING:
        return []
    reasons: list[dict] = []
    environment = release.environment
    if release.kind == Release.Kind.DEPLOY:
        if approvals is None:
            approvals = list(release.approvals.all())
        if batch is None:
            batch = release_batch(release)
        reasons += approval_state(release, batch, approvals).missing
        if (reason := pipeline_reason(release)) is not None:
            reasons.append(reason)
        if release.forced_by_id is None:
            for lock in environment.locks.filter(released_at__isnull=True).select_related("locked_by"):
                holder = lock.locked_by.get_username() if lock.locked_by else "someone"
                reasons.append({"kind": "lock", "detail": f"Locked by {holder}: {lock.reason}",
                                "cleared_by": [holder, "a release manager"], "id": lock.pk})
            for window in active_freezes(environment, now):
                reasons.append({"kind": "freeze", "detail": f"Freeze window: {window.reason}",
                                "cleared_by": ["the end of the window", "an admin, by forcing"], "id": window.pk})
            for blocker in Blocker.objects.filter(environments=environment, resolved_at__isnull=True):
                reasons.append({"kind": "blocker", "detail": f"Open blocking issue: {blocker.title}",
                                "cleared_by": ["resolving the issue" + (f" {blocker.url}" if blocker.url else "")],
                                "id": blocker.pk})
    busy = Release.objects.filter(environment=environment, status=Release.Status.DEPLOYING).exclude(pk=release.pk)
    if busy.exists():
        reasons.append({"kind": "deploying", "detail": "Another release is deploying to this environment",
                        "cleared_by": ["that release finishing"]})
    return reasons

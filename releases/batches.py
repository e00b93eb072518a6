"""What a release would ship (its batch), who must approve it, and what stops it: reads only."""

from __future__ import annotations

import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Prefetch, Q, prefetch_related_objects
from django.utils import timezone

from environments.models import Environment, FreezeWindow, Lock
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


def _order(artifact: Artifact) -> tuple:
    """Artifacts are ordered by registration: created_at, then id for ties."""
    return (artifact.created_at, artifact.pk)


def _not_after(artifact: Artifact, prefix: str = "") -> Q:
    return Q(**{f"{prefix}created_at__lt": artifact.created_at}) | Q(
        **{f"{prefix}created_at": artifact.created_at, f"{prefix}id__lte": artifact.pk}
    )


def _after(artifact: Artifact, prefix: str = "") -> Q:
    return Q(**{f"{prefix}created_at__gt": artifact.created_at}) | Q(
        **{f"{prefix}created_at": artifact.created_at, f"{prefix}id__gt": artifact.pk}
    )


def batches_between(spans: Sequence[tuple[Artifact | None, Artifact]]) -> list[Batch]:
    """For each (running, candidate) pair, every change the artifacts after `running` up to `candidate` bring
    that no artifact up to `running` brought already, grouped by author — in four queries for any number of pairs.

    A change belongs to a span exactly when the first artifact that brought it falls in the span, so one read of
    each change's artifacts serves every span.
    """
    spans = list(spans)
    batches: list[Batch | None] = [None] * len(spans)
    by_application: dict[int, list[int]] = {}
    for index, (_, target) in enumerate(spans):
        by_application.setdefault(target.application_id, []).append(index)
    if not spans:
        return []
    windows = (
        Q()
    )  # each application's window of artifacts, read together: the query count does not grow with them
    for application_id, indexes in by_application.items():
        upper = max((spans[i][1] for i in indexes), key=_order)
        lowers = [spans[i][0] for i in indexes]
        known = [lower for lower in lowers if lower is not None]
        window = Q(artifact__application_id=application_id) & _not_after(upper, "artifact__")
        if len(known) == len(lowers):  # every span starts after something: read from the oldest start
            window &= _after(min(known, key=_order), "artifact__")
        windows |= window
    through = Change.artifacts.through
    in_window = through.objects.filter(windows).values("change_id")
    first: dict[int, tuple] = {}
    for change_id, created_at, artifact_id in through.objects.filter(
        artifact__application_id__in=list(by_application), change_id__in=in_window
    ).values_list("change_id", "artifact__created_at", "artifact_id"):
        if change_id not in first or (created_at, artifact_id) < first[change_id]:
            first[change_id] = (created_at, artifact_id)
    changes = list(Change.objects.filter(pk__in=first).order_by("committed_at", "id"))
    users = users_for_authors(c.author for c in changes)
    for application_id, indexes in by_application.items():
        mine = [c for c in changes if c.application_id == application_id]
        for i in indexes:
            current, target = spans[i]
            low, high = (_order(current) if current is not None else None), _order(target)
            members = [c for c in mine if (low is None or first[c.pk] > low) and first[c.pk] <= high]
            batches[i] = Batch(
                from_version=current.version if current else None,
                to_version=target.version,
                groups=group_by_author(members, users),
            )
    return batches  # type: ignore[return-value]


def compute_batch(current: Artifact | None, target: Artifact) -> Batch:
    """Every change the artifacts after `current` up to `target` introduce, once, grouped by author."""
    return batches_between([(current, target)])[0]


def release_batches(releases: Sequence[Release]) -> dict[int, Batch]:
    """Each release's batch (a rollback ships no new change), in a fixed number of queries."""
    deploys = [r for r in releases if r.kind != Release.Kind.ROLLBACK]
    found = dict(
        zip(
            (r.pk for r in deploys),
            batches_between([(r.previous_artifact, r.artifact) for r in deploys]),
            strict=True,
        )
    )
    for release in releases:
        if release.kind == Release.Kind.ROLLBACK:
            found[release.pk] = Batch(
                from_version=release.previous_artifact.version if release.previous_artifact else None,
                to_version=release.artifact.version,
                groups=[],
            )
    return found


def release_batch(release: Release) -> Batch:
    return release_batches([release])[release.pk]


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


def approval_state(
    release: Release, batch: Batch, approvals: list[Approval], approvers: set[int] | None = None
) -> ApprovalState:
    """`approvers`: of the batch's people, those whose role approves here (read when not given)."""
    state = ApprovalState()
    environment = release.environment
    state.rejected = next((a for a in approvals if a.decision == Approval.Decision.REJECT), None)
    if release.kind != Release.Kind.DEPLOY or not needs_approval(environment):
        return state
    approved = [a for a in approvals if a.decision == Approval.Decision.APPROVE]
    if environment.approval_policy == Environment.ApprovalPolicy.AUTHORS:
        if approvers is None:
            approvers = users_with(
                Permission.APPROVE_OWN,
                release.application_id,
                environment.pk,
                {g.user.pk for g in batch.groups if g.user is not None},
            )
        for group in batch.groups:
            key = group_key(group)
            decision = next((a for a in approved if key in a.authors), None)
            state.by_group[key] = decision
            who = group.username
            if group.user is None or group.user.pk not in approvers:
                state.for_others.add(key)
            if decision is not None:
                continue
            if who is None:
                detail = f"Waiting for {group.author} to approve their changes (no Slipway user is linked to this author)"
            elif key in state.for_others:
                detail = (
                    f"Waiting for a release manager to approve {who}'s changes on their behalf "
                    f"({who} has no role that approves in {environment.name})"
                )
            else:
                detail = f"Waiting for {who} to approve their changes"
            state.missing.append(
                {
                    "kind": "approval",
                    "detail": detail,
                    "cleared_by": ["a release manager, on their behalf"]
                    if key in state.for_others
                    else [who],
                }
            )
    else:
        authors = {g.user.pk for g in batch.groups if g.user is not None}
        state.reviewer_approvals = [a for a in approved if a.user_id not in authors]
        needed = environment.required_approvals - len(state.reviewer_approvals)
        if needed > 0:
            state.missing.append(
                {
                    "kind": "approval",
                    "detail": f"Waiting for {needed} more reviewer approval{'s' if needed > 1 else ''} "
                    "from people without changes in the batch",
                    "cleared_by": ["a developer without changes in this batch"],
                }
            )
    return state


@dataclass(frozen=True, slots=True)
class Coverage:
    """What one person's approval of a release would cover, or why they may not decide on it."""

    authors: tuple[str, ...] = ()
    on_behalf: bool = False
    refusal: str | None = None
    permission: str | None = None


def approval_coverage(
    actor: Actor, release: Release, batch: Batch, state: ApprovalState, approvals: list[Approval]
) -> Coverage:
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
    assert actor.user is not None  # `refusal` passed: a person, not the system
    mine = [group_key(g) for g in batch.groups if g.user is not None and g.user.pk == actor.user.pk]
    if environment.approval_policy != Environment.ApprovalPolicy.AUTHORS:
        if mine:
            return Coverage(refusal="Reviewers approve batches without their own changes.")
        return Coverage()
    own = [k for k in mine if k not in state.for_others]
    others = [
        k for k in state.by_group if k in state.for_others and state.by_group[k] is None and k not in mine
    ]
    if others and can(actor, Permission.APPROVE_FOR_OTHERS, release.application, environment):
        return Coverage(authors=tuple(own + others), on_behalf=True)
    if not own:
        return Coverage(
            refusal="You have no changes in this batch to approve (release managers approve for "
            "unlinked authors and for authors whose role does not approve)."
        )
    return Coverage(authors=tuple(own))


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
        previous_day in window.weekdays and t < window.end_time
    )


@dataclass(slots=True)
class EnvironmentFacts:
    """What stops promotions to some environments, read once for any number of releases."""

    locks: dict[int, list[Lock]] = field(default_factory=dict)
    freezes: dict[int, list[FreezeWindow]] = field(default_factory=dict)
    blockers: dict[int, list[Blocker]] = field(default_factory=dict)
    deploying: dict[int, set[int]] = field(default_factory=dict)  # environment -> releases deploying there
    previous: dict[int, Environment | None] = field(
        default_factory=dict
    )  # the environment before, in the pipeline
    succeeded: set[tuple[int, int]] = field(default_factory=set)  # (environment, artifact) that succeeded

    @classmethod
    def load(cls, releases: Sequence[Release]) -> EnvironmentFacts:
        """Seven queries at most, whatever the number of releases."""
        facts = cls()
        environments = {r.environment_id for r in releases}
        if not environments:
            return facts
        for lock in Lock.objects.filter(
            environment_id__in=environments, released_at__isnull=True
        ).select_related("locked_by"):
            facts.locks.setdefault(lock.environment_id, []).append(lock)
        for window in FreezeWindow.objects.filter(environment_id__in=environments):
            facts.freezes.setdefault(window.environment_id, []).append(window)
        for link in Blocker.environments.through.objects.filter(
            environment_id__in=environments, blocker__resolved_at__isnull=True
        ).select_related("blocker"):
            facts.blockers.setdefault(link.environment_id, []).append(link.blocker)
        for environment_id, pk in Release.objects.filter(
            environment_id__in=environments, status=Release.Status.DEPLOYING
        ).values_list("environment_id", "pk"):
            facts.deploying.setdefault(environment_id, set()).add(pk)
        pipelines: dict[int, list[Environment]] = {}
        for environment in Environment.objects.filter(
            application_id__in={r.application_id for r in releases}
        ).order_by("position"):
            pipelines.setdefault(environment.application_id, []).append(environment)
        for release in releases:
            before = [
                e
                for e in pipelines.get(release.application_id, [])
                if e.position < release.environment.position
            ]
            facts.previous[release.environment_id] = before[-1] if before else None
        previous_ids = {e.pk for e in facts.previous.values() if e is not None}
        if previous_ids:
            facts.succeeded = set(
                Release.objects.filter(
                    environment_id__in=previous_ids,
                    artifact_id__in={r.artifact_id for r in releases},
                    status=Release.Status.SUCCEEDED,
                ).values_list("environment_id", "artifact_id")
            )
        return facts


def pipeline_reason(release: Release, facts: EnvironmentFacts | None = None) -> dict | None:
    """An artifact goes to an environment only after it succeeded in the one before it."""
    if release.kind != Release.Kind.DEPLOY:
        return None
    facts = facts or EnvironmentFacts.load([release])
    previous = facts.previous.get(release.environment_id)
    if previous is None:
        return None
    if (
        previous.current_artifact_id == release.artifact_id
        or (previous.pk, release.artifact_id) in facts.succeeded
    ):
        return None
    return {
        "kind": "pipeline",
        "detail": f"{release.artifact.version} has not succeeded in {previous.name} yet",
        "cleared_by": [f"a successful release to {previous.name}"],
    }


def blocked_by(
    release: Release,
    approvals: list[Approval] | None = None,
    batch: Batch | None = None,
    now: datetime | None = None,
    *,
    facts: EnvironmentFacts | None = None,
    state: ApprovalState | None = None,
) -> list[dict]:
    """Every reason the release is not shipping now, each with who or what can clear it."""
    if release.is_finished or release.status == Release.Status.DEPLOYING:
        return []
    facts = facts or EnvironmentFacts.load([release])
    reasons: list[dict] = []
    environment = release.environment
    if release.kind == Release.Kind.DEPLOY:
        if state is None:
            if approvals is None:
                approvals = list(release.approvals.all())
            state = approval_state(release, batch or release_batch(release), approvals)
        reasons += state.missing
        if (reason := pipeline_reason(release, facts)) is not None:
            reasons.append(reason)
        if release.forced_by_id is None:
            for lock in facts.locks.get(environment.pk, []):
                holder = lock.locked_by.get_username() if lock.locked_by else "someone"
                reasons.append(
                    {
                        "kind": "lock",
                        "detail": f"Locked by {holder}: {lock.reason}",
                        "cleared_by": [holder, "a release manager"],
                        "id": lock.pk,
                    }
                )
            now = now or timezone.now()
            for window in facts.freezes.get(environment.pk, []):
                if freeze_applies(window, now):
                    reasons.append(
                        {
                            "kind": "freeze",
                            "detail": f"Freeze window: {window.reason}",
                            "cleared_by": ["the end of the window", "an admin, by forcing"],
                            "id": window.pk,
                        }
                    )
            for blocker in facts.blockers.get(environment.pk, []):
                reasons.append(
                    {
                        "kind": "blocker",
                        "detail": f"Open blocking issue: {blocker.title}",
                        "cleared_by": ["resolving the issue" + (f" {blocker.url}" if blocker.url else "")],
                        "id": blocker.pk,
                    }
                )
    if facts.deploying.get(environment.pk, set()) - {release.pk}:
        reasons.append(
            {
                "kind": "deploying",
                "detail": "Another release is deploying to this environment",
                "cleared_by": ["that release finishing"],
            }
        )
    return reasons


@dataclass(slots=True)
class ReleaseFacts:
    """A release as people read it: its batch, decisions, what is missing and what blocks it."""

    batch: Batch
    approvals: list[Approval]
    state: ApprovalState
    blocked_by: list[dict]


def describe_releases(releases: Sequence[Release], now: datetime | None = None) -> dict[int, ReleaseFacts]:
    """Every release's facts in a number of queries that does not grow with the releases (only with the
    environments they go to: one role query each). Releases need `environment`, `artifact`, `previous_artifact`
    selected; approvals are prefetched here unless they are already."""
    releases = list(releases)
    prefetch_related_objects(
        releases, Prefetch("approvals", queryset=Approval.objects.select_related("user"))
    )
    batches = release_batches(releases)
    people: dict[tuple[int, int], set[int]] = {}
    for release in releases:
        if release.kind != Release.Kind.DEPLOY or not needs_approval(release.environment):
            continue
        people.setdefault((release.application_id, release.environment_id), set()).update(
            g.user.pk for g in batches[release.pk].groups if g.user is not None
        )
    approvers = {
        key: users_with(Permission.APPROVE_OWN, key[0], key[1], users) for key, users in people.items()
    }
    facts = EnvironmentFacts.load(
        [r for r in releases if not r.is_finished and r.status != Release.Status.DEPLOYING]
    )
    described = {}
    for release in releases:
        approvals = list(release.approvals.all())
        batch = batches[release.pk]
        state = approval_state(
            release, batch, approvals, approvers.get((release.application_id, release.environment_id))
        )
        described[release.pk] = ReleaseFacts(
            batch, approvals, state, blocked_by(release, approvals, batch, now, facts=facts, state=state)
        )
    return described

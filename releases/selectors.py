"""Reads for pages and the API, each in a fixed number of queries."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import (
    BooleanField,
    Count,
    Exists,
    ExpressionWrapper,
    F,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.functions import Coalesce, Lower

from environments.models import Environment, Target
from releases.models import (
    Application,
    Approval,
    Artifact,
    AuditEvent,
    AuthorIdentity,
    Change,
    Membership,
    Release,
    Rollout,
    RolloutStep,
)
from releases.permissions import Permission, roles_with, visible_applications
from releases.planning import slots, uses_blue_green

User = get_user_model()


@dataclass(slots=True)
class AuthorGroup:
    author: str
    user: Any | None  # a User
    changes: list[Change] = field(default_factory=list)

    @property
    def username(self) -> str | None:
        return self.user.get_username() if self.user is not None else None


def users_for_authors(authors: Iterable[str]) -> dict[str, Any]:
    """Map author strings (case-insensitive) to users by username, email or a linked identity: two queries."""
    keys = {a.lower() for a in authors if a}
    if not keys:
        return {}
    found: dict[str, Any] = {}
    users = User.objects.annotate(lusername=Lower("username"), lemail=Lower("email")).filter(
        Q(lusername__in=keys) | Q(lemail__in=keys), is_active=True
    )
    for user in users:
        for key in (user.lusername, user.lemail):
            if key in keys:
                found.setdefault(key, user)
    # A pending request maps nothing: until someone confirms it, the identity is not the user's.
    links = AuthorIdentity.objects.annotate(lidentity=Lower("identity")).filter(
        lidentity__in=keys, status=AuthorIdentity.Status.CONFIRMED
    )
    for link in links.select_related("user"):
        found.setdefault(link.lidentity, link.user)
    return found


def group_by_author(changes: Iterable[Change], users: dict[str, Any] | None = None) -> list[AuthorGroup]:
    """Changes grouped by author in order of first appearance; unknown authors keep their own group.

    Pass `users` (from `users_for_authors`) when grouping several lists, to resolve authors once.
    """
    changes = list(changes)
    if users is None:
        users = users_for_authors(c.author for c in changes)
    groups: dict[object, AuthorGroup] = {}
    for change in changes:
        user = users.get(change.author.lower())
        # One person committing under two identities is one group.
        key = ("user", user.pk) if user is not None else ("author", change.author.lower())
        group = groups.get(key)
        if group is None:
            group = groups[key] = AuthorGroup(author=change.author, user=user)
        group.changes.append(change)
    return list(groups.values())


def is_identity_admin(user) -> bool:
    """May link identities for anyone and decide every request (a Slipway administrator)."""
    return user.is_active and user.has_perm("releases.add_authoridentity")


def identities_of(user) -> QuerySet[AuthorIdentity]:
    """The user's links and requests, newest first."""
    return (
        AuthorIdentity.objects.filter(user=user)
        .select_related("user", "decided_by")
        .order_by("-created_at", "-id")
    )


def identity_requests_for(user) -> QuerySet[AuthorIdentity]:
    """Identity links `user` may confirm or decline, any status, never their own: all of them for an administrator;
    for a release manager (or admin) of an application, those whose identity authored changes in it."""
    links = (
        AuthorIdentity.objects.exclude(user=user)
        .select_related("user", "decided_by")
        .order_by("created_at", "id")
    )
    if not user.is_active:
        return links.none()
    if is_identity_admin(user):
        return links
    managed = Membership.objects.filter(
        user=user, environment=None, role__in=roles_with(Permission.APPROVE_FOR_OTHERS)
    ).values("application_id")
    authored = Change.objects.annotate(lauthor=Lower("author")).filter(
        application_id__in=managed, lauthor=Lower(OuterRef("identity"))
    )
    return links.filter(Exists(authored))


def identity_link(user, key: str) -> AuthorIdentity | None:
    """The link `key` names (its id, or the identity itself) among the user's own; an administrator's reaches anyone's."""
    links = AuthorIdentity.objects.select_related("user")
    if not is_identity_admin(user):
        links = links.filter(user=user)
    if key.isdigit() and (link := links.filter(pk=int(key)).first()) is not None:
        return link
    named = links.annotate(lidentity=Lower("identity")).filter(lidentity=key.lower())
    # The caller's own first; then a confirmed link before a pending request before a declined one.
    rank: dict[str, int] = {AuthorIdentity.Status.CONFIRMED: 0, AuthorIdentity.Status.PENDING: 1}
    return min(
        named, key=lambda link: (link.user_id != user.pk, rank.get(link.status, 2), -link.pk), default=None
    )


def applications_for(user, token=None) -> QuerySet[Application]:
    """What the user may see; through a token pinned to an environment, that environment's application only."""
    return visible_applications(user, token).order_by("slug")


def environments_of(application: Application) -> QuerySet[Environment]:
    return (
        Environment.objects.filter(application=application)
        .select_related("current_artifact")
        .order_by("position")
    )


def artifacts_of(application: Application) -> QuerySet[Artifact]:
    return (
        Artifact.objects.filter(application=application)
        .select_related("created_by")
        .annotate(change_count=Count("changes"))
        .order_by("-created_at", "-id")
    )


def artifact_detail(application: Application, version: str) -> Artifact | None:
    return (
        Artifact.objects.filter(application=application, version=version)
        .select_related("created_by", "application")
        .prefetch_related(Prefetch("changes", queryset=Change.objects.order_by("committed_at", "id")))
        .first()
    )


def overview(user) -> QuerySet[Application]:
    """Applications with their pipeline (version running in each) and newest artifact: three queries."""
    newest = Artifact.objects.filter(application=OuterRef("pk")).order_by("-created_at", "-id")
    return (
        applications_for(user)
        .annotate(
            newest_version=Subquery(newest.values("version")[:1]),
            newest_created_at=Subquery(newest.values("created_at")[:1]),
        )
        .prefetch_related(Prefetch("environments", queryset=environments_of_all()))
    )


def environments_of_all() -> QuerySet[Environment]:
    return Environment.objects.select_related("current_artifact").order_by("position")


def application_page(application: Application, *, limit: int = 20) -> list[Artifact]:
    """The newest artifacts, each with `author_groups`: four queries whatever the number of rows."""
    artifacts = list(
        Artifact.objects.filter(application=application)
        .select_related("created_by")
        .prefetch_related(Prefetch("changes", queryset=Change.objects.order_by("committed_at", "id")))
        .order_by("-created_at", "-id")[:limit]
    )
    users = users_for_authors(c.author for a in artifacts for c in a.changes.all())
    for artifact in artifacts:
        artifact.author_groups = group_by_author(artifact.changes.all(), users)  # type: ignore[attr-defined]
    return artifacts


def audit_events(
    user,
    *,
    application: Application | None = None,
    environment: str = "",
    actor: str = "",
    kind: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[AuditEvent]:
    """The trail `user` may read, newest first, narrowed by each filter given.

    `environment` is a name (within `application`, or in any application the user sees), `actor` a username or the
    start of an actor label, `kind` a kind or its start (`release.`), `since`/`until` bound `created_at` [since, until).
    """
    events = AuditEvent.objects.select_related("application", "environment__application", "actor").order_by(
        "-created_at", "-id"
    )
    if application is not None:
        events = events.filter(application=application)
    elif not user.is_superuser:
        events = events.filter(application__in=visible_applications(user))
    if environment:
        events = events.filter(environment__name=environment)
    if actor:
        events = events.filter(Q(actor__username=actor) | Q(actor_label__istartswith=actor))
    if kind:
        events = events.filter(kind__startswith=kind)
    if since is not None:
        events = events.filter(created_at__gte=since)
    if until is not None:
        events = events.filter(created_at__lt=until)
    return events


def releases_of(application: Application) -> QuerySet:
    return (
        Release.objects.filter(application=application)
        .select_related("environment", "artifact", "previous_artifact", "requested_by", "forced_by")
        .prefetch_related(Prefetch("approvals", queryset=Approval.objects.select_related("user")))
        .annotate(rollout_pk=F("rollout__pk"), rollout_status=F("rollout__status"))
        .order_by("-created_at", "-id")
    )


def release_timeline(release) -> QuerySet[AuditEvent]:
    return AuditEvent.objects.filter(object_type="releases.release", object_id=str(release.pk)).order_by(
        "created_at", "id"
    )


def rollout_page(rollout_id: int):
    return (
        Rollout.objects.select_related(
            "release__environment", "release__artifact", "release__previous_artifact"
        )
        .prefetch_related(Prefetch("steps", queryset=RolloutStep.objects.order_by("index")))
        .filter(pk=rollout_id)
        .first()
    )


def targets_of(environment: Environment) -> QuerySet:
    """The environment's hosts by name, each with `drifted` (it runs another version than the environment and
    `expected_version`, what the environment runs): one query."""
    expected = Coalesce(F("environment__current_artifact__version"), Value(""))
    return (
        Target.objects.filter(environment=environment)
        .annotate(expected_version=expected)
        .annotate(drifted=ExpressionWrapper(~Q(version=F("expected_version")), output_field=BooleanField()))
        .order_by("name")
    )


def rollback_candidates(environment: Environment) -> QuerySet[Artifact]:
    """Versions an environment may roll back to: ones whose last finished run there succeeded and was not rolled
    back from (`rolled_back`: it shipped, then someone rolled away from it — not a place to return to; rolled back
    to later and left running, it is good again), registered before what runs now, newest first (a newer version is
    a roll forward: release it). One query."""
    verdict = (
        Release.objects.filter(
            environment=environment,
            artifact_id=OuterRef("pk"),
            status__in=(Release.Status.SUCCEEDED, Release.Status.ROLLED_BACK),
        )
        .order_by(F("finished_at").desc(nulls_last=True), "-pk")
        .values("status")[:1]
    )
    candidates = (
        Artifact.objects.filter(application_id=environment.application_id)
        .annotate(last_verdict=Subquery(verdict))
        .filter(last_verdict=Release.Status.SUCCEEDED)
    )
    current = environment.current_artifact
    if current is not None:
        candidates = candidates.exclude(pk=current.pk).filter(
            Q(created_at__lt=current.created_at) | Q(created_at=current.created_at, pk__lt=current.pk)
        )
    return candidates.order_by("-created_at", "-id")


def members_of(application: Application) -> QuerySet[Membership]:
    """An application's memberships with their users and environments: one query."""
    return (
        Membership.objects.filter(application=application)
        .select_related("user", "environment")
        .order_by(Lower("user__username"), "role", "environment__position", "id")
    )


def usernames(limit: int = 1000) -> list[str]:
    """Active usernames for the members page's suggestions."""
    return list(
        User.objects.filter(is_active=True)
        .order_by(Lower("username"))
        .values_list("username", flat=True)[:limit]
    )


def targets_with_slots(environment: Environment) -> tuple[list, bool]:
    """The environment's hosts (as `targets_of`), and whether it deploys blue/green; then each host carries its
    `slot` (as the planner splits them, by name) and whether that slot is `live`. One query."""
    targets = list(targets_of(environment))
    blue_green = uses_blue_green(environment.strategy, len(targets))
    if blue_green:
        blue = set(slots([t.name for t in targets])["blue"])
        for target in targets:
            target.slot = "blue" if target.name in blue else "green"
            target.live = target.slot == environment.live_slot
    return targets, blue_green

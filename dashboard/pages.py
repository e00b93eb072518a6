"""What each page shows, built once for the view that serves it and the consumer that keeps it true."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db.models import Prefetch
from django.utils import timezone

from dashboard.progress import rollout_progress
from environments.models import Environment, FreezeWindow
from monitoring.selectors import active_ingest_key
from releases import selectors
from releases.batches import Coverage, approval_coverage, describe_releases, group_key
from releases.models import Application, Approval, Release, Rollout
from releases.permissions import Actor, Permission, can

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


def release_page(release_id: int, user) -> dict | None:
    """The release page's context: the card (status, approvals, blocked-by), the timeline and the rollout."""
    release = Release.objects.select_related(*RELEASE_RELATED).filter(pk=release_id).first()
    if release is None:
        return None
    rollout_id = Rollout.objects.filter(release=release).values_list("pk", flat=True).first()
    rollout = selectors.rollout_page(rollout_id) if rollout_id else None
    return {
        "card": release_card(release, user),
        "timeline": selectors.release_timeline(release),
        "rollout": rollout,
        "progress": rollout_progress(rollout) if rollout else None,
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


def application_page(application: Application) -> dict:
    """The application page's context: its pipeline, what waits between environments, its builds."""
    return {
        "application": application,
        "environments": selectors.environments_of(application),
        "artifacts": selectors.application_page(application),
        "waiting": selectors.releases_of(application).filter(
            status__in=[Release.Status.PENDING_APPROVAL, *IN_FLIGHT]
        ),
        "ingest_key": active_ingest_key(application),
    }

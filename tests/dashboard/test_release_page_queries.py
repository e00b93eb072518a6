"""The release page reads in a fixed number of queries whatever the number of approvals, changes (authors) and
rollout steps: 1 of each and 20 of each cost the same, a number pinned here."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from environments.models import Target
from releases.models import Approval, Release, Rollout, RolloutStep
from tests import factories
from tests.factories import sha

# The page's queries, pinned: equal for 1 and 20 is not enough, a constant can grow too. A release waiting for
# approval reads its batch, approvals and what blocks it; a deploying one its rollout and steps instead.
PAGE_QUERIES = {Release.Status.PENDING_APPROVAL: 20, Release.Status.DEPLOYING: 17}


def grown(viewer, n: int, status: str) -> Release:
    """A release of a batch of `n` authors, each of whom approved, whose rollout ran `n` steps on `n` targets."""
    app = factories.ApplicationFactory(slug=f"app{n}{status[:3]}")
    factories.MembershipFactory(user=viewer, application=app, role="viewer")
    environment = factories.EnvironmentFactory(application=app, name="production", requires_approval=True)
    people = [factories.UserFactory(username=f"p{n}{status[:3]}{i}") for i in range(n)]
    for person in people:
        factories.MembershipFactory(user=person, application=app, role="developer")
    changes = [
        factories.ChangeFactory(application=app, author=p.username, sha=sha(f"{n}{status}{i}"), title=f"t{i}")
        for i, p in enumerate(people)
    ]
    artifact = factories.ArtifactFactory(application=app, version=f"{n}.0.0-{status}", changes=changes)
    release = Release.objects.create(
        application=app, environment=environment, artifact=artifact, status=status
    )
    for person in people:
        Approval.objects.create(release=release, user=person, decision="approve", authors=[person.username])
    if status != Release.Status.PENDING_APPROVAL:
        names = [f"web-{i}" for i in range(n)]
        targets = [
            Target.objects.create(environment=environment, name=name, token_hash=f"{app.slug}{name}")
            for name in names
        ]
        rollout = Rollout.objects.create(release=release, targets=names, status="running")
        RolloutStep.objects.bulk_create(
            RolloutStep(
                rollout=rollout,
                index=i,
                wave=0,
                target=target,
                target_name=target.name,
                action="deploy",
                version=artifact.version,
                status="succeeded",
            )
            for i, target in enumerate(targets)
        )
    return release


def page_queries(client, release: Release) -> tuple[int, str]:
    url = f"/releases/{release.pk}/"
    client.get(url)  # caches warm (access versions, templates)
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200
    return len(ctx.captured_queries), response.content.decode()


@pytest.mark.parametrize("status", [Release.Status.PENDING_APPROVAL, Release.Status.DEPLOYING])
def test_release_page_queries_do_not_grow_with_approvals_changes_and_steps(client, user, status):
    client.force_login(user)
    one, _ = page_queries(client, grown(user, 1, status))
    twenty, page = page_queries(client, grown(user, 20, status))
    assert page.count("p20" + status[:3]) >= 20  # every approver (and author) is on the page
    if status == Release.Status.DEPLOYING:
        assert "web-19" in page  # every step's target
    assert (one, twenty) == (PAGE_QUERIES[status], PAGE_QUERIES[status]), (one, twenty)

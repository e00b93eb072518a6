"""The release list API and the approvals inbox read a page in the same number of queries for 1 or 20 rows
(they ran 17 → 107 and 13 → 94 queries for 1 → 10 rows: batch, approvals and blockers per row)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from environments.models import FreezeWindow, Lock
from releases.models import Approval, Release
from releases.permissions import Actor
from releases.promotions import do_decide, do_request_release
from tests import factories
from tests.conftest import token_client
from tests.factories import sha

LAST_APPROVAL_QUERIES = 24  # 33 when the batch and its approval state were read three times


def queries(fn) -> int:
    with CaptureQueriesContext(connection) as ctx:
        fn()
    return len(ctx.captured_queries)


@pytest.fixture
def world(app, user):
    staging = factories.EnvironmentFactory(application=app, name="staging", position=1)
    production = factories.EnvironmentFactory(
        application=app, name="production", position=2, requires_approval=True
    )
    people = [factories.UserFactory(username=f"dev{i}", email=f"dev{i}@example.com") for i in range(4)]
    for person in people:
        factories.MembershipFactory(user=person, application=app, role="developer")
    Lock.objects.create(environment=production, locked_by=people[0], reason="incident")
    FreezeWindow.objects.create(
        environment=production,
        reason="weekend",
        weekdays=[6, 7],
        start_time="00:00",
        end_time="23:59",
        timezone="UTC",
    )
    return app, staging, production, people


def add_releases(world, n):
    app, staging, production, people = world
    previous = None
    for i in range(n):
        changes = [
            factories.ChangeFactory(application=app, author=f"dev{(i + k) % 4}", sha=sha(f"{i}-{k}"))
            for k in range(3)
        ] + [factories.ChangeFactory(application=app, author=f"stranger{i}", sha=sha(f"{i}-s"))]
        artifact = factories.ArtifactFactory(application=app, version=f"1.{i}.0", changes=changes)
        release = Release.objects.create(
            application=app,
            environment=production,
            artifact=artifact,
            previous_artifact=previous,
            status=Release.Status.PENDING_APPROVAL,
            # Users on the rows, as real releases have: a list that reads them one by one grows with n. Every
            # release but the newest was forced (the newest shows what blocks it).
            requested_by=people[i % 4],
            forced_by=people[(i + 1) % 4] if i < n - 1 else None,
        )
        Approval.objects.create(
            release=release, user=people[i % 4], decision="approve", authors=[f"user:{people[i % 4].pk}"]
        )
        previous = artifact


@pytest.mark.parametrize("n", [1, 20])
def test_release_list_api_queries_do_not_grow(world, user, n):
    add_releases(world, n)
    client = token_client(user, "releases:read")
    counts = queries(lambda: client.get("/api/v1/applications/shop/releases/?page_size=50"))
    body = client.get("/api/v1/applications/shop/releases/?page_size=50").json()
    assert body["count"] == n and body["results"][0]["blocked_by"]  # blockers are computed, not skipped
    assert {r["kind"] for r in body["results"][0]["blocked_by"]} >= {"approval", "lock"}
    people = world[3]
    assert [(r["requested_by"], r["forced_by"]) for r in body["results"]] == [
        (people[i % 4].username, people[(i + 1) % 4].username if i < n - 1 else None)
        for i in reversed(range(n))
    ]  # read, not skipped
    assert counts == 18


@pytest.mark.parametrize("n", [1, 20])
def test_approvals_inbox_queries_do_not_grow(world, client, n):
    add_releases(world, n)
    client.force_login(world[3][1])
    page = client.get("/approvals/")
    assert page.status_code == 200 and page.content.decode().count('class="card release-card') == n
    assert queries(lambda: client.get("/approvals/")) == 19


def last_approval_queries(authors: int) -> tuple[int, str]:
    """The queries of the decision that completes a batch of `authors` authors (each approves their own)."""
    app = factories.ApplicationFactory(slug=f"app{authors}")
    production = factories.EnvironmentFactory(application=app, name="production", requires_approval=True)
    people = [
        factories.UserFactory(username=f"a{authors}-{i}", email=f"{authors}-{i}@x.example")
        for i in range(authors)
    ]
    for person in people:
        factories.MembershipFactory(user=person, application=app, role="developer")
    changes = [
        factories.ChangeFactory(application=app, author=p.username, sha=sha(f"{authors}-{i}"), title="x")
        for i, p in enumerate(people)
    ]
    artifact = factories.ArtifactFactory(application=app, version=f"{authors}.0.0", changes=changes)
    release = do_request_release(Actor.system(), app, environment=production, artifact=artifact)
    for person in people[:-1]:
        do_decide(Actor(person), release.pk, decision="approve")
    count = queries(lambda: do_decide(Actor(people[-1]), release.pk, decision="approve"))
    release.refresh_from_db()
    return count, release.status


def test_the_last_approval_reads_the_batch_once_whatever_its_authors(db):
    """`do_decide` computes the batch once and hands it to `_advance` and `blocked_by`: the decision that completes
    a batch costs the same for 1 author or 5."""
    one, status = last_approval_queries(1)
    five, status5 = last_approval_queries(5)
    assert status == status5 == Release.Status.QUEUED
    assert one == five == LAST_APPROVAL_QUERIES

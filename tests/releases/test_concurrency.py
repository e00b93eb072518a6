"""Racing writers on real PostgreSQL: threads with their own connections."""

import pytest

from releases.models import Artifact, AuditEvent, Change
from releases.permissions import Actor
from releases.services import ArtifactIn, ChangeIn, do_register_artifact
from tests import factories
from tests.concurrent import at_once
from tests.factories import sha

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_identical_artifacts_posted_at_once_store_one(user):
    app = factories.ApplicationFactory(slug="shop")
    data = ArtifactIn(
        version="2.0.0",
        commit=sha("c"),
        image="img",
        metadata={},
        changes=tuple(ChangeIn(sha=sha(n), author="alice", title=f"c{n}") for n in range(5)),
    )
    results, errors = at_once(lambda: do_register_artifact(Actor.system(), app, data)[1])
    assert errors == []
    assert sorted(results) == [False, False, False, True]
    assert Artifact.objects.count() == 1 and Change.objects.count() == 5
    assert AuditEvent.objects.filter(kind="artifact.registered").count() == 1

"""`config/pgarrays.py`: one array parameter per column on PostgreSQL, the ORM's way elsewhere — the same rows."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from config.pgarrays import insert_rows, update_rows
from environments.models import Target
from releases.models import Release, Rollout, RolloutStep
from tests import factories


@pytest.fixture
def rollout(app):
    env = factories.EnvironmentFactory(application=app, name="production", position=1)
    for name in ("a", "b", "c"):
        Target.objects.create(environment=env, name=name, token_hash=name * 64)
    release = Release.objects.create(
        application=app,
        environment=env,
        artifact=factories.ArtifactFactory(application=app, version="2.0.0"),
        status="deploying",
    )
    return Rollout.objects.create(release=release, targets=["a", "b", "c"], status="running")


def test_any_of_finds_what_in_finds(rollout):
    targets = Target.objects.order_by("name")
    ids = list(targets.values_list("pk", flat=True))
    for values in ([ids[0], ids[2]], {ids[1], None}, [], [ids[0], 10**12]):
        assert list(targets.filter(pk__any_of=values)) == list(targets.filter(pk__in=values))
    assert list(targets.filter(name__any_of=("b", "c", "zz"))) == list(
        targets.filter(name__in=("b", "c", "zz"))
    )
    assert list(targets.exclude(name__any_of=["a"])) == list(targets.exclude(name__in=["a"]))
    with CaptureQueriesContext(connection) as queries:
        list(targets.filter(pk__any_of=ids))
    if connection.vendor == "postgresql":  # one parameter, whatever the number of values
        assert "= ANY(" in queries[0]["sql"] and " IN (" not in queries[0]["sql"]


def test_insert_rows_writes_what_bulk_create_writes(rollout):
    now = timezone.now()
    target = Target.objects.get(name="b")

    def steps(first):
        return [
            RolloutStep(rollout=rollout, index=first, action="deploy", target_name="a", version="2.0.0"),
            RolloutStep(
                rollout=rollout,
                index=first + 1,
                wave=3,
                target=target,
                target_name="b",
                action="health",
                version="2.0.0",
                status="failed",
                health={"ok": False, "detail": 'ü "quoted" {}'},
                output="line\n",
                started_at=now,
                finished_at=now,
            ),
        ]

    insert_rows(steps(0))
    RolloutStep.objects.bulk_create(steps(2))
    rows = list(RolloutStep.objects.filter(rollout=rollout).order_by("index").values())
    for row in rows:
        del row["id"]
        row["index"] %= 2
    assert rows[:2] == rows[2:]
    insert_rows([])  # nothing to write: no statement


def test_update_rows_writes_the_fields_named(rollout):
    insert_rows(
        [
            RolloutStep(rollout=rollout, index=n, action="deploy", target_name=name, version="2.0.0")
            for n, name in enumerate("abc")
        ]
    )
    a, b, c = RolloutStep.objects.filter(rollout=rollout).order_by("index")
    now = timezone.now()
    a.status, a.finished_at, a.health, a.output = "succeeded", now, {"ok": True, "detail": "fine"}, "done"
    b.status, b.health, b.version = "failed", None, "not written"
    update_rows([a, b], ("status", "finished_at", "health", "output"))
    got = {s.target_name: s for s in RolloutStep.objects.filter(rollout=rollout)}
    assert (got["a"].status, got["a"].finished_at, got["a"].health, got["a"].output) == (
        "succeeded",
        now,
        {"ok": True, "detail": "fine"},
        "done",
    )
    assert (got["b"].status, got["b"].health, got["b"].version) == ("failed", None, "2.0.0")
    assert got["c"].status == "pending"


pytestmark = pytest.mark.django_db

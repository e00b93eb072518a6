"""What one reconciliation costs on the agent driver, and that the wave recorded in one statement (PostgreSQL) is
the rows `bulk_create` writes elsewhere."""

import pytest
from django.db import connection
from django.utils import timezone

from environments.models import Target
from releases.models import Release, Rollout, RolloutStep
from releases.rollouts import dispatching, do_advance_rollout, start_rollout
from tests import factories


@pytest.fixture
def env(app):
    env = factories.EnvironmentFactory(
        application=app, name="production", position=1, strategy={"kind": "cautious"}
    )
    for n in range(7):
        Target.objects.create(
            environment=env, name=f"t{n}", token_hash=f"{n}" * 64, status="online", last_seen=timezone.now()
        )
    return env


def rollout_on(env) -> Rollout:
    v1 = factories.ArtifactFactory(application=env.application, version="1.0.0")
    v2 = factories.ArtifactFactory(application=env.application, version="2.0.0")
    release = Release.objects.create(
        application=env.application, environment=env, artifact=v2, previous_artifact=v1, status="deploying"
    )
    return start_rollout(release)


def report_all(rollout: Rollout) -> None:
    RolloutStep.objects.filter(rollout=rollout, status__in=("pending", "running")).update(
        status="succeeded", health={"ok": True, "detail": "ok"}
    )


def test_folding_a_wave_and_dispatching_the_next_takes_one_pass_of_few_queries(
    env, django_assert_num_queries, django_capture_on_commit_callbacks
):
    rollout = rollout_on(env)
    assert do_advance_rollout(rollout.pk) == "running"  # wave 1: t0
    report_all(rollout)
    # The rollout locked; open steps? none; wave 1's steps folded; open steps? none; wave 2's steps (none yet);
    # wave 2 recorded; the row written once (savepoints: the test's transaction).
    with (
        django_capture_on_commit_callbacks() as callbacks,
        django_assert_num_queries(9 if connection.vendor == "postgresql" else 11),
    ):
        assert do_advance_rollout(rollout.pk) == "running"
    assert list(
        RolloutStep.objects.filter(rollout=rollout)
        .order_by("index")
        .values_list("index", "target_name", "wave")
    ) == [(0, "t0", 0), (1, "t1", 1), (2, "t2", 1)]
    assert len(callbacks) == 2  # the agents are told, and the live views
    rollout.refresh_from_db()
    assert sorted(rollout.progress["healthy"]) == ["t0"]
    # Nothing changed: no write, no event (the periodic check runs this every 2 s).
    with django_capture_on_commit_callbacks() as callbacks:
        assert do_advance_rollout(rollout.pk) == "running"
    assert callbacks == []


def test_steps_recorded_in_one_statement_are_the_rows_bulk_create_writes(env):
    rollout = rollout_on(env)
    assert set(dispatching.INSERTED_COLUMNS) == {f.name for f in RolloutStep._meta.concrete_fields} - {"id"}
    RolloutStep.objects.create(rollout=rollout, index=4, action="pre_deploy", status="succeeded")
    # Targets in any order, one without a row (its agent never registered), deploys in a wave and reverts in none.
    for kind, waves in (("deploy", {"t2": 3, "gone": 3, "t1": 3}), ("revert", {"t5": None, "t3": None})):
        dispatching.dispatch_steps(rollout, kind, "2.0.0", waves)
    written = list(RolloutStep.objects.filter(rollout=rollout, index__gt=4).order_by("index").values())
    targets = dict(Target.objects.filter(environment=env).values_list("name", "pk"))
    expected = [
        RolloutStep(
            rollout=rollout,
            index=5 + n,
            wave=wave,
            target_id=targets.get(name),
            target_name=name,
            action=kind,
            version="2.0.0",
        )
        for n, (kind, name, wave) in enumerate(
            [
                ("deploy", "gone", 3),
                ("deploy", "t1", 3),
                ("deploy", "t2", 3),
                ("revert", "t3", None),
                ("revert", "t5", None),
            ]
        )
    ]
    fields = [f for f in RolloutStep._meta.concrete_fields if f.name != "id"]
    assert [{f.attname: row[f.attname] for f in fields} for row in written] == [
        {f.attname: getattr(step, f.attname) for f in fields} for step in expected
    ]


pytestmark = pytest.mark.django_db

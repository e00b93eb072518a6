import pytest

from releases.exceptions import IllegalTransition
from releases.lifecycle import do_transition_release
from releases.models import FINISHED, TRANSITIONS, AuditEvent, Release
from releases.permissions import Actor
from tests import factories


@pytest.fixture
def release(app):
    env = factories.EnvironmentFactory(application=app, name="production", position=2)
    artifact = factories.ArtifactFactory(application=app, version="1.4.0")
    return Release.objects.create(application=app, environment=env, artifact=artifact)


def test_legal_path_to_success_moves_current_version(release, django_capture_on_commit_callbacks):
    from releases.signals import release_succeeded

    succeeded = []

    def listener(sender, release, **kwargs):
        succeeded.append(release.pk)

    release_succeeded.connect(listener, dispatch_uid="test-listener")
    try:
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            for status in ["approved", "queued", "deploying", "succeeded"]:
                do_transition_release(Actor.system(), release.pk, status)
    finally:
        release_succeeded.disconnect(dispatch_uid="test-listener")
    release.refresh_from_db()
    release.environment.refresh_from_db()
    assert release.status == "succeeded" and release.started_at and release.finished_at
    assert release.environment.current_artifact == release.artifact
    assert list(
        AuditEvent.objects.filter(kind__startswith="release.").values_list("kind", flat=True).order_by("id")
    ) == ["release.approved", "release.queued", "release.deploying", "release.succeeded"]
    assert succeeded == [release.pk]  # the layers above hear of the success once, after commit
    notified = [
        c.args[1] for c in callbacks if getattr(getattr(c, "func", None), "__name__", "") == "_enqueue"
    ]
    assert notified == ["approved", "deploying", "succeeded"]  # notifications for each step but queued


@pytest.mark.parametrize(
    "start,to",
    [
        (start, to)
        for start in Release.Status.values
        for to in Release.Status.values
        if to not in TRANSITIONS[start]
    ],
)
def test_every_illegal_transition_is_refused(release, start, to):
    Release.objects.filter(pk=release.pk).update(status=start)
    with pytest.raises(IllegalTransition):
        do_transition_release(Actor.system(), release.pk, to)
    release.refresh_from_db()
    assert release.status == start
    assert not AuditEvent.objects.filter(kind=f"release.{to}").exists()


def test_finished_states_are_terminal_except_rollback_of_success():
    for status in FINISHED:
        allowed = TRANSITIONS[status]
        assert allowed <= {"rolled_back"}

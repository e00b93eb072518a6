"""Batches, approvals, supersession, what blocks a promotion, rollback — through the API, as people use it."""

import threading
from datetime import UTC, datetime, time

import pytest
import time_machine
from django.db import connection

from environments.models import FreezeWindow
from releases.batches import compute_batch, freeze_applies
from releases.models import Approval, AuditEvent, Release
from releases.permissions import Actor
from releases.promotions import do_decide, do_request_release
from tests import factories
from tests.conftest import token_client
from tests.factories import sha

API = "/api/v1/applications/shop"


@pytest.fixture
def team(app):
    people = {}
    for name in ("alice", "bob", "carol", "rm", "boss"):
        people[name] = factories.UserFactory(username=name, email=f"{name}@example.com")
    for name in ("alice", "bob", "carol"):
        factories.MembershipFactory(user=people[name], application=app, role="developer")
    factories.MembershipFactory(user=people["rm"], application=app, role="release_manager")
    factories.MembershipFactory(user=people["boss"], application=app, role="admin")
    people["vera"] = factories.UserFactory(username="vera", email="vera@example.com")
    factories.MembershipFactory(user=people["vera"], application=app, role="viewer")
    return people


@pytest.fixture
def pipeline(app):
    staging = factories.EnvironmentFactory(application=app, name="staging", position=1)
    production = factories.EnvironmentFactory(
        application=app, name="production", position=2, requires_approval=True
    )
    return staging, production


def build(app, version, authors):
    changes = [
        factories.ChangeFactory(application=app, author=a, sha=sha(f"{version}-{i}"), title=f"{a} {i}")
        for i, a in enumerate(authors)
    ]
    return factories.ArtifactFactory(application=app, version=version, changes=changes)


def run(callbacks_fixture, fn, *args, **kwargs):
    with callbacks_fixture(execute=True):
        return fn(*args, **kwargs)


@pytest.fixture
def shipped(app, pipeline, django_capture_on_commit_callbacks):
    """1.0 runs everywhere; 1.1 (alice, bob, dave) is in staging."""
    staging, production = pipeline
    v1 = build(app, "1.0.0", ["alice"])
    v11 = build(app, "1.1.0", ["alice", "bob", "dave@contractor.example"])
    for env, artifact in ((staging, v1), (production, v1), (staging, v11)):
        factories_release = Release.objects.create(
            application=app, environment=env, artifact=artifact, kind="recorded", status="succeeded"
        )
        env.current_artifact = artifact
        env.save()
        assert factories_release.pk
    return v1, v11


def test_batch_grouped_by_author_with_unknown_authors(app, team, pipeline, shipped):
    _, production = pipeline
    batch = compute_batch(production.current_artifact, shipped[1])
    assert [(g.author, g.username, len(g.changes)) for g in batch.groups] == [
        ("alice", "alice", 1),
        ("bob", "bob", 1),
        ("dave@contractor.example", None, 1),
    ]
    assert (batch.from_version, batch.to_version) == ("1.0.0", "1.1.0")


def test_batch_without_previous_deployment_is_everything(app, team, pipeline):
    v1 = build(app, "1.0.0", ["alice"])
    v2 = build(app, "2.0.0", ["bob", "alice"])
    batch = compute_batch(None, v2)
    assert batch.from_version is None and batch.change_count == 3
    assert v1.changes.first() in [c for g in batch.groups for c in g.changes]


def test_release_needs_every_author(app, team, pipeline, shipped, django_capture_on_commit_callbacks):
    ci = token_client(team["boss"], "releases:write")
    response = ci.post(f"{API}/releases/", {"environment": "production", "version": "1.1.0"}, format="json")
    assert response.status_code == 201, response.json()
    data = response.json()
    assert data["status"] == "pending_approval"
    assert data["batch"]["from_version"] == "1.0.0"
    assert [a["author"] for a in data["batch"]["authors"]] == ["alice", "bob", "dave@contractor.example"]
    assert {r["kind"] for r in data["blocked_by"]} == {"approval"}
    release_id = data["id"]
    url = f"{API}/releases/{release_id}/approvals/"
    carol = token_client(team["carol"], "approvals:write").post(url, {"decision": "approve"}, format="json")
    assert carol.status_code == 403  # nothing of hers in the batch
    alice = token_client(team["alice"], "approvals:write")
    assert alice.post(url, {"decision": "approve", "comment": "ship it"}, format="json").status_code == 201
    assert alice.post(url, {"decision": "approve"}, format="json").status_code == 409  # second decision
    assert (
        token_client(team["bob"], "approvals:write")
        .post(url, {"decision": "approve"}, format="json")
        .status_code
        == 201
    )
    with django_capture_on_commit_callbacks(execute=True):
        on_behalf = token_client(team["rm"], "approvals:write").post(
            url, {"decision": "approve"}, format="json"
        )
    assert on_behalf.status_code == 201
    assert on_behalf.json()["batch"]["authors"][2]["approval"]["on_behalf"] is True
    release = Release.objects.get(pk=release_id)
    assert release.status == "succeeded"
    release.environment.refresh_from_db()
    assert release.environment.current_artifact.version == "1.1.0"
    kinds = list(
        AuditEvent.objects.filter(object_id=str(release_id), object_type="releases.release")
        .order_by("id")
        .values_list("kind", flat=True)
    )
    assert kinds[:1] == ["release.requested"] and kinds[-1] == "release.succeeded"
    assert "release.approved" in kinds and "release.queued" in kinds


def test_viewers_changes_are_approved_by_a_release_manager(
    client, app, team, pipeline, shipped, django_capture_on_commit_callbacks
):
    """A linked author whose role cannot approve is like an unlinked one: a release manager approves for them."""
    staging, production = pipeline
    v12 = build(app, "1.2.0", ["vera"])
    Release.objects.create(
        application=app, environment=staging, artifact=v12, kind="recorded", status="succeeded"
    )
    release = do_request_release(Actor(team["boss"]), app, environment=production, artifact=v12)
    url = f"{API}/releases/{release.pk}/approvals/"
    blocked = (
        token_client(team["vera"], "releases:read").get(f"{API}/releases/{release.pk}/").json()["blocked_by"]
    )
    vera = next(r for r in blocked if "vera" in r["detail"])
    assert (
        vera["cleared_by"] == ["a release manager, on their behalf"]
        and "no role that approves" in vera["detail"]
    )
    assert (
        token_client(team["vera"], "approvals:write")
        .post(url, {"decision": "approve"}, format="json")
        .status_code
        == 403
    )
    client.force_login(team["vera"])
    assert "Approve" not in client.get(f"/releases/{release.pk}/").content.decode()
    client.force_login(team["rm"])
    assert "Approve for dave@contractor.example, vera" in client.get("/approvals/").content.decode()
    for name in ("alice", "bob"):
        token_client(team[name], "approvals:write").post(url, {"decision": "approve"}, format="json")
    with django_capture_on_commit_callbacks(execute=True):
        on_behalf = token_client(team["rm"], "approvals:write").post(
            url, {"decision": "approve"}, format="json"
        )
    assert on_behalf.status_code == 201
    approval = release.approvals.get(user=team["rm"])
    assert approval.on_behalf and approval.authors == [
        "author:dave@contractor.example",
        f"user:{team['vera'].pk}",
    ]
    assert Release.objects.get(pk=release.pk).status == "succeeded"


def test_rejection_stops_the_release(app, team, pipeline, shipped):
    release = do_request_release(Actor(team["boss"]), app, environment=pipeline[1], artifact=shipped[1])
    response = token_client(team["bob"], "approvals:write").post(
        f"{API}/releases/{release.pk}/approvals/",
        {"decision": "reject", "comment": "breaks VAT"},
        format="json",
    )
    assert response.status_code == 201 and response.json()["status"] == "rejected"
    assert AuditEvent.objects.get(kind="release.rejected").note == "breaks VAT"


def test_reviewers_policy(app, team, pipeline, shipped, django_capture_on_commit_callbacks):
    _, production = pipeline
    production.approval_policy, production.required_approvals = "reviewers", 2
    production.save()
    release = do_request_release(Actor(team["boss"]), app, environment=production, artifact=shipped[1])
    url = f"{API}/releases/{release.pk}/approvals/"
    assert (
        token_client(team["alice"], "approvals:write")
        .post(url, {"decision": "approve"}, format="json")
        .status_code
        == 403
    )
    token_client(team["carol"], "approvals:write").post(url, {"decision": "approve"}, format="json")
    assert Release.objects.get(pk=release.pk).status == "pending_approval"
    with django_capture_on_commit_callbacks(execute=True):
        token_client(team["rm"], "approvals:write").post(url, {"decision": "approve"}, format="json")
    assert Release.objects.get(pk=release.pk).status == "succeeded"


def test_policy_none_and_pipeline_order(app, team, pipeline, shipped, django_capture_on_commit_callbacks):
    staging, production = pipeline
    v12 = build(app, "1.2.0", ["carol"])
    ci = token_client(team["boss"], "releases:write")
    refused = ci.post(f"{API}/releases/", {"environment": "production", "version": "1.2.0"}, format="json")
    assert refused.status_code == 409 and refused.json()["blocked_by"][0]["kind"] == "pipeline"
    with django_capture_on_commit_callbacks(execute=True):
        staged = ci.post(f"{API}/releases/", {"environment": "staging", "version": "1.2.0"}, format="json")
    assert staged.status_code == 201
    assert Release.objects.get(pk=staged.json()["id"]).status == "succeeded"
    assert (
        ci.post(
            f"{API}/releases/", {"environment": "production", "version": "1.2.0"}, format="json"
        ).status_code
        == 201
    )
    assert v12.pk


def test_unknown_version_or_environment_is_404(app, team, pipeline):
    ci = token_client(team["boss"], "releases:write")
    assert (
        ci.post(
            f"{API}/releases/", {"environment": "production", "version": "9.9"}, format="json"
        ).status_code
        == 404
    )
    assert (
        ci.post(f"{API}/releases/", {"environment": "moon", "version": "1.0.0"}, format="json").status_code
        == 404
    )
    bad = ci.post(f"{API}/releases/", {"environment": "production"}, format="json")
    assert bad.status_code == 400 and "version" in bad.json()
    assert not Release.objects.exists()


def test_newer_artifact_supersedes_and_carries_unchanged_approvals(app, team, pipeline, shipped):
    staging, production = pipeline
    release = do_request_release(Actor(team["boss"]), app, environment=production, artifact=shipped[1])
    do_decide(Actor(team["alice"]), release.pk, decision="approve")
    do_decide(Actor(team["bob"]), release.pk, decision="approve")
    v12 = build(app, "1.2.0", ["bob"])  # bob has a new change; alice's group is unchanged
    Release.objects.create(
        application=app, environment=staging, artifact=v12, kind="recorded", status="succeeded"
    )
    newer = do_request_release(Actor(team["boss"]), app, environment=production, artifact=v12)
    release.refresh_from_db()
    assert release.status == "superseded" and release.superseded_by == newer
    carried = Approval.objects.filter(release=newer)
    assert [(a.user.username, a.carried_over) for a in carried] == [("alice", True)]


def test_locks_block_and_unlock_releases(app, team, pipeline, shipped, django_capture_on_commit_callbacks):
    staging, _ = pipeline
    rm = token_client(team["rm"], "releases:write")
    lock = rm.post(f"{API}/environments/staging/locks/", {"reason": "investigating latency"}, format="json")
    assert lock.status_code == 201
    assert (
        token_client(team["alice"], "releases:write")
        .post(f"{API}/environments/staging/locks/", {"reason": "x"}, format="json")
        .status_code
        == 403
    )
    build(app, "1.2.0", ["carol"])
    with django_capture_on_commit_callbacks(execute=True):
        held = rm.post(
            f"{API}/releases/", {"environment": "staging", "version": "1.2.0"}, format="json"
        ).json()
    assert held["status"] == "approved"
    assert held["blocked_by"][0]["kind"] == "lock" and "rm" in held["blocked_by"][0]["cleared_by"]
    with django_capture_on_commit_callbacks(execute=True):
        assert rm.delete(f"{API}/environments/staging/locks/{lock.json()['id']}/").status_code == 204
    assert Release.objects.get(pk=held["id"]).status == "succeeded"


def test_blocker_and_force(app, team, pipeline, shipped, django_capture_on_commit_callbacks):
    rm = token_client(team["rm"], "releases:write")
    blocker = rm.post(
        f"{API}/blockers/", {"title": "INC-42 checkout down", "environments": ["staging"]}, format="json"
    )
    assert blocker.status_code == 201
    bad = rm.post(f"{API}/blockers/", {"title": "x", "environments": ["moon"]}, format="json")
    assert bad.status_code == 404 and "environments" in bad.json()
    build(app, "1.2.0", ["carol"])
    held = rm.post(f"{API}/releases/", {"environment": "staging", "version": "1.2.0"}, format="json").json()
    assert [r["kind"] for r in held["blocked_by"]] == ["blocker"]
    assert (
        rm.post(f"{API}/releases/{held['id']}/force/", {"reason": "hotfix"}, format="json").status_code == 403
    )
    with django_capture_on_commit_callbacks(execute=True):
        forced = token_client(team["boss"], "releases:write").post(
            f"{API}/releases/{held['id']}/force/", {"reason": "the fix for INC-42"}, format="json"
        )
    assert forced.status_code == 200
    assert Release.objects.get(pk=held["id"]).status == "succeeded"
    assert AuditEvent.objects.get(kind="release.forced").note == "the fix for INC-42"


def test_recurring_freeze_windows_respect_time_zone_and_boundaries(pipeline):
    staging, _ = pipeline
    window = FreezeWindow(
        environment=staging,
        reason="weekend",
        weekdays=[5],
        start_time=time(18),
        end_time=time(8),
        timezone="Europe/Berlin",
    )
    # Friday 2026-11-27 is a Friday; Berlin is UTC+1 in November.
    assert not freeze_applies(window, datetime(2026, 11, 27, 16, 59, tzinfo=UTC))  # 17:59 local
    assert freeze_applies(window, datetime(2026, 11, 27, 17, 0, tzinfo=UTC))  # 18:00 local: starts
    assert freeze_applies(window, datetime(2026, 11, 28, 6, 59, tzinfo=UTC))  # Saturday 07:59 local
    assert not freeze_applies(window, datetime(2026, 11, 28, 7, 0, tzinfo=UTC))  # 08:00 local: over
    assert not freeze_applies(window, datetime(2026, 11, 26, 20, 0, tzinfo=UTC))  # Thursday evening
    one_off = FreezeWindow(
        environment=staging,
        reason="launch",
        starts_at=datetime(2026, 12, 1, tzinfo=UTC),
        ends_at=datetime(2026, 12, 2, tzinfo=UTC),
    )
    assert freeze_applies(one_off, datetime(2026, 12, 1, tzinfo=UTC))
    assert not freeze_applies(one_off, datetime(2026, 12, 2, tzinfo=UTC))


def test_freeze_window_blocks_through_the_api(app, team, pipeline, shipped):
    rm = token_client(team["rm"], "releases:write")
    response = rm.post(
        f"{API}/environments/staging/freezes/",
        {"reason": "Black Friday", "starts_at": "2026-11-27T00:00:00Z", "ends_at": "2026-11-28T00:00:00Z"},
        format="json",
    )
    assert response.status_code == 201
    for body, field in [
        ({"reason": "x", "weekdays": [8], "start_time": "18:00", "end_time": "08:00"}, "weekdays"),
        (
            {
                "reason": "x",
                "weekdays": [5],
                "start_time": "18:00",
                "end_time": "08:00",
                "timezone": "Mars/Base",
            },
            "timezone",
        ),
        ({"reason": "x", "starts_at": "2026-11-28T00:00:00Z", "ends_at": "2026-11-27T00:00:00Z"}, "ends_at"),
        ({"reason": "x"}, "non_field_errors"),
    ]:
        bad = rm.post(f"{API}/environments/staging/freezes/", body, format="json")
        assert bad.status_code == 400 and field in bad.json(), body
    assert FreezeWindow.objects.count() == 1
    build(app, "1.2.0", ["carol"])
    with time_machine.travel(datetime(2026, 11, 27, 12, tzinfo=UTC), tick=False):
        held = rm.post(
            f"{API}/releases/", {"environment": "staging", "version": "1.2.0"}, format="json"
        ).json()
    assert [r["kind"] for r in held["blocked_by"]] == ["freeze"]


def test_rollback(app, team, pipeline, shipped, django_capture_on_commit_callbacks):
    staging, _ = pipeline
    url = f"{API}/environments/staging/rollback/"
    assert (
        token_client(team["alice"], "releases:write")
        .post(url, {"version": "1.0.0", "reason": "errors"}, format="json")
        .status_code
        == 403
    )
    rm = token_client(team["rm"], "releases:write")
    rm.post(f"{API}/environments/staging/locks/", {"reason": "incident"}, format="json")
    never = build(app, "0.9.0", ["alice"])
    assert rm.post(url, {"version": never.version, "reason": "x"}, format="json").status_code == 409
    with django_capture_on_commit_callbacks(execute=True):
        response = rm.post(url, {"version": "1.0.0", "reason": "errors after 1.1.0"}, format="json")
    assert response.status_code == 201 and response.json()["kind"] == "rollback"
    staging.refresh_from_db()
    assert staging.current_artifact.version == "1.0.0"  # the lock does not hold a rollback
    assert Release.objects.get(environment=staging, artifact__version="1.1.0").status == "rolled_back"


def test_record_external_deployment(app, team, pipeline, shipped):
    ci = token_client(team["boss"], "releases:write")
    build(app, "1.2.0", ["carol"])
    response = ci.post(
        f"{API}/environments/staging/deployments/", {"version": "1.2.0", "status": "succeeded"}, format="json"
    )
    assert response.status_code == 201 and response.json()["kind"] == "recorded"
    assert ci.get(f"{API}/environments/staging/").json()["current_version"] == "1.2.0"
    bad = ci.post(
        f"{API}/environments/staging/deployments/", {"version": "1.2.0", "status": "maybe"}, format="json"
    )
    assert bad.status_code == 400 and "status" in bad.json()


def test_release_list_filters(app, team, pipeline, shipped):
    do_request_release(Actor(team["boss"]), app, environment=pipeline[1], artifact=shipped[1])
    ci = token_client(team["boss"], "releases:read")
    page = ci.get(f"{API}/releases/?environment=production&status=pending_approval").json()
    assert page["count"] == 1 and page["results"][0]["version"] == "1.1.0"
    assert ci.get(f"{API}/releases/?status=nonsense").status_code == 400  # a bad filter, not a missing object


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_racing_approvals_and_promotions(team, pipeline, shipped):
    app = pipeline[0].application
    release = do_request_release(Actor(team["boss"]), app, environment=pipeline[1], artifact=shipped[1])
    barrier = threading.Barrier(3)
    outcomes = []

    def approve(user):
        try:
            barrier.wait()
            do_decide(Actor(user), release.pk, decision="approve")
            outcomes.append("ok")
        except Exception as error:
            outcomes.append(type(error).__name__)
        finally:
            connection.close()

    threads = [threading.Thread(target=approve, args=(team[n],)) for n in ("alice", "bob", "alice")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(outcomes) == ["AlreadyDecided", "ok", "ok"]  # a named error, not a bare conflict
    assert Approval.objects.filter(release=release).count() == 2  # no lost approval, no double
    v12 = build(app, "1.2.0", ["carol"])
    Release.objects.create(
        application=app, environment=pipeline[0], artifact=v12, kind="recorded", status="succeeded"
    )
    results = []

    def promote():
        try:
            barrier.wait()
            results.append(
                do_request_release(Actor(team["boss"]), app, environment=pipeline[1], artifact=v12).pk
            )
        except Exception as error:
            results.append(type(error).__name__)
        finally:
            connection.close()

    barrier = threading.Barrier(2)
    threads = [threading.Thread(target=promote) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    open_releases = Release.objects.filter(
        environment=pipeline[1], status__in=["pending_approval", "approved", "queued"]
    )
    assert (
        open_releases.count() == 1
    )  # one open release of 1.2.0; the racing twin superseded it or was superseded


def test_release_held_by_a_freeze_starts_when_it_ends(
    app, team, pipeline, shipped, django_capture_on_commit_callbacks
):
    from releases.promotions import recheck_all

    staging, _ = pipeline
    FreezeWindow.objects.create(
        environment=staging,
        reason="launch",
        starts_at=datetime(2026, 11, 27, tzinfo=UTC),
        ends_at=datetime(2026, 11, 28, tzinfo=UTC),
    )
    v12 = build(app, "1.2.0", ["carol"])
    with time_machine.travel(datetime(2026, 11, 27, 12, tzinfo=UTC), tick=False):
        release = do_request_release(Actor(team["boss"]), app, environment=staging, artifact=v12)
        recheck_all()
        assert Release.objects.get(pk=release.pk).status == "approved"
    with (
        time_machine.travel(datetime(2026, 11, 28, 0, 0, 1, tzinfo=UTC), tick=False),
        django_capture_on_commit_callbacks(execute=True),
    ):
        recheck_all()
    assert Release.objects.get(pk=release.pk).status == "succeeded"


def test_auto_promote_takes_new_builds(app, team, pipeline, django_capture_on_commit_callbacks):
    staging, _ = pipeline
    staging.auto_promote = True
    staging.save()
    ci = token_client(team["boss"], "releases:write")
    body = {
        "version": "3.0.0",
        "commit": sha("c3"),
        "image": "registry.example.com/shop:3",
        "changes": [{"sha": sha("x3"), "author": "alice", "title": "New"}],
    }
    with django_capture_on_commit_callbacks(execute=True):
        assert ci.post(f"{API}/artifacts/", body, format="json").status_code == 201
    staging.refresh_from_db()
    assert staging.current_artifact.version == "3.0.0"
    assert Release.objects.get(environment=staging, artifact__version="3.0.0").status == "succeeded"


def test_pending_batch_warnings(client, app, team, pipeline, shipped):
    _, production = pipeline
    production.pending_warn_changes = 2
    production.pending_warn_hours = 1
    production.save()
    with time_machine.travel(datetime(2026, 11, 20, tzinfo=UTC)):
        do_request_release(Actor(team["boss"]), app, environment=production, artifact=shipped[1])
    client.force_login(team["alice"])
    page = client.get("/approvals/").content.decode()
    assert "waiting long" in page and "large batch" in page


def test_release_errors_carry_stable_codes(app, team, pipeline, shipped, django_capture_on_commit_callbacks):
    """Clients tell conditions apart by `code`, not by parsing prose (they all read 'conflict' before)."""
    staging, production = pipeline
    rm = token_client(team["rm"], "releases:read", "releases:write", "approvals:write")
    again = rm.post(f"{API}/releases/", {"environment": "staging", "version": "1.1.0"}, format="json")
    assert again.status_code == 409 and again.json()["code"] == "already_deployed"
    early = rm.post(f"{API}/releases/", {"environment": "production", "version": "9.9.9"}, format="json")
    assert early.status_code == 404
    newer = factories.ArtifactFactory(application=app, version="2.0.0")
    order = rm.post(
        f"{API}/releases/", {"environment": "production", "version": newer.version}, format="json"
    )
    assert order.status_code == 409 and order.json()["code"] == "out_of_pipeline_order"
    forward = rm.post(
        f"{API}/environments/staging/rollback/", {"version": "2.0.0", "reason": "x"}, format="json"
    )
    assert forward.status_code == 409 and forward.json()["code"] == "not_a_rollback_candidate"
    assert early.json()["code"] == "artifact_not_found"
    missing = {
        f"{API}/releases/999999/": "release_not_found",
        f"{API}/releases/{Release.objects.first().pk}/rollout/": "rollout_not_found",
        f"{API}/environments/production/locks/999999/": "lock_not_found",
        f"{API}/environments/production/freezes/999999/": "freeze_not_found",
        f"{API}/environments/nope/": "environment_not_found",
        f"{API}/members/999999/": "membership_not_found",
        "/api/v1/applications/nope/releases/": "application_not_found",
    }
    for url, code in missing.items():
        answer = (
            rm.delete(url) if "/locks/" in url or "/freezes/" in url or "/members/" in url else rm.get(url)
        )
        assert (answer.status_code, answer.json()["code"]) == (404, code), url
    unscoped = token_client(team["rm"], "releases:read")
    refused = unscoped.post("/api/v1/applications/", {"slug": "new", "name": "New"}, format="json")
    assert refused.status_code == 403 and refused.json()["code"] == "not_permitted"


def test_rollout_and_blocker_routes_name_what_is_missing(app, team, pipeline, shipped):
    rm = token_client(team["rm"], "releases:read", "releases:write")
    release = Release.objects.first()
    bogus = rm.post(f"{API}/releases/{release.pk}/rollout/explode", {}, format="json")
    assert (bogus.status_code, bogus.json()["code"]) == (404, "unknown_command")
    blocker = rm.post(f"{API}/blockers/999999/resolve/", {}, format="json")
    assert (blocker.status_code, blocker.json()["code"]) == (404, "blocker_not_found")

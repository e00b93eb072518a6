"""Issue #11: nobody approves changes they did not author. Identity links are proven or confirmed by someone else."""

import pytest
from rest_framework.test import APIClient

from releases.batches import compute_batch, release_batch
from releases.exceptions import OwnIdentityRequest, TokenNeedsRole, TokenNotFound
from releases.models import AuditEvent, AuthorIdentity, Release
from releases.permissions import Actor
from releases.promotions import do_request_release
from releases.selectors import users_for_authors
from releases.services import do_confirm_identity, do_create_api_token, do_link_identity, do_revoke_api_token
from tests import factories
from tests.conftest import token_client
from tests.factories import sha

API = "/api/v1/applications/shop"
CONTRACTOR = "dave@contractor.example"


@pytest.fixture
def team(app):
    people = {
        name: factories.UserFactory(username=name, email=f"{name}@example.com")
        for name in ("alice", "bob", "vera", "rm", "other_rm")
    }
    for name in ("alice", "bob"):
        factories.MembershipFactory(user=people[name], application=app, role="developer")
    factories.MembershipFactory(user=people["vera"], application=app, role="viewer")
    factories.MembershipFactory(user=people["rm"], application=app, role="release_manager")
    factories.MembershipFactory(user=people["other_rm"], role="release_manager")  # of another application
    return people


def build(app, version, authors):
    changes = [
        factories.ChangeFactory(application=app, author=a, sha=sha(f"{version}-{i}"), title=f"{a} {i}")
        for i, a in enumerate(authors)
    ]
    return factories.ArtifactFactory(application=app, version=version, changes=changes)


@pytest.fixture
def production(app):
    """1.0.0 runs in staging and production: production needs every author's approval."""
    v1 = build(app, "1.0.0", ["alice"])
    staging = factories.EnvironmentFactory(application=app, name="staging", position=1, current_artifact=v1)
    production = factories.EnvironmentFactory(
        application=app, name="production", position=2, requires_approval=True, current_artifact=v1
    )
    return staging, production


def waiting_release(app, production, version, authors) -> Release:
    staging, production = production
    artifact = build(app, version, authors)
    Release.objects.create(
        application=app, environment=staging, artifact=artifact, kind="recorded", status="succeeded"
    )
    return do_request_release(Actor.system(), app, environment=production, artifact=artifact)


def session(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def test_developer_claiming_a_contractors_identity_cannot_ship_their_change(app, team, production):
    """The exploit from the issue: claim, then approve, ends in 403 and the release still waiting."""
    release = waiting_release(app, production, "1.1.0", [CONTRACTOR])
    bob = session(team["bob"])
    claim = bob.post("/api/v1/identities/", {"user": "bob", "identity": CONTRACTOR}, format="json")
    assert claim.status_code == 202, claim.json()
    assert claim.json()["status"] == "pending"
    request_id = claim.json()["id"]
    assert bob.post(f"/api/v1/identities/requests/{request_id}/confirm/").status_code == 403
    approve = bob.post(f"{API}/releases/{release.pk}/approvals/", {"decision": "approve"}, format="json")
    assert approve.status_code == 403
    release.refresh_from_db()
    assert release.status == "pending_approval" and not release.approvals.exists()
    blocked = bob.get(f"{API}/releases/{release.pk}/").json()["blocked_by"]
    assert (
        blocked[0]["cleared_by"] == ["a release manager, on their behalf"]
        and CONTRACTOR in blocked[0]["detail"]
    )


def test_claiming_on_the_profile_page_is_a_request_too(client, app, team, production):
    release = waiting_release(app, production, "1.1.0", ["bob", CONTRACTOR])
    client.force_login(team["bob"])
    page = client.post("/profile/", {"identity": CONTRACTOR}, follow=True).content.decode()
    assert "waiting for confirmation" in page
    assert AuthorIdentity.objects.get(identity=CONTRACTOR).status == "pending"
    # The request groups nothing: bob's approval covers his own change only, the contractor's waits.
    client.post(f"/releases/{release.pk}/decide/", {"decision": "approve"})
    assert release.approvals.get().authors == [f"user:{team['bob'].pk}"]
    release.refresh_from_db()
    assert release.status == "pending_approval"


def test_the_exploit_through_the_profile_page_ends_in_403_too(client, app, team, production):
    """Claimed on the profile page, then approved on the release page or over the API: refused, still waiting."""
    release = waiting_release(app, production, "1.1.0", [CONTRACTOR])
    client.force_login(team["bob"])
    client.post("/profile/", {"identity": CONTRACTOR})
    assert AuthorIdentity.objects.get(identity=CONTRACTOR).status == "pending"
    assert client.post(f"/releases/{release.pk}/decide/", {"decision": "approve"}).status_code == 403
    api = session(team["bob"]).post(
        f"{API}/releases/{release.pk}/approvals/", {"decision": "approve"}, format="json"
    )
    assert api.status_code == 403
    release.refresh_from_db()
    assert release.status == "pending_approval" and not release.approvals.exists()


def test_own_email_is_proven_and_links_at_once(app, team):
    response = session(team["bob"]).post(
        "/api/v1/identities/", {"user": "bob", "identity": "BOB@example.com"}, format="json"
    )
    assert response.status_code == 201 and response.json()["status"] == "confirmed"
    event = AuditEvent.objects.get(kind="identity.linked")
    assert event.after["proof"] == "email" and event.actor == team["bob"]


def test_a_request_maps_nothing_until_a_release_manager_of_its_application_confirms(app, team, production):
    factories.ChangeFactory(application=app, author=CONTRACTOR)
    link = do_link_identity(Actor(team["bob"]), team["bob"], CONTRACTOR)
    assert link.status == "pending" and AuditEvent.objects.filter(kind="identity.requested").exists()
    assert users_for_authors([CONTRACTOR]) == {}

    assert (
        session(team["other_rm"]).post(f"/api/v1/identities/requests/{link.pk}/confirm/").status_code == 403
    )
    assert session(team["alice"]).post(f"/api/v1/identities/requests/{link.pk}/confirm/").status_code == 403
    assert session(team["other_rm"]).get("/api/v1/identities/requests/").json() == []

    rm = token_client(team["rm"], "approvals:write", "releases:read")
    listed = rm.get("/api/v1/identities/requests/").json()
    assert [(r["user"], r["identity"], r["status"]) for r in listed] == [("bob", CONTRACTOR, "pending")]
    confirmed = rm.post(f"/api/v1/identities/requests/{link.pk}/confirm/")
    assert confirmed.status_code == 200 and confirmed.json()["status"] == "confirmed"
    assert confirmed.json()["decided_by"] == "rm"
    assert users_for_authors([CONTRACTOR]) == {CONTRACTOR: team["bob"]}
    assert AuditEvent.objects.get(kind="identity.confirmed").actor == team["rm"]
    assert rm.post(f"/api/v1/identities/requests/{link.pk}/decline/").status_code == 409


def test_confirming_needs_the_approvals_scope(app, team):
    factories.ChangeFactory(application=app, author=CONTRACTOR)
    link = do_link_identity(Actor(team["bob"]), team["bob"], CONTRACTOR)
    reader = token_client(team["rm"], "releases:read")
    assert reader.post(f"/api/v1/identities/requests/{link.pk}/confirm/").status_code == 403
    assert reader.post(f"/api/v1/identities/requests/{link.pk}/approve/").status_code == 404


def test_confirming_one_request_declines_rival_ones(app, team, admin_user):
    bob_asks = do_link_identity(Actor(team["bob"]), team["bob"], "dave")
    alice_asks = do_link_identity(Actor(team["alice"]), team["alice"], "DAVE")
    # "dave" authored nothing: only an administrator decides.
    assert session(team["rm"]).post(f"/api/v1/identities/requests/{bob_asks.pk}/confirm/").status_code == 403
    do_confirm_identity(Actor(admin_user), bob_asks.pk)
    alice_asks.refresh_from_db()
    assert alice_asks.status == "declined" and alice_asks.decided_by == admin_user
    assert (
        session(admin_user).post(f"/api/v1/identities/requests/{alice_asks.pk}/confirm/").status_code == 409
    )


def test_declined_request_maps_nothing_and_can_be_asked_again(app, team):
    factories.ChangeFactory(application=app, author=CONTRACTOR)
    link = do_link_identity(Actor(team["bob"]), team["bob"], CONTRACTOR)
    response = session(team["rm"]).post(
        f"/api/v1/identities/requests/{link.pk}/decline/", {"reason": "not bob's"}, format="json"
    )
    assert response.status_code == 200 and response.json()["status"] == "declined"
    assert AuditEvent.objects.get(kind="identity.declined").note == "not bob's"
    assert users_for_authors([CONTRACTOR]) == {}
    again = session(team["bob"]).post(
        "/api/v1/identities/", {"user": "bob", "identity": CONTRACTOR}, format="json"
    )
    assert again.status_code == 202
    twice = session(team["bob"]).post(
        "/api/v1/identities/", {"user": "bob", "identity": CONTRACTOR}, format="json"
    )
    assert twice.status_code == 409 and "identity" in twice.json()


def test_linking_for_someone_else_stays_admin_only(app, team, admin_user):
    bob = session(team["bob"])
    response = bob.post("/api/v1/identities/", {"user": "alice", "identity": CONTRACTOR}, format="json")
    assert response.status_code == 403 and not AuthorIdentity.objects.exists()
    admin = token_client(admin_user, "admin")
    linked = admin.post("/api/v1/identities/", {"user": "alice", "identity": CONTRACTOR}, format="json")
    assert linked.status_code == 201 and linked.json()["status"] == "confirmed"
    assert AuditEvent.objects.get(kind="identity.linked").after["proof"] == "admin"


@pytest.mark.parametrize(
    "identity", ["<script>alert(1)</script>", "alice smith", "a@b", "-dash", "bob/../admin"]
)
def test_identity_strings_are_logins_or_emails(app, team, identity):
    response = session(team["bob"]).post(
        "/api/v1/identities/", {"user": "bob", "identity": identity}, format="json"
    )
    assert response.status_code == 400 and list(response.json()) == ["identity", "code"], response.json()
    assert not AuthorIdentity.objects.exists()


@pytest.mark.parametrize("identity", ["dave-k", "Dave.K_2", "dependabot[bot]", "dave+ci@contractor.example"])
def test_logins_and_emails_are_accepted(app, team, identity):
    response = session(team["bob"]).post(
        "/api/v1/identities/", {"user": "bob", "identity": identity}, format="json"
    )
    assert response.status_code == 202, response.json()


def test_bad_identity_on_the_profile_page_and_in_the_service(client, team):
    client.force_login(team["bob"])
    response = client.post("/profile/", {"identity": "<script>x</script>"})
    page = (
        response.content.decode()
    )  # 400 like every page form refusing what was typed, the input kept (escaped)
    assert (
        response.status_code == 400 and "login" in page and 'value="&lt;script&gt;x&lt;/script&gt;"' in page
    )
    from config.errors import Invalid

    with pytest.raises(Invalid) as error:
        do_link_identity(Actor.system(), team["bob"], "<b>bob</b>")
    assert error.value.field == "identity"


def test_a_username_or_another_persons_email_maps_already(app, team):
    bob = session(team["bob"])
    for identity in ("alice", "ALICE@example.com", "Bob"):
        response = bob.post("/api/v1/identities/", {"user": "bob", "identity": identity}, format="json")
        assert response.status_code == 409 and "identity" in response.json()


def test_unlink_your_own_and_an_admin_anyones(app, team, admin_user):
    do_link_identity(Actor.system(), team["bob"], "bobby")
    request = do_link_identity(Actor(team["alice"]), team["alice"], "ally")
    alice = session(team["alice"])
    assert alice.delete("/api/v1/identities/bobby/").status_code == 404
    assert [link["identity"] for link in alice.get("/api/v1/identities/").json()] == ["ally"]
    assert alice.delete(f"/api/v1/identities/{request.pk}/").status_code == 204  # withdraws the request
    assert session(admin_user).delete("/api/v1/identities/BOBBY/").status_code == 204
    assert not AuthorIdentity.objects.exists()
    events = AuditEvent.objects.filter(kind="identity.unlinked").order_by("id")
    assert [(e.actor.username, e.before["identity"], e.before["status"]) for e in events] == [
        ("alice", "ally", "pending"),
        ("root", "bobby", "confirmed"),
    ]


def test_inbox_shows_identity_requests_to_release_managers_and_the_pages_agree(client, app, team, production):
    release = waiting_release(app, production, "1.1.0", ["vera", CONTRACTOR])
    link = do_link_identity(Actor(team["bob"]), team["bob"], CONTRACTOR)
    client.force_login(team["rm"])
    page = client.get("/approvals/").content.decode()
    assert 'id="identity-requests"' in page and CONTRACTOR in page
    assert "Approve for vera, dave@contractor.example" in page
    client.force_login(team["vera"])
    page = client.get("/approvals/").content.decode()
    assert 'id="identity-requests"' not in page and "Approve" not in page
    client.force_login(team["rm"])
    assert client.post(f"/identities/{link.pk}/confirm/").status_code == 302
    link.refresh_from_db()
    assert link.status == "confirmed"
    assert [g.username for g in release_batch(release).groups] == ["vera", "bob"]


def test_profile_lists_and_unlinks_identities(client, team):
    confirmed = do_link_identity(Actor.system(), team["bob"], "bobby")
    do_link_identity(Actor(team["bob"]), team["bob"], "robert")
    client.force_login(team["bob"])
    page = client.get("/profile/").content.decode()
    assert "bobby" in page and "linked" in page and "robert" in page and "waiting for confirmation" in page
    assert client.post(f"/profile/identities/{confirmed.pk}/unlink/").status_code == 302
    assert list(AuthorIdentity.objects.values_list("identity", flat=True)) == ["robert"]
    client.force_login(team["alice"])
    assert client.post(f"/profile/identities/{confirmed.pk}/unlink/").status_code == 404


def test_compute_batch_ignores_pending_links(app, team, production):
    do_link_identity(Actor(team["bob"]), team["bob"], CONTRACTOR)
    batch = compute_batch(production[1].current_artifact, build(app, "1.1.0", ["bob", CONTRACTOR]))
    assert [(g.author, g.username) for g in batch.groups] == [("bob", "bob"), (CONTRACTOR, None)]


def test_identity_and_token_refusals_carry_stable_codes(app, team, production):
    """Each 403/404 names its condition (`code`), so a client need not parse the sentence."""
    factories.ChangeFactory(application=app, author=CONTRACTOR)
    link = do_link_identity(Actor(team["bob"]), team["bob"], CONTRACTOR)
    bob, rm = session(team["bob"]), session(team["rm"])
    own = bob.post(f"/api/v1/identities/requests/{link.pk}/confirm/")
    assert (own.status_code, own.json()["code"]) == (403, "own_identity_request")
    other = session(team["other_rm"]).post(f"/api/v1/identities/requests/{link.pk}/confirm/")
    assert (other.status_code, other.json()["code"]) == (403, "may_not_decide")
    scoped = token_client(team["rm"], "releases:read").post(f"/api/v1/identities/requests/{link.pk}/confirm/")
    assert (scoped.status_code, scoped.json()["code"]) == (403, "not_permitted")
    maybe = rm.post(f"/api/v1/identities/requests/{link.pk}/maybe/")
    assert (maybe.status_code, maybe.json()["code"]) == (404, "unknown_decision")
    nobody = rm.post("/api/v1/identities/", {"user": "nobody", "identity": "x@example.com"}, format="json")
    assert (nobody.status_code, nobody.json()["code"], nobody.json()["field"]) == (
        404,
        "user_not_found",
        "user",
    )
    unknown = bob.delete("/api/v1/identities/nobody@example.com/")
    assert (unknown.status_code, unknown.json()["code"]) == (404, "identity_not_found")
    assert OwnIdentityRequest.status == 403 and OwnIdentityRequest.code == "own_identity_request"

    stranger = factories.UserFactory(username="stranger")
    with pytest.raises(TokenNeedsRole) as pinned:
        do_create_api_token(
            Actor.system(), stranger, name="t", scopes=["releases:read"], environment=production[1]
        )
    assert pinned.value.as_json()["code"] == "token_needs_role" and pinned.value.field == "environment"
    token, _ = do_create_api_token(Actor.system(), team["alice"], name="t", scopes=["releases:read"])
    with pytest.raises(TokenNotFound):
        do_revoke_api_token(Actor(team["bob"]), token)


def test_the_upgrade_turns_links_made_under_the_old_rules_into_requests(team):
    """Migration 0014: an old confirmed link stays only when proven (the user's email) or an administrator made it
    for someone else (the audit trail says who linked); the rest, and identities the validator refuses, become
    requests, each with an audit event. Links decided under today's rules are left alone."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    root = factories.UserFactory(username="root", is_superuser=True)
    old = {}  # identity -> (user, who linked it: a user, "system", or None for no event)
    cases = {
        CONTRACTOR: ("alice", "alice"),  # self-claimed: the exploit
        "alice@example.com": ("alice", "alice"),  # her email: proven
        "bob-gh": ("bob", root),  # an administrator, for bob
        "bob-ci": ("bob", "system"),  # manage.py or the demo
        "bob-old": ("bob", None),  # no event: nobody can tell
        "<script>x</script>": ("bob", root),  # refused by today's validator, whoever linked it
    }
    for identity, (owner, linker) in cases.items():
        link = AuthorIdentity.objects.create(user=team[owner], identity=identity)  # db_default: confirmed
        assert link.status == "confirmed" and link.decided_at is None
        old[identity] = link
        if linker is not None:
            actor = Actor.system() if linker == "system" else Actor(team.get(linker, linker))
            AuditEvent.objects.create(
                actor=actor.user,
                actor_label=actor.label,
                kind="identity.linked",
                object_type="releases.authoridentity",
                object_id=str(link.pk),
                object_repr=identity,
                after={"user": owner, "identity": identity},
            )
    today = do_link_identity(Actor(root), team["vera"], "vera-gh")  # an admin's link under today's rules
    executor = MigrationExecutor(connection)
    migration = executor.loader.get_migration("releases", "0014_unproven_identity_links")
    migration.operations[-1].code(
        executor.loader.project_state(("releases", "0014_unproven_identity_links")).apps, None
    )

    status = {link.identity: link.status for link in AuthorIdentity.objects.all()}
    assert status == {
        CONTRACTOR: "pending",
        "alice@example.com": "confirmed",
        "bob-gh": "confirmed",
        "bob-ci": "confirmed",
        "bob-old": "pending",
        "<script>x</script>": "pending",
        "vera-gh": "confirmed",
    }
    events = AuditEvent.objects.filter(kind="identity.unconfirmed", actor_label="Slipway upgrade")
    assert sorted(e.object_id for e in events) == sorted(
        str(old[i].pk) for i in (CONTRACTOR, "bob-old", "<script>x</script>")
    )
    refused = events.get(object_id=str(old["<script>x</script>"].pk))
    assert "not a login or an email address" in refused.note and refused.after["status"] == "pending"
    assert today.status == "confirmed"
    # The contractor's changes no longer map to alice: a request maps nothing.
    assert CONTRACTOR not in users_for_authors([CONTRACTOR])

"""A control the viewer may not use is disabled and says which role it needs (never an active button that 403s)."""

import re

import pytest

from environments.models import Lock
from tests import factories
from tests.dashboard.test_live import rollout_fixture

pytestmark = pytest.mark.django_db


def disabled_with(page: str, label: str, reason: str) -> bool:
    pattern = (
        r"<button[^>]*\bdisabled title=\"" + re.escape(reason) + r"\"[^>]*>" + re.escape(label) + "</button>"
    )
    return re.search(pattern, page) is not None


def active(page: str, label: str) -> bool:
    return re.search(r"<button(?![^>]*\bdisabled)[^>]*>" + re.escape(label) + "</button>", page) is not None


def test_release_page_controls_say_which_role_they_need(client):
    app, rollout = rollout_fixture()
    url = f"/releases/{rollout.release_id}/"
    developer = factories.MembershipFactory(application=app, role="developer").user
    client.force_login(developer)
    page = client.get(url).content.decode()
    assert disabled_with(page, "Revert now", "You need the release manager role on shop/production.")
    assert active(page, "Pause") and active(page, "Cancel")
    viewer = factories.MembershipFactory(application=app, role="viewer").user
    client.force_login(viewer)
    page = client.get(url).content.decode()
    for label in ("Pause", "Cancel"):
        assert disabled_with(page, label, "You need the developer role on shop/production."), label
    manager = factories.MembershipFactory(application=app, role="release_manager").user
    client.force_login(manager)
    page = client.get(url).content.decode()
    assert all(active(page, label) for label in ("Pause", "Cancel", "Revert now"))


def test_environment_page_lock_and_unlock_say_which_role_they_need(client):
    app, rollout = rollout_fixture()
    env = rollout.release.environment
    developer = factories.MembershipFactory(application=app, role="developer").user
    manager = factories.MembershipFactory(application=app, role="release_manager").user
    Lock.objects.create(environment=env, reason="incident", locked_by=manager)
    url = f"/apps/shop/env/{env.name}/"
    client.force_login(developer)
    page = client.get(url).content.decode()
    reason = "You need the release manager role on shop/production."
    assert disabled_with(page, "Unlock", reason) and disabled_with(page, "Lock it too", reason)
    client.force_login(manager)
    page = client.get(url).content.decode()
    assert active(page, "Unlock") and active(page, "Lock it too")


def test_each_rollout_control_says_what_it_did(client):
    _, rollout = rollout_fixture()
    client.force_login(factories.UserFactory(username="boss", is_superuser=True))
    url = f"/releases/{rollout.release_id}/rollout/"
    said = {
        "pause": f"Release #{rollout.release_id} is paused: no new step starts until you resume it.",
        "resume": f"Release #{rollout.release_id} is resumed.",
        "revert": f"Reverting release #{rollout.release_id}: every target touched so far is being put back.",
    }
    for command, words in said.items():
        page = client.post(url, {"command": command}, follow=True).content.decode()
        assert words in page, command

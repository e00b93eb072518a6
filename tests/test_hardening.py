"""Issue #16, one test per finding: bad input answers 4xx naming what is wrong, never a 500; links are http(s);
an application the caller holds no role on is as unknown as a missing one."""

import hashlib
import hmac
import json

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from config.validators import is_http_url, local_path
from flags.snapshots import snapshots
from releases.models import Application, Change, GitHubHook, Release
from tests import factories
from tests.conftest import token_client
from tests.factories import sha

DEEP = "[" * 5000 + "]" * 5000
HUGE = "1" + "0" * 400  # 10**400
SECRET = "s3cret-shared-with-github"
HOOK = "/api/v1/webhooks/github/shop/"


@pytest.fixture
def demo(db, django_capture_on_commit_callbacks):
    snapshots.clear()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("load_demo")
    return Application.objects.get(slug="shop")


@pytest.fixture
def root(demo):
    return factories.UserFactory(username="root", is_superuser=True, is_staff=True)


@pytest.fixture
def api(root):
    return token_client(root, "admin", "releases:read", "releases:write", "flags:read", "flags:write")


@pytest.fixture
def admin_client(client, root):
    client.force_login(root)
    return client


def raw(client, method, url, body: str):
    return getattr(client, method)(url, body, content_type="application/json")


# --- bodies: nesting, numbers ------------------------------------------------------------------------------


def test_deeply_nested_application_body_is_400_too_deep(api):
    response = raw(api, "post", "/api/v1/applications/", '{"slug": "x", "name": ' + DEEP + "}")
    assert response.status_code == 400 and response.json()["code"] == "too_deep"


def test_deeply_nested_flag_state_patch_is_400(api):
    response = raw(
        api,
        "patch",
        "/api/v1/applications/shop/flags/search-v2/environments/staging/",
        '{"rules": ' + DEEP + "}",
    )
    assert response.status_code == 400 and response.json()["code"] == "too_deep"


def test_rule_value_of_10_to_the_400_is_out_of_range(api):
    rules = (
        '[{"conditions": [{"attribute": "age", "operator": "gt", "values": ['
        + HUGE
        + ']}], "variant": "on"}]'
    )
    response = raw(
        api,
        "patch",
        "/api/v1/applications/shop/flags/search-v2/environments/staging/",
        '{"rules": ' + rules + "}",
    )
    assert response.status_code == 400 and response.json()["code"] == "out_of_range"


def test_artifact_metadata_nested_5000_deep_is_400(api):
    body = (
        json.dumps({"version": "9.9.9", "commit": sha(9), "image": "x"})[:-1]
        + ', "metadata": {"a": '
        + DEEP
        + "}}"
    )
    response = raw(api, "post", "/api/v1/applications/shop/artifacts/", body)
    assert response.status_code == 400 and response.json()["code"] == "too_deep"


def test_rule_form_refuses_deep_json_and_huge_numbers_beside_the_field(admin_client, demo):
    url = "/apps/shop/flags/search-v2/env/staging/"
    for rules in (
        DEEP,
        '[{"conditions": [{"attribute": "a", "operator": "gt", "values": [' + HUGE + ']}], "variant": "on"}]',
    ):
        response = admin_client.post(url, {"enabled": "on", "rules": rules}, headers={"HX-Request": "true"})
        assert response.status_code == 400
        html = response.content.decode()
        assert 'id="rules-error-staging"' in html and rules[:40].replace('"', "&quot;") in html  # input kept


def test_segment_and_variant_forms_refuse_deep_json(admin_client, demo):
    segment = admin_client.post(
        "/apps/shop/flags/segments/", {"name": "beta", "conditions": DEEP}, headers={"HX-Request": "true"}
    )
    assert segment.status_code == 400 and "conditions" in segment.content.decode().lower()
    variants = admin_client.post("/apps/shop/flags/search-v2/edit/", {"variants": '{"a": ' + HUGE + "}"})
    assert variants.status_code == 400


def test_lock_form_with_unlock_abc_is_400(admin_client, demo):
    response = admin_client.post("/apps/shop/env/staging/lock/", {"unlock": "abc"})
    assert response.status_code == 400 and "unlock" in response.content.decode()


def test_segment_name_with_nul_is_400_not_a_database_error(admin_client, demo):
    response = admin_client.post("/apps/shop/flags/", {"key": "a\x00b"})
    assert response.status_code == 400


# --- the GitHub webhook --------------------------------------------------------------------------------------


@pytest.fixture
def github(demo):
    GitHubHook.objects.create(application=demo, secret=SECRET)


def send(payload, *, event="push", signature=None):
    body = json.dumps(payload).encode()
    signature = signature or "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return APIClient().post(
        HOOK,
        body,
        content_type="application/json",
        headers={"X-GitHub-Event": event, "X-Hub-Signature-256": signature},
    )


def test_non_ascii_signature_is_401(github):
    assert send({"commits": []}, signature="sha256=é" + "0" * 63).status_code == 401


@pytest.mark.parametrize(
    "commit, field",
    [
        ({"id": sha(1), "author": "bob"}, "commits[0].author"),
        ({"id": sha(1), "timestamp": "2024-13-45T10:00:00Z"}, "commits[0].timestamp"),
        ({"id": "g" * 40}, "commits[0].id"),
    ],
)
def test_signed_push_with_a_bad_field_is_400_naming_it(github, commit, field):
    response = send({"commits": [commit]})
    assert response.status_code == 400 and field in response.json(), response.json()
    assert not Change.objects.filter(sha=sha(1)).exists()


def test_pushed_javascript_url_is_not_stored(github):
    assert (
        send({"commits": [{"id": sha(7), "url": "javascript:alert(1)", "message": "x"}]}).status_code == 200
    )
    assert Change.objects.get(sha=sha(7)).url == ""


# --- links ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["javascript:alert(1)", "data:text/html,x", "ftp://example.com/x", "JaVaScRiPt:x"]
)
def test_only_http_urls_enter_through_the_api(api, url):
    body = {"version": "9.9.9", "commit": sha(9), "image": "x", "build_url": url}
    assert api.post("/api/v1/applications/shop/artifacts/", body, format="json").status_code == 400
    assert (
        api.post(
            "/api/v1/applications/", {"slug": "x", "name": "x", "repository_url": url}, format="json"
        ).status_code
        == 400
    )
    hook = api.post("/api/v1/applications/shop/notification-hooks/", {"url": url}, format="json")
    assert hook.status_code == 400


def test_pages_link_only_http_urls(admin_client, demo):
    artifact = demo.artifacts.order_by("-pk").first()
    change = factories.ChangeFactory(application=demo, url="javascript:alert(1)", title="Sneaky")
    artifact.changes.add(change)
    Application.objects.filter(pk=demo.pk).update(repository_url="javascript:alert(2)")
    page = admin_client.get("/apps/shop/").content.decode()
    assert "Sneaky" in page and 'href="javascript:' not in page
    release = Release.objects.filter(artifact=artifact).first()
    if release is not None:
        assert 'href="javascript:' not in admin_client.get(f"/releases/{release.pk}/").content.decode()


def test_url_helpers():
    assert is_http_url("https://github.com/a/b") and not is_http_url("javascript:alert(1)")
    assert local_path("/apps/") == "/apps/"
    assert local_path("https://evil.example/") is None and local_path("//evil.example/") is None
    assert local_path("/\\evil.example/") is None


@pytest.mark.parametrize(
    "target", ["nonsense", "https://evil.example/", "//evil.example/x", "/\\evil.example"]
)
def test_toggle_next_stays_local(admin_client, demo, target):
    response = admin_client.post("/apps/shop/flags/search-v2/env/staging/toggle/", {"next": target})
    assert response.status_code == 302 and response["Location"] == "/apps/shop/flags/"


# --- information: foreign applications are 404 ---------------------------------------------------------------


@pytest.fixture
def outsider(demo):
    other = factories.ApplicationFactory(slug="other")
    stranger = factories.UserFactory(username="stranger")
    factories.MembershipFactory(user=stranger, application=other, role="admin")
    return stranger


def test_deciding_on_a_foreign_release_is_404_on_the_page(client, demo, outsider):
    release = Release.objects.exclude(status=Release.Status.PENDING_APPROVAL).first()
    client.force_login(outsider)
    response = client.post(
        f"/releases/{release.pk}/decide/", {"decision": "approve"}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 404 and release.status not in response.content.decode()
    for url in (
        "/apps/shop/",
        f"/releases/{release.pk}/",
        "/apps/shop/flags/",
        "/apps/shop/env/staging/",
        "/apps/shop/members/",
        "/audit/?app=shop",
    ):
        assert client.get(url).status_code == 404, url
    assert client.post("/apps/shop/env/staging/lock/", {"reason": "x"}).status_code == 404


def test_foreign_application_is_404_in_the_api(demo, outsider):
    api = token_client(outsider, "releases:read", "releases:write", "approvals:write", "flags:read")
    release = Release.objects.first()
    assert api.get("/api/v1/applications/shop/").status_code == 404
    assert api.get(f"/api/v1/applications/shop/releases/{release.pk}/").status_code == 404
    assert (
        api.post(
            f"/api/v1/applications/shop/releases/{release.pk}/approvals/",
            {"decision": "approve"},
            format="json",
        ).status_code
        == 404
    )
    assert api.get("/api/v1/applications/shop/flags/").status_code == 404


def test_a_role_without_the_permission_is_still_403_naming_it(demo):
    viewer = factories.UserFactory(username="viewer")
    factories.MembershipFactory(user=viewer, application=demo, role="viewer")
    api = token_client(viewer, "releases:read", "releases:write")
    response = api.post(
        "/api/v1/applications/shop/environments/staging/locks/", {"reason": "x"}, format="json"
    )
    assert response.status_code == 403 and "release manager" in response.json()["detail"]

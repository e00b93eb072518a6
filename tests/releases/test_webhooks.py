import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from rest_framework.test import APIClient

from releases.models import AuditEvent, Blocker, Change, GitHubHook, NotificationHook, Release
from releases.notifications import DeliveryFailed, deliver, message
from releases.permissions import Actor
from releases.promotions import do_request_release
from tests import factories
from tests.conftest import token_client
from tests.factories import sha

SECRET = "s3cret-shared-with-github"
URL = "/api/v1/webhooks/github/shop/"


@pytest.fixture
def github(app, user):
    factories.EnvironmentFactory(application=app, name="staging", position=1)
    factories.EnvironmentFactory(application=app, name="production", position=2)
    response = token_client(user, "admin").put(
        "/api/v1/applications/shop/github/",
        {"secret": SECRET, "blocker_label": "deploy-blocker", "blocker_environments": ["production"]},
        format="json",
    )
    assert response.status_code == 200, response.json()
    return GitHubHook.objects.get()


def send(event, payload, secret=SECRET):
    body = json.dumps(payload).encode()
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return APIClient().post(
        URL,
        body,
        content_type="application/json",
        headers={"X-GitHub-Event": event, "X-Hub-Signature-256": signature},
    )


def test_push_registers_changes(github):
    commits = [
        {
            "id": sha(n),
            "message": f"Fix {n}\n\nbody",
            "author": {"username": "alice"},
            "url": f"https://github.com/acme/shop/commit/{sha(n)}",
            "timestamp": "2026-11-23T10:00:00Z",
        }
        for n in range(3)
    ]
    response = send("push", {"commits": commits})
    assert response.status_code == 200 and response.json() == {"changes": 3}
    assert send("push", {"commits": commits}).json() == {"changes": 0}
    assert sorted(Change.objects.values_list("title", flat=True)) == ["Fix 0", "Fix 1", "Fix 2"]


def test_bad_signature_is_401_and_stores_nothing(github):
    response = send(
        "push", {"commits": [{"id": sha(1), "message": "x", "author": {"username": "a"}}]}, secret="wrong"
    )
    assert response.status_code == 401 and response.json()["code"] == "bad_signature"
    unsigned = APIClient().post(URL, {"commits": []}, format="json", headers={"X-GitHub-Event": "push"})
    assert unsigned.status_code == 401
    assert not Change.objects.exists()


def test_labelled_issue_blocks_and_closing_resolves(github):
    issue = {
        "number": 42,
        "title": "Checkout down",
        "state": "open",
        "html_url": "https://github.com/acme/shop/issues/42",
        "labels": [{"name": "deploy-blocker"}],
    }
    opened = send("issues", {"action": "labeled", "issue": issue})
    assert opened.status_code == 200 and opened.json()["state"] == "open"
    blocker = Blocker.objects.get()
    assert [e.name for e in blocker.environments.all()] == ["production"]
    closed = send("issues", {"action": "closed", "issue": {**issue, "state": "closed"}})
    assert closed.json()["state"] == "resolved"
    blocker.refresh_from_db()
    assert blocker.resolved_at is not None
    assert AuditEvent.objects.filter(kind__in=["blocker.opened", "blocker.resolved"]).count() == 2


def test_unlabelled_issue_is_ignored(github):
    response = send("issues", {"action": "opened", "issue": {"number": 7, "title": "typo", "labels": []}})
    assert response.json()["state"] == "unchanged" and not Blocker.objects.exists()


def test_github_config_validates(app, user):
    client = token_client(user, "admin")
    bad = client.put("/api/v1/applications/shop/github/", {"secret": "short"}, format="json")
    assert bad.status_code == 400 and "secret" in bad.json()
    bad = client.put(
        "/api/v1/applications/shop/github/",
        {"secret": SECRET, "blocker_environments": ["moon"]},
        format="json",
    )
    assert bad.status_code == 400 and "blocker_environments" in bad.json()
    assert not GitHubHook.objects.exists()


class Receiver(BaseHTTPRequestHandler):
    fail_first = 0
    received: list = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Receiver.received.append(body)
        status = 500 if Receiver.fail_first > 0 else 200
        Receiver.fail_first -= 1
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    Receiver.received, Receiver.fail_first = [], 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


def test_waiting_message_links_each_author_to_the_approval_page(app, user, receiver, settings):
    settings.SLIPWAY_BASE_URL = "https://slipway.example.com"
    staging = factories.EnvironmentFactory(
        application=app, name="production", position=1, requires_approval=True
    )
    artifact = factories.ArtifactFactory(
        application=app,
        changes=[
            factories.ChangeFactory(application=app, author="alice"),
            factories.ChangeFactory(application=app, author="bob"),
        ],
    )
    release = do_request_release(Actor.system(), app, environment=staging, artifact=artifact)
    text = message(release, "waiting")["text"]
    assert f"<https://slipway.example.com/releases/{release.pk}/|approve your changes>" in text
    assert "alice" in text and "bob" in text


def test_delivery_and_failure(app, receiver):
    hook = NotificationHook.objects.create(application=app, url=receiver)
    deliver(hook.pk, {"text": "hello"})
    assert Receiver.received == [{"text": "hello"}]
    Receiver.fail_first = 1
    with pytest.raises(DeliveryFailed):
        deliver(hook.pk, {"text": "again"})
    hook.refresh_from_db()
    assert hook.last_status.startswith("failed")


def test_failing_receiver_is_retried_and_never_blocks_the_release(
    app, user, receiver, settings, django_capture_on_commit_callbacks
):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    from config.celery import app as celery_app

    celery_app.conf.task_always_eager = True
    try:
        assert (
            token_client(user, "admin")
            .post(
                "/api/v1/applications/shop/notification-hooks/",
                {"url": receiver, "events": ["succeeded"]},
                format="json",
            )
            .status_code
            == 201
        )
        assert (
            token_client(user, "admin")
            .post(
                "/api/v1/applications/shop/notification-hooks/",
                {"url": receiver, "events": ["nonsense"]},
                format="json",
            )
            .status_code
            == 400
        )
        env = factories.EnvironmentFactory(application=app, name="staging", position=1)
        artifact = factories.ArtifactFactory(application=app)
        Receiver.fail_first = 2
        with django_capture_on_commit_callbacks(execute=True):
            release = do_request_release(Actor.system(), app, environment=env, artifact=artifact)
        assert Release.objects.get(pk=release.pk).status == "succeeded"
        assert len(Receiver.received) == 3  # two failures retried, then delivered
        assert Receiver.received[-1]["slipway"]["event"] == "succeeded"
    finally:
        celery_app.conf.task_always_eager = False

"""Generated junk on every HTTP route answers below 500 (issue #16): REST from the URLconf with an admin token,
the GitHub webhook, every page form with a logged-in session (some with CSRF enforced), and the lean ASGI routes
(OFREP, agents, error envelopes) through `config.asgi.application`. Bounded example counts keep it to seconds."""

import asyncio
import hashlib
import hmac
import json
from urllib.parse import urlencode

import httpx
import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flags.snapshots import snapshots
from releases import access
from releases.models import Application, Artifact, GitHubHook, Release
from tests import factories
from tests.conftest import token_client

FUZZ = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# --- junk ------------------------------------------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.sampled_from(
        [
            "javascript:alert(1)",
            "https://example.com/x",
            "2024-13-45T99:00:00Z",
            "\x00",
            "on",
            "approve",
            "pause",
            "staging",
            "-1",
            "abc",
            "é" * 3,
        ]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
hostile = st.sampled_from(
    [
        "[" * 5000 + "]" * 5000,
        '{"a": ' + "1" + "0" * 400 + "}",
        "1e400",
        "NaN",
        '"\\ud800"',
        '{"a": "\\u0000"}',
        "{",
        "",
        "null",
        "[]",
        '{"author": "bob", "commits": [{"id": 5, "author": "bob"}]}',
    ]
)
bodies = st.one_of(hostile, values.map(json.dumps), st.binary(max_size=64).map(lambda b: b.decode("latin-1")))
# Fields the app's forms and serializers read, so junk reaches the parsing code, not only "field required".
FIELD_NAMES = [
    "slug",
    "name",
    "version",
    "commit",
    "image",
    "build_url",
    "metadata",
    "changes",
    "rules",
    "enabled",
    "decision",
    "comment",
    "reason",
    "unlock",
    "command",
    "key",
    "variants",
    "conditions",
    "description",
    "tags",
    "owner",
    "url",
    "events",
    "secret",
    "environment",
    "percentage",
    "use_rollout",
    "next",
    "partial",
    "action",
    "default_variant",
    "user",
    "role",
    "identity",
    "scopes",
    "context",
    "strategy",
]
objects = st.dictionaries(st.sampled_from(FIELD_NAMES), values, max_size=6).map(json.dumps)
query = st.dictionaries(
    st.sampled_from(
        [
            "page",
            "page_size",
            "status",
            "environment",
            "version",
            "q",
            "tag",
            "app",
            "context",
            "stale",
            "wait",
            "since",
        ]
    ),
    st.one_of(st.text(max_size=20), st.sampled_from(["-1", "0", "9" * 30, "\x00", "nan"])),
    max_size=3,
)
form_values = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "[" * 3000,
            "1" + "0" * 400,
            "abc",
            "-1",
            "0",
            "9" * 30,
            "javascript:x",
            "https://evil.example/",
            "//evil",
            "on",
            "approve",
            "reject",
            "pause",
            "kill",
            "card",
            "staging",
            "[]",
            "{}",
            "\x00",
        ]
    ),
)
forms = st.dictionaries(st.sampled_from(FIELD_NAMES), form_values, max_size=6)


@pytest.fixture
def demo(db, django_capture_on_commit_callbacks):
    snapshots.clear()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("load_demo")
    app = Application.objects.get(slug="shop")
    GitHubHook.objects.create(application=app, secret="s3cret-shared-with-github")
    factories.UserFactory(username="root", is_superuser=True, is_staff=True)
    return app


def routes(resolver=None, prefix="") -> list[str]:
    """Every URL pattern as a path template (`apps/<slug:slug>/…`)."""
    found = []
    for pattern in (resolver or get_resolver()).url_patterns:
        if isinstance(pattern, URLResolver):
            found += routes(pattern, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            found.append(prefix + str(pattern.pattern))
    return found


def filled(template: str, demo: Application) -> str:
    """A route with the demo's names in it, so requests reach the views' parsing, not a 404."""
    release = Release.objects.filter(application=demo).order_by("-pk").first()
    artifact = Artifact.objects.filter(application=demo).order_by("-pk").first()
    names = {
        "slug": "shop",
        "name": "staging",
        "key": "search-v2",
        "pk": str(release.pk if release else 1),
        "version": artifact.version if artifact else "1.0.0",
        "decision": "approve",
        "command": "pause",
        "event_id": "1",
    }
    path = template
    for converter in ("slug", "str", "int", "path"):
        for field, value in names.items():
            path = path.replace(f"<{converter}:{field}>", value)
    return "/" + path


def django_routes(demo, prefix: str) -> list[str]:
    return sorted({filled(t, demo) for t in routes() if t.startswith(prefix) and "<" not in filled(t, demo)})


# --- REST, webhook, pages --------------------------------------------------------------------------------------


def admin_api(demo):
    api = token_client(
        factories.UserFactory(username="ci-root", is_superuser=True),
        "admin",
        "releases:read",
        "releases:write",
        "approvals:write",
        "flags:read",
        "flags:write",
        "metrics:write",
    )
    paths = [p for p in django_routes(demo, "api/v1/") if "/agent/" not in p and "webhooks/rollout" not in p]
    assert len(paths) > 40
    return api, paths


@pytest.mark.parametrize(
    "body",
    ["[" * 5000 + "]" * 5000, '{"metadata": {"a": 1' + "0" * 400 + "}}", "1e400", '{"name": "\u0000"}'],
    ids=["deep", "huge-int", "huge-float", "nul"],
)
def test_every_rest_route_bounds_hostile_bodies(demo, body):
    """Not left to chance: each writing method of each route gets each hostile body once."""
    api, paths = admin_api(demo)
    for path in paths:
        for method in ("post", "put", "patch"):
            response = getattr(api, method)(path, body, content_type="application/json")
            assert response.status_code < 500, (method, path, response.content[:300])


def test_rest_routes_never_answer_5xx(demo):
    api, paths = admin_api(demo)

    @FUZZ
    @given(
        path=st.sampled_from(paths),
        method=st.sampled_from(["get", "post", "put", "patch", "delete"]),
        body=st.one_of(objects, bodies),
        params=query,
    )
    def run(path, method, body, params):
        url = path + ("?" + urlencode(params) if params else "")
        if method == "get":
            response = api.get(url)
        else:
            response = getattr(api, method)(url, body, content_type="application/json")
        assert response.status_code < 500, (method, path, body[:200], response.content[:300])

    run()


def test_github_webhook_never_answers_5xx(demo):
    client = Client()

    @FUZZ
    @given(
        body=st.one_of(objects, bodies, values.map(lambda v: json.dumps({"commits": [v], "issue": v}))),
        event=st.sampled_from(["push", "issues", "ping", "", "é"]),
        signed=st.booleans(),
        signature=st.text(max_size=80),
    )
    def run(body, event, signed, signature):
        raw = body.encode("utf-8", "surrogatepass")
        if signed:
            signature = "sha256=" + hmac.new(b"s3cret-shared-with-github", raw, hashlib.sha256).hexdigest()
        response = client.post(
            "/api/v1/webhooks/github/shop/",
            raw,
            content_type="application/json",
            headers={"X-GitHub-Event": event, "X-Hub-Signature-256": signature},
        )
        assert response.status_code < 500, (body[:200], response.content[:300])

    run()


PAGE_PREFIXES = ("apps/", "releases/", "identities/", "profile/", "tokens/", "audit/", "approvals/")


def test_page_forms_never_answer_5xx(demo):
    from django.contrib.auth import get_user_model

    client = Client()
    client.force_login(get_user_model().objects.get(username="root"))
    paths = sorted({p for prefix in PAGE_PREFIXES for p in django_routes(demo, prefix)})
    assert len(paths) > 15

    @FUZZ
    @given(path=st.sampled_from(paths), data=forms, htmx=st.booleans(), get=st.booleans(), params=query)
    def run(path, data, htmx, get, params):
        headers = {"HX-Request": "true"} if htmx else {}
        response = (
            client.get(path, params, headers=headers) if get else client.post(path, data, headers=headers)
        )
        assert response.status_code < 500, (path, data, response.content[:300])

    run()


def test_page_forms_with_csrf_enforced(demo):
    """A real browser's way in: the CSRF token from a page, then junk in the form."""
    from django.contrib.auth import get_user_model

    client = Client(enforce_csrf_checks=True)
    client.force_login(get_user_model().objects.get(username="root"))
    client.get("/apps/shop/flags/")
    token = client.cookies["csrftoken"].value
    paths = [
        "/apps/shop/env/staging/lock/",
        "/apps/shop/flags/segments/",
        "/apps/shop/flags/search-v2/edit/",
        "/apps/shop/flags/search-v2/env/staging/",
        "/apps/shop/flags/search-v2/env/staging/toggle/",
    ]
    assert client.post(paths[0], {"reason": "x"}).status_code == 403  # no token: refused

    @settings(FUZZ, max_examples=25)
    @given(path=st.sampled_from(paths), data=forms)
    def run(path, data):
        response = client.post(path, {**data, "csrfmiddlewaretoken": token})
        assert response.status_code < 500, (path, data, response.content[:300])

    run()


# --- the lean ASGI routes ----------------------------------------------------------------------------------------


def _closing(function):
    def wrapper(*args, **kwargs):
        from django.db import connection

        try:
            return function(*args, **kwargs)
        finally:
            connection.close()

    return wrapper


def test_lean_asgi_routes_never_answer_5xx(transactional_db, monkeypatch):
    from django.db import connection

    from config.asgi import application
    from environments import agent_asgi
    from flags import ofrep_asgi
    from monitoring import envelope_asgi
    from releases.permissions import Actor
    from releases.services import do_create_api_token

    monkeypatch.setattr(ofrep_asgi, "_lookup_token", _closing(ofrep_asgi._lookup_token))
    monkeypatch.setattr(access, "refresh", _closing(access.refresh))
    monkeypatch.setattr(snapshots, "get", _closing(snapshots.get))
    monkeypatch.setattr(envelope_asgi, "_lookup", _closing(envelope_asgi._lookup))
    snapshots.clear(), access.clear(), ofrep_asgi._tokens.clear(), envelope_asgi._keys.clear()
    call_command("load_demo")
    app = Application.objects.get(slug="shop")
    root = factories.UserFactory(username="root", is_superuser=True)
    _, key = do_create_api_token(
        Actor.system(),
        root,
        name="fuzz",
        scopes=["flags:read"],
        environment=app.environments.get(name="staging"),
    )
    paths = [
        "/ofrep/v1/evaluate/flags",
        "/ofrep/v1/evaluate/flags/search-v2",
        "/api/v1/agent/register",
        "/api/v1/agent/heartbeat",
        "/api/v1/agent/jobs/5/result",
        "/api/v1/agent/jobs/abc/output",
        f"/api/{app.pk}/envelope/",
        f"/api/{app.pk}/store/",
    ]

    async def send(method, path, body, headers):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await client.request(method, path, content=body, headers=headers)

    try:

        @settings(FUZZ, max_examples=60)
        @given(
            path=st.sampled_from(paths),
            body=st.one_of(objects, bodies, values.map(lambda v: json.dumps({"context": v}))),
            method=st.sampled_from(["POST", "POST", "GET", "OPTIONS"]),
            authorised=st.booleans(),
        )
        def run(path, body, method, authorised):
            headers = {
                "Authorization": f"Bearer {key if authorised else 'slw_nope'}",
                "X-Sentry-Auth": "Sentry sentry_key=nope",
            }
            response = asyncio.run(send(method, path, body.encode("utf-8", "surrogatepass"), headers))
            assert response.status_code < 500, (method, path, body[:200], response.content[:300])

        run()
    finally:
        snapshots.clear(), access.clear(), ofrep_asgi._tokens.clear(), envelope_asgi._keys.clear()
        for executor in (
            agent_asgi.BROKER._executor,
            envelope_asgi.WRITER._executor,
        ):  # their threads' connections
            executor.submit(lambda: connection.close()).result()

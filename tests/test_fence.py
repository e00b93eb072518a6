"""Attackers are slowed and fenced: production checks, Content-Security-Policy, login lockouts, rate limits."""

from __future__ import annotations

import os
import subprocess
import sys
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest
from django.core.management import call_command

from tests.live import ROOT

# The environment file of docs/operations.md ("Installing a host"), with placeholders filled in.
DOCUMENTED_PRODUCTION = {
    "SLIPWAY_ENV": "production",
    "SECRET_KEY": "k3Jx9-" + "Q8w2Zr7Tn4Lp" * 5,
    "ALLOWED_HOSTS": "slipway.example.com",
    "SLIPWAY_BASE_URL": "https://slipway.example.com",
    "DATABASE_URL": "postgres://slipway:pw@db.internal:5432/slipway",
    "REDIS_URL": "redis://redis.internal:6379/0",
    "CELERY_BROKER_URL": "amqp://slipway:pw@mq.internal:5672/slipway",
}


def _run(args: list[str], **env: str) -> subprocess.CompletedProcess:
    environ = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DJANGO_ALLOW_ASYNC_UNSAFE")
    }
    environ.update(
        {"DJANGO_SETTINGS_MODULE": "config.settings", "SLIPWAY_DATA_DIR": "/tmp/slipway-fence-checks", **env}
    )
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=120
    )


# --- production checks --------------------------------------------------------------------------------------


def test_deploy_check_is_clean_with_the_documented_production_settings():
    result = _run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], **DOCUMENTED_PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_missing_secret_key_and_hosts_is_a_system_check_and_stops_every_process():
    env = {**DOCUMENTED_PRODUCTION, "SECRET_KEY": "", "ALLOWED_HOSTS": ""}
    check = _run(["manage.py", "check", "--deploy"], **env)
    assert check.returncode != 0
    assert "slipway.E001" in check.stderr and "SECRET_KEY and ALLOWED_HOSTS" in check.stderr
    # Without --deploy too: `manage.py serve` and `migrate` refuse to start.
    assert "slipway.E001" in _run(["manage.py", "check"], **env).stderr
    asgi = _run(["-c", "import config.asgi"], **env)
    assert asgi.returncode != 0 and "slipway.E001" in asgi.stderr
    only_hosts = _run(["manage.py", "check"], **{**env, "SECRET_KEY": DOCUMENTED_PRODUCTION["SECRET_KEY"]})
    assert "needs ALLOWED_HOSTS set" in only_hosts.stderr


def test_deploy_check_reports_insecure_cookies_and_debug_as_errors(settings):
    from config.checks import production_settings

    settings.PRODUCTION, settings.DEBUG, settings.SESSION_COOKIE_SECURE = True, True, False
    assert {m.id for m in production_settings(None)} >= {"slipway.E002", "slipway.E004"}


def test_production_sends_hsts_and_secure_cookies(db, settings, client):
    settings.SECURE_HSTS_SECONDS, settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = 31536000, True
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    response = client.get("/login/", HTTP_X_FORWARDED_PROTO="https")
    assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    assert response.cookies["csrftoken"]["secure"]


# --- Content-Security-Policy --------------------------------------------------------------------------------


class _Page(HTMLParser):
    """Links to follow, and what a strict policy would refuse: inline scripts without the nonce, inline styles."""

    def __init__(self):
        super().__init__()
        self.links: list[str] = []
        self.refused: list[str] = []
        self._script_nonce: str | None = None
        self.nonces: set[str] = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        if "style" in attrs:
            self.refused.append(f"<{tag} style=…>")
        if tag == "style":
            self.refused.append("<style>")
        if any(name.startswith("on") for name in attrs):
            self.refused.append(f"<{tag} on…=>")
        if any(
            (attrs.get(name) or "").strip().lower().startswith("javascript:") for name in ("href", "action")
        ):
            self.refused.append(f"<{tag} javascript:>")
        if (
            tag == "script"
            and not attrs.get("src")
            and attrs.get("type", "text/javascript") in ("text/javascript", "module", "")
        ):
            self._script_nonce = attrs.get("nonce") or ""

    def handle_endtag(self, tag):
        if tag == "script" and self._script_nonce is not None:
            if self._script_nonce:
                self.nonces.add(self._script_nonce)
            else:
                self.refused.append("<script> without nonce")
            self._script_nonce = None


@pytest.fixture
def demo_admin_client(client, admin_user, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        call_command("load_demo")
    client.force_login(admin_user)
    return client


def test_every_demo_page_carries_a_strict_policy_and_no_inline_code(demo_admin_client):
    seen, queue, problems = set(), ["/", "/login/", "/api/v1/docs/", "/admin/"], {}
    while queue and len(seen) < 150:
        url = queue.pop(0)
        if url in seen:
            continue
        seen.add(url)
        response = demo_admin_client.get(url)
        if response.status_code != 200 or not response["Content-Type"].startswith("text/html"):
            continue
        policy = response["Content-Security-Policy"]
        assert "script-src 'self' 'nonce-" in policy or "script-src 'self'" in policy, (url, policy)
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        assert (
            "style-src 'self'" in policy and "default-src 'self'" in policy and "object-src 'none'" in policy
        )
        page = _Page()
        page.feed(response.content.decode())
        if page.refused:
            problems[url] = page.refused
        for nonce in page.nonces:  # an inline script's nonce is this response's own
            assert f"'nonce-{nonce}'" in policy
        for link in page.links:
            target = urlsplit(urljoin(url, link))
            if target.netloc or target.path.startswith(("/logout", "/static/")) or target.path in seen:
                continue
            queue.append(target.path + (f"?{target.query}" if target.query else ""))
    assert len(seen) > 20, seen  # the crawl reached the applications, environments, flags, rollouts…
    assert not problems, problems
    assert "/api/v1/docs/" in seen and "/apps/shop/" in seen


def test_htmx_runs_without_eval_or_injected_styles(demo_admin_client):
    page = demo_admin_client.get("/").content.decode()
    assert '"includeIndicatorStyles": false' in page and '"allowEval": false' in page
    assert 'hx-headers=\'{"X-CSRFToken"' in page  # JSON, parsed without eval


# --- rate limits ----------------------------------------------------------------------------------------------

from config.ratelimit import LocalBuckets, Rate, RedisBuckets  # noqa: E402


def test_rates_parse_and_split_between_processes():
    assert Rate.parse("20/s", 200) == Rate(per_second=20.0, burst=200)
    assert Rate.parse("600/min") == Rate(per_second=10.0, burst=10)
    assert Rate.parse("off") is None and Rate.parse("0") is None
    assert Rate.parse("6000/s", 12000).divided(4) == Rate(per_second=1500.0, burst=3000)
    with pytest.raises(ValueError, match="like '20/s'"):
        Rate.parse("lots")


def test_local_bucket_allows_the_burst_then_says_how_long_to_wait():
    now = [100.0]
    buckets = LocalBuckets(Rate(per_second=2.0, burst=3), clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)
    assert buckets.take("b") == 0.0  # another key has its own bucket
    now[0] += 0.5
    assert buckets.take("a") == 0.0 and buckets.take("a") == pytest.approx(0.5)


def test_local_buckets_forget_full_buckets_past_their_bound():
    now = [0.0]
    buckets = LocalBuckets(Rate(per_second=1.0, burst=1), max_keys=10, clock=lambda: now[0])
    for n in range(10):
        buckets.take(f"addr-{n}")
    now[0] += 5
    buckets.take("late")
    assert len(buckets._state) == 1


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs Redis")
def test_redis_buckets_are_shared_between_processes(settings):
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    one, other = (
        RedisBuckets(Rate(per_second=1.0, burst=2), client, prefix=f"{settings.RATE_LIMIT_PREFIX}:t:")
        for _ in range(2)
    )  # two processes' views of the same bucket
    assert one.take("k") == 0.0 and other.take("k") == 0.0
    assert 0 < one.take("k") <= 1.0 and 0 < other.take("k") <= 1.0


def test_redis_failure_lets_requests_through():
    import redis

    broken = RedisBuckets(
        Rate(per_second=1.0, burst=1), redis.Redis(port=1, socket_connect_timeout=0.2), prefix="x:"
    )
    assert broken.take("k") == 0.0


@pytest.fixture
def api_token(db):
    from releases.permissions import Actor
    from releases.services import do_create_api_token
    from tests import factories

    user = factories.UserFactory()
    return do_create_api_token(Actor.system(), user, name="ci", scopes=["releases:read"])[1]


def _api(client, key=None):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"} if key else {}
    return client.get("/api/v1/applications/", **headers)


def test_api_limits_each_token_with_429_and_retry_after(client, settings, api_token):
    settings.API_RATE_LIMIT, settings.API_RATE_BURST = "1/min", 3
    assert [_api(client, api_token).status_code for _ in range(3)] == [200, 200, 200]
    refused = _api(client, api_token)
    assert refused.status_code == 429
    # A token back every 60 s: the wait is what is left of that minute (a second or more passes on a loaded machine).
    retry = int(refused["Retry-After"])
    assert 50 <= retry <= 60
    assert refused.json() == {"code": "rate_limited", "detail": f"Too many requests: retry in {retry} s."}
    from releases.permissions import Actor
    from releases.services import do_create_api_token
    from tests import factories

    other = do_create_api_token(Actor.system(), factories.UserFactory(), name="ci", scopes=["releases:read"])[
        1
    ]
    assert _api(client, other).status_code == 200  # its own bucket


def test_api_limits_requests_without_valid_credentials_per_address(client, settings, api_token):
    settings.API_ANONYMOUS_RATE_LIMIT, settings.API_ANONYMOUS_RATE_BURST = "1/min", 2
    assert [_api(client, "guess-1").status_code, _api(client).status_code] == [401, 401]
    assert _api(client, "guess-2").status_code == 429  # guessing tokens is slowed down
    assert _api(client).status_code == 429
    assert _api(client, api_token).status_code == 200  # a valid token is counted on its own
    assert client.get("/api/v1/applications/", REMOTE_ADDR="10.1.2.3").status_code == 401  # another address


def test_rate_limits_can_be_switched_off(client, settings, api_token):
    settings.API_RATE_LIMIT = "off"
    assert all(_api(client, api_token).status_code == 200 for _ in range(5))


@pytest.fixture
def ofrep(transactional_db, monkeypatch):
    import asyncio

    import httpx

    from config.asgi import application
    from flags import ofrep_asgi
    from flags.services import do_create_flag, do_set_flag_state
    from flags.snapshots import snapshots
    from releases import access
    from releases.permissions import Actor
    from releases.services import do_create_api_token, do_grant_role
    from tests import factories
    from tests.flags.conftest import closing

    monkeypatch.setattr(ofrep_asgi, "_lookup_token", closing(ofrep_asgi._lookup_token))
    monkeypatch.setattr(access, "refresh", closing(access.refresh))
    monkeypatch.setattr(snapshots, "get", closing(snapshots.get))
    snapshots.clear(), access.clear(), ofrep_asgi._tokens.clear()
    admin, pm = factories.UserFactory(), factories.UserFactory()
    app = factories.ApplicationFactory(slug="shop")
    factories.MembershipFactory(user=admin, application=app, role="admin")
    production = factories.EnvironmentFactory(application=app, name="production", position=2)
    do_set_flag_state(
        Actor.system(), do_create_flag(Actor.system(), app, key="new-checkout"), production, enabled=True
    )
    do_grant_role(Actor(admin), app, pm, "flag_editor", production)
    keys = [
        do_create_api_token(Actor(pm), pm, name=f"sdk{n}", scopes=["flags:read"], environment=production)[1]
        for n in range(2)
    ]

    def call(key=None, client=("127.0.0.1", 5000)):
        async def send():
            transport = httpx.ASGITransport(app=application, client=client)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
                return await http.post(
                    "/ofrep/v1/evaluate/flags",
                    json={"context": {"targetingKey": "u1"}},
                    headers={"Authorization": f"Bearer {key}"} if key else {},
                )

        return asyncio.run(send())

    yield call, keys
    snapshots.clear(), access.clear(), ofrep_asgi._tokens.clear()


def test_ofrep_limits_each_token_in_process_with_its_error_shape(ofrep, settings):
    call, (key, other) = ofrep
    settings.OFREP_RATE_LIMIT, settings.OFREP_RATE_BURST, settings.WEB_PROCESSES = "4/min", 4, 2
    assert [call(key).status_code for _ in range(2)] == [200, 200]  # this process's share: half of 4
    refused = call(key)
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "30"
    assert refused.json() == {"errorCode": "GENERAL", "errorDetails": "Rate limit exceeded: retry in 30 s."}
    assert "Retry-After" in refused.headers["Access-Control-Expose-Headers"]
    assert call(other).status_code == 200


def test_ofrep_limits_unknown_tokens_per_address(ofrep, settings):
    call, (key, _) = ofrep
    settings.API_ANONYMOUS_RATE_LIMIT, settings.API_ANONYMOUS_RATE_BURST = "1/min", 2
    assert [call("guess-1").status_code, call().status_code] == [401, 401]
    assert call("guess-2").status_code == 429 and call().status_code == 429
    assert call("guess-3", client=("10.9.9.9", 1)).status_code == 401
    assert call(key, client=("10.9.9.10", 1)).status_code == 200
    assert call(key).status_code == 200  # a known valid token is not charged to its address


# --- login throttling ---------------------------------------------------------------------------------------

from datetime import timedelta  # noqa: E402

import time_machine  # noqa: E402
from django.utils import timezone  # noqa: E402


@pytest.fixture
def alice(db):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user("alice", password="right-horse-battery")


def _login(client, username, password="wrong", address="10.0.0.1"):
    return client.post("/login/", {"username": username, "password": password}, REMOTE_ADDR=address)


def _audit(kind):
    from releases.models import AuditEvent

    return list(AuditEvent.objects.filter(kind=kind).order_by("id"))


def test_failures_for_one_username_lock_it_out_from_every_address(client, alice):
    assert [_login(client, "alice", address=f"10.0.0.{n}").status_code for n in range(4)] == [200] * 4
    locked = _login(client, "alice", address="10.0.0.9")
    assert locked.status_code == 429 and locked["Retry-After"] == "900"
    page = locked.content.decode()
    assert (
        "Too many failed log-ins" in page and "Try again <time" in page and ">in 15\xa0minutes <span" in page
    )
    # The right password does not get in during the lockout, from anywhere.
    assert _login(client, "alice", "right-horse-battery", address="10.9.9.9").status_code == 429
    [event] = _audit("login.locked_out")
    assert event.actor is None and event.after["username"] == "alice" and event.after["failures"] == 5


def test_failures_from_one_address_lock_it_out_for_every_username(client, alice):
    for n in range(5):
        _login(client, f"someone-{n}", address="10.0.0.66")
    assert _login(client, "alice", "right-horse-battery", address="10.0.0.66").status_code == 429
    assert _login(client, "alice", "right-horse-battery", address="10.0.0.67").status_code == 302


def test_lockout_ends_after_the_cool_off_and_backs_off_on_the_next(client, alice):
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        for _ in range(5):
            _login(client, "alice")
    with time_machine.travel(start + timedelta(minutes=14), tick=False):
        assert _login(client, "alice", "right-horse-battery").status_code == 429
        # ... which, from the same address, pushed the end back: 15 minutes from this attempt.
    with time_machine.travel(start + timedelta(minutes=28), tick=False):
        assert _login(client, "alice", "right-horse-battery", address="10.1.1.2").status_code == 429
    later = start + timedelta(minutes=45)
    with time_machine.travel(later, tick=False):
        assert _login(client, "alice", "right-horse-battery", address="10.1.1.3").status_code == 302
        client.logout()
        for _ in range(5):
            response = _login(client, "alice", address="10.0.0.2")
        assert response.status_code == 429 and ">in 30\xa0minutes <span" in response.content.decode()
    with time_machine.travel(later + timedelta(minutes=20), tick=False):
        assert _login(client, "alice", "right-horse-battery", address="10.1.1.4").status_code == 429
    with time_machine.travel(later + timedelta(minutes=51), tick=False):
        assert _login(client, "alice", "right-horse-battery", address="10.1.1.5").status_code == 302
    assert len(_audit("login.locked_out")) == 2  # one per lockout, not per attempt during one


def test_an_admin_unlocks_and_it_is_audited(client, alice, admin_user):
    from axes.models import AccessAttempt

    for _ in range(5):
        _login(client, "alice")
    assert _login(client, "alice", "right-horse-battery").status_code == 429
    admin = type(client)()
    admin.force_login(admin_user)
    listing = admin.get("/admin/axes/accessattempt/")
    assert listing.status_code == 200 and "alice" in listing.content.decode()
    pks = list(AccessAttempt.objects.filter(username="alice").values_list("pk", flat=True))
    response = admin.post("/admin/axes/accessattempt/", {"action": "unlock", "_selected_action": pks})
    assert response.status_code == 302
    assert not AccessAttempt.objects.filter(username="alice").exists()
    [event] = _audit("login.unlocked")
    assert event.actor == admin_user and event.after == {"username": "alice", "ip_address": "10.0.0.1"}
    assert _login(client, "alice", "right-horse-battery").status_code == 302
    audit_page = admin.get("/audit/").content.decode()
    assert "login.locked_out" in audit_page and "login.unlocked" in audit_page


@pytest.mark.browser
def test_pages_work_in_a_browser_under_the_policy(live_slipway):
    """Chromium reports no CSP violation while a person logs in and moves around (htmx and the live views load)."""
    from django.contrib.auth import get_user_model
    from playwright.sync_api import sync_playwright

    from tests.dashboard.test_browser import ARGS, CHROMIUM

    call_command("load_demo")
    get_user_model().objects.create_superuser("pat", password="s3cret-pass-word")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_page()
            messages: list[str] = []
            page.on("console", lambda message: messages.append(message.text))
            page.on("pageerror", lambda error: messages.append(str(error)))
            page.goto(live_slipway.url + "/login/")
            page.get_by_label("Username").fill("pat")
            page.get_by_label("Password").fill("s3cret-pass-word")
            page.keyboard.press("Enter")
            page.wait_for_url(live_slipway.url + "/")
            for path in (
                "/apps/shop/",
                "/apps/shop/flags/",
                "/audit/",
                "/tokens/",
                "/api/v1/docs/",
                "/api/v1/applications/shop/releases/",  # DRF's browsable API, with forms
                "/api/v1/applications/shop/members/",
                "/api/v1/applications/shop/environments/production/locks/",
                "/api/v1/applications/shop/environments/",
                "/admin/",
            ):
                response = page.goto(live_slipway.url + path)
                assert response.status == 200, path
                assert "script-src 'self'" in response.headers["content-security-policy"]
                page.wait_for_load_state("networkidle")
            assert page.evaluate("typeof htmx") == "undefined"  # the admin page: no htmx there
            page.goto(live_slipway.url + "/apps/shop/")
            assert page.evaluate(
                "htmx.config.allowEval === false && htmx.config.includeIndicatorStyles === false"
            )
            assert page.locator("style").count() == 0  # htmx injected no <style>
        finally:
            browser.close()
    violations = [m for m in messages if "Content Security Policy" in m or "Refused to" in m]
    assert not violations, violations

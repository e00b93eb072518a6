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
    "SLIPWAY_ENV": "production", "SECRET_KEY": "k3Jx9-" + "Q8w2Zr7Tn4Lp" * 5, "ALLOWED_HOSTS": "slipway.example.com",
    "SLIPWAY_BASE_URL": "https://slipway.example.com", "DATABASE_URL": "postgres://slipway:pw@db.internal:5432/slipway",
    "REDIS_URL": "redis://redis.internal:6379/0", "CELERY_BROKER_URL": "amqp://slipway:pw@mq.internal:5672/slipway",
}


def _run(args: list[str], **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DJANGO_ALLOW_ASYNC_UNSAFE")}
    environ.update({"DJANGO_SETTINGS_MODULE": "config.settings", "SLIPWAY_DATA_DIR": "/tmp/slipway-fence-checks", **env})
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=120)


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
        if any((attrs.get(name) or "").strip().lower().startswith("javascript:") for name in ("href", "action")):
            self.refused.append(f"<{tag} javascript:>")
        if tag == "script" and not attrs.get("src") and attrs.get("type", "text/javascript") in (
                "text/javascript", "module", ""):
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
        assert "style-src 'self'" in policy and "default-src 'self'" in policy and "object-src 'none'" in policy
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
    assert "hx-headers='{\"X-CSRFToken\"" in page  # JSON, parsed without eval

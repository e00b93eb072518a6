"""Production settings from the environment, and what a refused form says about them."""

import json
import os
import subprocess
import sys

import pytest
from django.test import Client

from tests.live import ROOT

PRODUCTION = {"SLIPWAY_ENV": "production", "SECRET_KEY": "x" * 50, "ALLOWED_HOSTS": "slipway.example.com"}


def production_settings(**env: str) -> dict:
    code = (
        "import django, json; django.setup(); from django.conf import settings as s; print(json.dumps({n: "
        "getattr(s, n, None) for n in ('SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', 'SECURE_PROXY_SSL_HEADER', "
        "'SECURE_SSL_REDIRECT', 'SECURE_HSTS_SECONDS', 'CSRF_TRUSTED_ORIGINS', 'DEBUG')}))"
    )
    environ = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", **PRODUCTION, **env}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environ, check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.splitlines()[-1])


def test_production_cookies_and_proxy_header_come_from_the_environment():
    default = production_settings()
    assert default["SESSION_COOKIE_SECURE"] and default["CSRF_COOKIE_SECURE"] and not default["DEBUG"]
    assert default["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert default["SECURE_SSL_REDIRECT"] is False and default["SECURE_HSTS_SECONDS"] == 31536000
    changed = production_settings(
        TRUST_X_FORWARDED_PROTO="0",
        SESSION_COOKIE_SECURE="0",
        SECURE_SSL_REDIRECT="1",
        SECURE_HSTS_SECONDS="600",
        CSRF_TRUSTED_ORIGINS="https://slipway.example.com",
    )
    assert changed["SECURE_PROXY_SSL_HEADER"] is None and changed["SESSION_COOKIE_SECURE"] is False
    assert changed["SECURE_SSL_REDIRECT"] is True and changed["SECURE_HSTS_SECONDS"] == 600
    assert changed["CSRF_TRUSTED_ORIGINS"] == ["https://slipway.example.com"]


@pytest.fixture
def secure_cookies(settings):
    settings.CSRF_COOKIE_SECURE = settings.SESSION_COOKIE_SECURE = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")


def test_login_over_plain_http_says_why_it_was_refused(db, secure_cookies):
    # The browser kept the Secure CSRF cookie to itself: the post arrives without it.
    response = Client(enforce_csrf_checks=True).post("/login/", {"username": "a", "password": "b"})
    assert response.status_code == 403
    page = response.content.decode()
    assert "CSRF cookie not set" in page and "plain HTTP" in page and "X-Forwarded-Proto: https" in page


def test_refusal_over_https_does_not_blame_http(db, secure_cookies):
    response = Client(enforce_csrf_checks=True).post(
        "/login/", {"username": "a"}, HTTP_X_FORWARDED_PROTO="https"
    )
    assert response.status_code == 403
    assert "plain HTTP" not in response.content.decode()


def test_manage_py_runs_in_the_checkouts_virtualenv_whatever_python_the_shebang_finds():
    import django

    # The documented commands work as `./manage.py …` too: PATH here has only the system's Python (no Django).
    out = subprocess.run(
        [str(ROOT / "manage.py"), "--version"],
        cwd="/",
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == django.get_version()


def test_deploy_check_warns_about_the_embedded_channel_layer_and_broker(settings):
    from config.checks import production_settings as check

    settings.PRODUCTION, settings.REDIS_URL, settings.CELERY_BROKER_URL = True, "", "memory://"
    assert {m.id for m in check(None)} >= {"slipway.W001", "slipway.W002"}
    settings.REDIS_URL, settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/0", "amqp://mq//"
    assert not {m.id for m in check(None)} & {"slipway.W001", "slipway.W002"}

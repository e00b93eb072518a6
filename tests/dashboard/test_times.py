"""Every moment a page shows goes through one filter, `when`: relative, with the absolute time and its zone."""

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from dashboard.templatetags.dashboard_time import when
from environments.models import Environment, FreezeWindow
from releases.models import Release

ROOT = Path(__file__).resolve().parents[2]
# The apps' templates and the project's own (templates/: base, log-in, errors).
TEMPLATES = sorted(
    p.relative_to(ROOT).as_posix()
    for pattern in ("*/templates/**/*.html", "templates/**/*.html")
    for p in ROOT.glob(pattern)
)
RAW_TIME = re.compile(r"\|\s*(date|time|ago|timesince|timeuntil|naturaltime|naturalday)\b|\{%\s*now\b")
# A moment printed as it is ({{ release.created_at }}): Django's default format, without its zone.
BARE_TIME = re.compile(r"\{\{\s*[\w.]*(_at|_until|last_seen)\s*\}\}")


def test_the_scan_sees_every_kind_of_template():
    assert {"templates/base.html", "templates/registration/login.html"} <= set(TEMPLATES)
    assert "dashboard/templates/dashboard/release.html" in TEMPLATES and len(TEMPLATES) > 20


NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("template", TEMPLATES)
def test_templates_show_moments_only_through_when(template):
    text = (ROOT / template).read_text()
    assert not RAW_TIME.search(text), f"{template}: use |when, not {RAW_TIME.search(text).group(0)}"
    assert not BARE_TIME.search(text), f"{template}: use |when, not {BARE_TIME.search(text).group(0)}"


@override_settings(TIME_ZONE="America/New_York")
def test_when_under_a_configured_zone_says_that_zone_not_utc():
    moment = datetime(2026, 12, 5, 15, 30, tzinfo=UTC)
    with time_machine.travel(moment + timedelta(hours=2), tick=False):
        past, ahead = str(when(moment)), str(when(moment + timedelta(hours=4), "beside"))
    assert past == (
        '<time datetime="2026-12-05T15:30:00+00:00" title="2026-12-05 10:30:00 EST">2\xa0hours ago</time>'
    )
    assert '>in 2\xa0hours <span class="muted">(2026-12-05 14:30:00 EST)</span></time>' in ahead


@time_machine.travel(NOW, tick=False)
def test_when_reads_past_and_future_with_the_zone_of_the_server(settings):
    settings.TIME_ZONE = "Europe/Berlin"
    with timezone.override("Europe/Berlin"):
        past = str(when(NOW - timedelta(minutes=20)))
        future = str(when(NOW + timedelta(hours=2)))
        beside = str(when(NOW - timedelta(days=3, hours=1), "beside"))
    assert (
        past
        == '<time datetime="2026-06-01T11:40:00+00:00" title="2026-06-01 13:40:00 CEST">20\xa0minutes ago</time>'
    )
    assert ">in 2\xa0hours</time>" in future and 'title="2026-06-01 16:00:00 CEST"' in future
    assert '>3\xa0days, 1\xa0hour ago <span class="muted">(2026-05-29 13:00:00 CEST)</span></time>' in beside


@time_machine.travel(NOW, tick=False)
def test_when_says_an_offset_where_the_zone_has_no_letters():
    with timezone.override("Asia/Dubai"):
        assert 'title="2026-06-01 16:00:00 UTC+04"' in str(when(NOW))
    with timezone.override("UTC"):
        assert 'title="2026-06-01 12:00:00 UTC"' in str(when(NOW)) and ">just now<" in str(when(NOW))


def test_a_time_of_day_reads_as_a_clock():
    assert str(when(datetime(2026, 1, 1, 9, 5).time())) == '<time datetime="09:05">09:05</time>'
    assert when(None) == ""


@pytest.fixture
def demo(db, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        call_command("load_demo")


def visible_text(html: str) -> str:
    """The page without its <time> elements (which carry the absolute time on purpose), tags and attributes."""
    html = re.sub(r"<time\b.*?</time>", "", html, flags=re.S)
    html = re.sub(r"<(script|style)\b.*?</\1>", "", html, flags=re.S)
    return re.sub(r"<[^>]+>", " ", html)


def test_demo_pages_show_no_raw_time(client, admin_user, demo, settings):
    """A page printing a moment itself ("14:03:12", "Jun 1") instead of through `when` fails here."""
    settings.TIME_ZONE = "America/New_York"
    client.force_login(admin_user)
    release = Release.objects.filter(application__slug="shop").order_by("-pk").first()
    production = Environment.objects.get(application__slug="shop", name="production")
    now = timezone.now()
    FreezeWindow.objects.create(
        environment=production,
        reason="sale",
        starts_at=now - timedelta(hours=1),
        ends_at=now + timedelta(hours=2),
    )
    pages = {}
    for path in ("/", "/apps/shop/", "/apps/shop/env/production/", f"/releases/{release.pk}/", "/audit/"):
        response = client.get(path)
        assert response.status_code == 200, path
        pages[path] = response.content.decode()
        text = visible_text(pages[path])
        assert not re.search(r"\b\d{1,2}:\d{2}(:\d{2})?\b", text), (
            path,
            re.search(r".{40}\d{1,2}:\d{2}.{20}", text),
        )
        for moment in re.findall(r"<time\b[^>]*>", pages[path]):
            if "T" in re.search(r'datetime="([^"]*)"', moment).group(1):  # a moment, not a time of day
                assert re.search(r'title="\d{4}-\d\d-\d\d \d\d:\d\d:\d\d E[DS]T"', moment), (path, moment)
    freeze = re.search(r'<p class="freeze".*?</p>', pages["/apps/shop/env/production/"], flags=re.S).group(0)
    assert (
        "1\xa0hour ago" in freeze and ">in 1\xa0hour, 59\xa0minutes" in freeze or ">in 2\xa0hours" in freeze
    )
    assert "EST)" in freeze or "EDT)" in freeze
    assert '<ol class="timeline"><li class="muted">' not in pages[f"/releases/{release.pk}/"]

"""The environment page's Targets card: every host, what it runs, whether its agent is there."""

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from dashboard.templatetags.dashboard_time import duration, iso_duration
from environments.models import Target
from releases.models import ApiToken
from tests import factories


@pytest.fixture
def production(db):
    app = factories.ApplicationFactory(slug="shop", name="Shop")
    current = factories.ArtifactFactory(application=app, version="1.3.0")
    return factories.EnvironmentFactory(
        application=app, name="production", position=2, current_artifact=current
    )


@pytest.fixture
def boss(client, db):
    client.force_login(factories.UserFactory(username="boss", is_superuser=True))
    return client


def add_target(environment, name, **fields):
    fields = {
        "status": Target.Status.ONLINE,
        "version": "1.3.0",
        "hostname": f"{name}.internal",
        "agent_version": "0.1",
        "last_seen": timezone.now(),
        **fields,
    }
    return Target.objects.create(
        environment=environment, name=name, token_hash=ApiToken.hash_key(name), **fields
    )


def row(page: str, name: str) -> str:
    start = page.index(f'<tr data-target="{name}"')
    return page[start : page.index("</tr>", start)]


def test_targets_card_lists_each_host(boss, production):
    now = timezone.now()
    add_target(production, "web-1", last_seen=now - timedelta(seconds=12, milliseconds=300))
    add_target(
        production,
        "web-2",
        status=Target.Status.OFFLINE,
        version="1.2.0",
        hostname="10.0.0.2",
        agent_version="0.0.9",
        last_seen=now - timedelta(minutes=5),
    )
    add_target(production, "web-3", version="", hostname="", agent_version="", last_seen=None)
    with time_machine.travel(now, tick=False):
        page = boss.get("/apps/shop/env/production/").content.decode()
    assert '<h2 id="targets-heading">Targets</h2>' in page and "No targets yet" not in page
    web1, web2, web3 = row(page, "web-1"), row(page, "web-2"), row(page, "web-3")
    assert 'data-status="online"' in web1 and '<span class="badge ok">Online</span>' in web1
    assert "1.3.0" in web1 and "web-1.internal" in web1 and "0.1" in web1
    last_seen = (now - timedelta(seconds=12, milliseconds=300)).isoformat()
    assert f'<time datetime="{last_seen}"' in web1 and ">just now</time>" in web1
    assert 'class="drifted"' not in web1 and "differs from" not in web1
    # Offline and on another version than the environment: highlighted, in words as well as colour.
    assert '<span class="badge bad">Offline</span>' in web2 and "10.0.0.2" in web2 and "0.0.9" in web2
    assert 'class="drifted"' in web2 and "differs from 1.3.0" in web2 and ">5\xa0minutes ago</time>" in web2
    assert "nothing yet" in web3 and "never" in web3 and 'class="drifted"' in web3
    assert (
        page.index('data-target="web-1"')
        < page.index('data-target="web-2"')
        < page.index('data-target="web-3"')
    )


def test_environment_running_nothing_flags_every_deployed_target(boss, production):
    production.current_artifact = None
    production.save(update_fields=["current_artifact"])
    add_target(production, "web-1", version="1.3.0")
    add_target(production, "web-2", version="")
    page = boss.get("/apps/shop/env/production/").content.decode()
    assert "differs from the environment" in row(page, "web-1")
    assert 'class="drifted"' not in row(page, "web-2")


def test_no_targets_says_how_to_add_one(boss, production, settings):
    settings.SLIPWAY_BASE_URL = "https://slipway.example.com/"
    page = boss.get("/apps/shop/env/production/").content.decode()
    assert "No targets yet" in page and '<table class="table targets">' not in page
    assert (
        "https://slipway.example.com/api/v1/applications/shop/environments/production/registration-tokens/"
        in page
    ) and "-X POST" in page
    assert "python -m environments.agent --url https://slipway.example.com --registration-token" in page
    for flag in ("--name", "--workdir", "--deploy-command"):
        assert flag in page
    assert "docs/rollouts.md" in page


def test_other_environments_targets_are_not_listed(boss, production):
    staging = factories.EnvironmentFactory(application=production.application, name="staging", position=1)
    add_target(staging, "stage-1")
    page = boss.get("/apps/shop/env/production/").content.decode()
    assert "stage-1" not in page and "No targets yet" in page


# session, user, environment, view permission, history, its approvals, rollback permission, targets, locks, freezes
QUERIES = 10


def test_environment_page_queries_do_not_grow_with_targets(client, production, django_assert_num_queries):
    from releases.models import Release

    member = factories.UserFactory(username="dev")
    factories.MembershipFactory(user=member, application=production.application, role="developer")
    client.force_login(member)
    Release.objects.create(
        application=production.application,
        environment=production,
        artifact=production.current_artifact,
        kind="recorded",
        status="succeeded",
    )
    add_target(production, "web-0")
    client.get("/apps/shop/env/production/")
    with django_assert_num_queries(QUERIES):
        page = client.get("/apps/shop/env/production/").content.decode()
    assert page.count("<tr data-target=") == 1
    for n in range(1, 20):
        add_target(production, f"web-{n}", version="1.2.0" if n % 2 else "1.3.0")
    with django_assert_num_queries(QUERIES):
        page = client.get("/apps/shop/env/production/").content.decode()
    assert page.count("<tr data-target=") == 20 and page.count('class="drifted"') == 10


def test_duration():
    assert duration(None) == "" and iso_duration(None) == ""
    assert (
        duration(timedelta(milliseconds=420)) == "0.4 s"
        and iso_duration(timedelta(milliseconds=420)) == "PT0.42S"
    )
    assert duration(timedelta(seconds=12.4)) == "12 s" and iso_duration(timedelta(seconds=12)) == "PT12S"
    assert duration(timedelta(minutes=3, seconds=5)) == "3 min 5 s"
    assert duration(timedelta(hours=1, minutes=2, seconds=3)) == "1 h 2 min"
    assert duration(timedelta(seconds=-1)) == "0.0 s" and iso_duration(timedelta(seconds=-1)) == "PT0S"


def test_blue_green_environment_shows_each_hosts_slot(boss, production):
    production.strategy, production.live_slot = {"kind": "blue_green"}, "green"
    production.save()
    for name in ("web-1", "web-2", "web-3", "web-4"):
        add_target(production, name)
    page = boss.get("/apps/shop/env/production/").content.decode()
    assert "the <strong>green</strong> slot serves traffic" in page
    slots = {name: row(page, name) for name in ("web-1", "web-2", "web-3", "web-4")}
    assert all('data-slot="blue"' in slots[n] and "idle" in slots[n] for n in ("web-1", "web-2"))
    assert all('data-slot="green"' in slots[n] and ">live<" in slots[n] for n in ("web-3", "web-4"))


def test_a_moment_reads_relative_with_the_absolute_time_and_zone_on_hover():
    from datetime import timedelta

    from django.utils import timezone

    from dashboard.templatetags.dashboard_time import when

    moment = timezone.now() - timedelta(minutes=20, seconds=5)
    html = str(when(moment))
    assert ">20\xa0minutes ago</time>" in html
    assert f'datetime="{moment.isoformat()}"' in html
    absolute = timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S %Z")
    assert f'title="{absolute}"' in html and absolute[-1].isalpha()  # with its time zone
    assert ">just now</time>" in str(when(timezone.now()))
    assert ">in 5\xa0minutes</time>" in str(when(timezone.now() + timedelta(minutes=5, seconds=3)))
    assert when(None) == ""

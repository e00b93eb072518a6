"""The release page's rollout summary: a labelled <progress>, "5 of 8 targets on 1.3.0 · wave 3", step durations."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from dashboard.progress import rollout_progress
from releases import selectors
from releases.models import Release, Rollout, RolloutStep
from tests import factories

TARGETS = [f"web-{n}" for n in range(1, 9)]


@pytest.fixture
def release(db):
    app = factories.ApplicationFactory(slug="shop", name="Shop")
    env = factories.EnvironmentFactory(application=app, name="production", position=1)
    old = factories.ArtifactFactory(application=app, version="1.2.0")
    new = factories.ArtifactFactory(application=app, version="1.3.0")
    return Release.objects.create(
        application=app, environment=env, artifact=new, previous_artifact=old, status="deploying"
    )


def another_release(release):
    """Each release has one rollout: a second one for the same versions."""
    return Release.objects.create(
        application=release.application,
        environment=release.environment,
        artifact=release.artifact,
        previous_artifact=release.previous_artifact,
    )


def make_rollout(release, steps, *, status="running", targets=TARGETS):
    """`steps`: (wave, target, action, status[, seconds it took]) in order."""
    rollout = Rollout.objects.create(
        release=release, targets=targets, status=status, strategy={"kind": "cautious"}
    )
    start = timezone.now() - timedelta(minutes=10)
    for index, (wave, target, action, step_status, *took) in enumerate(steps, start=1):
        version = release.previous_artifact.version if action == "revert" else release.artifact.version
        finished = start + timedelta(seconds=took[0]) if took else None
        RolloutStep.objects.create(
            rollout=rollout,
            index=index,
            wave=wave,
            target_name=target,
            action=action,
            version=version,
            status=step_status,
            started_at=start if step_status != "pending" else None,
            finished_at=finished,
        )
    return rollout


# Cautious waves of 1, 2, 4 (…then the last one): five hosts done, two still deploying in the third wave.
DEPLOYING = [
    (0, "web-1", "deploy", "succeeded", 1.5),
    (0, "web-1", "health", "succeeded", 0.2),
    (1, "web-2", "deploy", "succeeded", 2),
    (1, "web-3", "deploy", "succeeded", 75),
    (2, "web-4", "deploy", "succeeded", 3),
    (2, "web-5", "deploy", "succeeded", 3),
    (2, "web-6", "deploy", "running"),
    (2, "web-7", "deploy", "pending"),
]


def progress_of(rollout):
    return rollout_progress(selectors.rollout_page(rollout.pk))


def test_deploying_counts_succeeded_deploys_against_the_rollouts_targets(release):
    progress = progress_of(make_rollout(release, DEPLOYING))
    assert (progress.done, progress.total, progress.wave, progress.reverting) == (5, 8, 3, False)
    assert progress.text == "5 of 8 targets on 1.3.0 · wave 3"


def test_before_any_step(release):
    progress = progress_of(make_rollout(release, [], status="pending"))
    assert progress.text == "0 of 8 targets on 1.3.0" and progress.max == 8
    empty = progress_of(make_rollout(another_release(release), [], status="pending", targets=[]))
    assert empty.text == "0 of 0 targets on 1.3.0" and empty.max == 1  # <progress max> must be positive


def test_a_failed_deploy_is_not_counted(release):
    steps = [
        (0, "web-1", "deploy", "succeeded", 1),
        (1, "web-2", "deploy", "failed", 1),
        (1, "web-3", "deploy", "succeeded", 1),
    ]
    assert progress_of(make_rollout(release, steps)).text == "2 of 8 targets on 1.3.0 · wave 2"


def test_reverting_counts_targets_put_back_out_of_those_touched(release):
    steps = [
        (0, "web-1", "deploy", "succeeded", 1),
        (1, "web-2", "deploy", "failed", 1),
        (1, "web-3", "deploy", "succeeded", 1),
        (1, "web-1", "revert", "succeeded", 1),
        (1, "web-2", "revert", "running"),
        (1, "web-3", "revert", "pending"),
    ]
    progress = progress_of(make_rollout(release, steps, status="reverting"))
    assert (progress.done, progress.total, progress.reverting) == (1, 3, True)
    assert progress.text == "1 of 3 touched targets back on 1.2.0"
    steps = [
        *steps[:4],
        (1, "web-2", "revert", "failed", 1),
        (1, "web-3", "revert", "succeeded", 1),
        (1, "web-2", "revert", "succeeded", 1),
    ]  # a retried revert counts once
    done = progress_of(make_rollout(another_release(release), steps, status="reverted"))
    assert done.text == "3 of 3 touched targets back on 1.2.0"


def test_reverting_before_its_steps_exist_and_with_nothing_to_put_back(release):
    steps = [(0, "web-1", "deploy", "succeeded", 1), (1, "web-2", "deploy", "pending")]
    assert (
        progress_of(make_rollout(release, steps, status="reverting")).text == "0 of 1 touched target put back"
    )
    first = Release.objects.create(
        application=release.application, environment=release.environment, artifact=release.artifact
    )
    assert progress_of(make_rollout(first, steps, status="reverted")).text == (
        "1 target touched · no earlier version to put back"
    )
    untouched = progress_of(make_rollout(another_release(release), [], status="reverted"))
    assert untouched.text == "No target was touched: nothing to put back"


def test_rows_carry_durations_and_waves_counted_from_one(release):
    rows = progress_of(make_rollout(release, DEPLOYING)).rows
    assert [r.step.index for r in rows] == list(range(1, 9))
    assert rows[0].duration == timedelta(seconds=1.5) and rows[0].wave_number == 1
    assert rows[6].duration is None and rows[7].duration is None  # running, pending


def test_release_page_shows_the_summary_and_step_durations(client, release):
    make_rollout(release, DEPLOYING)
    client.force_login(factories.UserFactory(username="boss", is_superuser=True))
    page = client.get(f"/releases/{release.pk}/").content.decode()
    progress = page[page.index('<div id="progress"') :]
    assert progress.startswith('<div id="progress" data-rollout-status="running">')
    label = re.search(r'<label for="(rollout-\d+-progress)">([^<]*)</label>', progress)
    assert label and label.group(2) == "5 of 8 targets on 1.3.0 · wave 3"
    assert f'<progress id="{label.group(1)}" max="8" value="5">5 of 8</progress>' in progress
    assert progress.index("<progress") < progress.index("<table")
    assert "<th>Duration</th>" in progress
    assert (
        '<time datetime="PT1.5S">1.5 s</time>' in progress
        and '<time datetime="PT75S">1 min 15 s</time>' in progress
    )
    # The rows a browser test watches keep their attributes.
    row = r'<tr data-target="{}" data-action="{}" data-status="{}" data-index="\d+">'
    assert len(re.findall(row.format("web-1", "deploy", "succeeded"), progress)) == 1
    assert len(re.findall(row.format("web-1", "health", "succeeded"), progress)) == 1
    assert re.search(row.format("web-6", "deploy", "running"), progress)


def test_a_running_analysis_says_the_verdict_is_on_its_way(client, release):
    """While the canary is judged, the page says so (the run is stored when its window closes), not "no analysis"."""
    client.force_login(factories.UserFactory(username="boss", is_superuser=True))
    rollout = make_rollout(release, [*DEPLOYING[:2], (0, "", "analysis", "running")])
    page = client.get(f"/releases/{release.pk}/").content.decode()
    assert "Analysing the canary after wave 1 since" in page and "No analysis ran" not in page
    assert "No analysis has finished for this release yet." in page
    RolloutStep.objects.filter(rollout=rollout, action="analysis").update(status="succeeded")
    Rollout.objects.filter(pk=rollout.pk).update(status="succeeded")
    page = client.get(f"/releases/{release.pk}/").content.decode()
    assert "Analysing the canary" not in page and "No analysis ran for this release." in page


# session, user, release, rollout id, rollout, its steps, the card (approvals, changes), the release's error groups,
# alerts and analysis runs (their measurements only when there are runs), timeline
QUERIES = 12


def test_release_page_queries_do_not_grow_with_steps(client, release, django_assert_num_queries):
    client.force_login(factories.UserFactory(username="boss", is_superuser=True))
    rollout = make_rollout(release, DEPLOYING[:1], targets=[f"web-{n}" for n in range(1, 11)])
    client.get(f"/releases/{release.pk}/")
    with django_assert_num_queries(QUERIES):
        page = client.get(f"/releases/{release.pk}/").content.decode()
    assert page.count("<tr data-target=") == 1 and "1 of 10 targets on 1.3.0 · wave 1" in page
    start = timezone.now() - timedelta(seconds=30)
    RolloutStep.objects.bulk_create(
        RolloutStep(
            rollout=rollout,
            index=index,
            wave=n // 4,
            target_name=f"web-{n}",
            action=action,
            version="1.3.0",
            status="succeeded",
            started_at=start,
            finished_at=start + timedelta(seconds=n),
        )
        for index, (n, action) in enumerate(
            ((n, a) for n in range(2, 11) for a in ("deploy", "health")), start=2
        )
    )
    with django_assert_num_queries(QUERIES):
        page = client.get(f"/releases/{release.pk}/").content.decode()
    assert page.count("<tr data-target=") == 19 and "10 of 10 targets on 1.3.0 · wave 3" in page


@pytest.mark.browser
def test_the_progress_bar_is_announced_with_its_summary(live_slipway):
    from playwright.sync_api import sync_playwright

    from tests.dashboard.test_browser import ARGS, CHROMIUM

    app = factories.ApplicationFactory(slug="shop", name="Shop")
    env = factories.EnvironmentFactory(application=app, name="production", position=1)
    release = Release.objects.create(
        application=app,
        environment=env,
        status="deploying",
        artifact=factories.ArtifactFactory(application=app, version="1.3.0"),
        previous_artifact=factories.ArtifactFactory(application=app, version="1.2.0"),
    )
    make_rollout(release, DEPLOYING)
    factories.UserFactory(username="boss", is_superuser=True, password="boss-password-1")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page()
        page.goto(live_slipway.url + f"/releases/{release.pk}/")
        page.get_by_label("Username").fill("boss")
        page.get_by_label("Password").fill("boss-password-1")
        page.keyboard.press("Enter")
        page.wait_for_url(lambda url: "/login/" not in url)
        bar = page.get_by_role("progressbar", name="5 of 8 targets on 1.3.0 · wave 3")
        assert bar.is_visible()
        assert bar.evaluate("e => [e.value, e.max]") == [5, 8]
        assert page.get_by_role("columnheader", name="Duration").is_visible()
        browser.close()

"""Agents' jobs in bulk: claims and reports for many agents per round, over the lean ASGI routes and directly."""

import asyncio
import json
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from environments import jobs
from environments.jobs import Report, do_apply_reports, do_claim_jobs, do_release_jobs
from environments.models import Target
from monitoring.models import Sample
from releases.models import ApiToken, AuditEvent, Release, Rollout, RolloutStep
from tests import factories


def fleet_with_rollout(app, size, *, rollout_status="running", env_name="production", prefix="t"):
    """`size` targets with keys and a rollout with one pending deploy step each."""
    from environments.models import Environment

    env = factories.EnvironmentFactory(
        application=app, name=env_name, position=Environment.objects.filter(application=app).count() + 1
    )
    v1 = factories.ArtifactFactory(application=app, version=f"{env_name}-1.0")
    v2 = factories.ArtifactFactory(application=app, version=f"{env_name}-2.0")
    targets = [
        Target.objects.create(
            environment=env, name=f"{prefix}{n}", token_hash=ApiToken.hash_key(f"{prefix}key{n}")
        )
        for n in range(size)
    ]
    release = Release.objects.create(
        application=app, environment=env, artifact=v2, previous_artifact=v1, status="deploying"
    )
    rollout = Rollout.objects.create(
        release=release, targets=[t.name for t in targets], status=rollout_status
    )
    steps = [
        RolloutStep.objects.create(
            rollout=rollout,
            index=n + 1,
            wave=0,
            target=t,
            target_name=t.name,
            action="deploy",
            version=v2.version,
        )
        for n, t in enumerate(targets)
    ]
    return env, rollout, targets, steps


def report(key, step, *, succeeded=True, healthy=True, version=None):
    return Report(
        key=key,
        step_id=step.pk,
        succeeded=succeeded,
        healthy=healthy,
        detail="test",
        version=version or step.version,
        output_tail="done\n",
    )


@pytest.fixture
def woken(monkeypatch):
    """The rollouts the reconciler was woken for, in order."""
    calls = []
    monkeypatch.setattr(jobs, "enqueue_advance", calls.append)
    return calls


# --- claims ------------------------------------------------------------------------------------


def test_claim_jobs_hands_each_target_its_first_pending_job(app, django_assert_max_num_queries):
    _, rollout, targets, steps = fleet_with_rollout(app, 3)
    later = RolloutStep.objects.create(
        rollout=rollout,
        index=10,
        target=targets[0],
        target_name="t0",
        action="revert",
        version="production-1.0",
    )
    # Savepoint, candidates, lock, update, the releases' artifacts, release: the same six for three targets as for
    # a thousand.
    with django_assert_max_num_queries(6):
        claimed = do_claim_jobs(t.pk for t in targets)
    assert {tid: job["id"] for tid, job in claimed.items()} == {
        t.pk: s.pk for t, s in zip(targets, steps, strict=True)
    }
    assert claimed[targets[0].pk]["version"] == "production-2.0"
    assert "command" not in json.dumps(claimed)  # a job names an artifact, never a command
    assert set(RolloutStep.objects.filter(pk__in=[s.pk for s in steps]).values_list("status", flat=True)) == {
        "running"
    }
    later.refresh_from_db()
    assert later.status == "pending"  # one job at a time per target
    assert do_claim_jobs([targets[1].pk, targets[2].pk]) == {}
    # The revert is next for t0 once its deploy is settled.
    RolloutStep.objects.filter(pk=steps[0].pk).update(status="succeeded")
    assert do_claim_jobs([targets[0].pk])[targets[0].pk]["id"] == later.pk


def test_a_sweep_of_many_waiting_agents_claims_only_theirs(app, django_assert_max_num_queries):
    """More waiting agents than FEW_TARGETS: the claim reads the pending steps instead of naming every target,
    and still hands out only the waiting agents' first jobs."""
    from environments.jobs import FEW_TARGETS

    _, rollout, targets, steps = fleet_with_rollout(app, FEW_TARGETS + 20)
    _, _, _, other_steps = fleet_with_rollout(app, 3, env_name="staging", prefix="s")
    RolloutStep.objects.create(
        rollout=rollout,
        index=500,
        target=targets[0],
        target_name="t0",
        action="revert",
        version="production-1.0",
    )
    waiting = targets[:-5]  # five of them are not polling right now
    with django_assert_max_num_queries(6):
        claimed = do_claim_jobs(t.pk for t in waiting)
    assert {tid: job["id"] for tid, job in claimed.items()} == {
        t.pk: s.pk for t, s in zip(waiting, steps, strict=False)
    }
    assert set(
        RolloutStep.objects.filter(pk__in=[s.pk for s in steps[-5:] + other_steps]).values_list(
            "status", flat=True
        )
    ) == {"pending"}  # not waiting: left for later


def test_claim_jobs_skips_paused_and_finished_rollouts(app):
    _, _, targets, _ = fleet_with_rollout(app, 2, rollout_status="paused")
    assert do_claim_jobs(t.pk for t in targets) == {}


def test_release_jobs_puts_unheard_jobs_back_in_the_queue(app):
    _, _, targets, steps = fleet_with_rollout(app, 1)
    job = do_claim_jobs([targets[0].pk])[targets[0].pk]
    assert do_release_jobs([job["id"]]) == 1
    steps[0].refresh_from_db()
    assert (steps[0].status, steps[0].started_at) == ("pending", None)
    (event,) = AuditEvent.objects.filter(kind="rollout.jobs_released")
    assert (event.object_type, event.object_id) == ("releases.release", str(steps[0].rollout.release_id))
    assert (
        event.after == {"jobs": [job["id"]], "targets": [targets[0].name]} and event.actor_label == "system"
    )
    assert event.application_id == app.pk
    assert do_release_jobs([job["id"]]) == 0  # pending already: nothing to put back, nothing audited
    assert AuditEvent.objects.filter(kind="rollout.jobs_released").count() == 1
    assert do_claim_jobs([targets[0].pk])[targets[0].pk]["id"] == job["id"]


# --- reports -----------------------------------------------------------------------------------


def test_apply_reports_answers_each_report_in_order(app, woken):
    _, rollout, targets, steps = fleet_with_rollout(app, 3)
    _, _, _, foreign = fleet_with_rollout(app, 1, env_name="staging", prefix="s")
    RolloutStep.objects.filter(rollout=rollout).update(status="running")
    answers = do_apply_reports(
        [
            report("tkey0", steps[0], version="2.0-custom"),
            report("nobody", steps[1]),  # unknown token
            report("tkey1", foreign[0]),  # another environment's job
            Report(
                key="tkey1",
                step_id=999999,
                succeeded=True,
                healthy=True,
                detail="",
                version=None,
                output_tail="",
            ),
            report("tkey2", steps[1]),  # t2 reporting t1's job
            report("tkey0", steps[0]),  # the same job twice in one batch
        ]
    )
    assert [status for status, _ in answers] == [200, 401, 403, 404, 403, 409]
    assert all("detail" in body for status, body in answers if status != 200)
    steps[0].refresh_from_db()
    assert steps[0].status == "succeeded" and steps[0].health == {"ok": True, "detail": "test"}
    assert "done" in steps[0].output
    assert Target.objects.get(pk=targets[0].pk).version == "2.0-custom"
    assert RolloutStep.objects.get(pk=steps[1].pk).status == "running"  # refused reports change nothing
    assert woken == []  # two steps of the wave are still running


def test_a_late_result_records_what_the_host_runs(app, woken):
    """An agent that was offline when its step was given up reports later that the deploy did happen: the answer
    is still 409, but the target's record now says what the host runs (drift shows), not the old version."""
    _, rollout, targets, steps = fleet_with_rollout(app, 2)
    Target.objects.filter(pk__in=[t.pk for t in targets]).update(version="production-1.0")
    RolloutStep.objects.filter(pk=steps[0].pk).update(
        status="failed", health={"ok": False, "detail": "agent offline"}
    )
    status, body = do_apply_reports([report("tkey0", steps[0], version="production-2.0")])[0]
    assert status == 409 and body["code"] == "job_finished" and body["recorded_version"] == "production-2.0"
    assert Target.objects.get(pk=targets[0].pk).version == "production-2.0"
    assert (
        "late result after the step failed: the host runs production-2.0"
        in RolloutStep.objects.get(pk=steps[0].pk).output
    )
    assert rollout.pk in woken  # the reconciler looks again (a revert may now have to put this host back)
    # A later job handed out since wins over a late report of an older one.
    RolloutStep.objects.create(
        rollout=rollout,
        index=9,
        target=targets[1],
        target_name="t1",
        action="revert",
        version="production-1.0",
        status="succeeded",
    )
    RolloutStep.objects.filter(pk=steps[1].pk).update(status="failed")
    do_apply_reports([report("tkey1", steps[1], version="production-2.0")])
    assert Target.objects.get(pk=targets[1].pk).version == "production-1.0"


def test_the_reconciler_is_woken_by_the_last_report_of_a_wave_or_at_once_by_a_failure(app, woken):
    _, rollout, _, steps = fleet_with_rollout(app, 3)
    RolloutStep.objects.filter(rollout=rollout).update(status="running")
    do_apply_reports([report("tkey0", steps[0])])
    assert woken == []
    do_apply_reports([report("tkey1", steps[1], healthy=False)])
    assert woken == [rollout.pk]  # a revert must not wait for the rest of the wave
    do_apply_reports([report("tkey2", steps[2])])
    assert woken == [rollout.pk, rollout.pk]


@pytest.mark.parametrize("size", [1, 60])
def test_a_wave_of_many_reports_costs_a_handful_of_queries(app, woken, django_assert_num_queries, size):
    _, rollout, _, steps = fleet_with_rollout(app, size)
    RolloutStep.objects.filter(rollout=rollout).update(status="running")
    # Tokens, last seen, savepoint, the steps' rollouts, their lock, the steps, the highest step number, one
    # update of the steps, one insert of the health steps, the samples' applications, versions, open steps,
    # release, and the health-check samples (PostgreSQL's COPY is not a query Django counts): the same for 60
    # reports as for one.
    with django_assert_num_queries(13 if connection.vendor == "postgresql" else 14):
        answers = do_apply_reports([report(f"tkey{n}", step) for n, step in enumerate(steps)])
    assert {status for status, _ in answers} == {200}
    deploys = RolloutStep.objects.filter(rollout=rollout, action="deploy")
    assert [(d.status, d.health, d.output) for d in deploys] == [
        ("succeeded", {"ok": True, "detail": "test"}, "done\n")
    ] * size
    health = list(RolloutStep.objects.filter(rollout=rollout, action="health").order_by("index"))
    assert len(health) == size and {h.status for h in health} == {"succeeded"}
    assert len({h.index for h in health} | {s.index for s in steps}) == 2 * size  # numbered after the deploys
    assert Sample.objects.filter(name="health_check_ok", application=app, value=1.0).count() == size
    assert woken == [rollout.pk]


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_reports_finishing_a_wave_together_always_wake_the_reconciler(monkeypatch):
    """Two reports settling the last two steps at the same moment: the rollout lock makes the later one see the
    other, so the reconciler is woken (without it, each would see the other's step still open)."""
    app = factories.ApplicationFactory(slug="race")
    woken, lock = [], threading.Lock()

    def record(rollout_id):
        with lock:
            woken.append(rollout_id)

    monkeypatch.setattr(
        jobs, "enqueue_advance", lambda rollout_id: jobs.transaction.on_commit(lambda: record(rollout_id))
    )
    for attempt in range(8):
        _, rollout, _, steps = fleet_with_rollout(app, 2, env_name=f"env{attempt}", prefix=f"r{attempt}-")
        RolloutStep.objects.filter(rollout=rollout).update(status="running")
        barrier = threading.Barrier(2)

        def send(n, steps=steps, barrier=barrier, attempt=attempt):
            barrier.wait()
            try:
                return do_apply_reports([report(f"r{attempt}-key{n}", steps[n])])
            finally:
                connection.close()

        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(send, [0, 1]))
        assert [a[0][0] for a in answers] == [200, 200]
        assert rollout.pk in woken, f"attempt {attempt}: nobody woke the reconciler"


@pytest.mark.django_db(transaction=True)
def test_a_report_with_the_token_that_took_its_job_needs_no_second_lookup(monkeypatch):
    """The broker remembers which agent each job went to: its report is stored without looking its token up again.
    Any other token is looked up as before, and another agent's report on that job is still refused."""
    from environments import agent_asgi

    app = factories.ApplicationFactory(slug="shop")
    _, _, _, steps = fleet_with_rollout(app, 2)
    looked_up = []
    real = agent_asgi.authenticate
    monkeypatch.setattr(agent_asgi, "authenticate", lambda keys: looked_up.append(sorted(keys)) or real(keys))
    broker = agent_asgi.AgentBroker()

    async def scenario():
        first = await broker.next_job("tkey0", 5)
        second = await broker.next_job("tkey1", 5)
        looked_up.clear()
        own = await broker.report(report("tkey0", steps[0]))
        assert looked_up == []  # tkey0 took job 0 from this broker
        foreign = await broker.report(report("tkey0", steps[1]))  # job 1 went to tkey1
        assert looked_up == [["tkey0"]]
        return first, second, own, foreign

    try:
        first, second, own, foreign = asyncio.run(scenario())
    finally:
        broker._executor.submit(lambda: connection.close()).result()
    assert (first[1]["job"]["id"], second[1]["job"]["id"]) == (steps[0].pk, steps[1].pk)
    assert own == (200, {"ok": True})
    assert foreign[0] == 403
    assert RolloutStep.objects.get(pk=steps[0].pk).status == "succeeded"
    assert RolloutStep.objects.get(pk=steps[1].pk).status == "running"


# --- over HTTP, through the lean routes -----------------------------------------------------------


def http(url, method="GET", body=None, key=None, raw=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            payload = response.read()
            return response.status, json.loads(payload) if payload else None
    except urllib.error.HTTPError as error:
        payload = error.read()
        return error.code, json.loads(payload) if payload else None


@pytest.mark.slow
def test_many_agents_poll_and_report_at_once_over_http(live_slipway):
    app = factories.ApplicationFactory(slug="shop")
    size = 40
    _, rollout, targets, steps = fleet_with_rollout(app, size)
    _, _, _, foreign = fleet_with_rollout(app, 1, env_name="staging", prefix="s")
    url = live_slipway.url + "/api/v1/agent"
    with ThreadPoolExecutor(size) as pool:
        polls = list(pool.map(lambda n: http(url + "/work?wait=5", key=f"tkey{n}"), range(size)))
    assert all(status == 200 for status, _ in polls)
    assert [body["job"]["id"] for _, body in polls] == [s.pk for s in steps]  # each agent got its own job
    assert RolloutStep.objects.filter(rollout=rollout, status="running").count() == size

    def send(n):
        return http(
            url + f"/jobs/{steps[n].pk}/result",
            "POST",
            {"status": "succeeded", "health": {"ok": True, "detail": "fine"}, "version": "2.0.0"},
            key=f"tkey{n}",
        )

    with ThreadPoolExecutor(size) as pool:
        reports = list(pool.map(send, range(size)))
    assert [status for status, _ in reports] == [200] * size
    assert RolloutStep.objects.filter(rollout=rollout, action="deploy", status="succeeded").count() == size
    assert RolloutStep.objects.filter(rollout=rollout, action="health").count() == size
    assert set(Target.objects.filter(pk__in=[t.pk for t in targets]).values_list("version", flat=True)) == {
        "2.0.0"
    }
    # Refusals, each naming the problem.
    ok_body = {"status": "succeeded", "health": {"ok": True}}
    assert http(url + f"/jobs/{steps[0].pk}/result", "POST", ok_body, key="tkey0")[0] == 409
    assert http(url + f"/jobs/{foreign[0].pk}/result", "POST", ok_body, key="tkey0")[0] == 403
    assert http(url + f"/jobs/{steps[0].pk}/result", "POST", ok_body, key="wrong")[0] == 401
    assert http(url + f"/jobs/{steps[0].pk}/result", "POST", ok_body)[0] == 401
    status, body = http(url + f"/jobs/{steps[0].pk}/result", "POST", {"status": "maybe"}, key="tkey0")
    assert (status, body["field"]) == (400, "status")
    status, body = http(url + f"/jobs/{steps[0].pk}/result", "POST", raw=b"{not json", key="tkey0")
    assert (status, body["code"]) == (400, "invalid_json") and body["detail"]  # as the API answers it
    assert (
        http(url + f"/jobs/{steps[0].pk}/result", "POST", raw=b"x" * (1024 * 1024 + 10), key="tkey0")[0]
        == 413
    )
    assert http(url + f"/jobs/{steps[0].pk}/result", key="tkey0")[0] == 405
    assert http(url + "/work?wait=abc", key="tkey0")[0] == 400
    assert http(url + "/work?wait=0", key="wrong")[0] == 401
    assert http(url + "/work?wait=0.2", key="tkey0") == (204, None)  # nothing to do: the long-poll ends empty


# --- the bound on concurrent Django requests ------------------------------------------------------


def test_django_requests_are_bounded_per_process(monkeypatch):
    import config.asgi

    running, peak = 0, 0

    async def slow_django(scope, receive, send):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1

    async def burst():
        monkeypatch.setattr(config.asgi, "_django_slots", asyncio.Semaphore(3))
        monkeypatch.setattr(config.asgi, "django_asgi_app", slow_django)
        await asyncio.gather(
            *(config.asgi.http_app({"type": "http", "path": "/"}, None, None) for _ in range(20))
        )

    asyncio.run(burst())
    assert peak == 3

"""No request can knock the deploy agents over (issue #11): every agent route refuses bad input with a 4xx
`{"code", "detail"}` before the database, and one bad report in a broker round fails no other agent's request."""

import asyncio
import json
import re
import subprocess
import sys
import time

import httpx
import pytest
from django.db import connection

from environments import agent_asgi
from environments.jobs import Report
from environments.models import Target
from releases.models import RolloutStep
from tests import factories
from tests.environments.test_agent_batching import fleet_with_rollout, report
from tests.environments.test_rollout_agents import DEPLOY, HEALTH, api, wait_for
from tests.live import ROOT, LiveSlipway

HUGE = "99999999999999999999999"
DEEP = "[" * 100_000
MEGA = b'{"status": "succeeded", "output_tail": "' + b"x" * (1024 * 1024) + b'"}'
OK_REPORT = {"status": "succeeded", "health": {"ok": True, "detail": "fine"}}


def hostile_requests(real_key: str) -> list[tuple[str, str, str | None, bytes | None, int, str | None]]:
    """(method, path, token, body, expected status, expected code): what attackers and broken clients send."""
    j = str.encode
    dumps = lambda value: json.dumps(value).encode()  # noqa: E731
    bogus = "sla_bogus_token"
    return [
        # results: ids that cannot exist, tokens nobody holds, bodies no agent sends
        ("POST", f"/api/v1/agent/jobs/{HUGE}/result", bogus, dumps(OK_REPORT), 404, "job_not_found"),
        ("POST", f"/api/v1/agent/jobs/{2**63}/result", bogus, dumps(OK_REPORT), 404, "job_not_found"),
        ("POST", "/api/v1/agent/jobs/-5/result", bogus, dumps(OK_REPORT), 404, "job_not_found"),
        ("POST", "/api/v1/agent/jobs/0/result", bogus, dumps(OK_REPORT), 404, "job_not_found"),
        ("POST", "/api/v1/agent/jobs/abc/result", real_key, dumps(OK_REPORT), 404, "job_not_found"),
        ("POST", f"/api/v1/agent/jobs/{HUGE}/result", real_key, dumps(OK_REPORT), 404, "job_not_found"),
        ("POST", "/api/v1/agent/jobs/987654321/result", bogus, dumps(OK_REPORT), 401, "unknown_agent"),
        ("POST", "/api/v1/agent/jobs/987654321/result", "x" * 5000, dumps(OK_REPORT), 401, "unknown_agent"),
        ("POST", "/api/v1/agent/jobs/987654321/result", real_key, dumps(OK_REPORT), 404, "job_not_found"),
        ("POST", "/api/v1/agent/jobs/5/result", real_key, j(DEEP), 400, "too_deep"),
        ("POST", "/api/v1/agent/jobs/5/result", bogus, j(DEEP + "]" * 100_000), 400, "too_deep"),
        ("POST", "/api/v1/agent/jobs/5/result", bogus, dumps({"status": ["succeeded"]}), 400, "invalid"),
        (
            "POST",
            "/api/v1/agent/jobs/5/result",
            bogus,
            dumps({"status": "succeeded", "health": "ok"}),
            400,
            "invalid",
        ),
        (
            "POST",
            "/api/v1/agent/jobs/5/result",
            bogus,
            b'{"status": "succeeded", "health": {"seconds": 1e999}}',
            400,
            "out_of_range",
        ),
        (
            "POST",
            "/api/v1/agent/jobs/5/result",
            bogus,
            j(f'{{"status": "failed", "exit_code": {HUGE}}}'),
            400,
            "out_of_range",
        ),
        ("POST", "/api/v1/agent/jobs/5/result", bogus, b'{"status": NaN}', 400, "invalid_json"),
        (
            "POST",
            "/api/v1/agent/jobs/5/result",
            bogus,
            b'{"status": "succeeded", "version": "\\ud800"}',
            400,
            "invalid_json",
        ),
        ("POST", "/api/v1/agent/jobs/5/result", bogus, b"\xff\xfe{", 400, "invalid_json"),
        ("POST", "/api/v1/agent/jobs/5/result", bogus, MEGA, 413, "too_large"),
        ("GET", "/api/v1/agent/jobs/5/result", bogus, None, 405, "method_not_allowed"),
        # long-polls
        ("GET", "/api/v1/agent/work?wait=1", bogus, None, 401, "unknown_agent"),
        ("GET", "/api/v1/agent/work?wait=nan", real_key, None, 400, "invalid"),
        ("GET", "/api/v1/agent/work?wait=abc", real_key, None, 400, "invalid"),
        ("GET", "/api/v1/agent/work?wait=1", "y" * 300, None, 401, "unknown_agent"),
        ("POST", "/api/v1/agent/work", real_key, dumps({}), 405, "method_not_allowed"),
        # registration
        ("POST", "/api/v1/agent/register", None, j(DEEP), 400, "too_deep"),
        ("POST", "/api/v1/agent/register", None, MEGA, 413, "too_large"),
        ("POST", "/api/v1/agent/register", None, b"[]", 400, "invalid"),
        (
            "POST",
            "/api/v1/agent/register",
            None,
            dumps({"name": 5, "registration_token": "slr_x"}),
            400,
            "invalid",
        ),
        (
            "POST",
            "/api/v1/agent/register",
            None,
            dumps({"name": "evil", "registration_token": "slr_nope"}),
            401,
            "unknown_registration_token",
        ),
        (
            "POST",
            "/api/v1/agent/register",
            None,
            b'{"name": "a\\u0000b", "registration_token": "slr_x"}',
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/api/v1/agent/register",
            None,
            j(f'{{"name": "n", "registration_token": {HUGE}}}'),
            400,
            "out_of_range",
        ),
        # heartbeats: a real agent's token with a job id past bigint must not reach the database
        (
            "POST",
            "/api/v1/agent/heartbeat",
            real_key,
            j(f'{{"version": "6.6.6", "job": {HUGE}}}'),
            400,
            "out_of_range",
        ),
        ("POST", "/api/v1/agent/heartbeat", real_key, dumps({"version": "6.6.6", "job": -3}), 400, "invalid"),
        ("POST", "/api/v1/agent/heartbeat", real_key, j(DEEP), 400, "too_deep"),
        ("POST", "/api/v1/agent/heartbeat", bogus, dumps({"version": "6.6.6"}), 401, "unknown_agent"),
        # output and the webhook driver's callback
        ("POST", f"/api/v1/agent/jobs/{HUGE}/output", real_key, dumps({"chunk": "x"}), 404, "job_not_found"),
        ("POST", "/api/v1/agent/jobs/-1/output", real_key, dumps({"chunk": "x"}), 404, "job_not_found"),
        ("POST", "/api/v1/agent/jobs/5/output", bogus, j(DEEP), 400, "too_deep"),
        ("POST", "/api/v1/agent/jobs/5/output", bogus, dumps({"chunk": "x"}), 401, "unknown_agent"),
        ("POST", f"/api/v1/webhooks/rollout/{HUGE}/", None, dumps(OK_REPORT), 404, "job_not_found"),
        ("POST", "/api/v1/webhooks/rollout/123456789/", None, dumps(OK_REPORT), 404, "job_not_found"),
        ("POST", "/api/v1/webhooks/rollout/7/", None, j(DEEP), 400, "too_deep"),
    ]


async def send_all(base_url: str, requests: list, *, spread: float = 0.0) -> list:
    """Every request at once (each started `spread` s after the previous): its status and JSON body, or the
    exception that stopped it."""
    limits = httpx.Limits(max_connections=len(requests), max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base_url, timeout=20, limits=limits) as client:

        async def one(n, method, path, token, body):
            await asyncio.sleep(n * spread)
            headers = {
                "Content-Type": "application/json",
                **({"Authorization": f"Bearer {token}"} if token else {}),
            }
            try:
                response = await client.request(method, path, content=body, headers=headers)
            except Exception as error:  # a dropped request is a failure the test reports
                return error
            try:
                return response.status_code, response.json()
            except ValueError:
                return response.status_code, response.text[:200]

        return await asyncio.gather(*(one(n, *r[:4]) for n, r in enumerate(requests)))


def check_answers(requests, answers) -> None:
    wrong = [
        (
            method,
            path[:60],
            expected,
            code,
            answer if isinstance(answer, Exception) else answer[0],
            None if isinstance(answer, Exception) else str(answer[1])[:160],
        )
        for (method, path, _, _, expected, code), answer in zip(requests, answers, strict=True)
        if isinstance(answer, Exception)
        or answer[0] != expected
        or not isinstance(answer[1], dict)
        or answer[1].get("code") != code
        or not answer[1].get("detail")
    ]
    assert not wrong, "\n".join(map(str, wrong))


# --- every route, in process through the served ASGI app --------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_every_agent_route_refuses_bad_input_with_a_4xx_and_a_code():
    """Through `config.asgi.application` (the lean agent routes and Django's views, as served): each refusal is
    the expected 4xx with its code, and nothing is written."""
    from config.asgi import application

    app = factories.ApplicationFactory(slug="shop")
    _, rollout, targets, steps = fleet_with_rollout(app, 1)
    RolloutStep.objects.filter(pk=steps[0].pk).update(status="running")
    requests = hostile_requests("tkey0")

    async def scenario():
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost", timeout=20) as client:
            answers = []
            for method, path, token, body, *_ in requests:
                headers = {
                    "Content-Type": "application/json",
                    **({"Authorization": f"Bearer {token}"} if token else {}),
                }
                try:  # ASGITransport has no timeout of its own: a held request must fail, not hang the test
                    response = await asyncio.wait_for(
                        client.request(method, path, content=body, headers=headers), 10
                    )
                    answers.append((response.status_code, response.json()))
                except Exception as error:
                    answers.append(error)
            return answers

    try:
        answers = asyncio.run(scenario())
    finally:
        agent_asgi.BROKER._executor.submit(lambda: connection.close()).result()
    check_answers(requests, answers)
    assert RolloutStep.objects.get(pk=steps[0].pk).status == "running"
    assert Target.objects.get(pk=targets[0].pk).version == ""
    assert Target.objects.count() == 1


# --- one bad report in a broker round ------------------------------------------------------------


@pytest.mark.postgres  # SQLite stores the NUL that PostgreSQL refuses: there the batch would not fail
@pytest.mark.django_db(transaction=True)
def test_a_report_that_fails_its_batch_fails_no_other():
    """Four reports in one broker round; one carries a value PostgreSQL refuses (a NUL in the version, as a report
    that slipped past the route's checks would). The batch fails, so each report is stored on its own: the bad one
    gets its own 400, the unknown token its 401, the two good ones are stored and answered 200."""
    app = factories.ApplicationFactory(slug="shop")
    _, rollout, targets, steps = fleet_with_rollout(app, 3)
    RolloutStep.objects.filter(rollout=rollout).update(status="running")
    poisoned = Report(
        key="tkey1",
        step_id=steps[1].pk,
        succeeded=True,
        healthy=True,
        detail="",
        version="2\x00",
        output_tail="",
    )
    bogus = Report(
        key="sla_bogus",
        step_id=int(HUGE),
        succeeded=True,
        healthy=True,
        detail="",
        version=None,
        output_tail="",
    )
    broker = agent_asgi.AgentBroker()
    rounds = []
    real_round = broker._round
    broker._round = lambda reports, *rest: rounds.append(len(reports)) or real_round(reports, *rest)

    async def scenario():
        return await asyncio.gather(
            broker.report(report("tkey0", steps[0])),
            broker.report(poisoned),
            broker.report(bogus),
            broker.report(report("tkey2", steps[2])),
        )

    try:
        answers = asyncio.run(scenario())
    finally:
        broker._executor.submit(lambda: connection.close()).result()
    assert rounds == [4]  # one batch
    assert [status for status, _ in answers] == [200, 400, 401, 200]
    assert answers[1][1]["code"] == "unstorable_report" and answers[2][1]["code"] == "unknown_agent"
    statuses = dict(RolloutStep.objects.filter(pk__in=[s.pk for s in steps]).values_list("pk", "status"))
    assert [statuses[s.pk] for s in steps] == ["succeeded", "running", "succeeded"]
    assert RolloutStep.objects.filter(rollout=rollout, action="health").count() == 2


def _counting_rounds(broker) -> list[tuple[int, int]]:
    """(reports, new long-polls) of each of the broker's rounds."""
    rounds = []
    real_round = broker._round

    def counted(reports, holding, keys, waiting):
        rounds.append((len(reports), len(keys)))
        return real_round(reports, holding, keys, waiting)

    broker._round = counted
    return rounds


@pytest.mark.django_db(transaction=True)
def test_a_round_whose_reports_fail_still_hands_out_work(monkeypatch):
    """Storing a round's reports fails outright (a bug, the database gone): the report is answered 503, and the
    agent waiting for work in the same round gets its job."""
    app = factories.ApplicationFactory(slug="shop")
    _, rollout, targets, steps = fleet_with_rollout(app, 2)
    RolloutStep.objects.filter(pk=steps[0].pk).update(status="running")  # t0 reports it, t1's waits

    def broken(reports, targets):
        raise RuntimeError("storing reports failed")

    monkeypatch.setattr(agent_asgi, "do_store_reports", broken)
    broker = agent_asgi.AgentBroker()
    rounds = _counting_rounds(broker)

    async def scenario():
        return await asyncio.gather(broker.report(report("tkey0", steps[0])), broker.next_job("tkey1", 5))

    try:
        answers = asyncio.run(scenario())
    finally:
        broker._executor.submit(lambda: connection.close()).result()
    assert rounds[0] == (1, 1)  # the report and the long-poll in one round
    assert answers[0][0] == 503 and answers[0][1]["code"] == "busy"
    assert answers[1][0] == 200 and answers[1][1]["job"]["id"] == steps[1].pk
    statuses = dict(RolloutStep.objects.filter(pk__in=[s.pk for s in steps]).values_list("pk", "status"))
    assert [statuses[s.pk] for s in steps] == ["running", "running"]


@pytest.mark.django_db(transaction=True)
def test_a_token_whose_look_up_fails_fails_only_its_own_requests(monkeypatch):
    """The round's token look-up raises for one agent's token: that agent's report and long-poll get 503 (it
    retries); the other agents' reports are stored and their long-polls get their jobs."""
    app = factories.ApplicationFactory(slug="shop")
    _, rollout, targets, steps = fleet_with_rollout(app, 3)
    RolloutStep.objects.filter(pk__in=[steps[0].pk, steps[1].pk]).update(status="running")
    real_authenticate = agent_asgi.authenticate

    def flaky(keys):
        keys = set(keys)
        if "tkey1" in keys:
            raise RuntimeError("the look-up of tkey1 failed")
        return real_authenticate(keys)

    monkeypatch.setattr(agent_asgi, "authenticate", flaky)
    broker = agent_asgi.AgentBroker()
    rounds = _counting_rounds(broker)

    async def scenario():
        return await asyncio.gather(
            broker.report(report("tkey0", steps[0])),
            broker.report(report("tkey1", steps[1])),
            broker.next_job("tkey2", 5),
            broker.next_job("tkey1", 5),
        )

    try:
        answers = asyncio.run(scenario())
    finally:
        broker._executor.submit(lambda: connection.close()).result()
    assert rounds[0] == (2, 2)  # one round
    assert [status for status, _ in answers] == [200, 503, 200, 503]
    assert answers[1][1]["code"] == answers[3][1]["code"] == "busy"
    assert answers[2][1]["job"]["id"] == steps[2].pk
    statuses = dict(RolloutStep.objects.filter(pk__in=[s.pk for s in steps]).values_list("pk", "status"))
    assert [statuses[s.pk] for s in steps] == ["succeeded", "running", "running"]


@pytest.mark.parametrize("segment", [HUGE, "0", "-5", "abc", "9223372036854775808"])
def test_a_job_id_that_cannot_exist_is_404_without_a_query(
    segment, db, monkeypatch, django_assert_num_queries
):
    """docs/rollouts.md: a job id in the URL outside 1 … 2⁶³−1 is a 404 before the database (and the broker)."""
    monkeypatch.setattr(agent_asgi.BROKER, "report", None)  # the broker is never asked
    sent = []

    async def receive():
        return {"type": "http.request", "body": json.dumps(OK_REPORT).encode(), "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": f"/api/v1/agent/jobs/{segment}/result",
        "headers": [(b"authorization", b"Bearer tkey0"), (b"content-type", b"application/json")],
    }
    with django_assert_num_queries(0):
        asyncio.run(agent_asgi.agent_app(scope, receive, send))
    assert sent[0]["status"] == 404
    assert json.loads(sent[1]["body"])["code"] == "job_not_found"


# --- under fire: a real rollout and 200 hostile requests --------------------------------------------


@pytest.fixture
def server():
    slipway = LiveSlipway.start(embedded=True)
    yield slipway
    slipway.stop()


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_hostile_requests_during_a_real_rollout(server, tmp_path):
    """200 hostile requests (bad tokens, huge and negative ids, deep JSON, wrong types, 1 MB bodies), sent together
    while eight real agents roll out a release: the rollout succeeds, each hostile request gets its 4xx, and
    neither the agents nor the server saw a 5xx."""
    from tests.environments.test_rollout_agents import shop_running_v1

    app, env, key = shop_running_v1()
    fleet = {"url": server.url, "key": key}
    agents = []
    try:
        for n in range(1, 9):
            agents.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "environments.agent",
                        "--url",
                        server.url,
                        "--registration-token",
                        "slr_test_token",
                        "--name",
                        f"web-{n}",
                        "--workdir",
                        str(tmp_path / f"web-{n}"),
                        "--deploy-command",
                        "sleep 0.5; " + DEPLOY,
                        "--health-command",
                        HEALTH,
                        "--heartbeat-seconds",
                        "1",
                        "--poll-wait",
                        "2",
                    ],
                    cwd=ROOT,
                    stdout=(tmp_path / f"web-{n}.log").open("wb"),
                    stderr=subprocess.STDOUT,
                )
            )
        wait_for(lambda: Target.objects.filter(environment=env).count() == 8, what="8 agents registered")
        real_key = wait_for(
            lambda: (
                (tmp_path / "web-1" / "agent.json").exists()
                and json.loads((tmp_path / "web-1" / "agent.json").read_text())["agent_token"]
            ),
            what="web-1's token",
        )
        catalogue = hostile_requests(real_key)
        requests = [catalogue[n % len(catalogue)] for n in range(200)]

        factories.ArtifactFactory(application=app, version="2.0.0")
        started = time.monotonic()
        status, release = api(
            fleet, "POST", "/applications/shop/releases/", {"environment": "production", "version": "2.0.0"}
        )
        assert status == 201, release
        answers = asyncio.run(
            send_all(server.url, requests, spread=0.01)
        )  # 2 s of fire; the rollout's 4 waves take longer
        final = wait_for(
            lambda: (
                (r := api(fleet, "GET", f"/applications/shop/releases/{release['id']}/")[1])["status"]
                in ("succeeded", "failed")
                and r
            ),
            timeout=30,
            what="the rollout to finish",
        )
        elapsed = time.monotonic() - started
    finally:
        for agent in agents:
            agent.terminate()
        for agent in agents:
            try:
                agent.wait(timeout=10)
            except subprocess.TimeoutExpired:
                agent.kill()

    check_answers(requests, answers)
    assert final["status"] == "succeeded", final
    deploys = RolloutStep.objects.filter(rollout__release_id=release["id"], action="deploy")
    assert sorted(deploys.values_list("target_name", flat=True)) == [f"web-{n}" for n in range(1, 9)]
    assert set(Target.objects.filter(environment=env).values_list("version", flat=True)) == {"2.0.0"}
    # The agents saw no 5xx (they log every one, and every report retry) ...
    for n in range(1, 9):
        output = (tmp_path / f"web-{n}.log").read_text()
        assert not re.search(r"answered 5\d\d|reporting the result failed|report refused", output), output[
            -2000:
        ]
    # ... and the server answered none: no failed broker round, no refusal with a 5xx, no traceback.
    log = server.log_path.read_text()
    assert not re.search(
        r"refused \(5\d\d\)|broker round failed|could not (store|hand out)|Internal Server Error"
        r"|Traceback",
        log,
    ), log[-3000:]
    assert elapsed < 30


@pytest.mark.parametrize(
    "header, key",
    [
        ("Bearer sla_abc", "sla_abc"),
        ("bearer  sla_abc ", "sla_abc"),
        ("Token sla_abc", ""),
        ("", ""),
        ("Bearer " + "k" * 200, "k" * 200),
        ("Bearer " + "k" * 201, ""),  # longer than any agent token: unknown without a query
    ],
)
def test_both_agent_route_families_read_the_token_with_one_rule(header, key):
    from environments import agent_api, jobs

    assert jobs.agent_key(header) == key
    assert agent_api.agent_key is agent_asgi.agent_key is jobs.agent_key
    assert not hasattr(agent_asgi, "MAX_KEY") and not hasattr(agent_asgi, "MAX_BODY")

"""Agents keep working when a web process goes away: they are given every process's URL and move to the next."""

import pytest

from environments.models import Target
from tests.environments.test_rollout_agents import (
    DEPLOY,
    HEALTH,
    api,
    release_and_wait,
    shop_running_v1,
    wait_for,
)
from tests.live import LiveSlipway, free_port, start_agent

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_agents_fail_over_between_two_live_servers(tmp_path):
    first, second = LiveSlipway.start(embedded=True), LiveSlipway.start(embedded=True)
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens here
    agents = []
    try:
        app, env, key = shop_running_v1()
        urls = {
            "web-1": f"{first.url},{second.url}",
            "web-2": f"{first.url},{second.url}",
            "web-3": f"{dead},{first.url},{second.url}",
        }  # its first URL never answers
        for name, url in urls.items():
            agents.append(
                start_agent(url, name, tmp_path, "--deploy-command", DEPLOY, "--health-command", HEALTH)
            )
        wait_for(lambda: Target.objects.filter(environment=env).count() == 3, what="3 agents registered")
        fleet = {"app": app, "url": first.url, "key": key}
        assert release_and_wait(fleet, "2.0.0")["status"] == "succeeded"

        first.stop()  # one web process is gone: the agents move to the other
        fleet["url"] = second.url
        release = release_and_wait(fleet, "3.0.0")
        assert release["status"] == "succeeded", release
        targets = api(fleet, "GET", "/applications/shop/environments/production/targets/")[1]
        assert {t["name"]: t["version"] for t in targets} == {
            "web-1": "3.0.0",
            "web-2": "3.0.0",
            "web-3": "3.0.0",
        }
        assert all((tmp_path / n / "current_version").read_text().strip() == "3.0.0" for n in urls)
        assert "moving to" in (tmp_path / "web-3.log").read_text()  # it said what it did
    finally:
        for agent in agents:
            agent.terminate()
        for agent in agents:
            agent.wait(timeout=10)
        first.stop()
        second.stop()

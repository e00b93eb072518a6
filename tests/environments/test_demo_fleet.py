"""The demo's fleet starts coherent with the demo's history: every host runs what production is said to run."""

import json

import pytest
from django.core.management import call_command

from environments.demo import fleet


@pytest.mark.django_db
def test_first_start_seeds_each_host_with_the_version_production_runs(tmp_path, settings):
    settings.DATA_DIR = str(tmp_path)
    call_command("load_demo")
    key, version = fleet._registration_key()
    assert key.startswith("slr_demo_") and version == "1.1.0"  # the demo's production history

    state = fleet.seed_host(tmp_path / "web-1", version)
    assert json.loads(state.read_text()) == {"version": "1.1.0"}  # the service answers as 1.1.0
    agent = json.loads((tmp_path / "web-1" / "agent.json").read_text())
    assert agent["version"] == "1.1.0" and agent["agent_token"] is None  # its first heartbeat says 1.1.0

    (tmp_path / "web-1" / "agent.json").write_text(
        json.dumps({"agent_token": "t", "version": "1.4.0", "job": 7})
    )
    fleet.seed_host(tmp_path / "web-1", version)  # a later start keeps what the host really runs
    assert json.loads((tmp_path / "web-1" / "agent.json").read_text())["version"] == "1.4.0"

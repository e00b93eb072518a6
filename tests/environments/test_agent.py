"""The agent's own pieces, without a server: configuration, and the built-in tarball format."""

import hashlib
import io
import json
import tarfile
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from environments.agent.__main__ import Agent, parse_args


def test_config_file_and_flags(tmp_path):
    config = tmp_path / "agent.toml"
    config.write_text(
        'url = "http://slipway.example"\nname = "web-7"\nworkdir = "/tmp/w"\n'
        'deploy_command = "./deploy.sh"\nhealth_url = "http://127.0.0.1:8080/health"\n'
    )
    values = parse_args(["--config", str(config), "--name", "web-8"])
    assert values["url"] == "http://slipway.example" and values["name"] == "web-8"  # flags win
    assert values["health_url"].endswith("/health") and values["heartbeat_seconds"] == 5.0
    with pytest.raises(SystemExit):
        parse_args(["--name", "x"])  # no url, no workdir


def tarball(files: dict[str, bytes], evil: bool = False) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(("../" if evil else "") + name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def served(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def job(served, version, data):
    root, url = served
    (root / f"{version}.tar.gz").write_bytes(data)
    return {
        "id": 1,
        "action": "deploy",
        "version": version,
        "previous_version": None,
        "artifact_url": f"{url}/{version}.tar.gz",
        "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
    }


def test_tarball_format_switches_current_keeps_five_and_checks_digests(tmp_path, served):
    agent = Agent({"url": "http://unused", "workdir": str(tmp_path / "agent"), "name": "web-1"})
    for n in range(1, 8):
        ok, _, output = agent.install_tarball(
            job(served, f"1.{n}.0", tarball({"VERSION": f"1.{n}.0".encode()}))
        )
        assert ok, output
        assert (agent.workdir / "current" / "VERSION").read_text() == f"1.{n}.0"
    kept = sorted(p.name for p in (agent.workdir / "versions").iterdir())
    assert len(kept) == 5 and "1.7.0" in kept
    # A revert is a symlink switch to a version still on disk.
    ok, _, _ = agent.install_tarball({"version": "1.6.0", "previous_version": "1.7.0"})
    assert ok and (agent.workdir / "current" / "VERSION").read_text() == "1.6.0"
    bad = job(served, "2.0.0", tarball({"VERSION": b"2.0.0"}))
    bad["digest"] = "sha256:" + "0" * 64
    ok, _, output = agent.install_tarball(bad)
    assert not ok and "digest mismatch" in output
    assert (agent.workdir / "current" / "VERSION").read_text() == "1.6.0"  # unchanged
    ok, _, output = agent.install_tarball(job(served, "2.0.1", tarball({"x": b"x"}, evil=True)))
    assert not ok and (agent.workdir / "current" / "VERSION").read_text() == "1.6.0"


@pytest.fixture
def busy_slipway():
    """A stand-in Slipway answering the result route with the statuses queued in `answers` (then 200)."""
    from http.server import BaseHTTPRequestHandler

    answers, seen = [], []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            seen.append((self.path, self.rfile.read(int(self.headers["Content-Length"]))))
            status = answers.pop(0) if answers else 200
            body = b'{"ok": true}' if status == 200 else b'{"detail": "busy"}'
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield answers, seen, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_result_is_reported_again_while_slipway_is_busy(busy_slipway, tmp_path):
    answers, seen, url = busy_slipway
    answers.extend([503, 503])
    agent = Agent({"url": url, "workdir": str(tmp_path), "name": "web-1"})
    agent.token = "sla_x"
    assert agent.report(7, {"status": "succeeded", "health": {"ok": True}}) is True
    assert [path for path, _ in seen] == ["/api/v1/agent/jobs/7/result"] * 3


def test_a_refused_result_is_not_retried_and_a_lasting_outage_is_given_up(
    busy_slipway, tmp_path, monkeypatch
):
    import environments.agent.__main__ as agent_module

    answers, seen, url = busy_slipway
    agent = Agent({"url": url, "workdir": str(tmp_path), "name": "web-1"})
    agent.token = "sla_x"
    answers.append(409)
    assert agent.report(7, {"status": "succeeded"}) is False and len(seen) == 1  # 4xx: retrying cannot help
    monkeypatch.setattr(agent_module, "REPORT_RETRY_SECONDS", 0.6)
    answers.extend([503] * 10)
    assert agent.report(8, {"status": "succeeded"}) is False
    assert 2 <= len(seen) - 1 <= 3  # tried again within the limit, then gave up


def test_agent_stops_at_once_when_told_while_waiting_for_work(tmp_path):
    """SIGTERM during a long-poll ends the agent now (the demo fleet stops with `make run`), not when the poll
    times out."""
    import signal
    import socket
    import subprocess
    import sys

    from tests.live import ROOT

    silent = socket.create_server(
        ("127.0.0.1", 0)
    )  # accepts connections, never answers: a long-poll that waits
    silent.settimeout(15)
    (tmp_path / "agent.json").write_text(json.dumps({"agent_token": "sla_test", "version": None}))
    agent = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "environments.agent",
            "--url",
            f"http://127.0.0.1:{silent.getsockname()[1]}",
            "--workdir",
            str(tmp_path),
            "--deploy-command",
            "true",
            "--poll-wait",
            "20",
        ],
        cwd=ROOT,
        stderr=subprocess.PIPE,
    )
    try:
        connection, _ = silent.accept()  # the agent is inside its long-poll now
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=5) == 0  # its poll would have waited 20 s
        assert b"Traceback" not in agent.stderr.read()
        connection.close()
    finally:
        agent.kill()
        silent.close()


def test_between_jobs_the_agent_probes_its_health_and_sends_it_with_its_heartbeats(busy_slipway, tmp_path):
    """Every health_probe_seconds while idle: one ask of the health check, its latency and result with the version
    the host runs, delivered in the next heartbeat's `health` (kept for the next one when Slipway is busy). A host
    that has never deployed, or is running a job, is not probed."""
    answers, seen, url = busy_slipway
    flag = tmp_path / "healthy"
    flag.write_text("yes")
    agent = Agent(
        {
            "url": url,
            "workdir": str(tmp_path / "agent"),
            "name": "web-1",
            "health_command": f"test -f {flag}",
            "health_timeout": 5,
            "heartbeat_seconds": 0.3,
            "health_probe_seconds": 0.1,
        }
    )
    agent.token = "sla_x"
    threading.Thread(target=agent.heartbeats, daemon=True).start()
    threading.Thread(target=agent.health_probes, daemon=True).start()
    try:
        time.sleep(0.5)
        assert all("health" not in json.loads(body) for _, body in seen)  # no version yet: nothing to label
        answers.extend([503, 503])
        before = len(seen)
        agent.version = "1.4.0"  # the next two heartbeats fail: their probes wait for the one after
        time.sleep(1.6)
        flag.unlink()
        time.sleep(0.8)
        agent.busy = True  # a job under way: no probes
        time.sleep(0.5)
        count_busy = len(agent.probes)
    finally:
        agent.stopping.set()
    bodies = [json.loads(body) for _, body in seen[before:]]
    probes = [p for b in bodies[2:] for p in b.get("health", [])]
    refused = [p["latency_ms"] for b in bodies[:2] for p in b.get("health", [])]
    assert refused and set(refused) <= {p["latency_ms"] for p in probes}  # sent again, none lost
    assert {p["version"] for p in probes} == {"1.4.0"}
    assert {p["ok"] for p in probes} == {True, False}  # it passed, then failed once the flag was gone
    assert all(0 <= p["latency_ms"] < 5000 and 0 <= p["age_seconds"] < 5 for p in probes)
    assert len(probes) >= 10 and count_busy == 0

"""A rollback of `make run`'s demo fleet, end to end: the embedded runtime (SQLite, in-process worker) with its eight
real agent processes and eight demo web services. Timed from the rollback request until every demo service
answers its /health as healthy on the version rolled back to (goal: under 5 s).

Its baseline, measured in the same run the same way: a normal forward release of a new build to the same fleet,
which deploys cautiously (waves of 1, 2, 4 and 1 hosts, each gated on health). CI registers the build and staging
(no targets) takes it, untimed; the clock starts at the production release request (the demo's production needs
approvals: the release is forced through by the admin at once, that call inside the figure) and stops when every
demo service answers /health as healthy on the new version. Forward releases and rollbacks alternate, RUNS of each,
so both see the same machine; the ratio is rollback / cautious, medians.

The demo's deploy command takes about 0.3 s by itself (it prints three lines 0.1 s apart) and each deploy starts a
Python process; that is inside the figure, as a user watching the demo would see it.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from ops.common import call_json as call  # noqa: E402

RUNS = int(os.environ.get("BENCH_ROLLBACK_RUNS", 5))
HOSTS = [f"http://127.0.0.1:{9101 + n}/health" for n in range(8)]


def serving(version: str) -> bool:
    for url in HOSTS:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                answer = json.loads(response.read())
        except (OSError, ValueError):
            return False
        if answer != {"version": version, "healthy": True}:
            return False
    return True


def wait(predicate, timeout: float, what: str, every: float = 0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if value := predicate():
                return value
        except OSError:  # not listening yet
            pass
        time.sleep(every)
    raise TimeoutError(what)


def finished(api: str, key: str, release_id: int, what: str) -> None:
    """Waits for the release to end, and asserts it succeeded: the next measurement starts from a quiet fleet."""
    wait(
        lambda: (
            call(api + f"/releases/{release_id}/", key)[1]["status"] in ("succeeded", "failed", "cancelled")
        ),
        60,
        f"{what} finished",
        0.05,
    )
    status, body = call(api + f"/releases/{release_id}/", key)
    assert body["status"] == "succeeded", (what, body)


def stage(api: str, key: str, version: str) -> None:
    """What comes before a production release: CI registers the build (with a change, as CI sends them) and staging,
    which has no targets, takes it."""
    status, body = call(
        api + "/artifacts/",
        key,
        "POST",
        {
            "version": version,
            "commit": hashlib.sha1(f"commit {version}".encode()).hexdigest(),
            "image": f"registry.example.com/shop@sha256:{hashlib.sha256(version.encode()).hexdigest()}",
            "changes": [
                {
                    "sha": hashlib.sha1(f"change {version}".encode()).hexdigest(),
                    "author": "carol",
                    "title": f"Bench change for {version}",
                }
            ],
        },
    )
    assert status == 201, (status, body)
    status, body = call(api + "/releases/", key, "POST", {"environment": "staging", "version": version})
    assert status in (201, 409), (status, body)  # 409: staging took it by itself (auto-promotion)
    wait(
        lambda: call(api + "/environments/staging/", key)[1]["current_version"] == version,
        30,
        f"{version} in staging",
        0.05,
    )


def main() -> int:
    data_dir = tempfile.mkdtemp(prefix="slipway-bench-demo-")
    env = {
        **os.environ,
        "SLIPWAY_DATA_DIR": data_dir,
        "SLIPWAY_DEMO_FLEET": "1",
        "LOG_LEVEL": "ERROR",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DATABASE_URL", None)
    manage = [sys.executable, "manage.py"]
    for command in (["migrate", "--noinput", "-v", "0"], ["load_demo"], ["ensure_admin"]):
        subprocess.run(manage + command, cwd=ROOT, env=env, check=True, capture_output=True)
    key = subprocess.run(
        manage + ["create_api_token", "--user", "admin", "--scope", "admin", "--name", "bench"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()[-1]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(Path(data_dir) / "serve.log", "wb")  # noqa: SIM115
    server = subprocess.Popen(
        manage + ["serve", "--port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    api = f"http://127.0.0.1:{port}/api/v1/applications/shop"
    try:
        wait(lambda: call(api + "/environments/production/targets/", key)[0] == 200, 60, "server up", 0.2)
        wait(
            lambda: (
                [t["status"] for t in call(api + "/environments/production/targets/", key)[1]]
                == ["online"] * 8
            ),
            60,
            "eight demo agents online",
            0.2,
        )
        # The demo's production runs 1.1.0 and 1.3.0 waits for approvals: force it through to have two versions.
        status, page = call(api + "/releases/?environment=production&status=pending_approval", key)
        release = next(r for r in page["results"] if r["version"] == "1.3.0")
        status, body = call(api + f"/releases/{release['id']}/force/", key, "POST", {"reason": "bench"})
        assert status in (200, 201, 202), (status, body)
        wait(
            lambda: (
                serving("1.3.0")
                and call(api + f"/releases/{release['id']}/", key)[1]["status"] == "succeeded"
            ),
            120,
            "1.3.0 on the fleet",
            0.1,
        )
        cautious, figures = [], []
        for n in range(RUNS):
            # Forward: a new build, released the normal way, goes out in cautious waves.
            version = f"1.5.{n}"
            stage(api, key, version)
            started = time.perf_counter()
            # (The demo's production judges a canary for 40 s; this figure is the cautious waves', as it always was.)
            status, body = call(
                api + "/releases/",
                key,
                "POST",
                {"environment": "production", "version": version, "strategy": {"kind": "cautious"}},
            )
            assert status == 201, (status, body)
            if body["status"] == "pending_approval":
                status, body = call(api + f"/releases/{body['id']}/force/", key, "POST", {"reason": "bench"})
                assert status == 200, (status, body)
            wait(lambda v=version: serving(v), 120, f"fleet healthy on {version}")
            cautious.append(time.perf_counter() - started)
            finished(api, key, body["id"], "cautious release")
            steps = call(api + f"/releases/{body['id']}/rollout/", key)[1]["steps"]
            deploys = [s["wave"] for s in steps if s["action"] == "deploy"]
            waves = [deploys.count(w) for w in sorted(set(deploys))]
            actions = sorted({s["action"] for s in steps})
            assert waves == [1, 2, 4, 1] and "revert" not in actions, (
                "not a cautious rollout",
                waves,
                actions,
            )

            # Back: the fast path, every host at once.
            version = "1.3.0"
            started = time.perf_counter()
            status, body = call(
                api + "/environments/production/rollback/",
                key,
                "POST",
                {"version": version, "reason": "bench"},
            )
            assert status == 201, (status, body)
            wait(lambda v=version: serving(v), 60, f"fleet healthy on {version}")
            figures.append(time.perf_counter() - started)
            finished(api, key, body["id"], "rollback release")
        print(f"bench: rollouts.demo_fleet_cautious_s {statistics.median(cautious):.2f} s")
        print(f"bench: rollouts.demo_fleet_cautious_max_s {max(cautious):.2f} s")
        print(f"bench: rollouts.demo_fleet_rollback_s {statistics.median(figures):.2f} s")
        print(f"bench: rollouts.demo_fleet_rollback_max_s {max(figures):.2f} s")
        ratio = statistics.median(figures) / statistics.median(cautious)
        print(f"bench: rollouts.demo_fleet_rollback_vs_cautious {ratio:.2f} x")
    finally:
        server.terminate()
        server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())

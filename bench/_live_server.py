"""The server side of bench/live.py: uvicorn serving `config.asgi:application` in this process, plus a driver thread
that commits a rollout's steps one by one and publishes each through the engine's own hook (so the in-memory
channel layer of the embedded runtime is the one the consumers read).

Protocol on stdin/stdout, one JSON line each: it prints {"release": …, "session": …, "port": …} once serving;
then each `go <pace>` line runs STEPS steps `pace` seconds apart and prints {"commits": [t0, t1, …]} (each step's
commit time, time.time()), after resetting the steps to pending.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
STEPS = int(os.environ.get("BENCH_LIVE_STEPS", 200))


def setup() -> dict:
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.test import Client

    from environments.models import Environment
    from releases.models import Application, Artifact, Release, Rollout, RolloutStep

    call_command("migrate", verbosity=0)
    app = Application.objects.create(slug="bench", name="Bench")
    env = Environment.objects.create(application=app, name="production", position=1)
    v1 = Artifact.objects.create(application=app, version="1.0.0", commit="a" * 40, image="x", metadata={})
    v2 = Artifact.objects.create(application=app, version="2.0.0", commit="b" * 40, image="y", metadata={})
    release = Release.objects.create(
        application=app, environment=env, artifact=v2, previous_artifact=v1, status="deploying"
    )
    targets = [f"t{n:03d}" for n in range(STEPS)]
    rollout = Rollout.objects.create(
        release=release, targets=targets, status="running", strategy={"kind": "rolling", "batch_size": 1}
    )
    RolloutStep.objects.bulk_create(
        RolloutStep(rollout=rollout, index=n, wave=n + 1, target_name=name, action="deploy", version="2.0.0")
        for n, name in enumerate(targets)
    )
    viewer = User.objects.create_superuser("viewer", password=None)
    client = Client()
    client.force_login(viewer)
    return {"release": release.pk, "rollout": rollout.pk, "session": client.cookies["sessionid"].value}


def drive(rollout_id: int, pace: float) -> list[float]:
    from django.db import transaction
    from django.utils import timezone

    from releases.models import RolloutStep
    from releases.rollouts.common import publish_changed

    RolloutStep.objects.filter(rollout_id=rollout_id).update(status="pending", finished_at=None)
    steps = list(
        RolloutStep.objects.filter(rollout_id=rollout_id).order_by("index").values_list("pk", flat=True)
    )
    commits: list[float] = []
    for pk in steps:
        with transaction.atomic():
            RolloutStep.objects.filter(pk=pk).update(status="succeeded", finished_at=timezone.now())
            transaction.on_commit(lambda: commits.append(time.time()))  # runs first: the commit's time
            publish_changed(rollout_id)
        time.sleep(pace)
    return commits


def main() -> None:
    import uvicorn

    facts = setup()
    port = int(os.environ["BENCH_LIVE_PORT"])
    config = uvicorn.Config(
        "config.asgi:application", host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)

    def commands() -> None:
        while not server.started:
            time.sleep(0.05)
        print(json.dumps({**facts, "port": port}), flush=True)
        for line in sys.stdin:
            word, _, arg = line.strip().partition(" ")
            if word == "go":
                print(json.dumps({"commits": drive(facts["rollout"], float(arg or 0.1))}), flush=True)
            elif word == "quit":
                break
        server.should_exit = True

    threading.Thread(target=commands, daemon=True).start()
    server.run()


if __name__ == "__main__":
    main()

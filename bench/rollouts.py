"""Rollout engine figures, measured in-process (the reconciler and the agent API's own views, called through
Django's test client — no sockets, no Celery hop), on SQLite (embedded) and on PostgreSQL.

Not measured here yet: the same through a real HTTP server with one asyncio process simulating 1000 agents,
and a rollback of the 8-host demo fleet end to end.
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGETS = 1000


def run(database: str) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client

    from environments.models import Environment, Target
    from releases.models import ApiToken, Application, Artifact, Release, RolloutStep
    from releases.rollouts import do_advance_rollout, start_rollout

    call_command("migrate", verbosity=0)
    app = Application.objects.create(slug="bench", name="Bench")
    env = Environment.objects.create(application=app, name="production", position=1, strategy={"kind": "cautious"})
    v1 = Artifact.objects.create(application=app, version="1.0.0", commit="a" * 40, image="x", metadata={})
    v2 = Artifact.objects.create(application=app, version="2.0.0", commit="b" * 40, image="y", metadata={})
    client = Client()
    from django.utils import timezone

    Target.objects.bulk_create([Target(environment=env, name=f"t{n:04d}", token_hash=ApiToken.hash_key(f"k{n}"),
                                       last_seen=timezone.now()) for n in range(TARGETS)])
    keys = {f"t{n:04d}": f"k{n}" for n in range(TARGETS)}

    def agents_report(rollout, healthy=lambda name: True) -> int:
        """Every pending job is taken and reported, as agents would, through the agent API's views."""
        done = 0
        for step in list(RolloutStep.objects.filter(rollout=rollout, status="pending")):
            RolloutStep.objects.filter(pk=step.pk).update(status="running", started_at=timezone.now())
            ok = healthy(step.target_name)
            client.post(f"/api/v1/agent/jobs/{step.pk}/result",
                        {"status": "succeeded", "health": {"ok": ok, "detail": "bench"}, "version": step.version},
                        content_type="application/json", headers={"Authorization": f"Bearer {keys[step.target_name]}"})
            done += 1
        return done

    def new_release(artifact, previous=v1):
        release = Release.objects.create(application=app, environment=env, artifact=artifact,
                                         previous_artifact=previous, status="deploying")
        return release

    # 1. Engine overhead: a 1000-target cautious rollout with instant deploys.
    release = new_release(v2)
    started = time.perf_counter()
    rollout = start_rollout(release)
    while do_advance_rollout(rollout.pk) == "running":
        if not agents_report(rollout):
            break
    total = time.perf_counter() - started
    rollout.refresh_from_db()
    assert rollout.status == "succeeded", rollout.status
    print(f"bench: rollouts.cautious_1000_total_s.{database} {total:.2f} s")
    print(f"bench: rollouts.cautious_1000_per_target_ms.{database} {total / TARGETS * 1000:.2f} ms")

    # 2. Failed health report -> revert dispatched (50 runs, 4 targets each).
    Target.objects.exclude(name__in=["t0000", "t0001", "t0002", "t0003"]).delete()
    latencies = []
    for _ in range(50):
        release = new_release(v2)
        rollout = start_rollout(release)
        do_advance_rollout(rollout.pk)
        step = RolloutStep.objects.get(rollout=rollout, status="pending")
        RolloutStep.objects.filter(pk=step.pk).update(status="running", started_at=timezone.now())
        t0 = time.perf_counter()
        client.post(f"/api/v1/agent/jobs/{step.pk}/result", {"status": "succeeded", "health": {"ok": False}},
                    content_type="application/json", headers={"Authorization": f"Bearer {keys[step.target_name]}"})
        do_advance_rollout(rollout.pk)
        assert RolloutStep.objects.filter(rollout=rollout, action="revert").exists()
        latencies.append(time.perf_counter() - t0)
        RolloutStep.objects.filter(rollout=rollout, status="pending").update(status="succeeded")
        do_advance_rollout(rollout.pk)
    q = statistics.quantiles(latencies, n=20)
    print(f"bench: rollouts.revert_dispatch_p50_ms.{database} {statistics.median(latencies) * 1000:.1f} ms")
    print(f"bench: rollouts.revert_dispatch_p95_ms.{database} {q[18] * 1000:.1f} ms")

    # 3. Queued (approved) release -> first deploy step dispatched.
    from releases.dispatch import release_queued

    latencies = []
    for n in range(20):
        artifact = Artifact.objects.create(application=app, version=f"3.{n}", commit="c" * 40, image="z", metadata={})
        release = Release.objects.create(application=app, environment=env, artifact=artifact, previous_artifact=v1,
                                         status="queued")
        t0 = time.perf_counter()
        release_queued(release.pk)
        do_advance_rollout(release.rollout.pk)
        assert RolloutStep.objects.filter(rollout=release.rollout, action="deploy").exists()
        latencies.append(time.perf_counter() - t0)
        Release.objects.filter(pk=release.pk).update(status="failed")
        release.rollout.__class__.objects.filter(pk=release.rollout.pk).update(status="cancelled")
    print(f"bench: rollouts.queued_to_first_deploy_ms.{database} {statistics.median(latencies) * 1000:.1f} ms")


def main() -> int:
    if len(sys.argv) > 1:
        run(sys.argv[1])
        return 0
    base = {**os.environ, "SLIPWAY_DATA_DIR": tempfile.mkdtemp(prefix="slipway-bench-"), "SLIPWAY_DEMO_FLEET": "0",
            "LOG_LEVEL": "ERROR"}
    base.pop("DATABASE_URL", None)
    subprocess.run([sys.executable, __file__, "sqlite"], env=base, check=True)
    db = "slipway_bench_rollouts"
    for sql in (f"DROP DATABASE IF EXISTS {db}", f"CREATE DATABASE {db}"):
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", sql], check=True, capture_output=True)
    subprocess.run([sys.executable, __file__, "postgres"], check=True,
                   env={**base, "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{db}"})
    return 0


if __name__ == "__main__":
    sys.exit(main())

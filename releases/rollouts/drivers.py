"""Steps Slipway performs itself (gates, the command and webhook drivers), run by a worker outside transactions."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from environments.models import Target
from releases.models import RolloutStep
from releases.rollouts.commands import _run_command, call_webhook
from releases.rollouts.common import publish_changed
from releases.rollouts.gates import GATES, HOLD

SERVER_PARALLEL = 8  # deploys the command and webhook drivers run at once (a wave or a rollback batch)


def lease_seconds() -> float:
    """How long a worker's claim on a step it runs lasts without renewal (renewed every third of it)."""
    return float(getattr(settings, "SLIPWAY_STEP_LEASE_SECONDS", 5))


class _Lease:
    """Renews the lease of the steps a worker runs, from a thread of its own, until the block ends.

    A worker that dies (`kill -9`, a lost host) stops renewing: once the lease lapses the reconciler hands the step
    to another worker (`liveness._take_over`), within seconds instead of the step timeout.
    """

    def __init__(self, step_ids: list[int]) -> None:
        self.step_ids = step_ids
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.renew, name="slipway-lease", daemon=True)

    def renew(self) -> None:
        try:
            while not self.stop.wait(lease_seconds() / 3):
                RolloutStep.objects.filter(pk__in=self.step_ids, status=RolloutStep.Status.RUNNING).update(
                    lease_expires_at=timezone.now() + timedelta(seconds=lease_seconds())
                )
        finally:
            connection.close()

    def __enter__(self) -> _Lease:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


def run_server_steps(rollout_id: int) -> int:
    """Run the steps Slipway itself performs (gates, the command and webhook drivers) — outside any transaction.

    The pending steps are claimed under row locks (`SKIP LOCKED`: two workers never run the same one) and marked
    running, then run: a gate alone, a wave's deploys side by side in threads that only run commands or make
    HTTP calls (the results are written here, on this thread's connection).
    """
    ran = 0
    pending = RolloutStep.objects.filter(
        rollout_id=rollout_id, runs_on_server=True, status=RolloutStep.Status.PENDING
    )
    while pending.exists():  # usually none (the agent driver): a cheap look before the locking, joining read
        with transaction.atomic():
            steps = list(
                pending.select_for_update(skip_locked=True, of=("self",))
                .select_related(
                    "rollout__release__environment",
                    "rollout__release__artifact",
                    "rollout__release__previous_artifact",
                    "rollout__release__application",
                )
                .order_by("index")[:SERVER_PARALLEL]
            )
            if not steps:
                return ran  # another worker has them
            now = timezone.now()
            RolloutStep.objects.filter(pk__in=[s.pk for s in steps]).update(
                status=RolloutStep.Status.RUNNING,
                started_at=now,
                attempts=F("attempts") + 1,
                lease_expires_at=now + timedelta(seconds=lease_seconds()),
            )
        publish_changed(rollout_id)
        with _Lease([s.pk for s in steps]):
            if len(steps) == 1:
                outcomes = [_perform(steps[0])]
            else:
                with ThreadPoolExecutor(len(steps), thread_name_prefix="slipway-step") as pool:
                    outcomes = list(pool.map(_perform, steps))
        for step, fields in zip(steps, outcomes, strict=True):
            fields["output"] = (step.output + fields["output"])[
                -RolloutStep.OUTPUT_LIMIT :
            ]  # after any earlier start
            fields["lease_expires_at"] = None  # done here, or handed to a webhook receiver that calls back
            if "status" in fields:
                fields["finished_at"] = timezone.now()
            RolloutStep.objects.filter(pk=step.pk, status=RolloutStep.Status.RUNNING).update(**fields)
            if fields.get("status") == RolloutStep.Status.SUCCEEDED and step.target_id:
                Target.objects.filter(pk=step.target_id).update(version=step.version)
        publish_changed(rollout_id)
        ran += len(steps)
    return ran


def _perform(step: RolloutStep) -> dict:
    """Run one server-side step; returns the fields to store — without `status` when the step goes on elsewhere
    (a webhook receiver took it and will call back)."""
    environment = step.rollout.release.environment
    if step.action in GATES:
        ok, output = GATES[step.action](step)
        if ok is HOLD:  # neither pass nor fail: the reconciler pauses the rollout for a person
            return {
                "status": RolloutStep.Status.SUCCEEDED,
                "output": output,
                "health": {"ok": None, "detail": output.partition("\n")[0][:500]},
            }
        return {"status": RolloutStep.Status.SUCCEEDED if ok else RolloutStep.Status.FAILED, "output": output}
    if environment.driver == "webhook":
        ok, output = call_webhook(step)
        if ok:  # the receiver took the job: the step finishes with its signed callback
            return {"output": output}
        return {
            "status": RolloutStep.Status.FAILED,
            "output": output,
            "health": {"ok": False, "detail": output[:500]},
        }
    ok, output = _run_command(environment.deploy_command, step, environment.step_timeout_seconds)
    return {
        "status": RolloutStep.Status.SUCCEEDED if ok else RolloutStep.Status.FAILED,
        "output": output,
        "health": {"ok": ok, "detail": "exit 0" if ok else "command failed"},
    }

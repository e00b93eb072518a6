"""Steps Slipway performs itself (gates, the command and webhook drivers), run by a worker outside transactions."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from environments.models import Target
from releases.models import RolloutStep
from releases.rollouts.commands import _run_command, call_webhook
from releases.rollouts.common import publish_changed
from releases.rollouts.gates import GATES

SERVER_PARALLEL = 8  # deploys the command and webhook drivers run at once (a wave or a rollback batch)


def run_server_steps(rollout_id: int) -> int:
    """Run the steps Slipway itself performs (gates, the command and webhook drivers) — outside any transaction.

    The pending steps are claimed under row locks (`SKIP LOCKED`: two workers never run the same one) and marked
    running, then run: a gate alone, a wave's deploys side by side in threads that only run commands or make
    HTTP calls (the results are written here, on this thread's connection).
    """
    ran = 0
    pending = RolloutStep.objects.filter(rollout_id=rollout_id, runs_on_server=True, status=RolloutStep.Status.PENDING)
    while pending.exists():  # usually none (the agent driver): a cheap look before the locking, joining read
        with transaction.atomic():
            steps = list(pending.select_for_update(skip_locked=True, of=("self",))
                         .select_related("rollout__release__environment", "rollout__release__artifact",
                                         "rollout__release__previous_artifact", "rollout__release__application")
                         .order_by("index")[:SERVER_PARALLEL])
            if not steps:
                return ran  # another worker has them
            now = timezone.now()
            RolloutStep.objects.filter(pk__in=[s.pk for s in steps]).update(status=RolloutStep.Status.RUNNING,
                                                                            started_at=now)
        publish_changed(rollout_id)
        if len(steps) == 1:
            outcomes = [_perform(steps[0])]
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(len(steps), thread_name_prefix="slipway-step") as pool:
                outcomes = list(pool.map(_perform, steps))
        for step, fields in zip(steps, outcomes, strict=True):
            fields["output"] = fields["output"][-RolloutStep.OUTPUT_LIMIT:]
            if "status" in fields:
                fields["finished_at"] = timezone.now()
            RolloutStep.objects.filter(pk=step.pk).update(**fields)
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
        return {"status": RolloutStep.Status.SUCCEEDED if ok else RolloutStep.Status.FAILED, "output": output}
    if environment.driver == "webhook":
        ok, output = call_webhook(step)
        if ok:  # the receiver took the job: the step finishes with its signed callback
            return {"output": output}
        return {"status": RolloutStep.Status.FAILED, "output": output, "health": {"ok": False, "detail": output[:500]}}
    ok, output = _run_command(environment.deploy_command, step, environment.step_timeout_seconds)
    return {"status": RolloutStep.Status.SUCCEEDED if ok else RolloutStep.Status.FAILED, "output": output,
            "health": {"ok": ok, "detail": "exit 0" if ok else "command failed"}}

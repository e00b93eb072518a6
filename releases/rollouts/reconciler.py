"""The reconciler: start a rollout, then take every step it can take now, idempotently.

`do_advance_rollout` locks the rollout, folds finished steps into the planner's `Progress`, asks
`releases.planning.next_action` what to do, records it as steps (agents pick their jobs up), and stops when it
has to wait. Killing a worker at any moment is harmless: everything it knew is in the rows, and the next run
continues from them; a target's step exists once, so no target is deployed twice.

What a pass does is spread over modules a reader can take in at once: `folding` (a wave's reports into progress,
or its missing steps), `dispatching` (recording steps), `retries` (a rollback's hosts not reached), `liveness`
(stuck steps, silent agents). Imports run one way: reconciler → folding → retries → dispatching, liveness.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import connection, transaction
from django.utils import timezone

from environments.models import Environment, Target
from releases import audit
from releases.lifecycle import transition
from releases.models import Release, Rollout, RolloutStep
from releases.permissions import Actor
from releases.planning import (
    Analysis,
    BlueGreen,
    Deploy,
    Done,
    HealthCheck,
    ManualGate,
    Pause,
    PreDeploy,
    Progress,
    Retry,
    Revert,
    Smoke,
    Switch,
    Watch,
    next_action,
    record,
    slots,
    uses_blue_green,
)
from releases.rollouts.common import (
    ACTIVE,
    OPEN_STEP,
    enqueue_advance,
    is_rollback,
    plan_of,
    progress_from,
    progress_to,
    publish_changed,
)
from releases.rollouts.dispatching import gate_step, on_server, server_step
from releases.rollouts.drivers import run_server_steps
from releases.rollouts.folding import failed_meanwhile, fold_or_dispatch, fold_stragglers
from releases.rollouts.gates import _switched
from releases.rollouts.liveness import do_mark_offline_agents, fail_stuck
from releases.rollouts.retries import retry_hosts

__all__ = ["check_running_rollouts", "do_advance_rollout", "do_mark_offline_agents", "start_rollout"]


def start_rollout(release: Release) -> Rollout | None:
    """Inside the caller's transaction: a rollout for a queued release onto its environment's targets."""
    environment = release.environment
    targets = list(
        Target.objects.filter(environment=environment).order_by("name").values_list("name", flat=True)
    )
    if environment.driver in ("command", "webhook"):
        if not (environment.deploy_command if environment.driver == "command" else environment.webhook_url):
            return None
        targets = targets or ["default"]  # no hosts registered: the command or hook runs once
    if not targets:
        return None
    strategy = release.strategy or environment.strategy or {"kind": "cautious"}
    blue_green = uses_blue_green(strategy, len(targets))
    if release.kind == Release.Kind.ROLLBACK:
        if blue_green and _idle_slot_runs(environment, targets, release.artifact.version):
            strategy = {"kind": "blue_green", "live": environment.live_slot, "switch_back": True}
        else:
            strategy = {"kind": "rollback", "batch_size": environment.rollback_batch_size}
    elif blue_green:
        strategy = {**strategy, "live": environment.live_slot}
    rollout = Rollout.objects.create(
        release=release,
        strategy=strategy,
        targets=targets,
        progress=progress_to(Progress()),
        status=Rollout.Status.RUNNING,
    )
    enqueue_advance(rollout.pk)
    return rollout


def _idle_slot_runs(environment: Environment, targets: list[str], version: str) -> bool:
    """Blue/green: does the slot not serving traffic still run `version`? Then a rollback is just a switch."""
    idle = slots(targets)[BlueGreen(live=environment.live_slot).idle]  # type: ignore[arg-type]  # a choice field
    versions = set(
        Target.objects.filter(environment=environment, name__in=idle).values_list("version", flat=True)
    )
    return versions == {version}


def do_advance_rollout(rollout_id: int) -> str:
    """Take every step the rollout can take now; returns its status. Reruns are harmless."""
    for _ in range(100):  # bounded loops: gates resolve at once, deploys wait for agents
        this = _Pass()
        with transaction.atomic(), connection.execute_wrapper(this):
            rollout = (
                Rollout.objects.select_for_update(of=("self",))
                .select_related(
                    "release__environment",
                    "release__artifact",
                    "release__previous_artifact",
                    "release__application",
                )
                .get(pk=rollout_id)
            )
            if rollout.status not in ACTIVE:
                return rollout.status
            row = _row_state(rollout)
            # Folding a wave and dispatching the next happen under one lock, in one transaction.
            for _ in range(100):
                if not _advance_once(rollout, this) or rollout.status not in ACTIVE:
                    break
            # The row is written once, with what changed (a wave folded and the next dispatched: one UPDATE).
            changed = [
                name for name, before in zip(ROW, row, strict=True) if getattr(rollout, name) != before
            ]
            if changed:
                rollout.save(update_fields=changed)
            # The periodic check runs this for every active rollout every 2 s: watchers hear of changes only.
            if changed or this.wrote_steps:
                publish_changed(rollout.pk)
        if rollout.status not in ACTIVE or not this.server_steps or not run_server_steps(rollout_id):
            return rollout.status
    return rollout.status


ROW = ("status", "progress", "waiting_until", "finished_at")


def _row_state(rollout: Rollout) -> tuple:
    return tuple(getattr(rollout, name) for name in ROW)


_STEP_WRITES = tuple(
    f'{verb} "{RolloutStep._meta.db_table}"' for verb in ("INSERT INTO", "UPDATE", "DELETE FROM")
)


class _Pass:
    """What one reconciliation did, for what follows it. As the connection's execute wrapper it sees every statement:
    `wrote_steps` when one changed a step row (watchers are told; the periodic check changes nothing most of the
    time). `server_steps`: steps for the worker may be pending — open steps were seen (they may be the worker's),
    or this pass recorded some — so `run_server_steps` has to look; a pass that saw no open step and recorded only
    agents' steps skips that query."""

    def __init__(self) -> None:
        self.wrote_steps = False
        self.server_steps = False

    def __call__(self, execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if not self.wrote_steps and sql.startswith(_STEP_WRITES) and context["cursor"].rowcount != 0:
            self.wrote_steps = True
        return result


def _advance_once(rollout: Rollout, this: _Pass) -> bool:
    """One reconciliation: True when something changed and another look may move further. Changes the rollout in
    memory; `do_advance_rollout` writes it."""
    the_plan = plan_of(rollout)
    progress = progress_from(rollout.progress)
    open_steps = rollout.steps.filter(status__in=OPEN_STEP)
    waiting = open_steps.exists()
    this.server_steps |= waiting
    rollback = is_rollback(rollout)
    if waiting:
        if fail_stuck(rollout, open_steps):
            waiting = open_steps.exists()  # the last open steps may just have failed: fold them now
        if not progress.reverting and not rollback and failed_meanwhile(rollout, progress):
            progress = (
                progress.abort()
            )  # one host of a wave failed: revert now, not when the whole wave is done
    if progress.reverting and rollback:
        # A rollback a person stopped (cancel): nothing goes back to the version it rolls back from. Deploys not
        # started are skipped; once those under way have reported, it ends with each host on what it runs.
        fold_stragglers(rollout, progress)
        if not rollout.steps.filter(status__in=OPEN_STEP).exists():
            _finish(rollout, "reverted")
        return False
    if progress.reverting:
        progress = fold_stragglers(rollout, progress)
    action = next_action(the_plan, progress)
    if waiting and not isinstance(action, Revert):
        if progress.reverting and rollout.status != Rollout.Status.REVERTING:
            rollout.progress, rollout.status = progress_to(progress), Rollout.Status.REVERTING
        return False  # steps under way; their reports wake the reconciler
    now = timezone.now()
    if isinstance(action, Deploy | Revert | HealthCheck):
        this.server_steps |= on_server(rollout)  # the command and webhook drivers' deploys run on the worker
        progress, dispatched = fold_or_dispatch(rollout, action, progress)
        rollout.progress = progress_to(progress)
        if progress.reverting or progress.failed:
            rollout.status = Rollout.Status.REVERTING
        return not dispatched
    if isinstance(action, Pause):
        if rollout.waiting_until is None:
            rollout.waiting_until = now + timedelta(seconds=action.seconds)
            return False
        if now < rollout.waiting_until:
            return False
        rollout.waiting_until = None
        progress = record(progress, action)
    elif isinstance(action, ManualGate):
        rollout.status = Rollout.Status.PAUSED
        gate_step(rollout, action.wave, "manual_gate", ok=True, output="Waiting for a person to resume.")
        rollout.progress = progress_to(record(progress, action))  # resuming continues past the gate
        return False
    elif isinstance(action, PreDeploy | Smoke | Analysis | Switch | Watch):
        # Gates Slipway runs itself: a step for the worker, run outside the lock (run_server_steps), whose
        # result the next reconciliation folds in.
        name = "pre_deploy" if isinstance(action, PreDeploy) else action.name
        wave = None if isinstance(action, PreDeploy) else action.wave
        step = rollout.steps.filter(action=name, wave=wave).order_by("-index").first()
        if step is None:
            server_step(rollout, action=name, wave=wave)
            this.server_steps = True
            return False
        ok = step.status == RolloutStep.Status.SUCCEEDED
        if ok and isinstance(action, Switch):
            _switched(rollout)
        if ok and (step.health or {}).get("ok", False) is None:
            _hold(rollout, step)  # marginal or inconclusive: a person resumes (past the gate) or reverts
            rollout.progress = progress_to(record(progress, action))
            return False
        progress = record(progress, action, ok=ok)
    elif isinstance(action, Retry):
        before = (progress, rollout.status)
        progress, stop = retry_hosts(rollout, the_plan, action, progress)
        if (progress, rollout.status) != before:  # the periodic check looks every 2 s: write on change only
            rollout.progress = progress_to(progress)
        this.server_steps |= on_server(rollout)  # hosts tried again by the worker
        return not stop
    elif isinstance(action, Done):
        _finish(rollout, action.outcome)
        return False
    rollout.progress = progress_to(progress)
    return True


def _hold(rollout: Rollout, step: RolloutStep) -> None:
    """An analysis neither passed nor failed: the rollout pauses with the verdict's reasons on the step."""
    rollout.status = Rollout.Status.PAUSED
    release = rollout.release
    audit.record(
        Actor.system(),
        "rollout.held",
        release,
        application=release.application,
        after={"step": step.index, "action": step.action, "wave": step.wave_number},
        note=(step.health or {}).get("detail", "")[:500],
    )


def _finish(rollout: Rollout, outcome: str) -> None:
    system = Actor.system()
    release = (
        Release.objects.select_for_update(of=("self",))
        .select_related("application")
        .get(pk=rollout.release_id)
    )
    if outcome == "succeeded":
        rollout.status, release_status = Rollout.Status.SUCCEEDED, Release.Status.SUCCEEDED
    elif _unreverted(rollout):
        rollout.status, release_status = Rollout.Status.FAILED, Release.Status.FAILED  # a person must look
    elif rollout.cancel_requested:
        rollout.status, release_status = Rollout.Status.CANCELLED, Release.Status.CANCELLED
    else:
        rollout.status, release_status = Rollout.Status.REVERTED, Release.Status.FAILED
    rollout.finished_at = timezone.now()  # written by do_advance_rollout with the rest of the row
    if release.status == Release.Status.DEPLOYING:
        transition(system, release, release_status, note=f"rollout {rollout.status}")


def _unreverted(rollout: Rollout) -> list[str]:
    """Targets whose last revert failed (given up after REVERT_ATTEMPTS): they may still run the new version."""
    newest: dict[str, str] = {}
    for name, status in (
        rollout.steps.filter(action="revert").order_by("index").values_list("target_name", "status")
    ):
        newest[name] = status
    return sorted(name for name, status in newest.items() if status == RolloutStep.Status.FAILED)


def check_running_rollouts() -> None:
    """Periodic: mark silent agents offline; advance rollouts waiting on timeouts, pauses or offline agents."""
    do_mark_offline_agents()
    for rollout_id in Rollout.objects.filter(status__in=ACTIVE).values_list("pk", flat=True):
        do_advance_rollout(rollout_id)

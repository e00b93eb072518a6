"""The rollout engine: a reconciler. Services that move rollouts, called by the Celery task and the agent API.

`do_advance_rollout` locks the rollout, folds finished steps into the planner's `Progress`, asks
`releases.planning.next_action` what to do, records it as steps (agents pick their jobs up), and stops when it
has to wait. Killing a worker at any moment is harmless: everything it knew is in the rows, and the next run
continues from them; a target's step exists once, so no target is deployed twice.
"""

from __future__ import annotations

import logging
import urllib.request
from datetime import timedelta
from functools import partial

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from config.errors import Conflict
from dashboard.live import publish_on_commit
from environments.models import Target
from releases import audit
from releases.lifecycle import transition
from releases.models import Release, Rollout, RolloutStep
from releases.permissions import Actor, Permission, require
from releases.planning import (
    Analysis,
    Deploy,
    Done,
    HealthCheck,
    ManualGate,
    Pause,
    PreDeploy,
    Progress,
    Revert,
    Rollback,
    Smoke,
    Switch,
    next_action,
    parse_strategy,
    plan,
    record,
)

log = logging.getLogger(__name__)
ACTIVE = (Rollout.Status.PENDING, Rollout.Status.RUNNING, Rollout.Status.REVERTING)
OPEN_STEP = (RolloutStep.Status.PENDING, RolloutStep.Status.RUNNING)


# --- the analysis hook ---------------------------------------------------------------------

def analyse(rollout: Rollout, wave: int, traffic_percent: int | None) -> bool:
    """Canary analysis between steps: return False to revert. The default passes; monitoring plugs in here."""
    return True


# --- progress <-> rows -----------------------------------------------------------------------

def progress_from(data: dict) -> Progress:
    return Progress(
        deployed=frozenset(data.get("deployed", ())), healthy=frozenset(data.get("healthy", ())),
        failed=frozenset(data.get("failed", ())), gates=frozenset(tuple(g) for g in data.get("gates", ())),
        reverting=bool(data.get("reverting")), reverted=frozenset(data.get("reverted", ())))


def progress_to(progress: Progress) -> dict:
    return {"deployed": sorted(progress.deployed), "healthy": sorted(progress.healthy),
            "failed": sorted(progress.failed), "gates": sorted([list(g) for g in progress.gates], key=str),
            "reverting": progress.reverting, "reverted": sorted(progress.reverted)}


def plan_of(rollout: Rollout):
    strategy = Rollback(batch_size=rollout.strategy.get("batch_size")) if rollout.strategy.get("kind") == "rollback" \
        else parse_strategy(rollout.strategy or {"kind": "cautious"})
    environment = rollout.release.environment
    return plan(rollout.targets, strategy, smoke=bool(environment.smoke_test_urls),
                pre_deploy=bool(environment.pre_deploy_command), manual_gates=environment.manual_gates)


def publish_changed(rollout_id: int) -> None:
    """Watchers of the rollout page re-render its progress after commit."""
    publish_on_commit(f"rollout.{rollout_id}", "rollout.changed", rollout_id=rollout_id)


def notify_agents() -> None:
    """Agents long-polling this process get newly dispatched jobs at once (others within a broker tick)."""
    from environments.agent_asgi import BROKER

    BROKER.notify()


def enqueue_advance(rollout_id: int) -> None:
    from releases.tasks import advance_rollout

    transaction.on_commit(partial(advance_rollout.delay, rollout_id), robust=True)


# --- starting --------------------------------------------------------------------------------

def start_rollout(release: Release) -> Rollout | None:
    """Inside the caller's transaction: a rollout for a queued release onto its environment's targets."""
    environment = release.environment
    targets = list(Target.objects.filter(environment=environment).order_by("name").values_list("name", flat=True))
    if environment.driver in ("command", "webhook"):
        if not (environment.deploy_command if environment.driver == "command" else environment.webhook_url):
            return None
        targets = targets or ["default"]  # no hosts registered: the command or hook runs once
    if not targets:
        return None
    if release.kind == Release.Kind.ROLLBACK:
        strategy = {"kind": "rollback", "batch_size": environment.rollback_batch_size}
    else:
        strategy = environment.strategy or {"kind": "cautious"}
    rollout = Rollout.objects.create(release=release, strategy=strategy, targets=targets,
                                     progress=progress_to(Progress()), status=Rollout.Status.RUNNING)
    enqueue_advance(rollout.pk)
    return rollout


# --- the reconciler --------------------------------------------------------------------------

def do_advance_rollout(rollout_id: int) -> str:
    """Take every step the rollout can take now; returns its status. Reruns are harmless."""
    for _ in range(1000):  # a bounded loop: gates resolve at once, deploys wait for agents
        with transaction.atomic():
            rollout = (Rollout.objects.select_for_update(of=("self",))
                       .select_related("release__environment", "release__artifact", "release__previous_artifact",
                                       "release__application").get(pk=rollout_id))
            if rollout.status not in ACTIVE:
                return rollout.status
            moved = _advance_once(rollout)
            publish_changed(rollout.pk)
        if not moved:
            if run_server_steps(rollout_id):
                continue
            return rollout.status
    return rollout.status


def _advance_once(rollout: Rollout) -> bool:
    """One reconciliation: True when something changed and another look may move further."""
    the_plan = plan_of(rollout)
    progress = progress_from(rollout.progress)
    action = next_action(the_plan, progress)
    open_steps = rollout.steps.filter(status__in=OPEN_STEP)
    if open_steps.exists():
        _fail_stuck(rollout, open_steps)
        return False
    now = timezone.now()
    if isinstance(action, Deploy | Revert | HealthCheck):
        progress, dispatched = _fold_or_dispatch(rollout, action, progress)
        rollout.progress = progress_to(progress)
        if progress.reverting or progress.failed:
            rollout.status = Rollout.Status.REVERTING
        rollout.save(update_fields=["progress", "status"])
        return not dispatched
    if isinstance(action, Pause):
        if rollout.waiting_until is None:
            rollout.waiting_until = now + timedelta(seconds=action.seconds)
            rollout.save(update_fields=["waiting_until"])
            return False
        if now < rollout.waiting_until:
            return False
        rollout.waiting_until = None
        progress = record(progress, action)
    elif isinstance(action, ManualGate):
        rollout.status = Rollout.Status.PAUSED
        _gate_step(rollout, action.wave, "manual_gate", ok=True, output="Waiting for a person to resume.")
        rollout.progress = progress_to(record(progress, action))  # resuming continues past the gate
        rollout.save(update_fields=["status", "progress"])
        return False
    elif isinstance(action, Smoke):
        ok, output = _smoke(rollout)
        _gate_step(rollout, action.wave, "smoke", ok=ok, output=output)
        progress = record(progress, action, ok=ok)
    elif isinstance(action, Analysis):
        ok = analyse(rollout, action.wave, action.traffic_percent)
        _gate_step(rollout, action.wave, "analysis", ok=ok, output="analysis hook: pass" if ok else "analysis: fail")
        progress = record(progress, action, ok=ok)
    elif isinstance(action, PreDeploy):
        step = rollout.steps.filter(action="pre_deploy").order_by("-index").first()
        if step is None:
            _server_step(rollout, action="pre_deploy", wave=None, target_name="",
                         version=rollout.release.artifact.version)
            return False  # runs after commit, outside the lock (do_advance_rollout)
        progress = record(progress, action, ok=step.status == RolloutStep.Status.SUCCEEDED)
    elif isinstance(action, Switch):
        progress = record(progress, action)
    elif isinstance(action, Done):
        _finish(rollout, action.outcome)
        return False
    rollout.progress = progress_to(progress)
    rollout.save(update_fields=["progress", "waiting_until"])
    return True


REVERT_ATTEMPTS = 3


def _fold_or_dispatch(rollout: Rollout, action, progress: Progress) -> tuple[Progress, bool]:
    """Fold this action's finished steps into progress, or create the steps agents will run next."""
    kind = "revert" if isinstance(action, Revert) else "deploy"
    wanted = set(action.targets)
    newest: dict[str, RolloutStep] = {}
    attempts: dict[str, int] = {}
    for step in rollout.steps.filter(action=kind, target_name__in=wanted).order_by("index"):
        newest[step.target_name] = step
        attempts[step.target_name] = attempts.get(step.target_name, 0) + 1
    if isinstance(action, HealthCheck):
        # The agent checks health right after its deploy; its report settles the health check.
        failed = {n for n in wanted if n not in newest or not (newest[n].health or {}).get("ok")}
        return record(progress, action, failed=failed), False
    if kind == "deploy":
        missing = wanted - set(newest)
        if not missing:
            failed = {n for n, s in newest.items() if s.status == RolloutStep.Status.FAILED}
            progress = record(progress, action, failed=failed)
            deployed = tuple(sorted(wanted - failed))
            if deployed:
                unhealthy = {n for n in deployed if not (newest[n].health or {}).get("ok")}
                progress = record(progress, HealthCheck(wave=action.wave, targets=deployed), failed=unhealthy)
            return progress, False
        to_dispatch = missing
    elif rollout.release.previous_artifact is None:
        # Nothing ran here before: there is no earlier version to put back.
        return record(progress, action), False
    else:
        settled = {n for n, s in newest.items() if s.status == RolloutStep.Status.SUCCEEDED
                   or attempts[n] >= REVERT_ATTEMPTS}
        if settled:
            for name in settled - {n for n, s in newest.items() if s.status == RolloutStep.Status.SUCCEEDED}:
                log.error("giving up reverting %s after %d attempts", name, REVERT_ATTEMPTS)
            return record(progress, Revert(targets=tuple(sorted(settled)))), False
        # Never tried, or failed and worth another try.
        to_dispatch = wanted
    release = rollout.release
    version = (release.previous_artifact.version if kind == "revert" and release.previous_artifact
               else release.artifact.version)
    targets = {t.name: t for t in Target.objects.filter(environment=release.environment, name__in=to_dispatch)}
    on_server = release.environment.driver in ("command", "webhook")
    first = (rollout.steps.order_by("-index").values_list("index", flat=True).first() or 0) + 1
    # One insert for the whole wave: a thousand-target rollout must not pay a query per step.
    RolloutStep.objects.bulk_create([
        RolloutStep(rollout=rollout, index=first + offset, wave=getattr(action, "wave", None), target=targets.get(name),
                    target_name=name, action=kind, version=version, runs_on_server=on_server)
        for offset, name in enumerate(sorted(to_dispatch))])
    if not on_server:
        transaction.on_commit(notify_agents, robust=True)
    return progress, True


def _server_step(rollout: Rollout, *, action: str, wave, target_name: str, version: str, target=None,
                 runs_on_server: bool = True) -> RolloutStep:
    index = (rollout.steps.order_by("-index").values_list("index", flat=True).first() or 0) + 1
    return RolloutStep.objects.create(rollout=rollout, index=index, wave=wave, target=target, target_name=target_name,
                                      action=action, version=version, runs_on_server=runs_on_server)


def run_server_steps(rollout_id: int) -> int:
    """Run the steps Slipway itself performs (pre-deploy hook, the command driver) — outside any transaction."""
    ran = 0
    while True:
        with transaction.atomic():
            step = (RolloutStep.objects.select_for_update(skip_locked=True, of=("self",))
                    .select_related("rollout__release__environment", "rollout__release__artifact",
                                    "rollout__release__previous_artifact")
                    .filter(rollout_id=rollout_id, runs_on_server=True, status=RolloutStep.Status.PENDING)
                    .order_by("index").first())
            if step is None:
                return ran
            step.status, step.started_at = RolloutStep.Status.RUNNING, timezone.now()
            step.save(update_fields=["status", "started_at"])
        environment = step.rollout.release.environment
        if step.action != "pre_deploy" and environment.driver == "webhook":
            ok, output = call_webhook(step)
            if ok:  # the receiver took the job: the step finishes with its signed callback
                RolloutStep.objects.filter(pk=step.pk).update(output=output[-RolloutStep.OUTPUT_LIMIT:])
                publish_changed(rollout_id)
                ran += 1
                continue
            RolloutStep.objects.filter(pk=step.pk).update(status=RolloutStep.Status.FAILED, finished_at=timezone.now(),
                                                          output=output, health={"ok": False, "detail": output[:500]})
            ran += 1
            continue
        command = environment.pre_deploy_command if step.action == "pre_deploy" else environment.deploy_command
        ok, output = _run_command(command, step, environment.step_timeout_seconds)
        RolloutStep.objects.filter(pk=step.pk).update(
            status=RolloutStep.Status.SUCCEEDED if ok else RolloutStep.Status.FAILED, finished_at=timezone.now(),
            output=output[-RolloutStep.OUTPUT_LIMIT:], health={"ok": ok, "detail": "exit 0" if ok else "command failed"})
        publish_changed(rollout_id)
        ran += 1


def sign(secret: str, body: bytes) -> str:
    import hashlib
    import hmac

    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def call_webhook(step: RolloutStep) -> tuple[bool, str]:
    """POST the job to the environment's URL, signed; the receiver answers 2xx now and calls back when done."""
    import json

    from django.conf import settings
    from django.urls import reverse

    environment = step.rollout.release.environment
    release = step.rollout.release
    body = json.dumps({
        "job": step.pk, "action": step.action, "target": step.target_name, "version": step.version,
        "image": release.artifact.image, "commit": release.artifact.commit,
        "previous_version": release.previous_artifact.version if release.previous_artifact else None,
        "callback_url": settings.SLIPWAY_BASE_URL.rstrip("/") + reverse("rollout-callback", args=[step.pk]),
    }).encode()
    request = urllib.request.Request(environment.webhook_url, data=body, method="POST", headers={
        "Content-Type": "application/json", "X-Slipway-Signature": sign(environment.webhook_secret, body)})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return 200 <= response.status < 300, f"webhook answered {response.status}\n"
    except OSError as error:
        return False, f"webhook call failed: {error}\n"


def _run_command(command: str, step: RolloutStep, timeout: int) -> tuple[bool, str]:
    import os
    import subprocess

    release = step.rollout.release
    env = {**os.environ, "SLIPWAY_VERSION": step.version, "SLIPWAY_IMAGE": release.artifact.image,
           "SLIPWAY_COMMIT": release.artifact.commit, "SLIPWAY_TARGET": step.target_name, "SLIPWAY_ACTION": step.action,
           "SLIPWAY_PREVIOUS_VERSION": release.previous_artifact.version if release.previous_artifact else ""}
    try:
        done = subprocess.run(command, shell=True, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as expired:
        return False, f"{expired.stdout or ''}\n[slipway] killed after {timeout} s"
    return done.returncode == 0, done.stdout + done.stderr


def _gate_step(rollout: Rollout, wave: int, action: str, *, ok: bool, output: str) -> None:
    index = (rollout.steps.order_by("-index").values_list("index", flat=True).first() or 0) + 1
    now = timezone.now()
    RolloutStep.objects.create(rollout=rollout, index=index, wave=wave, action=action, started_at=now,
                               finished_at=now, output=output[:RolloutStep.OUTPUT_LIMIT],
                               status=RolloutStep.Status.SUCCEEDED if ok else RolloutStep.Status.FAILED)


def _smoke(rollout: Rollout) -> tuple[bool, str]:
    lines = []
    for url in rollout.release.environment.smoke_test_urls:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                lines.append(f"{url}: {response.status}")
                ok = 200 <= response.status < 300
        except OSError as error:
            lines.append(f"{url}: {error}")
            ok = False
        if not ok:
            return False, "\n".join(lines)
    return True, "\n".join(lines) or "no smoke tests configured"


def _fail_stuck(rollout: Rollout, open_steps) -> None:
    """A step whose agent went offline, or that ran past the step timeout, fails; the reconciler then reverts."""
    environment = rollout.release.environment
    now = timezone.now()
    heartbeat_limit = now - timedelta(seconds=environment.heartbeat_timeout_seconds)
    timed_out = now - timedelta(seconds=environment.step_timeout_seconds)
    # Only suspects are read: a wave of a thousand healthy steps costs one query that returns nothing.
    suspects = open_steps.filter(
        Q(runs_on_server=True, started_at__lt=timed_out - timedelta(seconds=30))
        | Q(runs_on_server=False) & (Q(target__isnull=True) | Q(target__last_seen__isnull=True)
                                     | Q(target__last_seen__lt=heartbeat_limit) | Q(started_at__lt=timed_out)))
    for step in suspects.select_related("target"):
        reason = None
        if step.runs_on_server:
            if step.started_at and now - step.started_at > timedelta(seconds=environment.step_timeout_seconds + 30):
                reason = "the worker running this step went away"
        elif step.target is None or step.target.last_seen is None or step.target.last_seen < heartbeat_limit:
            reason = "agent offline (missed heartbeats)"
            if step.target is not None:
                Target.objects.filter(pk=step.target.pk).update(status=Target.Status.OFFLINE)
        elif step.started_at and now - step.started_at > timedelta(seconds=environment.step_timeout_seconds):
            reason = f"step timed out after {environment.step_timeout_seconds} s"
        if reason:
            step.status, step.finished_at = RolloutStep.Status.FAILED, now
            step.health = {"ok": False, "detail": reason}
            step.output = (step.output + f"\n[slipway] {reason}")[-RolloutStep.OUTPUT_LIMIT:]
            step.save(update_fields=["status", "finished_at", "health", "output"])
            enqueue_advance(rollout.pk)


def _finish(rollout: Rollout, outcome: str) -> None:
    system = Actor.system()
    release = Release.objects.select_for_update(of=("self",)).select_related("application").get(pk=rollout.release_id)
    rollout.status = Rollout.Status.SUCCEEDED if outcome == "succeeded" else Rollout.Status.REVERTED
    rollout.finished_at = timezone.now()
    rollout.save(update_fields=["status", "finished_at"])
    if release.status == Release.Status.DEPLOYING:
        transition(system, release, Release.Status.SUCCEEDED if outcome == "succeeded" else Release.Status.FAILED,
                   note=f"rollout {rollout.status}")
        if outcome == "succeeded":
            from releases.dispatch import _mark_rolled_back, after_success

            if release.kind == Release.Kind.ROLLBACK:
                _mark_rolled_back(system, release)
            transaction.on_commit(partial(after_success, release), robust=True)


# --- people's controls -----------------------------------------------------------------------

@transaction.atomic(durable=True)
def do_control_rollout(actor: Actor, release: Release, command: str) -> Rollout:
    """Pause, resume, cancel, or revert now."""
    rollout = Rollout.objects.select_for_update(of=("self",)).select_related("release__application",
                                                                           "release__environment").filter(
        release=release).first()
    if rollout is None:
        raise Conflict(f"Release #{release.pk} has no rollout.")
    require(actor, Permission.ROLLBACK if command == "revert" else Permission.REGISTER_ARTIFACT,
            release.application, release.environment)
    finished = rollout.status in (Rollout.Status.SUCCEEDED, Rollout.Status.REVERTED, Rollout.Status.CANCELLED,
                                  Rollout.Status.FAILED)
    if finished:
        raise Conflict(f"The rollout is {rollout.status}.")
    if command == "pause":
        rollout.status = Rollout.Status.PAUSED
    elif command == "resume":
        rollout.status = Rollout.Status.REVERTING if rollout.progress.get("reverting") else Rollout.Status.RUNNING
        enqueue_advance(rollout.pk)
    elif command in ("revert", "cancel"):
        # Cancel stops and puts back what was touched, like revert: no target is left half-way.
        rollout.progress = {**rollout.progress, "reverting": True}
        rollout.status = Rollout.Status.REVERTING
        enqueue_advance(rollout.pk)
    rollout.save(update_fields=["status", "progress"])
    audit.record(actor, f"rollout.{command}", release, application=release.application)
    publish_changed(rollout.pk)
    return rollout


def check_running_rollouts() -> None:
    """Periodic: advance rollouts waiting on timeouts, pauses or offline agents."""
    for rollout_id in Rollout.objects.filter(status__in=ACTIVE).values_list("pk", flat=True):
        do_advance_rollout(rollout_id)

"""The reconciler: start a rollout, then take every step it can take now, idempotently.

`do_advance_rollout` locks the rollout, folds finished steps into the planner's `Progress`, asks
`releases.planning.next_action` what to do, records it as steps (agents pick their jobs up), and stops when it
has to wait. Killing a worker at any moment is harmless: everything it knew is in the rows, and the next run
continues from them; a target's step exists once, so no target is deployed twice.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import timedelta

from django.db import connection, transaction
from django.db.models import Q
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
    defer,
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
    next_index,
    notify_agents,
    plan_of,
    progress_from,
    progress_to,
    publish_changed,
    publish_environment_changed,
)
from releases.rollouts.drivers import run_server_steps
from releases.rollouts.gates import _switched


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


log = logging.getLogger(__name__)


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
        if _fail_stuck(rollout, open_steps):
            waiting = open_steps.exists()  # the last open steps may just have failed: fold them now
        if not progress.reverting and not rollback and _failed_meanwhile(rollout, progress):
            progress = (
                progress.abort()
            )  # one host of a wave failed: revert now, not when the whole wave is done
    if progress.reverting and rollback:
        # A rollback a person stopped (cancel): nothing goes back to the version it rolls back from. Deploys not
        # started are skipped; once those under way have reported, it ends with each host on what it runs.
        _fold_stragglers(rollout, progress)
        if not rollout.steps.filter(status__in=OPEN_STEP).exists():
            _finish(rollout, "reverted")
        return False
    if progress.reverting:
        progress = _fold_stragglers(rollout, progress)
    action = next_action(the_plan, progress)
    if waiting and not isinstance(action, Revert):
        if progress.reverting and rollout.status != Rollout.Status.REVERTING:
            rollout.progress, rollout.status = progress_to(progress), Rollout.Status.REVERTING
        return False  # steps under way; their reports wake the reconciler
    now = timezone.now()
    if isinstance(action, Deploy | Revert | HealthCheck):
        this.server_steps |= _on_server(rollout)  # the command and webhook drivers' deploys run on the worker
        progress, dispatched = _fold_or_dispatch(rollout, action, progress)
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
        _gate_step(rollout, action.wave, "manual_gate", ok=True, output="Waiting for a person to resume.")
        rollout.progress = progress_to(record(progress, action))  # resuming continues past the gate
        return False
    elif isinstance(action, PreDeploy | Smoke | Analysis | Switch | Watch):
        # Gates Slipway runs itself: a step for the worker, run outside the lock (run_server_steps), whose
        # result the next reconciliation folds in.
        name = "pre_deploy" if isinstance(action, PreDeploy) else action.name
        wave = None if isinstance(action, PreDeploy) else action.wave
        step = rollout.steps.filter(action=name, wave=wave).order_by("-index").first()
        if step is None:
            _server_step(rollout, action=name, wave=wave)
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
        progress, stop = _retry(rollout, the_plan, action, progress)
        if (progress, rollout.status) != before:  # the periodic check looks every 2 s: write on change only
            rollout.progress = progress_to(progress)
        this.server_steps |= _on_server(rollout)  # hosts tried again by the worker
        return not stop
    elif isinstance(action, Done):
        _finish(rollout, action.outcome)
        return False
    rollout.progress = progress_to(progress)
    return True


REVERT_ATTEMPTS = 3


def _on_server(rollout: Rollout) -> bool:
    """Does Slipway's worker perform this environment's deploys (the command and webhook drivers)?"""
    return rollout.release.environment.driver in ("command", "webhook")


def _fold_or_dispatch(rollout: Rollout, action, progress: Progress) -> tuple[Progress, bool]:
    """Fold this action's finished steps into progress, or create the steps agents will run next."""
    kind = "revert" if isinstance(action, Revert) else "deploy"
    wanted = set(action.targets)
    newest: dict[str, RolloutStep] = {}
    attempts: dict[str, int] = {}
    # Only what folding needs: a step's output may be 64 KB, and a wave has hundreds of steps. A wave's deploys
    # are found by its number (sending its targets' names would cost more than the query); reverts by name.
    steps = rollout.steps.filter(action=kind)
    steps = steps.filter(wave=action.wave) if kind == "deploy" else steps.filter(target_name__in=wanted)
    for step in steps.order_by("index").only("pk", "target_name", "status", "health"):
        if step.target_name in wanted:
            newest[step.target_name] = step
            attempts[step.target_name] = attempts.get(step.target_name, 0) + 1
    if isinstance(action, HealthCheck):
        # The agent checks health right after its deploy; its report settles the health check.
        failed = {n for n in wanted if n not in newest or not (newest[n].health or {}).get("ok")}
        return record(progress, action, failed=failed), False
    if kind == "deploy":
        missing = wanted - set(newest)
        if not missing and is_rollback(rollout):
            # A rollback never reverts: the hosts it reached stay, the others wait to be retried (`_retry`).
            bad = {n for n, s in newest.items() if not _reached(s)}
            good = tuple(sorted(wanted - bad))
            progress = record(progress, Deploy(wave=action.wave, targets=good))
            progress = record(progress, HealthCheck(wave=action.wave, targets=good))
            if bad:
                progress = defer(progress, bad)
                _audit_not_reached(rollout, {n: newest[n] for n in bad})
            return progress, False
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
        # Reverts start while other steps still run: a host still deploying is reverted once it has reported.
        busy = set(
            rollout.steps.filter(status__in=OPEN_STEP, target_name__in=wanted).values_list(
                "target_name", flat=True
            )
        )
        succeeded = {
            n for n, s in newest.items() if s.status == RolloutStep.Status.SUCCEEDED and n not in busy
        }
        given_up = {
            n
            for n, s in newest.items()
            if s.status == RolloutStep.Status.FAILED and n not in busy and attempts[n] >= REVERT_ATTEMPTS
        }
        if succeeded | given_up:
            for name in sorted(given_up):
                log.error("giving up reverting %s after %d attempts", name, REVERT_ATTEMPTS)
            return record(progress, Revert(targets=tuple(sorted(succeeded | given_up)))), False
        # Never tried, or failed and worth another try.
        to_dispatch = wanted - busy
        if not to_dispatch:
            return progress, True  # waiting for the reports
    release = rollout.release
    version = (
        release.previous_artifact.version
        if kind == "revert" and release.previous_artifact
        else release.artifact.version
    )
    wave = getattr(action, "wave", None)
    _dispatch(rollout, kind, version, {name: wave for name in to_dispatch})
    return progress, True


def _dispatch(rollout: Rollout, kind: str, version: str, waves: dict[str, int | None]) -> None:
    """Steps for agents (or the worker) to run: target name -> its wave."""
    on_server = _on_server(rollout)
    names = sorted(waves)
    if connection.vendor == "postgresql":
        _insert_steps(rollout, kind, version, names, [waves[name] for name in names], on_server)
    else:
        targets = dict(
            Target.objects.filter(environment=rollout.release.environment, name__in=names).values_list(
                "name", "pk"
            )
        )
        first = next_index(rollout)
        # One insert for the whole wave: a thousand-target rollout must not pay a query per step.
        RolloutStep.objects.bulk_create(
            [
                RolloutStep(
                    rollout=rollout,
                    index=first + offset,
                    wave=waves[name],
                    target_id=targets.get(name),
                    target_name=name,
                    action=kind,
                    version=version,
                    runs_on_server=on_server,
                )
                for offset, name in enumerate(names)
            ]
        )
    if not on_server:
        transaction.on_commit(notify_agents, robust=True)


# Every column of a step, in the order `_insert_steps` writes them (a test compares this with the model's fields).
INSERTED_COLUMNS = (
    "rollout",
    "index",
    "wave",
    "target",
    "target_name",
    "action",
    "runs_on_server",
    "lease_expires_at",
    "attempts",
    "version",
    "status",
    "health",
    "output",
    "started_at",
    "finished_at",
)


def _insert_steps(
    rollout: Rollout, kind: str, version: str, names: list[str], waves: list[int | None], on_server: bool
) -> None:
    """PostgreSQL: the wave's steps in one statement that numbers them after the rollout's last step and finds each
    target's row itself (the ORM's way — read the targets, read the last number, build a model per step, insert —
    took 3 queries and, for a wave of 489, some 50 ms of Python on a busy server). The same rows as
    `bulk_create`: every column the model gives a default is written here with it."""
    step, target = RolloutStep._meta, Target._meta
    quote = connection.ops.quote_name
    column = {f.name: quote(str(f.column)) for f in step.concrete_fields}
    target_column = {f.name: quote(str(f.column)) for f in target.concrete_fields}
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {quote(step.db_table)} ("
            + ", ".join(column[name] for name in INSERTED_COLUMNS)
            + f") SELECT %s, top.n + w.ord, w.wave, t.{target_column['id']}, w.name, %s, %s, NULL, 0, %s, %s,"
            f" NULL, '', NULL, NULL"
            f" FROM unnest(%s::text[], %s::integer[]) WITH ORDINALITY AS w(name, wave, ord)"
            f" CROSS JOIN (SELECT COALESCE(MAX({column['index']}), -1) AS n FROM {quote(step.db_table)}"
            f" WHERE {column['rollout']} = %s) AS top"
            f" LEFT JOIN {quote(target.db_table)} t ON t.{target_column['environment']} = %s"
            f" AND t.{target_column['name']} = w.name"
            " ORDER BY w.ord",
            [
                rollout.pk,
                kind,
                on_server,
                version,
                RolloutStep.Status.PENDING.value,
                names,
                waves,
                rollout.pk,
                rollout.release.environment_id,
            ],
        )


AGENT_OFFLINE = "agent offline (missed heartbeats)"


def _reached(step: RolloutStep) -> bool:
    return step.status == RolloutStep.Status.SUCCEEDED and bool((step.health or {}).get("ok"))


def _why(step: RolloutStep | None) -> str:
    if step is None:
        return "not tried yet"
    detail = (step.health or {}).get("detail") or ""
    return detail or ("deploy failed" if step.status == RolloutStep.Status.FAILED else "unhealthy")


def _retry(rollout: Rollout, the_plan, action: Retry, progress: Progress) -> tuple[Progress, bool]:
    """A rollback's hosts not reached yet. Those reached since count; a host that failed because its agent was
    offline is tried again as soon as its agent is back; one that failed while reachable waits for a person
    (resume tries it again, cancel stops the rollback where it is). When only such hosts are left, the rollout
    pauses, saying which and why. Returns (progress, stop): stop is False when another look may move further."""
    wanted = set(action.targets)
    newest: dict[str, RolloutStep] = {}
    for step in (
        rollout.steps.filter(action="deploy", target_name__in=wanted)
        .order_by("index")
        .only("pk", "target_name", "status", "health", "wave")
    ):
        newest[step.target_name] = step
    reached = {n for n, s in newest.items() if _reached(s)}
    if reached:
        progress = record(progress, Retry(targets=tuple(sorted(reached))))
        _audit(
            rollout, "rollout.hosts_reached", reached, f"reached on a later try: {', '.join(sorted(reached))}"
        )
        return progress, False  # look again: maybe nothing is left
    environment = rollout.release.environment
    limit = timezone.now() - timedelta(seconds=environment.heartbeat_timeout_seconds)
    if environment.driver in ("command", "webhook"):
        online = wanted  # a worker performs these: nobody to wait for
    else:
        online = set(
            Target.objects.filter(
                environment=environment, name__in=wanted, status=Target.Status.ONLINE, last_seen__gte=limit
            ).values_list("name", flat=True)
        )
    to_dispatch: set[str] = set()
    hold: dict[str, RolloutStep | None] = {}
    for name in sorted(wanted):
        last = newest.get(name)
        agent_was_away = last is None or (last.health or {}).get("detail") == AGENT_OFFLINE
        if name in progress.retry or (agent_was_away and name not in progress.held):
            if name in online:
                to_dispatch.add(name)
        elif name not in progress.held:
            hold[name] = last
    if hold:
        progress = defer(progress, (), hold=set(hold))
    if to_dispatch:
        progress = dataclasses.replace(progress, retry=progress.retry - to_dispatch)
        wave_of = {t: w.index for w in the_plan.waves for t in w.targets}
        _dispatch(
            rollout,
            "deploy",
            rollout.release.artifact.version,
            {name: wave_of.get(name) for name in to_dispatch},
        )
        _audit(
            rollout, "rollout.hosts_retried", to_dispatch, f"tried again: {', '.join(sorted(to_dispatch))}"
        )
        return progress, True
    if hold or (wanted <= progress.held and rollout.status == Rollout.Status.RUNNING):
        needing = {name: newest.get(name) for name in sorted(progress.held & wanted)}
        away = sorted(wanted - progress.held)
        note = "; ".join(f"{name}: {_why(last)}" for name, last in needing.items())
        note += (
            f" — the rollback keeps the hosts it reached on {rollout.release.artifact.version} and puts none back; "
            "Resume tries these again, Cancel stops here"
        )
        if away:
            note += f"; still waiting for the agents of {', '.join(away)}"
        else:
            rollout.status = Rollout.Status.PAUSED
        _audit(rollout, "rollout.needs_attention", set(needing), note)
    return progress, True


def _audit_not_reached(rollout: Rollout, steps: dict[str, RolloutStep]) -> None:
    reasons = "; ".join(f"{name}: {_why(step)}" for name, step in sorted(steps.items()))
    _audit(
        rollout,
        "rollout.hosts_not_reached",
        set(steps),
        f"{reasons} — the rollback goes on without them (nothing is put back on "
        f"{_from_version(rollout)}); a host whose agent was offline is retried when it is back",
    )


def _from_version(rollout: Rollout) -> str:
    previous = rollout.release.previous_artifact
    return previous.version if previous else "the version before"


def _audit(rollout: Rollout, kind: str, targets: set[str], note: str) -> None:
    release = rollout.release
    audit.record(
        Actor.system(),
        kind,
        release,
        application=release.application,
        after={"targets": sorted(targets)},
        note=note[:1000],
    )


def _unfolded_deploys(rollout: Rollout, progress: Progress):
    """Deploys that have finished but are not in `progress` yet (the reconciler waits for a whole wave)."""
    return rollout.steps.filter(
        action="deploy", status__in=(RolloutStep.Status.SUCCEEDED, RolloutStep.Status.FAILED)
    ).exclude(target_name__in=progress.touched)


def _failed_meanwhile(rollout: Rollout, progress: Progress) -> bool:
    """Has a deploy of this rollout failed (or its health check) since the last reconciliation?"""
    return (
        _unfolded_deploys(rollout, progress)
        .exclude(status=RolloutStep.Status.SUCCEEDED, health__ok=True)
        .exists()
    )


def _fold_stragglers(rollout: Rollout, progress: Progress) -> Progress:
    """While reverting: deploys not started yet are skipped; deploys that finished after the revert began count
    as touched, so they are put back too (none is left on the new version)."""
    rollout.steps.filter(action="deploy", status=RolloutStep.Status.PENDING).update(
        status=RolloutStep.Status.SKIPPED,
        output="[slipway] not started: the rollout is reverting",
        finished_at=timezone.now(),
    )
    finished = list(_unfolded_deploys(rollout, progress).values_list("target_name", "status", "health"))
    if not finished:
        return progress
    bad = [
        name
        for name, status, health in finished
        if status == RolloutStep.Status.FAILED or not (health or {}).get("ok")
    ]
    return record(progress, Deploy(wave=0, targets=tuple(name for name, _, _ in finished)), failed=bad)


def _server_step(rollout: Rollout, *, action: str, wave: int | None) -> RolloutStep:
    """A gate for the worker to run (run_server_steps)."""
    return RolloutStep.objects.create(
        rollout=rollout,
        index=next_index(rollout),
        wave=wave,
        action=action,
        version=rollout.release.artifact.version,
        runs_on_server=True,
    )


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


def _gate_step(rollout: Rollout, wave: int, action: str, *, ok: bool, output: str) -> None:
    index = next_index(rollout)
    now = timezone.now()
    RolloutStep.objects.create(
        rollout=rollout,
        index=index,
        wave=wave,
        action=action,
        started_at=now,
        finished_at=now,
        output=output[: RolloutStep.OUTPUT_LIMIT],
        status=RolloutStep.Status.SUCCEEDED if ok else RolloutStep.Status.FAILED,
    )


def _fail_stuck(rollout: Rollout, open_steps) -> int:
    """A step whose agent went offline, or that ran past the step timeout, fails; the reconciler then reverts (a
    rollback retries instead). Returns how many failed."""
    environment = rollout.release.environment
    now = timezone.now()
    heartbeat_limit = now - timedelta(seconds=environment.heartbeat_timeout_seconds)
    timed_out = now - timedelta(seconds=environment.step_timeout_seconds)
    # Only suspects are read: a wave of a thousand healthy steps costs one query that returns nothing.
    suspects = open_steps.filter(
        Q(runs_on_server=True, lease_expires_at__lt=now)
        | Q(runs_on_server=True, lease_expires_at__isnull=True, started_at__lt=timed_out)
        | Q(runs_on_server=False)
        & (
            Q(target__isnull=True)
            | Q(target__last_seen__isnull=True)
            | Q(target__last_seen__lt=heartbeat_limit)
            | Q(started_at__lt=timed_out)
        )
    )
    failed = 0
    for step in suspects.select_related("target"):
        reason = None
        if step.runs_on_server and step.lease_expires_at is not None:
            reason = _take_over(step)  # its worker stopped renewing the lease: it went away
        elif step.runs_on_server:
            if (
                step.status == RolloutStep.Status.RUNNING
            ):  # handed to a webhook receiver that never called back
                reason = f"no callback within the step timeout ({environment.step_timeout_seconds} s)"
        elif step.target is None or step.target.last_seen is None or step.target.last_seen < heartbeat_limit:
            reason = AGENT_OFFLINE
            if step.target is not None:
                Target.objects.filter(pk=step.target.pk).update(status=Target.Status.OFFLINE)
        elif step.started_at and now - step.started_at > timedelta(seconds=environment.step_timeout_seconds):
            reason = f"step timed out after {environment.step_timeout_seconds} s"
        if reason:
            step.status, step.finished_at = RolloutStep.Status.FAILED, now
            step.health = {"ok": False, "detail": reason}
            step.output = (step.output + f"\n[slipway] {reason}")[-RolloutStep.OUTPUT_LIMIT :]
            step.save(update_fields=["status", "finished_at", "health", "output"])
            enqueue_advance(rollout.pk)
            failed += 1
    return failed


STEP_ATTEMPTS = 3  # a server step whose worker died is run again, up to this many times in all


def _take_over(step: RolloutStep) -> str | None:
    """A step whose worker went away runs again on another worker (commands, gates and webhook calls are safe to
    repeat: a deploy puts the same version in place); after STEP_ATTEMPTS starts it fails, saying why."""
    if step.status != RolloutStep.Status.RUNNING:
        return None
    if step.attempts >= STEP_ATTEMPTS:
        return f"the worker running this step went away {step.attempts} times"
    note = f"\n[slipway] the worker running this step went away; another worker runs it again (start {step.attempts + 1})"
    RolloutStep.objects.filter(pk=step.pk, status=RolloutStep.Status.RUNNING).update(
        status=RolloutStep.Status.PENDING,
        lease_expires_at=None,
        started_at=None,
        output=(step.output + note)[-RolloutStep.OUTPUT_LIMIT :],
    )
    return None


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
    mark_offline_agents()
    for rollout_id in Rollout.objects.filter(status__in=ACTIVE).values_list("pk", flat=True):
        do_advance_rollout(rollout_id)


def mark_offline_agents() -> int:
    """Targets whose agent missed its environment's heartbeat timeout are offline (a heartbeat brings them back)."""
    now, marked = timezone.now(), 0
    for seconds in set(
        Environment.objects.filter(targets__status=Target.Status.ONLINE)
        .order_by()
        .values_list("heartbeat_timeout_seconds", flat=True)
        .distinct()
    ):
        silent = Target.objects.filter(
            environment__heartbeat_timeout_seconds=seconds, status=Target.Status.ONLINE
        )
        silent = silent.filter(Q(last_seen__lt=now - timedelta(seconds=seconds)) | Q(last_seen__isnull=True))
        names = list(silent.values_list("name", flat=True)[:20])
        environments = set(silent.values_list("environment_id", flat=True))
        count = silent.update(status=Target.Status.OFFLINE)
        for environment_id in sorted(environments):  # open environment pages show the agents gone
            publish_environment_changed(environment_id)
        if count:
            log.warning("%d agent(s) missed heartbeats and are offline: %s", count, ", ".join(names))
        marked += count
    return marked

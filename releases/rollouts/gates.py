"""Gates the worker runs between deploys: each takes its step and returns (ok, output)."""

from __future__ import annotations

import logging
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Max
from django.utils import timezone
from django.utils.module_loading import import_string

from config.times import absolute
from environments.models import Environment
from monitoring.models import AnalysisRun, AnalysisTemplate
from monitoring.services import do_run_analysis
from releases import audit
from releases.models import Rollout, RolloutStep
from releases.permissions import Actor
from releases.planning import (
    MAX_ANALYSIS_SECONDS,
    AnalysisSpec,
    BlueGreen,
    slots,
)
from releases.rollouts.commands import _run_command
from releases.rollouts.common import plan_of, strategy_of

# A gate's verdict: True goes on, False reverts, HOLD pauses the rollout for a person (resume or revert).
HOLD = None


def analyse(rollout: Rollout, wave: int, traffic_percent: int | None) -> bool | tuple[bool, str]:
    """Canary analysis between steps, the default hook: it passes. Monitoring plugs in here.

    A hook is any callable named by the `SLIPWAY_CANARY_ANALYSIS` setting (a dotted path) taking the rollout, the
    wave just deployed (counted from 1, as the API shows it) and the traffic percentage it serves, and returning
    True to go on or False to revert — optionally as `(ok, detail)`, the detail shown on the step; `None` pauses
    the rollout for a person. It runs in the worker, outside any transaction and lock, so it may take its time
    (query metrics, wait for samples); an exception counts as a failure. Strategies that name an analysis template
    (`"analysis": {"template": …}`) are judged by monitoring instead (`_judged`).
    """
    return True, f"no analysis configured: pass ({traffic_percent}% of traffic)"


log = logging.getLogger(__name__)


def analysis_hook():
    return import_string(
        getattr(settings, "SLIPWAY_CANARY_ANALYSIS", "") or "releases.rollouts.gates.analyse"
    )


def _wave_targets(step: RolloutStep) -> tuple[str, ...]:
    the_plan = plan_of(step.rollout)
    return (
        the_plan.waves[step.wave].targets if step.wave is not None and step.wave < len(the_plan.waves) else ()
    )


def _pre_deploy_gate(step: RolloutStep) -> tuple[bool, str]:
    environment = step.rollout.release.environment
    return _run_command(environment.pre_deploy_command, step, environment.step_timeout_seconds)


def _smoke_gate(step: RolloutStep) -> tuple[bool, str]:
    """Every smoke-test URL must answer 2xx, then the smoke-test command must exit 0."""
    environment = step.rollout.release.environment
    lines = []
    for url in environment.smoke_test_urls:
        try:
            with urllib.request.urlopen(url, timeout=min(10, environment.step_timeout_seconds)) as response:
                ok = 200 <= response.status < 300
                lines.append(f"{url}: HTTP {response.status}")
        except urllib.error.HTTPError as error:
            ok = False
            lines.append(f"{url}: HTTP {error.code}")
        except OSError as error:
            ok = False
            lines.append(f"{url}: {error}")
        if not ok:
            return False, "\n".join(lines)
    if environment.smoke_test_command:
        ok, output = _run_command(
            environment.smoke_test_command,
            step,
            environment.step_timeout_seconds,
            SLIPWAY_WAVE=str(step.wave_number),
            SLIPWAY_TARGETS=",".join(_wave_targets(step)),
        )
        lines.append(
            f"$ {environment.smoke_test_command}\n{output.rstrip()}\n" + ("exit 0" if ok else "failed")
        )
        if not ok:
            return False, "\n".join(lines)
    return True, "\n".join(lines)


def _analysis_gate(step: RolloutStep) -> tuple[bool | None, str]:
    """Between waves: the strategy's analysis template, judged by monitoring; without one, the canary hook."""
    spec = getattr(strategy_of(step.rollout), "analysis", None)
    if spec is not None:
        return _judged(step, spec, watch=False)
    the_plan = plan_of(step.rollout)
    traffic = the_plan.waves[step.wave].traffic_percent if step.wave is not None else None
    try:
        verdict = analysis_hook()(step.rollout, step.wave_number, traffic)
    except Exception as error:  # a broken hook must stop the rollout, not the worker
        log.exception("canary analysis hook failed")
        return False, f"analysis hook raised {type(error).__name__}: {error}"
    ok, detail = verdict if isinstance(verdict, tuple) else (verdict, "")
    ok = HOLD if ok is None else bool(ok)
    return ok, str(detail) or (
        "analysis: pass" if ok else "analysis: a person decides" if ok is HOLD else "analysis: fail"
    )


def _watch_gate(step: RolloutStep) -> tuple[bool | None, str]:
    """After the last wave: the post-deploy watch, the new version judged for the soak time."""
    spec = getattr(strategy_of(step.rollout), "watch", None)
    if spec is None:  # the strategy changed under a running rollout: nothing to watch
        return True, "no watch configured"
    return _judged(step, spec, watch=True)


# Verdict → the gate's outcome: fail reverts the touched targets; marginal and inconclusive wait for a person.
_OUTCOME: dict[str, bool | None] = {
    AnalysisRun.Verdict.PASS: True,
    AnalysisRun.Verdict.FAIL: False,
    AnalysisRun.Verdict.MARGINAL: HOLD,
    AnalysisRun.Verdict.INCONCLUSIVE: HOLD,
}


def _judged(step: RolloutStep, spec: AnalysisSpec, *, watch: bool) -> tuple[bool | None, str]:
    """Wait out the analysis window (no transaction, no connection held), then run the template through
    `monitoring.services.do_run_analysis` and map its verdict.

    Canary: the targets on the new version so far. Baseline: the targets still on the previous version over the
    same window — or, with none left (the last wave, the watch), the previous version in the same length of time
    just before the rollout began.
    """
    rollout = Rollout.objects.select_related(
        "release__environment", "release__artifact", "release__previous_artifact"
    ).get(pk=step.rollout_id)
    release = rollout.release
    template = AnalysisTemplate.objects.filter(
        application_id=release.application_id, name=spec.template
    ).first()
    if template is None:
        return HOLD, (
            f"inconclusive: analysis template {spec.template!r} no longer exists; a person decides "
            f"(resume or revert)"
        )
    interval = spec.interval_seconds or template.interval_seconds  # the strategy's, else the template's
    count = spec.count or template.count
    seconds = spec.duration_seconds or min(count * interval, MAX_ANALYSIS_SECONDS)
    deployed = set(rollout.progress.get("deployed", ())) - set(rollout.progress.get("failed", ()))
    canary = [t for t in rollout.targets if t in deployed]
    untouched = [t for t in rollout.targets if t not in deployed]
    start = _wave_finished(step)
    end = start + timedelta(seconds=seconds)
    gone = _wait(rollout.pk, start, end)
    if gone:
        return False, f"analysis stopped: {gone}"
    previous = release.previous_artifact
    baseline: dict = {"baseline_version": previous.version if previous else None}
    if previous is not None and untouched and not watch:
        baseline["baseline_targets"] = untouched
        where = f"{', '.join(untouched)} over the same window"
    elif previous is not None:
        before = rollout.created_at
        baseline.update(
            baseline_targets=list(rollout.targets),
            baseline_started_at=before - timedelta(seconds=seconds),
            baseline_ended_at=before,
        )
        where = f"the {seconds} s before the rollout began"
    else:
        where = "none: nothing ran here before, threshold checks only"
    run = do_run_analysis(
        template,
        environment=release.environment,
        canary_version=release.artifact.version,
        started_at=start,
        ended_at=end,
        canary_targets=canary,
        release=release,
        rollout_id=rollout.pk,
        interval_seconds=interval,
        count=count,
        **baseline,
    )
    lines = [
        # The moments as the pages show them: the configured time zone, said (not UTC whatever the site's zone).
        f"analysis run #{run.pk}: template {template.name}, {seconds} s from {absolute(start)} to "
        f"{absolute(end)} ({count} measurements, one every {interval} s) → {run.verdict}"
        + (f" (score {run.score:g})" if run.score is not None else ""),
        f"canary: {release.artifact.version} on {', '.join(canary) or 'no target'}",
        f"baseline: {previous.version if previous else '—'} on {where}",
        *run.reasons,
    ]
    if _OUTCOME[run.verdict] is HOLD:
        lines.append("A person decides: resume the rollout to go on, or revert it.")
    return _OUTCOME[run.verdict], "\n".join(lines)


def _wave_finished(step: RolloutStep) -> datetime:
    """When the wave before this gate was done: its last deploy (or switch) finishing."""
    done = RolloutStep.objects.filter(
        rollout_id=step.rollout_id, index__lt=step.index, action__in=("deploy", "switch")
    ).aggregate(at=Max("finished_at"))["at"]
    return done or step.started_at or timezone.now()


def _wait(rollout_id: int, start: datetime, until: datetime) -> str | None:
    """Sleep until the window ends, looking every few seconds whether a person reverted or cancelled meanwhile
    (then: why to stop). Each look is one autocommit query; the connection goes back between looks."""
    while (left := (until - timezone.now()).total_seconds()) > 0:
        _release_connection()
        time.sleep(min(left, 2.0))
        status, reverting = (
            Rollout.objects.filter(pk=rollout_id).values_list("status", "progress__reverting").get()
        )
        if reverting or status not in (Rollout.Status.RUNNING, Rollout.Status.PAUSED):
            return f"the rollout is {status} (a person stopped it during the analysis window)"
    _release_connection()
    return None


def _release_connection() -> None:
    # Outside a transaction (always, in a worker), a connection back in the pool holds nothing while we sleep.
    if not connection.in_atomic_block:
        connection.close()


def _switch_gate(step: RolloutStep) -> tuple[bool, str]:
    """Blue/green: send traffic to the slot just deployed (or, switching back, to the one that ran before)."""
    environment = step.rollout.release.environment
    strategy = strategy_of(step.rollout)
    assert isinstance(strategy, BlueGreen)
    serving = slots(step.rollout.targets)[strategy.idle]
    if not environment.switch_command:
        return True, (
            f"traffic → {strategy.idle} ({', '.join(serving)}); no switch command: your router reads "
            f"live_slot from the environment"
        )
    ok, output = _run_command(
        environment.switch_command,
        step,
        environment.step_timeout_seconds,
        SLIPWAY_SLOT=strategy.idle,
        SLIPWAY_PREVIOUS_SLOT=strategy.live,
        SLIPWAY_TARGETS=",".join(serving),
    )
    return ok, f"traffic → {strategy.idle} ({', '.join(serving)})\n{output}"


GATES = {
    "pre_deploy": _pre_deploy_gate,
    "smoke": _smoke_gate,
    "analysis": _analysis_gate,
    "switch": _switch_gate,
    "watch": _watch_gate,
}


def _switched(rollout: Rollout) -> None:
    """The switch succeeded: the idle slot is live now, the old one kept as it is for an instant switch back."""
    strategy = strategy_of(rollout)
    environment = rollout.release.environment
    Environment.objects.filter(pk=environment.pk).update(live_slot=strategy.idle)
    audit.record(
        Actor.system(),
        "environment.switched",
        environment,
        application=rollout.release.application,
        before={"live_slot": strategy.live},
        after={"live_slot": strategy.idle},
        note=f"release #{rollout.release_id}",
    )

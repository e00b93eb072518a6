"""Gates the worker runs between deploys: each takes its step and returns (ok, output)."""

from __future__ import annotations

import logging
import urllib.error
import urllib.request

from django.conf import settings
from django.utils.module_loading import import_string

from environments.models import Environment
from releases import audit
from releases.models import Rollout, RolloutStep
from releases.permissions import Actor
from releases.planning import (
    BlueGreen,
    slots,
)
from releases.rollouts.commands import _run_command
from releases.rollouts.common import plan_of, strategy_of


def analyse(rollout: Rollout, wave: int, traffic_percent: int | None) -> bool | tuple[bool, str]:
    """Canary analysis between steps, the default hook: it passes. Monitoring plugs in here.

    A hook is any callable named by the `SLIPWAY_CANARY_ANALYSIS` setting (a dotted path) taking the rollout, the
    wave just deployed (counted from 1, as the API shows it) and the traffic percentage it serves, and returning
    True to go on or False to revert — optionally as `(ok, detail)`, the detail shown on the step. It runs in the worker, outside any transaction and
    lock, so it may take its time (query metrics, wait for samples); an exception counts as a failure.
    """
    return True, f"no analysis configured: pass ({traffic_percent}% of traffic)"

log = logging.getLogger(__name__)


def analysis_hook():
    return import_string(getattr(settings, "SLIPWAY_CANARY_ANALYSIS", "") or "releases.rollouts.gates.analyse")


def _wave_targets(step: RolloutStep) -> tuple[str, ...]:
    the_plan = plan_of(step.rollout)
    return the_plan.waves[step.wave].targets if step.wave is not None and step.wave < len(the_plan.waves) else ()


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
        ok, output = _run_command(environment.smoke_test_command, step, environment.step_timeout_seconds,
                                  SLIPWAY_WAVE=str(step.wave_number), SLIPWAY_TARGETS=",".join(_wave_targets(step)))
        lines.append(f"$ {environment.smoke_test_command}\n{output.rstrip()}\n" + ("exit 0" if ok else "failed"))
        if not ok:
            return False, "\n".join(lines)
    return True, "\n".join(lines)


def _analysis_gate(step: RolloutStep) -> tuple[bool, str]:
    the_plan = plan_of(step.rollout)
    traffic = the_plan.waves[step.wave].traffic_percent if step.wave is not None else None
    try:
        verdict = analysis_hook()(step.rollout, step.wave_number, traffic)
    except Exception as error:  # a broken hook must stop the rollout, not the worker
        log.exception("canary analysis hook failed")
        return False, f"analysis hook raised {type(error).__name__}: {error}"
    ok, detail = verdict if isinstance(verdict, tuple) else (bool(verdict), "")
    return bool(ok), str(detail) or ("analysis: pass" if ok else "analysis: fail")


def _switch_gate(step: RolloutStep) -> tuple[bool, str]:
    """Blue/green: send traffic to the slot just deployed (or, switching back, to the one that ran before)."""
    environment = step.rollout.release.environment
    strategy = strategy_of(step.rollout)
    assert isinstance(strategy, BlueGreen)
    serving = slots(step.rollout.targets)[strategy.idle]
    if not environment.switch_command:
        return True, (f"traffic → {strategy.idle} ({', '.join(serving)}); no switch command: your router reads "
                      f"live_slot from the environment")
    ok, output = _run_command(environment.switch_command, step, environment.step_timeout_seconds,
                              SLIPWAY_SLOT=strategy.idle, SLIPWAY_PREVIOUS_SLOT=strategy.live,
                              SLIPWAY_TARGETS=",".join(serving))
    return ok, f"traffic → {strategy.idle} ({', '.join(serving)})\n{output}"


GATES = {"pre_deploy": _pre_deploy_gate, "smoke": _smoke_gate, "analysis": _analysis_gate, "switch": _switch_gate}


def _switched(rollout: Rollout) -> None:
    """The switch succeeded: the idle slot is live now, the old one kept as it is for an instant switch back."""
    strategy = strategy_of(rollout)
    environment = rollout.release.environment
    Environment.objects.filter(pk=environment.pk).update(live_slot=strategy.idle)
    audit.record(Actor.system(), "environment.switched", environment, application=rollout.release.application,
                 before={"live_slot": strategy.live}, after={"live_slot": strategy.idle},
                 note=f"release #{rollout.release_id}")

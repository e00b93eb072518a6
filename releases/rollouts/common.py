"""What the engine's parts share: active states, the plan read from rows, and the effects after commit."""

from __future__ import annotations

import logging

from dashboard.live import publish_on_commit
from releases.models import Rollout, RolloutStep
from releases.planning import (
    Progress,
    Rollback,
    parse_strategy,
    plan,
)
from releases.queue import enqueue_on_commit
from releases.signals import agent_work_available

log = logging.getLogger(__name__)


ACTIVE = (Rollout.Status.PENDING, Rollout.Status.RUNNING, Rollout.Status.REVERTING)


OPEN_STEP = (RolloutStep.Status.PENDING, RolloutStep.Status.RUNNING)


def progress_from(data: dict) -> Progress:
    return Progress(
        deployed=frozenset(data.get("deployed", ())),
        healthy=frozenset(data.get("healthy", ())),
        failed=frozenset(data.get("failed", ())),
        gates=frozenset(tuple(g) for g in data.get("gates", ())),
        reverting=bool(data.get("reverting")),
        reverted=frozenset(data.get("reverted", ())),
        waiting=frozenset(data.get("waiting", ())),
        held=frozenset(data.get("held", ())),
        retry=frozenset(data.get("retry", ())),
    )


def progress_to(progress: Progress) -> dict:
    return {
        "deployed": sorted(progress.deployed),
        "healthy": sorted(progress.healthy),
        "failed": sorted(progress.failed),
        "gates": sorted([list(g) for g in progress.gates], key=str),
        "reverting": progress.reverting,
        "reverted": sorted(progress.reverted),
        **{
            name: sorted(getattr(progress, name))
            for name in ("waiting", "held", "retry")
            if getattr(progress, name)  # a rollback's only: other rollouts' progress stays as it was
        },
    }


def strategy_of(rollout: Rollout):
    data = rollout.strategy or {"kind": "cautious"}
    return (
        Rollback(batch_size=data.get("batch_size"))
        if data.get("kind") == "rollback"
        else parse_strategy(data)
    )


def is_rollback(rollout: Rollout) -> bool:
    """A rollback's rollout (the fast path back): it never reverts; hosts it did not reach are retried."""
    return (rollout.strategy or {}).get("kind") == "rollback"


def plan_of(rollout: Rollout):
    environment = rollout.release.environment
    return plan(
        rollout.targets,
        strategy_of(rollout),
        smoke=bool(environment.smoke_test_urls or environment.smoke_test_command),
        pre_deploy=bool(environment.pre_deploy_command),
        manual_gates=environment.manual_gates,
    )


def publish_changed(rollout_id: int) -> None:
    """Watchers of the rollout page re-render its progress after commit."""
    publish_on_commit(f"rollout.{rollout_id}", "rollout.changed", rollout_id=rollout_id)


def publish_environment_changed(environment_id: int) -> None:
    """Watchers of the environment page re-render it after commit (hosts going offline)."""
    publish_on_commit(f"environment.{environment_id}", "environment.changed", environment_id=environment_id)


def notify_agents() -> None:
    """Agents long-polling this process get newly dispatched jobs at once (others within a broker tick): the
    broker listens to `agent_work_available`; the engine never imports it."""
    agent_work_available.send(sender=Rollout)


def enqueue_advance(rollout_id: int) -> None:
    enqueue_on_commit("releases.tasks.advance_rollout", rollout_id)


def next_index(rollout: Rollout) -> int:
    """The number of the rollout's next step: steps count from 0, in the order they were recorded."""
    top = rollout.steps.order_by("-index").values_list("index", flat=True).first()
    return 0 if top is None else top + 1

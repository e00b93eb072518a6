"""The rollout engine: a reconciler, the steps Slipway runs itself, gates between waves, and people's controls.

- `reconciler`: `start_rollout` and `do_advance_rollout` — fold finished steps, ask the pure planner
  (`releases.planning`) what is next, record it as steps, wait. Idempotent; row locks make two workers safe.
  Its pass is spread over `folding` (a wave's reports into progress), `retries` (a rollback's hosts not reached),
  `dispatching` (recording steps) and `liveness` (stuck steps, silent agents).
- `drivers`: the steps a worker performs (the command and webhook drivers, gates), outside transactions.
- `gates`: pre-deploy hook, smoke test, canary analysis, blue/green switch — each `(step) -> (ok, output)`.
- `commands`: shell commands and signed webhook calls the drivers and gates make.
- `controls`: pause, resume, cancel, revert now.
- `common`: what they share, and the effects after commit (watchers told, the next advance enqueued, agents woken
  through `releases.signals.agent_work_available`).

Imports run one way: reconciler → folding → retries → dispatching, liveness; reconciler → drivers → gates →
commands → common. The engine never imports an interface.
"""

from releases.rollouts.commands import sign
from releases.rollouts.common import enqueue_advance, notify_agents, publish_changed
from releases.rollouts.controls import do_control_rollout
from releases.rollouts.drivers import run_server_steps
from releases.rollouts.reconciler import (
    check_running_rollouts,
    do_advance_rollout,
    do_mark_offline_agents,
    start_rollout,
)

__all__ = [
    "check_running_rollouts",
    "do_advance_rollout",
    "do_control_rollout",
    "do_mark_offline_agents",
    "enqueue_advance",
    "notify_agents",
    "publish_changed",
    "run_server_steps",
    "sign",
    "start_rollout",
]

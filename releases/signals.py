"""What the release write path tells the layers above it, without importing them.

- `release_succeeded(release)`: a release reached `succeeded` (after its transition, inside the same work).
  Promotions connect to it (`releases/apps.py`): blocked releases of that environment are re-checked and
  auto-promotion starts — the rollout engine never imports the promotion layer.
- `agent_work_available()`: the engine dispatched agent steps. The agent broker of a web process connects to it
  (`environments/agent_asgi.py`) to hand them to long-polling agents at once; a worker process has no broker and
  nobody listens, which is fine: agents in any process pick steps up within a broker tick.
"""

from django.dispatch import Signal

release_succeeded = Signal()
agent_work_available = Signal()

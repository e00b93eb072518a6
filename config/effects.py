"""Effects after commit: the one way code schedules what may happen only once its transaction commits — live
events (`dashboard.live`), Celery work (`releases.queue`), agents woken, notifications, caches told, signals.

Nothing is sent for a transaction that rolls back; outside a transaction the effect runs at once (Django's
`on_commit`). `tests/test_architecture.py` refuses `transaction.on_commit` anywhere else.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from django.db import transaction


def after_commit(fn: Callable[..., object], /, *args: Any, robust: bool = True, **kwargs: Any) -> None:
    """Call `fn(*args, **kwargs)` after the current transaction commits. `robust`: a failure is logged and the
    other effects still run (broadcasts, enqueues); `robust=False` lets it reach the caller, for effects that are
    part of the request's answer (an auto-promotion, a release dispatched at once)."""
    transaction.on_commit(partial(fn, *args, **kwargs) if args or kwargs else fn, robust=robust)

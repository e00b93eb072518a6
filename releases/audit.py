"""The audit trail: one event per write, inside the write's own transaction."""

from __future__ import annotations

from typing import Any

from django.db import connection, models

from releases.models import Application, AuditEvent
from releases.permissions import Actor


def environment_of(target: models.Model) -> int | None:
    """The environment an audited object belongs to: itself, or the one it names (no query: ids only)."""
    if target._meta.label_lower == "environments.environment":
        return target.pk
    return getattr(target, "environment_id", None)


def record(
    actor: Actor,
    kind: str,
    target: models.Model,
    *,
    application: Application | None = None,
    before: Any = None,
    after: Any = None,
    note: str = "",
) -> AuditEvent:
    # Outside a transaction the event could survive a failed write, or the write lose its event.
    assert connection.in_atomic_block, "audit events are written inside the write's transaction"
    if application is None and isinstance(target, Application):
        application = target
    return AuditEvent.objects.create(
        actor=actor.user,
        actor_label=actor.label,
        kind=kind,
        application=application,
        environment_id=environment_of(target),
        object_type=target._meta.label_lower,
        object_id=str(target.pk),
        object_repr=str(target)[:200],
        before=before,
        after=after,
        note=note,
    )

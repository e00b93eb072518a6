"""Writers for environments: one durable transaction each, with its audit event."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from config.errors import Conflict
from environments.models import Environment
from releases import audit
from releases.models import Application
from releases.permissions import Actor, Permission, require

EDITABLE_FIELDS = ("name", "position", "requires_approval", "description", "approval_policy", "required_approvals",
                   "auto_promote", "pending_warn_hours", "pending_warn_changes", "strategy", "step_timeout_seconds",
                   "heartbeat_timeout_seconds", "rollback_batch_size", "smoke_test_urls", "flag_change_requests",
                   "driver", "deploy_command", "pre_deploy_command", "manual_gates", "webhook_url", "webhook_secret")


@transaction.atomic(durable=True)
def do_create_environment(actor: Actor, application: Application, *, name: str, position: int,
                          **settings: Any) -> Environment:
    """Add an environment to an application's pipeline at a free position."""
    require(actor, Permission.MANAGE_ENVIRONMENTS, application)
    _check_free(application, name=name, position=position)
    unknown = set(settings) - set(EDITABLE_FIELDS)
    if unknown:
        raise TypeError(f"unknown environment settings: {sorted(unknown)}")
    environment = Environment.objects.create(application=application, name=name, position=position, **settings)
    audit.record(actor, "environment.created", environment, application=application,
                 after=environment_state(environment))
    return environment


@transaction.atomic(durable=True)
def do_update_environment(actor: Actor, environment: Environment, **changes: Any) -> Environment:
    """Change an environment's settings; the audit event carries before and after."""
    environment = Environment.objects.select_for_update(of=("self",)).select_related("application").get(pk=environment.pk)
    require(actor, Permission.MANAGE_ENVIRONMENTS, environment.application, environment)
    before = environment_state(environment)
    _check_free(environment.application, exclude=environment.pk,
                name=changes.get("name"), position=changes.get("position"))
    for field, value in changes.items():
        setattr(environment, field, value)
    environment.save(update_fields=list(changes) or None)
    after = environment_state(environment)
    if after != before:
        audit.record(actor, "environment.updated", environment, application=environment.application,
                     before=before, after=after)
    return environment


SECRET_FIELDS = frozenset({"webhook_secret"})


def environment_state(environment: Environment) -> dict[str, Any]:
    """Settings as the audit trail shows them: secrets only as set or not."""
    return {field: (("set" if getattr(environment, field) else "") if field in SECRET_FIELDS
                    else getattr(environment, field)) for field in EDITABLE_FIELDS}


def _check_free(application: Application, *, exclude: int | None = None, name: str | None = None,
                position: int | None = None) -> None:
    others = Environment.objects.filter(application=application).exclude(pk=exclude)
    if name is not None and others.filter(name=name).exists():
        raise Conflict(f"{application.slug} has an environment '{name}' already.", field="name")
    if position is not None and others.filter(position=position).exists():
        raise Conflict(f"Position {position} is taken in {application.slug}'s pipeline.", field="position")


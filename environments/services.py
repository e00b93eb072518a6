"""Writers for environments: one durable transaction each, with its audit event."""

from __future__ import annotations

import secrets
from typing import Any

from django.db import transaction
from django.utils import timezone

from config.errors import Invalid
from environments.exceptions import EnvironmentExists, PositionTaken, UnknownEnvironmentSetting
from environments.models import Environment, RegistrationToken, Target
from monitoring.selectors import unknown_strategy_template
from releases import audit
from releases.models import ApiToken, Application
from releases.permissions import Actor, Permission, require
from releases.planning import StrategyError, requested_strategy

EDITABLE_FIELDS = (
    "name",
    "position",
    "requires_approval",
    "description",
    "approval_policy",
    "required_approvals",
    "auto_promote",
    "pending_warn_hours",
    "pending_warn_changes",
    "strategy",
    "step_timeout_seconds",
    "heartbeat_timeout_seconds",
    "rollback_batch_size",
    "smoke_test_urls",
    "flag_change_requests",
    "driver",
    "deploy_command",
    "pre_deploy_command",
    "manual_gates",
    "webhook_url",
    "webhook_secret",
    "smoke_test_command",
    "switch_command",
    "live_slot",
    "rollback_on_new_errors",
)


@transaction.atomic(durable=True)
def do_create_environment(
    actor: Actor, application: Application, *, name: str, position: int, **settings: Any
) -> Environment:
    """Add an environment to an application's pipeline at a free position."""
    require(actor, Permission.MANAGE_ENVIRONMENTS, application)
    _check_free(application, name=name, position=position)
    unknown = set(settings) - set(EDITABLE_FIELDS)
    if unknown:
        raise UnknownEnvironmentSetting(
            f"Unknown environment setting {', '.join(sorted(unknown))}.", field=sorted(unknown)[0]
        )
    if "strategy" in settings:
        settings["strategy"] = check_strategy(application.pk, settings["strategy"])
    environment = Environment.objects.create(
        application=application, name=name, position=position, **settings
    )
    audit.record(
        actor,
        "environment.created",
        environment,
        application=application,
        after=environment_state(environment),
    )
    return environment


@transaction.atomic(durable=True)
def do_update_environment(actor: Actor, environment: Environment, **changes: Any) -> Environment:
    """Change an environment's settings; the audit event carries before and after."""
    environment = (
        Environment.objects.select_for_update(of=("self",))
        .select_related("application")
        .get(pk=environment.pk)
    )
    require(actor, Permission.MANAGE_ENVIRONMENTS, environment.application, environment)
    before = environment_state(environment)
    _check_free(
        environment.application,
        exclude=environment.pk,
        name=changes.get("name"),
        position=changes.get("position"),
    )
    if "strategy" in changes:
        changes["strategy"] = check_strategy(environment.application_id, changes["strategy"])
    for field, value in changes.items():
        setattr(environment, field, value)
    environment.save(update_fields=list(changes) or None)
    after = environment_state(environment)
    if after != before:
        audit.record(
            actor,
            "environment.updated",
            environment,
            application=environment.application,
            before=before,
            after=after,
        )
    return environment


SECRET_FIELDS = frozenset({"webhook_secret"})


def environment_state(environment: Environment) -> dict[str, Any]:
    """Settings as the audit trail shows them: secrets only as set or not."""
    return {
        field: (
            ("set" if getattr(environment, field) else "")
            if field in SECRET_FIELDS
            else getattr(environment, field)
        )
        for field in EDITABLE_FIELDS
    }


def check_strategy(application_id: int, strategy: Any) -> dict[str, Any]:
    """A rollout strategy someone asks for (an environment's or a release's), as it is stored (`{}`: the default):
    its shape (`releases.planning.requested_strategy`: no `rollback` kind, no key Slipway sets itself) and the
    analysis templates it names. Every caller — API, pages, services — gets the same rule; `Invalid` names
    `strategy`."""
    try:
        strategy = requested_strategy(strategy)
    except StrategyError as error:
        message = error.message if error.field == "strategy" else f"{error.field}: {error.message}"
        raise Invalid(message, field="strategy") from None
    if (why := unknown_strategy_template(application_id, strategy)) is not None:
        raise Invalid(why, field="strategy")
    return strategy


def _check_free(
    application: Application,
    *,
    exclude: int | None = None,
    name: str | None = None,
    position: int | None = None,
) -> None:
    others = Environment.objects.filter(application=application)
    if exclude is not None:
        others = others.exclude(pk=exclude)
    if name is not None and others.filter(name=name).exists():
        raise EnvironmentExists(f"{application.slug} has an environment '{name}' already.", field="name")
    if position is not None and others.filter(position=position).exists():
        raise PositionTaken(
            f"Position {position} is taken in {application.slug}'s pipeline.", field="position"
        )


@transaction.atomic(durable=True)
def do_create_registration_token(actor: Actor, environment: Environment) -> str:
    """A token agents register with to become targets of this environment; returns the key, keeps its hash."""
    require(actor, Permission.ADMIN, environment.application, environment)
    key = "slr_" + secrets.token_urlsafe(32)
    token = RegistrationToken.objects.create(
        environment=environment, token_hash=ApiToken.hash_key(key), created_by=actor.user
    )
    audit.record(actor, "registration_token.created", token, application=environment.application)
    return key


@transaction.atomic(durable=True)
def do_register_agent(
    registration: RegistrationToken, *, name: str, hostname: str, agent_version: str
) -> tuple[Target, str]:
    """Make an agent a target of the token's environment (again, if it re-registers); returns its new key."""
    key = "sla_" + secrets.token_urlsafe(32)
    target, _ = Target.objects.update_or_create(
        environment=registration.environment,
        name=name,
        defaults={
            "token_hash": ApiToken.hash_key(key),
            "hostname": hostname[:255],
            "agent_version": agent_version[:40],
            "status": Target.Status.ONLINE,
            "last_seen": timezone.now(),
        },
    )
    audit.record(
        Actor.system(),
        "target.registered",
        target,
        application=registration.environment.application,
        after={"name": name, "hostname": target.hostname, "environment": registration.environment.name},
    )
    return target, key

"""Writers for flags: each validates the environment's whole config with the engine before saving, records a
FlagEvent (history, revertible) and an audit event in the same transaction, and bumps the environment's
`flags_version` so every process recompiles its snapshot.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from config.errors import Invalid
from dashboard.live import publish_on_commit
from environments.models import Environment
from flags.engine import type_of_value, validate_snapshot_config
from flags.exceptions import (
    ChangeRequestDecided,
    FlagConfigInvalid,
    FlagEventNotFound,
    FlagExists,
    FlagIsPrerequisite,
    OwnChangeRequest,
    RolloutInvalid,
    ScheduleInPast,
    UnknownStateField,
    VariantsInvalid,
)
from flags.models import ChangeRequest, Flag, FlagEvent, FlagState, ScheduledChange, Segment
from flags.snapshots import default_state, environment_config, state_dict
from releases import audit
from releases.models import Application
from releases.permissions import Actor, Permission, require

STATE_FIELDS = ("enabled", "off_variant", "default_variant", "rules", "rollout", "prerequisites")


def _event(
    actor: Actor,
    flag: Flag,
    kind: str,
    *,
    environment: Environment | None = None,
    before: Any = None,
    after: Any = None,
) -> None:
    FlagEvent.objects.create(
        flag=flag,
        environment=environment,
        actor=actor.user,
        actor_label=actor.label,
        kind=kind,
        before=before,
        after=after,
    )
    audit.record(
        actor,
        f"flag.{kind}",
        flag,
        application=flag.application,
        before=before,
        after=after,
        note=f"in {environment.name}" if environment else "",
    )
    # Every recorded change is one the open flag pages show: the panel's switch, the flag page, its history.
    publish_on_commit(
        f"flags.{flag.application_id}",
        "flags.changed",
        flag_id=flag.pk,
        environment_id=environment.pk if environment else 0,
    )


def _bump(environments) -> None:
    Environment.objects.filter(pk__in=[e.pk for e in environments]).update(
        flags_version=F("flags_version") + 1
    )


def _validate(environment: Environment, flag: Flag, state: dict) -> None:
    errors = validate_snapshot_config(environment_config(environment, override=(flag, state)))
    if errors:
        path, message = errors[0]
        # Name the field within the flag when the error is this flag's.
        field = path.split(".", 1)[1] if path.startswith("flags[") and "." in path else path
        raise FlagConfigInvalid(
            message, field=field, extra={"errors": [{"path": p, "message": m} for p, m in errors]}
        )


def _check_variants(flag_type: str, variants: dict) -> None:
    if not isinstance(variants, dict) or not variants:
        raise VariantsInvalid("Give at least one variant: an object of name → value.", field="variants")
    for name, value in variants.items():
        if type_of_value(value) != flag_type:
            raise VariantsInvalid(f"Variant '{name}' is not a {flag_type}.", field=f"variants.{name}")


@transaction.atomic(durable=True)
def do_create_flag(
    actor: Actor,
    application: Application,
    *,
    key: str,
    type: str = "boolean",
    name: str = "",
    description: str = "",
    variants: dict | None = None,
    owner: str = "",
    tags: list[str] | None = None,
) -> Flag:
    """Create a flag, off in every environment (boolean flags get `on`/`off` variants)."""
    require(actor, Permission.EDIT_FLAGS, application)
    if Flag.objects.filter(application=application, key=key).exists():
        raise FlagExists(f"A flag '{key}' exists already.", field="key")
    if variants is None:
        if type != Flag.Type.BOOLEAN:
            raise VariantsInvalid(f"A {type} flag needs its variants.", field="variants")
        variants = {"on": True, "off": False}
    _check_variants(type, variants)
    flag = Flag.objects.create(
        application=application,
        key=key,
        type=type,
        name=name or key,
        description=description,
        variants=variants,
        owner=owner,
        tags=tags or [],
    )
    environments = list(Environment.objects.filter(application=application))
    for environment in environments:
        _validate(environment, flag, default_state(flag))
    _event(actor, flag, "created", after={"key": key, "type": type, "variants": variants})
    _bump(environments)
    return flag


@transaction.atomic(durable=True)
def do_update_flag(actor: Actor, flag: Flag, **changes: Any) -> Flag:
    """Change a flag's description, owner, tags or variants."""
    flag = Flag.objects.select_for_update().select_related("application").get(pk=flag.pk)
    require(actor, Permission.EDIT_FLAGS, flag.application)
    before = {k: getattr(flag, k) for k in changes}
    if "variants" in changes:
        _check_variants(flag.type, changes["variants"])
    for key, value in changes.items():
        setattr(flag, key, value)
    environments = list(Environment.objects.filter(application=flag.application))
    for environment in environments:
        state = FlagState.objects.filter(flag=flag, environment=environment).first()
        _validate(environment, flag, state_dict(state) if state else default_state(flag))
    flag.save()
    _event(actor, flag, "updated", before=before, after=changes)
    _bump(environments)
    return flag


@transaction.atomic(durable=True)
def do_archive_flag(actor: Actor, flag: Flag) -> Flag:
    """Archive a flag: it stops being served (OFREP answers FLAG_NOT_FOUND) but keeps its history."""
    flag = Flag.objects.select_for_update().select_related("application").get(pk=flag.pk)
    require(actor, Permission.EDIT_FLAGS, flag.application)
    dependants = [
        s.flag.key
        for s in FlagState.objects.select_related("flag").filter(flag__application=flag.application)
        if any(p.get("flag") == flag.key for p in s.prerequisites or [])
    ]
    if dependants:
        raise FlagIsPrerequisite(
            f"Flags {', '.join(sorted(set(dependants)))} need '{flag.key}' as a prerequisite.", field="key"
        )
    if flag.archived_at is None:
        flag.archived_at = timezone.now()
        flag.save(update_fields=["archived_at"])
        _event(actor, flag, "archived")
        _bump(Environment.objects.filter(application=flag.application))
    return flag


@transaction.atomic(durable=True)
def do_set_flag_state(
    actor: Actor, flag: Flag, environment: Environment, *, kind: str = "state_changed", **changes: Any
) -> FlagState:
    """Change how a flag behaves in one environment (on/off, variants served, rules, rollout, prerequisites)."""
    require(actor, Permission.EDIT_FLAGS, flag.application, environment)
    return _apply_state(actor, flag, environment, kind=kind, **changes)


def rollout_for_percentage(flag: Flag, state: dict, percentage: int | None) -> dict | None:
    """The `rollout_percentage` shortcut as a full rollout: the percentage gets what the flag serves when on.

    An existing rollout keeps its weights.  Otherwise a boolean flag rolls out its `true` variant and other
    flags their default variant; outside the percentage users get the off variant (see flags/engine/), so
    30 % means 30 %.  `None` removes the rollout: everyone who falls through the rules gets the default variant.
    """
    if percentage is None:
        return None
    if state.get("rollout"):
        return {**state["rollout"], "percentage": percentage}
    if flag.type == Flag.Type.BOOLEAN:
        served = next(
            (name for name, value in flag.variants.items() if value is True), state["default_variant"]
        )
    else:
        served = state["default_variant"]
    if served == state["off_variant"]:
        raise RolloutInvalid(
            f"The percentage would get '{served}', the variant users get when the flag is off: choose "
            "the variant to roll out (default_variant, or rollout.weights).",
            field="rollout_percentage",
        )
    return {"percentage": percentage, "weights": {served: 100}}


def _candidate(flag: Flag, environment: Environment, changes: dict) -> tuple[FlagState | None, dict, dict]:
    unknown = set(changes) - {*STATE_FIELDS, "rollout_percentage"}
    if unknown:
        raise UnknownStateField(f"Unknown field {', '.join(sorted(unknown))}.", field=sorted(unknown)[0])
    if "rollout" in changes and "rollout_percentage" in changes:
        raise RolloutInvalid("Give rollout or rollout_percentage, not both.", field="rollout_percentage")
    state = FlagState.objects.select_for_update().filter(flag=flag, environment=environment).first()
    before = state_dict(state) if state else default_state(flag)
    return state, before, proposed_state(flag, environment, before, changes)


def proposed_state(flag: Flag, environment: Environment, before: dict, changes: dict) -> dict:
    """The state `changes` (as the API and the change requests take them: state fields, or the
    `rollout_percentage` shortcut) make of `before` in `environment`; the domain error applying them would raise
    when they cannot apply."""
    after = {**before, **changes}
    if "rollout_percentage" in changes:
        after["rollout"] = rollout_for_percentage(flag, after, after.pop("rollout_percentage"))
    _validate(environment, flag, after)
    return after


def _apply_state(
    actor: Actor, flag: Flag, environment: Environment, *, kind: str, **changes: Any
) -> FlagState:
    state, before, after = _candidate(flag, environment, changes)
    if state is None:
        state = FlagState(flag=flag, environment=environment)
    for key in STATE_FIELDS:
        setattr(state, key, after[key])
    state.save()
    if after != before:
        _event(actor, flag, kind, environment=environment, before=before, after=after)
        _bump([environment])
    return state


def do_kill_switch(actor: Actor, flag: Flag, environment: Environment) -> FlagState:
    """Turn a flag off in one environment, in one action."""
    return do_set_flag_state(actor, flag, environment, kind="killed", enabled=False)


def do_revert_flag(actor: Actor, flag: Flag, event: FlagEvent) -> FlagState:
    """Put an environment's flag state back as it was before an earlier change."""
    if event.flag_id != flag.pk or event.environment is None or event.before is None:
        raise FlagEventNotFound("No revertible state change with that id for this flag.")
    state = {k: event.before[k] for k in STATE_FIELDS if k in event.before}
    return do_set_flag_state(actor, flag, event.environment, kind="reverted", **state)


@transaction.atomic(durable=True)
def do_save_segment(
    actor: Actor, application: Application, *, name: str, conditions: list, description: str = ""
) -> Segment:
    """Create or change a segment; every environment's flags must still compile with it."""
    require(actor, Permission.EDIT_FLAGS, application)
    segment = Segment.objects.select_for_update().filter(application=application, name=name).first()
    before = {"conditions": segment.conditions} if segment else None
    segments = {s.name: {"conditions": s.conditions} for s in Segment.objects.filter(application=application)}
    segments[name] = {"conditions": conditions}
    environments = list(Environment.objects.filter(application=application))
    for environment in environments:
        errors = validate_snapshot_config(environment_config(environment, segments=segments))
        if errors:
            raise FlagConfigInvalid(
                errors[0][1],
                field=errors[0][0].replace(f"segments.{name}.", ""),
                extra={"errors": [{"path": p, "message": m} for p, m in errors]},
            )
    if segment is None:
        segment = Segment(application=application, name=name)
    segment.conditions, segment.description = conditions, description
    segment.save()
    audit.record(
        actor,
        "segment.saved",
        segment,
        application=application,
        before=before,
        after={"conditions": conditions},
    )
    _bump(environments)
    return segment


def needs_review(environment: Environment) -> bool:
    return environment.flag_change_requests


def do_change_flag_state(
    actor: Actor, flag: Flag, environment: Environment, **changes: Any
) -> FlagState | ChangeRequest:
    """What the API and the panel call to change a flag in an environment: applied at once, or proposed as a
    change request where the environment wants a second person (then a `ChangeRequest` comes back)."""
    if needs_review(environment):
        return do_propose_change(actor, flag, environment, **changes)
    return do_set_flag_state(actor, flag, environment, **changes)


@transaction.atomic(durable=True)
def do_propose_change(actor: Actor, flag: Flag, environment: Environment, **changes: Any) -> ChangeRequest:
    """Propose a flag change in an environment with change requests on; another person approves it."""
    require(actor, Permission.EDIT_FLAGS, flag.application, environment)
    _candidate(flag, environment, changes)  # refuse now what could never apply
    request = ChangeRequest.objects.create(
        flag=flag, environment=environment, changes=changes, proposed_by=actor.user
    )
    _event(actor, flag, "change_proposed", environment=environment, after=changes)
    return request


@transaction.atomic(durable=True)
def do_decide_change(
    actor: Actor, request: ChangeRequest, *, approve: bool, comment: str = ""
) -> ChangeRequest:
    """Approve (and apply) or reject a change request; nobody approves their own."""
    request = (
        ChangeRequest.objects.select_for_update()
        .select_related("flag__application", "environment")
        .get(pk=request.pk)
    )
    require(actor, Permission.EDIT_FLAGS, request.flag.application, request.environment)
    if request.status != ChangeRequest.Status.OPEN:
        raise ChangeRequestDecided(f"Change request #{request.pk} is {request.status} already.")
    if actor.user is not None and request.proposed_by_id == actor.user.pk:
        raise OwnChangeRequest(
            "You cannot approve or reject your own change request: ask another flag editor."
        )
    request.status = ChangeRequest.Status.APPLIED if approve else ChangeRequest.Status.REJECTED
    request.reviewed_by, request.comment, request.decided_at = actor.user, comment, timezone.now()
    request.save(update_fields=["status", "reviewed_by", "comment", "decided_at"])
    if approve:
        _apply_state(actor, request.flag, request.environment, kind="change_applied", **request.changes)
    else:
        _event(
            actor,
            request.flag,
            "change_rejected",
            environment=request.environment,
            after={"comment": comment},
        )
    return request


@transaction.atomic(durable=True)
def do_schedule_change(
    actor: Actor, flag: Flag, environment: Environment, *, run_at, changes: dict
) -> ScheduledChange:
    """At a given time, apply a change (enabled, rollout, rules…) to a flag in an environment."""
    require(actor, Permission.EDIT_FLAGS, flag.application, environment)
    if run_at <= timezone.now():
        raise ScheduleInPast("Schedule it in the future.", field="at")
    _candidate(flag, environment, changes)
    schedule = ScheduledChange.objects.create(
        flag=flag, environment=environment, changes=changes, run_at=run_at, created_by=actor.user
    )
    _event(
        actor, flag, "change_scheduled", environment=environment, after={"at": run_at.isoformat(), **changes}
    )
    return schedule


def do_apply_due_schedules() -> int:
    """Apply scheduled changes whose time has come, each in its own transaction; returns how many applied."""
    applied = 0
    for schedule_id in ScheduledChange.objects.filter(
        applied_at__isnull=True, run_at__lte=timezone.now(), error=""
    ).values_list("pk", flat=True):
        with transaction.atomic():
            schedule = (
                ScheduledChange.objects.select_for_update(skip_locked=True)
                .select_related("flag__application", "environment")
                .filter(pk=schedule_id, applied_at__isnull=True)
                .first()
            )
            if schedule is None:
                continue
            schedule.applied_at = timezone.now()
            try:
                with transaction.atomic():
                    _apply_state(
                        Actor.system(),
                        schedule.flag,
                        schedule.environment,
                        kind="schedule_applied",
                        **schedule.changes,
                    )
                applied += 1
            except Invalid as error:  # the flag changed since: keep the schedule, say why it did not apply
                schedule.error = error.detail
            schedule.save(update_fields=["applied_at", "error"])
    return applied

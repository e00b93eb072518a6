"""What the flag pages show, built once for the view that serves them and the consumer that keeps them true."""

from __future__ import annotations

import json

from config.errors import SlipwayError
from flags import selectors
from flags.history import describe_change
from flags.models import ChangeRequest, Flag, FlagEvent
from flags.rule_builder import OPERATOR_CHOICES, Row, rows_of
from flags.services import proposed_state
from flags.snapshots import default_state, state_dict
from releases.models import Application
from releases.permissions import Actor, Permission, can, refusal


def flag_list_page(
    application: Application, user, *, search: str = "", tag: str = "", stale: bool = False, flag_ids=None
) -> dict:
    """The flags panel's table for `user` (whose switches are disabled where they may not change flags)."""
    environments = list(application.environments.order_by("position"))
    actor = Actor(user)
    return {
        "application": application,
        "environments": environments,
        "editable": {env.pk: can(actor, Permission.EDIT_FLAGS, application, env) for env in environments},
        # Why a switch is disabled, and why creating flags and saving segments is: said, never a 403 after a click.
        "refusals": {env.pk: refusal(actor, Permission.EDIT_FLAGS, application, env) for env in environments},
        "flags_refusal": refusal(actor, Permission.EDIT_FLAGS, application),
        # The pipeline's end (production): switching a flag off there asks first, as the kill switch does.
        "last_environment_pk": environments[-1].pk if environments else None,
        "flags": selectors.flag_list(application, search=search, tag=tag, stale=stale, flag_ids=flag_ids),
        "q": search,
        "stale": stale,
    }


def rows_of_json(text: str) -> list[Row] | None:
    """Builder rows for rules typed as JSON (None when it does not parse or does not fit rows)."""
    try:
        rules = json.loads(text or "[]")
    except ValueError:
        return None
    return rows_of(rules) if isinstance(rules, list) and all(isinstance(r, dict) for r in rules) else None


def rollout_weights(flag: Flag, state: dict) -> list[tuple[str, str]] | None:
    """A rollout's weights as the card shows them, one number per variant (None: a boolean flag rolls out `true`)."""
    if flag.type == Flag.Type.BOOLEAN:
        return None
    weights = (state.get("rollout") or {}).get("weights") or {}
    return [(name, str(weights[name]) if name in weights else "") for name in flag.variants]


def flag_page(application: Application, flag: Flag, user, posted=None) -> dict:
    """The flag page for `user`; `posted` = (environment, form) keeps what was typed into one card, with errors."""
    environments = list(application.environments.order_by("position"))
    states = {s.environment_id: s for s in selectors.states_with_author(flag.states.all())}
    actor = Actor(user)
    cards = []
    for environment in environments:
        row = states.get(environment.pk)
        state = state_dict(row) if row else default_state(flag)
        card = {
            "env": environment,
            "state": state,
            "changed_by": getattr(row, "changed_by", None),
            "changed_at": getattr(row, "changed_at", None),
            "rules_json": json.dumps(state["rules"], indent=2),
            "rule_rows": rows_of(state["rules"]),
            "rules_from": "builder" if rows_of(state["rules"]) is not None else "json",
            "row_errors": {},
            "percentage": (state["rollout"] or {}).get("percentage"),
            "rollout_weights": rollout_weights(flag, state),
            "errors": {},
            "can_edit": can(actor, Permission.EDIT_FLAGS, application, environment),
            "chart": selectors.evaluation_series(flag, environment),
        }
        if posted is not None and posted[0].pk == environment.pk:
            card.update(posted[1].as_card(state))
            if card["rollout_weights"] is not None:  # as typed
                typed = card["rollout_weights_typed"]
                card["rollout_weights"] = [(name, typed.get(name, "")) for name, _ in card["rollout_weights"]]
        cards.append(card)
    refusals = {env.pk: refusal(actor, Permission.EDIT_FLAGS, application, env) for env in environments}
    history = list(FlagEvent.objects.filter(flag=flag).select_related("environment")[:50])
    for event in history:
        event.lines = describe_change(event.before, event.after)
        event.refusal = refusals.get(event.environment_id) if event.environment_id else None
    changes = list(
        ChangeRequest.objects.filter(flag=flag, status=ChangeRequest.Status.OPEN).select_related(
            "environment", "proposed_by"
        )
    )
    for change in changes:  # what it would change, said as the history says it
        change.refusal = refusals.get(change.environment_id)
        row = states.get(change.environment_id)
        current = state_dict(row) if row else default_state(flag)
        try:
            change.lines = describe_change(
                current, proposed_state(flag, change.environment, current, change.changes)
            )
        except SlipwayError as error:  # the flag changed since: approving it would fail, and says why
            change.lines = describe_change({}, change.changes) + [f"cannot apply now: {error.detail}"]
    return {
        "application": application,
        "flag": flag,
        "cards": cards,
        "history": history,
        "environments": environments,
        "change_requests": changes,
        "operators": OPERATOR_CHOICES,
        "edit_flag_refusal": refusal(actor, Permission.EDIT_FLAGS, application),
    }


def flag_charts(application: Application, flag: Flag) -> dict:
    """The evaluation charts alone (they grow as evaluation counts are flushed)."""
    environments = list(application.environments.order_by("position"))
    return {"cards": [{"env": env, "chart": selectors.evaluation_series(flag, env)} for env in environments]}

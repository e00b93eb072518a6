"""The product managers' flag panel: htmx in place, every write through flags.services."""

from __future__ import annotations

import json
import re

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from config.errors import Invalid, SlipwayError
from environments.models import Environment
from flags import selectors
from flags.engine import evaluate
from flags.history import describe_change, describe_state
from flags.models import KEY_PATTERN, ChangeRequest, Flag, FlagEvent, FlagState, Segment
from flags.services import (
    do_change_flag_state,
    do_create_flag,
    do_decide_change,
    do_kill_switch,
    do_revert_flag,
    do_save_segment,
    do_update_flag,
)
from flags.snapshots import default_state, snapshots, state_dict
from releases.models import Application
from releases.permissions import Actor, Permission, can, require


def _application(request: HttpRequest, slug: str) -> Application:
    application = get_object_or_404(Application, slug=slug)
    require(Actor(request.user), Permission.READ_FLAGS, application)
    return application


@login_required
def flag_list(request: HttpRequest, slug: str) -> HttpResponse:
    application = _application(request, slug)
    if request.method == "POST":
        key = (request.POST.get("key") or "").strip()
        flag = do_create_flag(Actor(request.user), application, key=key, name=request.POST.get("name", "").strip())
        return redirect("flags:detail", slug=slug, key=flag.key)
    environments = list(application.environments.order_by("position"))
    actor = Actor(request.user)
    context = {
        "application": application,
        "environments": environments,
        "editable": {env.pk: can(actor, Permission.EDIT_FLAGS, application, env) for env in environments},
        "flags": selectors.flag_list(application, search=request.GET.get("q", "").strip(),
                                     tag=request.GET.get("tag", ""), stale=bool(request.GET.get("stale"))),
        "q": request.GET.get("q", ""), "stale": bool(request.GET.get("stale")),
        "segments": [{"segment": seg, "json": json.dumps(seg.conditions, indent=2)}
                     for seg in Segment.objects.filter(application=application)],
    }
    template = "flags/list.html#rows" if request.htmx and request.htmx.target == "flag-rows" else "flags/list.html"
    return render(request, template, context)


@login_required
@require_POST
def toggle(request: HttpRequest, slug: str, key: str, name: str) -> HttpResponse:
    application = _application(request, slug)
    flag = get_object_or_404(Flag, application=application, key=key)
    environment = get_object_or_404(Environment, application=application, name=name)
    state = FlagState.objects.filter(flag=flag, environment=environment).first()
    enabled = not (state.enabled if state else False)
    state = do_change_flag_state(Actor(request.user), flag, environment, enabled=enabled)
    if isinstance(state, ChangeRequest):
        messages.info(request, f"Proposed turning {flag.key} {'on' if enabled else 'off'} in {environment.name}: "
                               "another flag editor approves it on the flag's page.")
        return redirect("flags:detail", slug=slug, key=key) if not request.htmx else _hx_redirect(
            f"/apps/{slug}/flags/{key}/")
    said = f"{flag.key} is now {describe_state(state_dict(state))} in {environment.name}."
    if request.htmx:
        response = render(request, "flags/list.html#toggle", {"flag": flag, "env": environment, "state": state,
                                                              "application": application, "can_edit": True})
        response.write(render_to_string("flags/list.html#flash-oob", {"said": said}))
        return response
    messages.success(request, said)
    return redirect(_local(request.POST.get("next")) or reverse("flags:list", kwargs={"slug": slug}))


def _local(url: str | None) -> str | None:
    """A `next` URL only when it stays on this site (no open redirect; nonsense is ignored)."""
    if url and url.startswith("/") and url_has_allowed_host_and_scheme(url, allowed_hosts=None):
        return url
    return None


def _detail_context(request: HttpRequest, application: Application, flag: Flag,
                    posted: tuple[Environment, FlagStateForm] | None = None) -> dict:
    """The flag page; `posted` keeps what was typed into one environment's card, with its errors."""
    environments = list(application.environments.order_by("position"))
    states = {s.environment_id: s for s in flag.states.all()}
    cards = []
    for environment in environments:
        state = state_dict(states[environment.pk]) if environment.pk in states else default_state(flag)
        card = {
            "env": environment, "state": state, "rules_json": json.dumps(state["rules"], indent=2),
            "percentage": (state["rollout"] or {}).get("percentage"), "errors": {},
            "can_edit": can(Actor(request.user), Permission.EDIT_FLAGS, application, environment),
            "chart": selectors.evaluation_series(flag, environment),
        }
        if posted is not None and posted[0].pk == environment.pk:
            card.update(posted[1].as_card(state))
        cards.append(card)
    history = list(FlagEvent.objects.filter(flag=flag).select_related("environment")[:50])
    for event in history:
        event.lines = describe_change(event.before, event.after)
    changes = ChangeRequest.objects.filter(flag=flag, status=ChangeRequest.Status.OPEN).select_related(
        "environment", "proposed_by")
    return {"application": application, "flag": flag, "cards": cards, "history": history,
            "environments": environments, "change_requests": changes,
            "variants_json": json.dumps(flag.variants, indent=2),
            "can_edit_flag": can(Actor(request.user), Permission.EDIT_FLAGS, application)}


@login_required
def flag_detail(request: HttpRequest, slug: str, key: str) -> HttpResponse:
    application = _application(request, slug)
    flag = get_object_or_404(Flag, application=application, key=key)
    return render(request, "flags/detail.html", _detail_context(request, application, flag))


class FlagStateForm(forms.Form):
    """One environment's card on the flag page: what the panel may change, parsed before the service sees it."""

    enabled = forms.BooleanField(required=False)
    default_variant = forms.CharField(max_length=100, required=False)
    off_variant = forms.CharField(max_length=100, required=False)
    use_rollout = forms.BooleanField(required=False)
    percentage = forms.IntegerField(min_value=0, max_value=100, required=False,
                                    error_messages={"invalid": "The rollout percentage is a whole number from 0 to 100."})
    rules = forms.CharField(required=False, max_length=200_000, widget=forms.Textarea)

    def clean_rules(self) -> list:
        try:
            rules = json.loads(self.cleaned_data["rules"] or "[]")
        except (ValueError, RecursionError):
            raise forms.ValidationError("Rules must be valid JSON (a list of rules).") from None
        if not isinstance(rules, list):
            raise forms.ValidationError("Rules must be a list: [ {…}, {…} ].")
        return rules

    def changes(self) -> dict:
        data = self.cleaned_data
        changes: dict = {"enabled": data["enabled"], "rules": data["rules"]}
        for field in ("default_variant", "off_variant"):
            if data[field]:
                changes[field] = data[field]
        if not data["use_rollout"]:
            changes["rollout"] = None
        elif data["percentage"] is not None:
            changes["rollout_percentage"] = data["percentage"]
        return changes

    # Service errors name the API's fields; the card shows them next to its own.
    FIELD_OF_ERROR = {"rollout_percentage": "percentage", "rollout": "percentage"}

    def add_service_error(self, error: SlipwayError) -> None:
        field = (error.field or "").split(".", 1)[0].split("[", 1)[0]
        field = self.FIELD_OF_ERROR.get(field, field)
        where = error.field if error.field and ("[" in error.field or "." in error.field) else None
        self.add_error(field if field in self.fields else None, f"{where}: {error.detail}" if where else error.detail)

    def as_card(self, state: dict) -> dict:
        """What was typed, to show again with the errors (nothing typed is lost)."""
        data = self.data
        return {
            "state": {**state, "enabled": data.get("enabled") == "on",
                      "default_variant": data.get("default_variant", state["default_variant"]),
                      "off_variant": data.get("off_variant", state["off_variant"])},
            "rules_json": data.get("rules", ""),
            "percentage": data.get("percentage") if data.get("use_rollout") else None,
            "errors": {("form" if field == "__all__" else field): [str(m) for m in messages_]
                       for field, messages_ in self.errors.items()},
        }


@login_required
@require_POST
def update_state(request: HttpRequest, slug: str, key: str, name: str) -> HttpResponse:
    application = _application(request, slug)
    flag = get_object_or_404(Flag, application=application, key=key)
    environment = get_object_or_404(Environment, application=application, name=name)
    actor = Actor(request.user)
    if request.POST.get("action") == "kill":
        do_kill_switch(actor, flag, environment)
        messages.success(request, f"Kill switch: {flag.key} is now off in {environment.name}.")
        return redirect("flags:detail", slug=slug, key=key)
    form = FlagStateForm(request.POST)
    result = None
    if form.is_valid():
        try:
            result = do_change_flag_state(actor, flag, environment, **form.changes())
        except Invalid as error:
            form.add_service_error(error)
    if result is None:
        context = _detail_context(request, application, flag, posted=(environment, form))
        return render(request, "flags/detail.html", context, status=400)
    if isinstance(result, ChangeRequest):
        messages.info(request, f"Change to {environment.name} proposed: another flag editor approves it below.")
    else:
        messages.success(request, f"{flag.key} is now {describe_state(state_dict(result))} in {environment.name}.")
    return redirect("flags:detail", slug=slug, key=key)


@login_required
@require_POST
def edit_flag(request: HttpRequest, slug: str, key: str) -> HttpResponse:
    """Variants, description, owner and tags."""
    application = _application(request, slug)
    flag = get_object_or_404(Flag, application=application, key=key)
    try:
        variants = json.loads(request.POST.get("variants") or "{}")
    except ValueError:
        raise Invalid("Variants must be a JSON object of name → value.", field="variants") from None
    tags = [t.strip() for t in request.POST.get("tags", "").split(",") if t.strip()]
    do_update_flag(Actor(request.user), flag, variants=variants, description=request.POST.get("description", ""),
                   owner=request.POST.get("owner", "")[:150], tags=tags[:20])
    return redirect("flags:detail", slug=slug, key=key)


@login_required
@require_POST
def save_segment(request: HttpRequest, slug: str) -> HttpResponse:
    application = _application(request, slug)
    try:
        conditions = json.loads(request.POST.get("conditions") or "[]")
    except ValueError:
        raise Invalid("Conditions must be a JSON list.", field="conditions") from None
    name = (request.POST.get("name") or "").strip()
    if not re.fullmatch(KEY_PATTERN, name):
        raise Invalid("A segment name is lowercase letters, digits, dots, dashes and underscores.", field="name")
    do_save_segment(Actor(request.user), application, name=name, conditions=conditions,
                    description=request.POST.get("description", "")[:2000])
    return redirect("flags:list", slug=slug)


@login_required
@require_POST
def decide_change(request: HttpRequest, slug: str, key: str, pk: int) -> HttpResponse:
    application = _application(request, slug)
    change = get_object_or_404(ChangeRequest, flag__application=application, flag__key=key, pk=pk)
    do_decide_change(Actor(request.user), change, approve=request.POST.get("decision") == "approve",
                     comment=request.POST.get("comment", "")[:2000])
    return redirect("flags:detail", slug=slug, key=key)


def _hx_redirect(url: str) -> HttpResponse:
    response = HttpResponse(status=204)
    response["HX-Redirect"] = url
    return response


@login_required
@require_POST
def revert(request: HttpRequest, slug: str, key: str, event_id: int) -> HttpResponse:
    application = _application(request, slug)
    flag = get_object_or_404(Flag, application=application, key=key)
    event = get_object_or_404(FlagEvent.objects.select_related("environment"), flag=flag, pk=event_id)
    state = do_revert_flag(Actor(request.user), flag, event)
    messages.success(request, f"{flag.key} in {event.environment.name} is back as it was before that change: "
                              f"{describe_state(state_dict(state))}.")
    return redirect("flags:detail", slug=slug, key=key)


@login_required
def try_context(request: HttpRequest, slug: str, key: str) -> HttpResponse:
    """What a given user would get, and why: evaluates the live snapshot with the context typed in."""
    application = _application(request, slug)
    flag = get_object_or_404(Flag, application=application, key=key)
    environment = get_object_or_404(Environment, application=application, name=request.GET.get("environment"))
    context, problem = _parse_context(request.GET.get("context", ""))
    result = None if problem else evaluate(snapshots.get(environment.pk), flag.key, context)
    return render(request, "flags/detail.html#try-result",
                  {"result": result, "problem": problem, "env": environment, "context": context})


def _parse_context(text: str) -> tuple[dict, str | None]:
    """`key=value` lines (or a JSON object); numbers stay numbers."""
    text = text.strip()
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except ValueError as error:
            return {}, f"Not valid JSON: {error}"
        return (value, None) if isinstance(value, dict) else ({}, "The context must be an object.")
    context: dict = {}
    for line in filter(None, (line.strip() for line in text.replace(",", "\n").splitlines())):
        name, sep, value = line.partition("=")
        if not sep:
            return {}, f"Write each attribute as name=value (got '{line}')."
        value = value.strip()
        try:
            context[name.strip()] = json.loads(value) if value[:1] in "-0123456789tfn[" else value
        except ValueError:
            context[name.strip()] = value
    return context, None

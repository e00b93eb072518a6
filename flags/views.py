"""The product managers' flag panel: htmx in place, every write through flags.services."""

from __future__ import annotations

import copy
import json
import re

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_POST

from config import jsonbody
from config.errors import SlipwayError
from config.forms import JSONTextField, PageForm, query_text, refused, say_refusal, submit
from config.validators import local_path
from environments.models import Environment
from flags.engine import evaluate
from flags.history import describe_state
from flags.models import KEY_PATTERN, ChangeRequest, Flag, FlagEvent, FlagState, Segment
from flags.pages import flag_list_page, flag_page, rows_of_json
from flags.rule_builder import MAX_ROWS, Row, RowError, rules_from_rows, saved_rows, weights_typed
from flags.services import (
    do_change_flag_state,
    do_create_flag,
    do_decide_change,
    do_kill_switch,
    do_revert_flag,
    do_save_segment,
    do_update_flag,
)
from flags.snapshots import snapshots, state_dict
from releases.models import Application
from releases.permissions import Actor, Permission, may_see, require, visible_applications


def _application(request: HttpRequest, slug: str) -> Application:
    application = get_object_or_404(Application, slug=slug)
    if not may_see(Actor(request.user), application):
        raise Http404("No such application.")  # as for an unknown one: a flag's name never leaks
    require(Actor(request.user), Permission.READ_FLAGS, application)
    return application


_KEY_HELP = "A key is lowercase letters, digits, dots, dashes and underscores (at most 128)."


class NewFlagForm(PageForm):
    key = forms.RegexField(
        KEY_PATTERN, max_length=128, error_messages={"invalid": _KEY_HELP, "required": _KEY_HELP}
    )
    name = forms.CharField(max_length=200, required=False)


@login_required
def flag_list(request: HttpRequest, slug: str) -> HttpResponse:
    application = _application(request, slug)
    if request.method == "POST":
        form = NewFlagForm(request.POST)
        flag = submit(
            form,
            lambda data: do_create_flag(Actor(request.user), application, key=data["key"], name=data["name"]),
        )
        if flag is None:
            return refused(request, form, "flags/list.html", _list_page(request, application, new_flag=form))
        return redirect("flags:detail", slug=slug, key=flag.key)
    template = (
        "flags/list.html#rows" if request.htmx and request.htmx.target == "flag-rows" else "flags/list.html"
    )
    return render(request, template, _list_page(request, application))


def _list_page(
    request: HttpRequest,
    application: Application,
    *,
    new_flag: NewFlagForm | None = None,
    segment: SegmentForm | None = None,
) -> dict:
    """The flags panel; a form sent with errors (the new flag's, a segment's) is shown with them, as typed."""
    context = flag_list_page(
        application,
        request.user,
        search=query_text(request.GET, "q").strip(),
        tag=query_text(request.GET, "tag"),
        stale=bool(request.GET.get("stale")),
    )
    context["q"] = query_text(request.GET, "q")
    context["new_flag"] = new_flag or NewFlagForm()
    context["segments"] = []
    placed = False
    for seg in Segment.objects.filter(application=application):
        form = SegmentForm.of(seg)
        if segment is not None and segment.data.get("existing") and segment.data.get("name") == seg.name:
            form, placed = segment, True
        context["segments"].append({"segment": seg, "form": form})
    context["new_segment"] = segment if segment is not None and not placed else SegmentForm.of(None)
    return context


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
        messages.info(
            request,
            f"Proposed turning {flag.key} {'on' if enabled else 'off'} in {environment.name}: "
            "another flag editor approves it on the flag's page.",
        )
        return (
            redirect("flags:detail", slug=slug, key=key)
            if not request.htmx
            else _hx_redirect(f"/apps/{slug}/flags/{key}/")
        )
    said = f"{flag.key} is now {describe_state(state_dict(state))} in {environment.name}."
    if request.htmx:
        # Re-read as the live panel does: the switch with who changed it and when.
        page = flag_list_page(application, request.user, flag_ids=[flag.pk])
        row = page["flags"][0]
        response = render(
            request,
            "flags/list.html#toggle",
            {
                "flag": row,
                "env": environment,
                "state": row.state_by_env.get(environment.pk),
                "application": application,
                "can_edit": True,
                "last_environment_pk": page["last_environment_pk"],
            },
        )
        response.write(render_to_string("flags/list.html#flash-oob", {"said": said}))
        return response
    messages.success(request, said)
    # `next` only when it stays on this site (no open redirect; nonsense is ignored).
    return redirect(local_path(request.POST.get("next")) or reverse("flags:list", kwargs={"slug": slug}))


@login_required
def flag_detail(request: HttpRequest, slug: str, key: str) -> HttpResponse:
    application = _application(request, slug)
    flag = get_object_or_404(Flag, application=application, key=key)
    return render(request, "flags/detail.html", _detail_page(request, application, flag))


class FlagStateForm(PageForm):
    """One environment's card on the flag page: what the panel may change, parsed before the service sees it."""

    enabled = forms.BooleanField(required=False)
    default_variant = forms.CharField(max_length=100, required=False)
    off_variant = forms.CharField(max_length=100, required=False)
    use_rollout = forms.BooleanField(required=False)
    percentage = forms.IntegerField(
        min_value=0,
        max_value=100,
        required=False,
        error_messages={"invalid": "The rollout percentage is a whole number from 0 to 100."},
    )
    # Bounded like an API body (config/jsonbody.py): a 10**400 value or 5,000 brackets is a field error here.
    rules = JSONTextField(kind=list, empty=[], what="Rules")
    # Which editor the rules come from: the builder's rows (rule-<n>-…) or the JSON box.
    rules_from = forms.ChoiceField(choices=[("builder", "builder"), ("json", "json")], required=False)

    # A row's mistake, by the row's posted index: which of its fields ("values", "split", "weight-on") and what.
    row_errors: dict[int, dict[str, str]]

    def clean(self):
        data = super().clean()
        self.row_errors = {}
        data["weights"] = self._rollout_weights() if data.get("use_rollout") else {}
        if data.get("rules_from") == "builder":
            self._errors.pop("rules", None)  # the JSON box is not what is saved
            try:
                data["rules"] = rules_from_rows(self.data)
            except RowError as error:
                self._row_error(error.row, error.field.split("-", 2)[2], error.detail)
        return data

    def show_error(self, error: SlipwayError) -> bool:
        """The engine's refusal of a rule saved from the builder (`rules[1].split.on`) goes beside that rule's row."""
        where = re.fullmatch(r"rules\[(\d+)\](?:\.(\w+)[^.]*)?(?:\.(.+))?", error.field or "")
        rows = saved_rows(self.data)
        if self.data.get("rules_from") != "builder" or not where or int(where[1]) >= len(rows):
            return super().show_error(error)
        n, part, name = rows[int(where[1])], where[2], where[3]
        field = {"split": f"weight-{name}" if name else "split", "variant": "serve"}.get(part or "", "values")
        self._row_error(n, field, f"Rule {n + 1}: {error.detail}")
        self.status = error.status
        return True

    def _row_error(self, n: int, field: str, detail: str) -> None:
        self.row_errors[n] = {"field": field, "detail": detail}
        # Said beside the row; the card's top says which row, so a long card still shows there is one.
        self.add_error(None, f"Rule {n + 1} is not saved: see its row.")

    def _rollout_weights(self) -> dict[str, int]:
        """The rollout's weights typed on a multi-variant flag's card (`rollout-weight-<variant>`), blank ones left
        out; none typed: the percentage shortcut decides (the default variant). The engine checks they add up."""
        weights: dict[str, int] = {}
        for name, text in weights_typed(self.data, "rollout-").items():
            if not text:
                continue
            try:
                weights[name] = int(text)
            except ValueError:
                weights[name] = -1
            if not 0 <= weights[name] <= 100:
                self.add_error(None, f"The rollout's weight of {name!r} is a whole number from 0 to 100.")
                self.weight_error = (
                    f"The weight of {name!r} is a whole number from 0 to 100, not {text[:20]!r}."
                )
        return weights

    def changes(self) -> dict:
        data = self.cleaned_data
        changes: dict = {"enabled": data["enabled"], "rules": data["rules"]}
        for field in ("default_variant", "off_variant"):
            if data[field]:
                changes[field] = data[field]
        if not data["use_rollout"]:
            changes["rollout"] = None
        elif data["weights"]:
            percentage = data["percentage"] if data["percentage"] is not None else 100
            changes["rollout"] = {"percentage": percentage, "weights": data["weights"]}
        elif data["percentage"] is not None:
            changes["rollout_percentage"] = data["percentage"]
        return changes

    # Service errors name the API's fields; the card shows them next to its own, any other at its top.
    field_of_error = {"rollout_percentage": "percentage", "rollout": "percentage"}
    other_errors = ""

    def as_card(self, state: dict) -> dict:
        """What was typed, to show again with the errors (nothing typed is lost)."""
        data = self.data
        typed = [n for n in range(MAX_ROWS) if data.get(f"rule-{n}-attribute")]
        typed_rows = [
            Row(
                **{
                    name: str(data.get(f"rule-{n}-{name}") or "")
                    for name in ("attribute", "operator", "values")
                },
                serve=str(data.get(f"rule-{n}-serve") or ""),
                weights=weights_typed(data, f"rule-{n}-"),
            )
            for n in typed
        ]
        row_errors = getattr(self, "row_errors", {})
        return {
            "rule_rows": typed_rows
            if data.get("rules_from") == "builder"
            else rows_of_json(data.get("rules", "")),
            "rules_from": data.get("rules_from") or "json",
            # By the row's place on the page again (rows left empty are not shown again).
            "row_errors": {typed.index(n): error for n, error in row_errors.items() if n in typed},
            "state": {
                **state,
                "enabled": data.get("enabled") == "on",
                "default_variant": data.get("default_variant", state["default_variant"]),
                "off_variant": data.get("off_variant", state["off_variant"]),
            },
            "rules_json": data.get("rules", ""),
            "percentage": data.get("percentage") if data.get("use_rollout") else None,
            "rollout_weights_typed": weights_typed(data, "rollout-"),
            "weight_error": getattr(self, "weight_error", ""),
            "errors": {
                ("form" if field == "__all__" else field): [str(m) for m in messages_]
                for field, messages_ in self.errors.items()
            },
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
    result = submit(form, lambda _: do_change_flag_state(actor, flag, environment, **form.changes()))
    if result is None:
        return refused(
            request,
            form,
            "flags/detail.html",
            _detail_page(request, application, flag, card=(environment, form)),
        )
    if isinstance(result, ChangeRequest):
        messages.info(
            request, f"Change to {environment.name} proposed: another flag editor approves it below."
        )
    else:
        messages.success(
            request, f"{flag.key} is now {describe_state(state_dict(result))} in {environment.name}."
        )
    return redirect("flags:detail", slug=slug, key=key)


class EditFlagForm(PageForm):
    """Variants, description, owner and tags: the API's limits, refused beyond them (never cut)."""

    variants = JSONTextField(kind=dict, empty={}, what="Variants (an object of name → value)")
    description = forms.CharField(max_length=5000, required=False)
    owner = forms.CharField(max_length=150, required=False)
    tags = forms.CharField(max_length=10_000, required=False)
    # The flag's states must still compile with the variants (a rule serving one that is gone): said there.
    other_errors = "variants"

    @classmethod
    def of(cls, flag: Flag) -> EditFlagForm:
        return cls(
            initial={
                "variants": json.dumps(flag.variants, indent=2),
                "description": flag.description,
                "owner": flag.owner,
                "tags": ", ".join(flag.tags),
            }
        )

    def clean_tags(self) -> list[str]:
        tags = [tag.strip() for tag in self.cleaned_data["tags"].split(",") if tag.strip()]
        if len(tags) > 20:
            raise forms.ValidationError(f"At most 20 tags (there are {len(tags)}).")
        if long := [tag for tag in tags if len(tag) > 50]:
            raise forms.ValidationError(f"A tag is at most 50 characters ('{long[0][:60]}…' is longer).")
        return tags


@login_required
@require_POST
def edit_flag(request: HttpRequest, slug: str, key: str) -> HttpResponse:
    """Variants, description, owner and tags."""
    application = _application(request, slug)
    flag = get_object_or_404(Flag, application=application, key=key)
    form = EditFlagForm(request.POST)
    updated = submit(form, lambda data: do_update_flag(Actor(request.user), flag, **data))
    if updated is None:
        return refused(
            request, form, "flags/detail.html", _detail_page(request, application, flag, edit=form)
        )
    messages.success(request, f"{flag.key}: variants, description, owner and tags saved.")
    return redirect("flags:detail", slug=slug, key=key)


class SegmentForm(PageForm):
    _help = "A segment name is lowercase letters, digits, dots, dashes and underscores (at most 100)."
    name = forms.RegexField(KEY_PATTERN, max_length=100, error_messages={"invalid": _help, "required": _help})
    conditions = JSONTextField(kind=list, empty=[], what="Conditions (a list)")
    description = forms.CharField(max_length=2000, required=False)
    # Sent from an existing segment's form (not the "New segment" one): its errors are shown there.
    existing = forms.BooleanField(required=False)
    # A flag's rule that no longer compiles with these conditions is the conditions' error.
    other_errors = "conditions"

    EXAMPLE = '[{"attribute": "plan", "operator": "in", "values": ["beta"]}]'

    @classmethod
    def of(cls, segment: Segment | None) -> SegmentForm:
        if segment is None:
            return cls(initial={"conditions": cls.EXAMPLE})
        initial = {"name": segment.name, "description": segment.description, "existing": True}
        return cls(initial={**initial, "conditions": json.dumps(segment.conditions, indent=2)})


@login_required
@require_POST
def save_segment(request: HttpRequest, slug: str) -> HttpResponse:
    application = _application(request, slug)
    form = SegmentForm(request.POST)
    segment = submit(
        form,
        lambda data: do_save_segment(
            Actor(request.user),
            application,
            name=data["name"],
            conditions=data["conditions"],
            description=data["description"],
        ),
    )
    if segment is None:
        return refused(request, form, "flags/list.html", _list_page(request, application, segment=form))
    messages.success(request, f"Segment {segment.name} saved.")
    return redirect("flags:list", slug=slug)


class ChangeDecisionForm(PageForm):
    decision = forms.ChoiceField(choices=[("approve", "approve"), ("reject", "reject")])
    comment = forms.CharField(max_length=2000, required=False)
    # A change that fails only when it is applied (the flag changed since it was proposed: a variant removed…) is
    # said on its own decision form, with the comment kept; it stays open, to be rejected or proposed again.
    other_errors = ""

    def show_error(self, error: SlipwayError) -> bool:
        if error.field and error.field not in self.fields:
            error = copy.copy(error)
            error.detail = f"This change can no longer be applied: {error.detail}"
        return super().show_error(error)


@login_required
@require_POST
def decide_change(request: HttpRequest, slug: str, key: str, pk: int) -> HttpResponse:
    application = _application(request, slug)
    change = get_object_or_404(ChangeRequest, flag__application=application, flag__key=key, pk=pk)
    form = ChangeDecisionForm(request.POST)
    decided = submit(
        form,
        lambda data: do_decide_change(
            Actor(request.user), change, approve=data["decision"] == "approve", comment=data["comment"]
        ),
    )
    if decided is None:
        return refused(
            request,
            form,
            "flags/detail.html",
            _detail_page(request, application, change.flag, decision=(pk, form)),
        )
    where = f"{decided.flag.key} in {decided.environment.name}"
    if decided.status == ChangeRequest.Status.APPLIED:
        state = FlagState.objects.get(flag=decided.flag, environment=decided.environment)
        messages.success(
            request, f"Change approved and applied: {where} is now {describe_state(state_dict(state))}."
        )
    else:
        messages.success(request, f"Change rejected: {where} stays as it is.")
    return redirect("flags:detail", slug=slug, key=key)


def _detail_page(
    request: HttpRequest,
    application: Application,
    flag: Flag,
    *,
    card: tuple[Environment, FlagStateForm] | None = None,
    edit: EditFlagForm | None = None,
    decision: tuple[int, ChangeDecisionForm] | None = None,
) -> dict:
    """The flag page; a form sent with errors (an environment's card, the flag's, a decision) shows them as typed."""
    context = flag_page(application, flag, request.user, posted=card)
    context["edit_form"] = edit or EditFlagForm.of(flag)
    if decision is not None:
        for change in context["change_requests"]:  # the page's own rows: the template reads this cache
            if change.pk == decision[0]:
                change.decision_form = decision[1]
    return context


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
    try:
        state = do_revert_flag(Actor(request.user), flag, event)
    except SlipwayError as error:  # the state before no longer holds (a variant or segment since removed)
        say_refusal(request, error)
        return redirect("flags:detail", slug=slug, key=key)
    messages.success(
        request,
        f"{flag.key} in {event.environment.name} is back as it was before that change: "
        f"{describe_state(state_dict(state))}.",
    )
    return redirect("flags:detail", slug=slug, key=key)


@login_required
def try_context(request: HttpRequest, slug: str, key: str) -> HttpResponse:
    """What a given user would get, and why: evaluates the live snapshot with the context typed in."""
    application = _application(request, slug)
    flag = get_object_or_404(Flag, application=application, key=key)
    environment = get_object_or_404(
        Environment, application=application, name=query_text(request.GET, "environment")
    )
    context, problem = _parse_context(request.GET.get("context", ""))
    result = None if problem else evaluate(snapshots.get(environment.pk), flag.key, context)
    return render(
        request,
        "flags/detail.html#try-result",
        {"result": result, "problem": problem, "env": environment, "context": context},
    )


def _parse_context(text: str) -> tuple[dict, str | None]:
    """`key=value` lines (or a JSON object); numbers stay numbers."""
    text = text.strip()
    if text.startswith("{"):
        try:
            value = jsonbody.parse(text, max_bytes=64 * 1024)
        except jsonbody.BodyError as error:
            return {}, f"Not valid JSON: {error.detail}"
        return (value, None) if isinstance(value, dict) else ({}, "The context must be an object.")
    context: dict = {}
    for line in filter(None, (line.strip() for line in text.replace(",", "\n").splitlines())):
        name, sep, value = line.partition("=")
        if not sep:
            return {}, f"Write each attribute as name=value (got '{line}')."
        value = value.strip()
        try:
            context[name.strip()] = jsonbody.parse(value) if value[:1] in "-0123456789tfn[" else value
        except jsonbody.BodyError:
            context[name.strip()] = value
    return context, None


@login_required
def flags_index(request: HttpRequest) -> HttpResponse:
    """The nav's Flags outside an application: straight to the flags of the only application, else a choice."""
    applications = list(visible_applications(request.user).order_by("name"))
    if len(applications) == 1:
        return redirect("flags:list", slug=applications[0].slug)
    return render(request, "flags/index.html", {"applications": applications})

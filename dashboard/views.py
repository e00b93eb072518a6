"""Pages: thin, reading through selectors and writing through services."""

from __future__ import annotations

import csv
import json
from datetime import datetime, time, timedelta
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from config import jsonbody
from config.errors import Invalid, SlipwayError
from config.forms import PageForm, cleaned, refused, say_refusal, submit
from dashboard.pages import (
    ERROR_RANGES,
    application_page,
    audit_rows,
    environment_page,
    errors_page,
    inbox_page,
    release_page,
)
from environments.models import Environment, Lock
from monitoring.models import ErrorGroup
from monitoring.services import do_resolve_error_group
from releases import selectors
from releases.models import (
    ApiToken,
    Application,
    Approval,
    Artifact,
    AuthorIdentity,
    Membership,
    Release,
    Role,
    Scope,
    identity_validator,
)
from releases.permissions import Actor, Permission, can, may_see, require, visible_applications
from releases.promotions import (
    do_decide,
    do_force_release,
    do_lock,
    do_request_release,
    do_rollback,
    do_unlock,
    preview_release,
)
from releases.rollouts import do_control_rollout
from releases.services import (
    do_confirm_identity,
    do_create_api_token,
    do_decline_identity,
    do_grant_role,
    do_link_identity,
    do_revoke_api_token,
    do_revoke_role,
    do_unlink_identity,
)


def _visible(request: HttpRequest, application: Application) -> Application:
    """404, as for an unknown application, when the user holds no role there: nothing about it leaks."""
    if not may_see(Actor(request.user), application):
        raise Http404("No such application.")
    return application


@login_required
def overview(request: HttpRequest) -> HttpResponse:
    waiting = [card for card in inbox_page(request.user)["cards"] if card.waiting_for_me]
    return render(
        request,
        "dashboard/overview.html",
        {"applications": selectors.overview(request.user), "waiting": waiting},
    )


@login_required
def application_detail(request: HttpRequest, slug: str) -> HttpResponse:
    application = _visible(request, get_object_or_404(Application, slug=slug))
    require(Actor(request.user), Permission.VIEW, application)
    context = application_page(application, request.user)
    return render(request, "dashboard/application.html", context)


@login_required
def application_errors(request: HttpRequest, slug: str) -> HttpResponse:
    """Error groups with their sparkline: `?environment=<name>` filters, `?range=24h|7d` (default 24h)."""
    application = _visible(request, get_object_or_404(Application, slug=slug))
    require(Actor(request.user), Permission.VIEW, application)
    # A bad filter (an old link, an environment since deleted) is said on the page and not applied: all of them.
    bad_filters = []
    span = request.GET.get("range") or "24h"
    if span not in ERROR_RANGES:
        bad_filters.append(f"Range {span[:40]!r} is not one of {', '.join(ERROR_RANGES)}: showing 24h.")
        span = "24h"
    environment = None
    if name := request.GET.get("environment"):
        environment = Environment.objects.filter(application=application, name=name).first()
        if environment is None:
            bad_filters.append(
                f"{application.slug} has no environment {name[:63]!r}: showing every environment."
            )
    for said in bad_filters:
        messages.error(request, said)
    context = errors_page(application, environment=environment, span=span, actor=Actor(request.user))
    return render(request, "dashboard/errors.html", context, status=400 if bad_filters else 200)


@login_required
@require_POST
def resolve_error_group(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    """Mark the group resolved, then back to the Errors page with its filters (`environment`, `range`)."""
    application = _visible(request, get_object_or_404(Application, slug=slug))
    group = get_object_or_404(ErrorGroup, application=application, pk=pk)
    do_resolve_error_group(Actor(request.user), group)
    messages.success(request, f"Resolved {group.title[:80]}; a new event makes it regressed.")
    kept = {key: request.POST[key] for key in ("environment", "range") if request.POST.get(key)}
    url = reverse("dashboard:errors", args=[application.slug])
    return redirect(f"{url}?{urlencode(kept)}" if kept else url)


@login_required
def audit(request: HttpRequest) -> HttpResponse:
    """The trail, filtered by application, environment, actor, kind and dates; `?export=csv` downloads it."""
    form = AuditFilter(request.user, request.GET)
    filters = form.cleaned_data if form.is_valid() else {}  # a bad filter is shown on the form, not applied
    application = None
    if "app" in form.errors:  # an application the user holds no role on: as unknown as a missing one
        raise Http404("No such application.")
    if slug := filters.get("app"):
        application = _visible(request, get_object_or_404(Application, slug=slug))
        require(Actor(request.user), Permission.VIEW, application)
    events = selectors.audit_events(
        request.user,
        application=application,
        environment=filters.get("environment") or "",
        actor=filters.get("actor") or "",
        kind=filters.get("kind") or "",
        since=_start_of(filters.get("since")),
        until=_start_of(filters.get("until"), days=1),
    )
    if request.GET.get("export") == "csv":
        return _audit_csv(events)
    page = Paginator(events, 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "page": page,
        "rows": audit_rows(page, viewer=request.user),
        "application": application,
        "form": form,
        "query": query.urlencode(),
    }
    template = "dashboard/audit.html#events" if request.htmx else "dashboard/audit.html"
    return render(request, template, context)


class AuditFilter(forms.Form):
    app = forms.ChoiceField(required=False, label="Application")
    environment = forms.CharField(required=False, max_length=63)
    actor = forms.CharField(required=False, max_length=150, label="Who")
    kind = forms.CharField(
        required=False, max_length=80, label="What", widget=forms.TextInput(attrs={"placeholder": "release."})
    )
    since = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, user, *args, **kwargs):
        super().__init__(*args, **kwargs)
        slugs = visible_applications(user).order_by("slug").values_list("slug", flat=True)
        self.fields["app"].choices = [("", "All")] + [(slug, slug) for slug in slugs]

    def clean(self):
        data = super().clean()
        if data.get("since") and data.get("until") and data["until"] < data["since"]:
            self.add_error("until", "The end comes before the start.")
        return data


def _start_of(day, days: int = 0):
    """Midnight at the start of `day` (+ `days`) in the site's time zone, or None."""
    if day is None:
        return None
    return timezone.make_aware(datetime.combine(day + timedelta(days=days), time.min))


AUDIT_CSV_COLUMNS = [
    "time",
    "actor",
    "kind",
    "application",
    "environment",
    "object",
    "before",
    "after",
    "note",
]


def _audit_csv(events) -> StreamingHttpResponse:
    """The filtered trail as CSV, streamed (ISO 8601 times with their offset; before/after as JSON)."""

    class Echo:
        def write(self, value):
            return value

    writer = csv.writer(Echo())

    def rows():
        yield writer.writerow(AUDIT_CSV_COLUMNS)
        for event in events.iterator(chunk_size=1000):
            yield writer.writerow(
                [
                    event.created_at.isoformat(),
                    event.actor_label,
                    event.kind,
                    event.application.slug if event.application else "",
                    event.environment.name if event.environment else "",
                    event.object_repr,
                    json.dumps(event.before, default=str) if event.before is not None else "",
                    json.dumps(event.after, default=str) if event.after is not None else "",
                    event.note,
                ]
            )

    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="slipway-audit.csv"'
    return response


class TokenForm(forms.Form):
    name = forms.CharField(
        max_length=100, widget=forms.TextInput(attrs={"autofocus": True, "placeholder": "ci"})
    )
    scopes = forms.MultipleChoiceField(choices=Scope.choices, widget=forms.CheckboxSelectMultiple)
    environment = forms.ModelChoiceField(
        queryset=Environment.objects.none(), required=False, empty_label="Any environment"
    )

    def __init__(self, user, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Only environments of applications the user holds a role on: a token pinned elsewhere could not act.
        self.fields["environment"].queryset = (
            Environment.objects.filter(application__in=visible_applications(user))
            .select_related("application")
            .order_by("application__slug", "position")
        )
        self.fields["environment"].label_from_instance = lambda environment: environment.label


@login_required
def tokens(request: HttpRequest) -> HttpResponse:
    form = TokenForm(request.user, request.POST or None)
    created_key = None
    if request.method == "POST" and form.is_valid():
        _, created_key = do_create_api_token(Actor(request.user), request.user, **form.cleaned_data)
        form = TokenForm(request.user)
    context = {
        "form": form,
        "created_key": created_key,
        "tokens": ApiToken.objects.filter(user=request.user).select_related("environment__application"),
    }
    # A refused form answers 400 with its errors beside the fields, as every other form does.
    return render(request, "dashboard/tokens.html", context, status=400 if form.errors else 200)


class MemberForm(forms.Form):
    user = forms.CharField(
        max_length=150, widget=forms.TextInput(attrs={"list": "usernames", "autocomplete": "off"})
    )
    role = forms.ChoiceField(choices=Role.choices)
    environment = forms.ModelChoiceField(
        queryset=Environment.objects.none(),
        required=False,
        to_field_name="name",
        empty_label="Every environment",
        help_text="Flag editors only: limit the role to one environment.",
    )

    def __init__(self, application: Application, *args, may_grant_admin: bool, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["environment"].queryset = selectors.environments_of(application)
        if not may_grant_admin:
            self.fields["role"].choices = [c for c in Role.choices if c[0] != Role.ADMIN]

    def clean_user(self):
        username = self.cleaned_data["user"].strip()
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise forms.ValidationError(f"No user '{username}'.")
        return user


@login_required
def members(request: HttpRequest, slug: str) -> HttpResponse:
    application = _visible(request, get_object_or_404(Application, slug=slug))
    actor = Actor(request.user)
    require(actor, Permission.VIEW, application)
    may_manage = can(actor, Permission.MANAGE_MEMBERS, application)
    may_grant_admin = can(actor, Permission.ADMIN, application)
    form = MemberForm(application, request.POST or None, may_grant_admin=may_grant_admin)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            membership, created = do_grant_role(
                actor, application, data["user"], data["role"], data["environment"]
            )
        except SlipwayError as error:
            if error.field not in form.fields:
                raise
            form.add_error(error.field, error.detail)  # beside its field, the input kept
        else:
            what = membership.get_role_display().lower()
            messages.success(
                request,
                f"{data['user'].get_username()} is {what} now."
                if created
                else f"{data['user'].get_username()} was {what} already.",
            )
            return redirect("dashboard:members", application.slug)
    context = {
        "application": application,
        "members": selectors.members_of(application),
        "form": form,
        "may_manage": may_manage,
        "may_grant_admin": may_grant_admin,
        "usernames": selectors.usernames() if may_manage else [],
    }
    return render(request, "dashboard/members.html", context, status=400 if form.errors else 200)


@login_required
@require_POST
def revoke_member(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    membership = get_object_or_404(
        Membership.objects.select_related("application", "user"), application__slug=slug, pk=pk
    )
    _visible(request, membership.application)
    try:
        do_revoke_role(Actor(request.user), membership)
    except SlipwayError as error:  # the last admin: said on the Members page
        say_refusal(request, error)
        return redirect("dashboard:members", slug)
    messages.success(
        request, f"{membership.user.get_username()} is no longer {membership.get_role_display().lower()}."
    )
    return redirect("dashboard:members", slug)


@login_required
@require_POST
def revoke_token(request: HttpRequest, pk: int) -> HttpResponse:
    token = get_object_or_404(ApiToken, pk=pk, user=request.user)
    do_revoke_api_token(Actor(request.user), token)
    messages.success(request, f"Token {token.name} is revoked: it stops working at once.")
    return redirect("dashboard:tokens")


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return render(request, "404.html", status=404)


# --- releases ------------------------------------------------------------------------------


@login_required
def approvals_inbox(request: HttpRequest) -> HttpResponse:
    context = inbox_page(request.user)
    identity_requests = selectors.identity_requests_for(request.user).filter(
        status=AuthorIdentity.Status.PENDING
    )
    return render(request, "dashboard/inbox.html", {**context, "identity_requests": identity_requests})


@login_required
def release_detail(request: HttpRequest, pk: int) -> HttpResponse:
    context = release_page(pk, request.user)
    if context is None:
        raise Http404
    _visible(request, context["card"].release.application)
    require(Actor(request.user), Permission.VIEW, context["card"].release.application)
    template = "dashboard/release.html#approvals" if request.htmx else "dashboard/release.html"
    return render(request, template, context)


class DecisionForm(PageForm):
    decision = forms.ChoiceField(
        choices=Approval.Decision.choices, error_messages={"invalid_choice": "Choose approve or reject."}
    )
    comment = forms.CharField(max_length=2000, required=False)


@login_required
@require_POST
def decide(request: HttpRequest, pk: int) -> HttpResponse:
    release = get_object_or_404(Release.objects.select_related("application"), pk=pk)
    _visible(request, release.application)
    form = DecisionForm(request.POST)
    decided = submit(form, lambda data: do_decide(Actor(request.user), release.pk, **data))
    # The inbox's and overview's cards send partial=card; the release page swaps its approvals.
    partial = "card" if request.POST.get("partial") == "card" else "approvals"
    if decided is None:  # the card again with the comment as typed, the error beside it
        context = {**release_page(pk, request.user), "decision_form": form}
        partial_id = f"release-{pk}" if partial == "card" else partial
        return refused(
            request, form, "dashboard/release.html", context, partial=partial, partial_id=partial_id
        )
    if request.htmx:
        return render(request, f"dashboard/release.html#{partial}", release_page(pk, request.user))
    return redirect("dashboard:release", pk=pk)


@login_required
def environment_detail(request: HttpRequest, slug: str, name: str) -> HttpResponse:
    environment = _environment(request, slug, name)
    require(Actor(request.user), Permission.VIEW, environment.application)
    return render(request, "dashboard/environment.html", environment_page(environment, request.user))


class RollbackForm(PageForm):
    version = forms.CharField(
        max_length=100, error_messages={"required": "Choose the version to go back to."}
    )
    reason = forms.CharField(
        max_length=2000, error_messages={"required": "Say why you roll back: it goes into the history."}
    )


def _environment(request: HttpRequest, slug: str, name: str) -> Environment:
    environment = get_object_or_404(
        Environment.objects.select_related("application", "current_artifact"),
        application__slug=slug,
        name=name,
    )
    _visible(request, environment.application)
    return environment


@login_required
@require_POST
def rollback(request: HttpRequest, slug: str, name: str) -> HttpResponse:
    environment = _environment(request, slug, name)
    form = RollbackForm(request.POST)
    release = submit(
        form,
        lambda data: do_rollback(
            Actor(request.user),
            environment,
            artifact=get_object_or_404(
                Artifact, application=environment.application, version=data["version"]
            ),
            reason=data["reason"],
        ),
    )
    if release is None:  # the form again, its choice and reason kept (htmx: in place, not in the flash)
        context = {**environment_page(environment, request.user), "rollback_form": form}
        return refused(request, form, "dashboard/environment.html", context, partial="rollback")
    if request.htmx:  # the environment page stays: its live view shows the rollback to the end
        return render(request, "dashboard/environment.html#rollback-started", {"release": release})
    messages.success(request, f"Rolling {environment.name} back to {release.artifact.version}.")
    return redirect("dashboard:release", pk=release.pk)


class LockForm(PageForm):
    """Lock with a reason, or release the lock `unlock` names (an id)."""

    unlock = forms.IntegerField(
        min_value=1,
        max_value=jsonbody.INT64_MAX,
        required=False,
        error_messages={"invalid": "unlock is the id of a lock."},
    )
    reason = forms.CharField(required=False, max_length=2000)

    def clean(self):
        data = super().clean()
        if not data.get("unlock") and not data.get("reason") and "unlock" not in self.errors:
            self.add_error("reason", "Give a reason for the lock.")
        return data


def _lock_or_unlock(actor: Actor, environment: Environment, data: dict) -> str:
    if data["unlock"]:
        do_unlock(actor, get_object_or_404(Lock, pk=data["unlock"], environment=environment))
        return f"{environment.name} is unlocked."
    do_lock(actor, environment, reason=data["reason"])
    return f"{environment.name} is locked: releases wait until it is unlocked."


@login_required
@require_POST
def lock_environment(request: HttpRequest, slug: str, name: str) -> HttpResponse:
    environment = _environment(request, slug, name)
    form = LockForm(request.POST)
    said = submit(form, lambda data: _lock_or_unlock(Actor(request.user), environment, data))
    if said is None:  # the locks again with the error beside the reason, as typed
        context = {**environment_page(environment, request.user), "lock_form": form}
        return refused(request, form, "dashboard/environment.html", context, partial="locks")
    if request.htmx:
        response = render(
            request, "dashboard/environment.html#locks", environment_page(environment, request.user)
        )
        response["HX-Trigger"] = json.dumps({"slipway:said": said})
        return response
    messages.success(request, said)
    return redirect("dashboard:environment", slug=slug, name=name)


class RolloutCommandForm(forms.Form):
    command = forms.ChoiceField(
        choices=[(c, c) for c in ("pause", "resume", "cancel", "revert")],
        error_messages={
            "required": "Choose pause, resume, cancel or revert.",
            "invalid_choice": "Choose pause, resume, cancel or revert.",
        },
    )


@login_required
@require_POST
def rollout_control(request: HttpRequest, pk: int) -> HttpResponse:
    release = get_object_or_404(Release.objects.select_related("application", "environment"), pk=pk)
    _visible(request, release.application)
    try:
        command = cleaned(RolloutCommandForm(request.POST))["command"]
        do_control_rollout(Actor(request.user), release, command)
    except SlipwayError as error:  # nothing to pause, already finished: said on the release's page
        say_refusal(request, error)
        return redirect("dashboard:release", pk=pk)
    messages.success(request, _rollout_said(release, command))
    return redirect("dashboard:release", pk=pk)


def _rollout_said(release: Release, command: str) -> str:
    """What a rollout control did, in words."""
    what = f"{'The rollback' if release.kind == Release.Kind.ROLLBACK else 'Release'} #{release.pk}"
    if command == "pause":
        return f"{what} is paused: no new step starts until you resume it."
    if command == "resume":
        return f"{what} is resumed."
    if command == "revert":
        return f"Reverting release #{release.pk}: every target touched so far is being put back."
    if release.kind == Release.Kind.ROLLBACK:
        return f"{what} is stopped: each host keeps what it runs now."
    return f"Cancelling release #{release.pk}: every target touched so far is being put back."


class IdentityForm(PageForm):
    identity = forms.CharField(
        max_length=254,
        validators=[identity_validator],
        widget=forms.TextInput(attrs={"placeholder": "alice@users.noreply.github.com"}),
    )


@login_required
def profile(request: HttpRequest) -> HttpResponse:
    form = IdentityForm(request.POST or None)
    context = {"form": form, "identities": selectors.identities_of(request.user)}
    if request.method == "POST":
        # A refused identity (taken, the user's own username…) is said beside the field, with what was typed.
        link = submit(
            form, lambda data: do_link_identity(Actor(request.user), request.user, data["identity"])
        )
        if link is None:
            return refused(request, form, "dashboard/profile.html", context)
        if link.status == AuthorIdentity.Status.CONFIRMED:
            messages.success(request, f"Linked {link.identity}.")
        else:
            messages.info(
                request,
                f"Asked to link {link.identity}: it maps your changes once an administrator or a "
                "release manager of an application it committed to confirms it.",
            )
        return redirect("dashboard:profile")
    return render(request, "dashboard/profile.html", context)


@login_required
@require_POST
def unlink_identity(request: HttpRequest, pk: int) -> HttpResponse:
    link = get_object_or_404(AuthorIdentity, pk=pk, user=request.user)
    do_unlink_identity(Actor(request.user), link)
    messages.success(request, f"Unlinked {link.identity}.")
    return redirect("dashboard:profile")


@login_required
@require_POST
def decide_identity(request: HttpRequest, pk: int, decision: str) -> HttpResponse:
    if decision == "confirm":
        link = do_confirm_identity(Actor(request.user), pk)
    elif decision == "decline":
        link = do_decline_identity(Actor(request.user), pk)
    else:
        raise Invalid("Choose confirm or decline.", field="decision")
    messages.success(request, f"{link.identity} → {link.user.get_username()}: {link.status}.")
    return redirect("dashboard:inbox")


class NewReleaseForm(forms.Form):
    """Which build to which environment: the choices are the application's own."""

    environment = forms.ChoiceField()
    version = forms.ChoiceField(label="Build")
    reason = forms.CharField(
        max_length=2000, required=False, widget=forms.TextInput(attrs={"placeholder": "Why now"})
    )

    def __init__(self, application: Application, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.environments = list(selectors.environments_of(application))
        self.fields["environment"].choices = [(e.name, e.name) for e in self.environments]
        versions = Artifact.objects.filter(application=application).order_by("-created_at", "-id")
        self.fields["version"].choices = [(v, v) for v in versions.values_list("version", flat=True)[:200]]


@login_required
def new_release(request: HttpRequest, slug: str) -> HttpResponse:
    """Promote or release a build in the browser: a preview of what would ship and who must approve, then the
    release through the service the API uses. `?environment=` and `?version=` preselect (the pipeline's links)."""
    application = _visible(request, get_object_or_404(Application, slug=slug))
    require(Actor(request.user), Permission.VIEW, application)
    form = NewReleaseForm(application, request.POST if request.method == "POST" else request.GET or None)
    preview, status = None, 200
    valid = form.is_bound and form.is_valid()
    chosen = form.cleaned_data if form.is_bound else {}
    if form.is_bound and not valid:
        status = 400
    if "environment" in chosen and "version" in chosen:  # a preview even when only the reason is wrong
        environment = next(e for e in form.environments if e.name == chosen["environment"])
        artifact = Artifact.objects.get(application=application, version=chosen["version"])
        if request.method == "POST" and valid:
            try:
                release = do_request_release(
                    Actor(request.user),
                    application,
                    environment=environment,
                    artifact=artifact,
                    reason=form.cleaned_data["reason"],
                )
            except SlipwayError as error:  # said on the form, the choices kept
                form.add_error(error.field if error.field in form.fields else None, error.detail)
                status = error.status
            else:
                messages.success(
                    request,
                    f"Release #{release.pk}: {artifact.version} to {environment.name} — {release.get_status_display().lower()}.",
                )
                return redirect("dashboard:release", pk=release.pk)
        preview = preview_release(Actor(request.user), environment, artifact)
    context = {"application": application, "form": form, "preview": preview}
    return render(request, "dashboard/new_release.html", context, status=status)


class ForceForm(PageForm):
    reason = forms.CharField(
        max_length=2000,
        error_messages={"required": "Say why it must ship past what holds it: it goes into the audit."},
    )


@login_required
@require_POST
def force_release(request: HttpRequest, pk: int) -> HttpResponse:
    release = get_object_or_404(Release.objects.select_related("application"), pk=pk)
    _visible(request, release.application)
    form = ForceForm(request.POST)
    forced = submit(
        form, lambda data: do_force_release(Actor(request.user), release.pk, reason=data["reason"])
    )
    if forced is None:
        context = {**release_page(release.pk, request.user), "force_form": form}
        return refused(request, form, "dashboard/release.html", context)
    release = forced
    messages.success(request, f"Release #{release.pk} forced: it ships past what held it (audited).")
    return redirect("dashboard:release", pk=release.pk)

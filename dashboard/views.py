"""Pages: thin, reading through selectors and writing through services."""

from __future__ import annotations

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from environments.models import Environment
from releases import selectors
from releases.models import ApiToken, Application, Scope
from releases.permissions import Actor, Permission, require
from releases.services import do_create_api_token, do_revoke_api_token


@login_required
def overview(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/overview.html", {"applications": selectors.overview(request.user)})


@login_required
def application_detail(request: HttpRequest, slug: str) -> HttpResponse:
    application = get_object_or_404(Application, slug=slug)
    require(Actor(request.user), Permission.VIEW, application)
    context = {
        "application": application,
        "environments": selectors.environments_of(application),
        "artifacts": selectors.application_page(application),
    }
    return render(request, "dashboard/application.html", context)


@login_required
def audit(request: HttpRequest) -> HttpResponse:
    application = None
    if slug := request.GET.get("app"):
        application = get_object_or_404(Application, slug=slug)
        require(Actor(request.user), Permission.VIEW, application)
    page = Paginator(selectors.audit_events(request.user, application=application), 50).get_page(request.GET.get("page"))
    template = "dashboard/audit.html#events" if request.htmx else "dashboard/audit.html"
    return render(request, template, {"page": page, "application": application})


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, widget=forms.TextInput(attrs={"autofocus": True, "placeholder": "ci"}))
    scopes = forms.MultipleChoiceField(choices=Scope.choices, widget=forms.CheckboxSelectMultiple)
    environment = forms.ModelChoiceField(
        queryset=Environment.objects.select_related("application").order_by("application__slug", "position"),
        required=False, empty_label="Any environment",
    )


@login_required
def tokens(request: HttpRequest) -> HttpResponse:
    form = TokenForm(request.POST or None)
    created_key = None
    if request.method == "POST" and form.is_valid():
        _, created_key = do_create_api_token(Actor(request.user), request.user, **form.cleaned_data)
        form = TokenForm()
    context = {
        "form": form,
        "created_key": created_key,
        "tokens": ApiToken.objects.filter(user=request.user).select_related("environment__application"),
    }
    return render(request, "dashboard/tokens.html", context)


@login_required
@require_POST
def revoke_token(request: HttpRequest, pk: int) -> HttpResponse:
    token = get_object_or_404(ApiToken, pk=pk, user=request.user)
    do_revoke_api_token(Actor(request.user), token)
    return redirect("dashboard:tokens")


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return render(request, "404.html", status=404)

"""Form plumbing shared by the pages: JSON typed into a textarea, bounded like an API body; a form that shows its
errors beside its fields with what was typed (`PageForm`, `submit`, `refused`); and, for forms nobody types into
(buttons), a form's first error as a domain error (`cleaned`), said as a message on the page the button is on
(`say_refusal`) rather than on the bare error page."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from config import jsonbody
from config.errors import Invalid, SlipwayError

MAX_TEXT = 200_000


class JSONTextField(forms.Field):
    """JSON typed into a form, parsed by `config/jsonbody.py`: size, nesting, 64-bit integers, finite floats, no
    NUL; `kind` (list or dict) is the shape it must have. An empty box gives `empty`."""

    widget = forms.Textarea

    def __init__(self, *, kind: type, empty: Any, what: str, **kwargs):
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)
        self.kind, self.empty, self.what = kind, empty, what

    def to_python(self, value: Any) -> Any:
        text = value if isinstance(value, str) else ""
        if len(text) > MAX_TEXT:
            raise forms.ValidationError(
                f"{self.what} is longer than {MAX_TEXT:,} characters.", code="too_large"
            )
        try:
            parsed = jsonbody.parse(text, max_bytes=MAX_TEXT * 4, empty=self.empty)
        except jsonbody.BodyError as error:
            raise forms.ValidationError(
                f"{self.what} must be valid JSON: {error.detail}", code=error.code
            ) from None
        if not isinstance(parsed, self.kind):
            raise forms.ValidationError(
                f"{self.what} must be a JSON {'list' if self.kind is list else 'object'}.", code="invalid"
            )
        return parsed


class PageForm(forms.Form):
    """A form people type into: a domain error naming one of its fields is shown beside that field."""

    # The service's name of a field → the form's, where they differ ("" is the form as a whole).
    field_of_error: ClassVar[dict[str, str]] = {}
    # Where a domain error naming none of the form's fields goes: a field, "" for the form, None to the error page.
    other_errors: ClassVar[str | None] = None
    # What the page answers with the errors: 400, or the status of the domain error shown (409: a conflict).
    status = 400

    def show_error(self, error: SlipwayError) -> bool:
        """Put a refusal (400, 409) on the form, beside the field it names; False when it is not the form's."""
        if error.status not in (400, 409):
            return False  # not allowed, not found: the error page says so
        path = error.field or ""
        name = path.split(".", 1)[0].split("[", 1)[0]
        name = self.field_of_error.get(name, name)
        if name not in self.fields:
            if self.other_errors is None:
                return False
            name = self.other_errors
        # A path inside the field (rules[0].variant, variants.beta) says where in what was typed.
        where = path if path and path not in self.fields and path not in self.field_of_error else ""
        self.add_error(name or None, f"{where}: {error.detail}" if where else error.detail)
        self.status = error.status
        return True


def submit[T](form: PageForm, action: Callable[[dict], T]) -> T | None:
    """What `action` returns for the form's cleaned data, or None when the form shows errors instead: its own, or a
    domain error the action raised naming one of its fields (other domain errors go on to the error page)."""
    if not form.is_valid():
        return None
    try:
        return action(form.cleaned_data)
    except SlipwayError as error:
        if not form.show_error(error):
            raise
        return None


def refused(
    request: HttpRequest,
    form: PageForm,
    template: str,
    context: dict,
    *,
    partial: str | None = None,
    partial_id: str | None = None,
) -> HttpResponse:
    """The page again (status 400, or 409 for a conflict), `form` showing its errors beside the fields and everything
    typed. For htmx, only the `partial` holding the form, swapped in place of its root element (id `partial_id`,
    by default the partial's name) whatever the form targeted."""
    if partial and getattr(request, "htmx", False):
        response = render(request, f"{template}#{partial}", context, status=form.status)
        response["HX-Retarget"] = f"#{partial_id or partial}"
        response["HX-Reswap"] = "outerHTML"
        return response
    return render(request, template, context, status=form.status)


def cleaned(form: forms.Form) -> dict:
    """The form's cleaned data, or Invalid naming the first field in error (400, never a 500): for forms of buttons,
    whose values nobody types."""
    if form.is_valid():
        return form.cleaned_data
    field, errors = next(iter(form.errors.items()))
    raise Invalid(" ".join(errors), field=None if field == "__all__" else field)


def query_text(params, name: str, default: str = "", max_length: int = 200) -> str:
    """A query-string parameter as text a query may use: NUL removed (PostgreSQL text cannot hold it), capped."""
    value = params.get(name, default)
    return value.replace("\x00", "")[:max_length] if isinstance(value, str) else default


def say_refusal(request: HttpRequest, error: SlipwayError) -> None:
    """A button's refusal (400: what it sent no longer holds; 409: a conflict) said as an error message on the page
    the view redirects back to, never the bare error page; anything else (not allowed, not found) is raised on, and
    so is everything for htmx (`DomainErrorMiddleware` puts it in the page's #flash, where the user is)."""
    if error.status not in (400, 409) or getattr(request, "htmx", False):
        raise error
    messages.error(request, error.detail)

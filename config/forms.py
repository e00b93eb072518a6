"""Form plumbing shared by the pages: JSON typed into a textarea, bounded like an API body, and a form's first
error as a domain error (a 400 naming the field, rendered by `config.errors.DomainErrorMiddleware`)."""

from __future__ import annotations

from typing import Any

from django import forms

from config import jsonbody
from config.errors import Invalid

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


def cleaned(form: forms.Form) -> dict:
    """The form's cleaned data, or Invalid naming the first field in error (400, never a 500)."""
    if form.is_valid():
        return form.cleaned_data
    field, errors = next(iter(form.errors.items()))
    raise Invalid(" ".join(errors), field=None if field == "__all__" else field)


def query_text(params, name: str, default: str = "", max_length: int = 200) -> str:
    """A query-string parameter as text a query may use: NUL removed (PostgreSQL text cannot hold it), capped."""
    value = params.get(name, default)
    return value.replace("\x00", "")[:max_length] if isinstance(value, str) else default

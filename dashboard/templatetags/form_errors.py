"""A field's error beside it, for forms written out by hand in the templates (their partials are also pushed live,
with no form in the context: then these say nothing).

    <input name="reason" value="{{ form.reason.value|default_if_none:'' }}"{% invalid form.reason "lock-reason-error" %}>
    {% field_error form.reason "lock-reason-error" %}
    {% field_error form.comment "comment-error-" change.pk %}   (an id in parts)

The message goes inside the <form>: static/js/slipway.js keeps a form showing errors from being replaced by a push.
"""

from django import template
from django.utils.html import format_html, format_html_join

register = template.Library()


def _errors(field) -> list[str]:
    """A bound field's errors, or a list of errors (`form.non_field_errors`); nothing for a missing form's ''."""
    errors = getattr(field, "errors", field)
    return [] if not errors or isinstance(errors, str) else [str(message) for message in errors]


@register.simple_tag
def invalid(field, *error_id) -> str:
    """The attributes of a field in error: marked invalid, described by its message (the id given in parts)."""
    if not _errors(field):
        return ""
    return format_html(' aria-invalid="true" aria-describedby="{}"', "".join(map(str, error_id)))


@register.simple_tag
def field_error(field, *error_id) -> str:
    """The field's errors, to show next to it, with the id its field is described by."""
    errors = _errors(field)
    if not errors:
        return ""
    return format_html(
        '<p class="field-error" id="{}">{}</p>',
        "".join(map(str, error_id)),
        format_html_join(" ", "{}", ((message,) for message in errors)),
    )

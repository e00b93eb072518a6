"""Links to URLs someone else supplied (CI, GitHub, an API client): only http(s) ever becomes an `href`."""

from __future__ import annotations

from django import template

from config.validators import is_http_url

register = template.Library()


@register.filter
def safe_href(value: object) -> str:
    """`value` when it is an http(s) URL, else "": `{% if url|safe_href %}<a href="{{ url|safe_href }}">`."""
    return value if is_http_url(value) else ""

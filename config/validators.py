"""Checks shared by every way in: the same rule for a URL whether it comes from CI, GitHub, a form or a hook."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.utils.http import url_has_allowed_host_and_scheme

_http_url = URLValidator(schemes=["http", "https"])


def validate_http_url(value: str) -> None:
    """An absolute http(s) URL, nothing else (no `javascript:`, `data:`, `file:`): ValidationError otherwise."""
    if not isinstance(value, str) or "\x00" in value:
        raise ValidationError("Enter an http:// or https:// URL.", code="invalid")
    _http_url(value)


def is_http_url(value: object) -> bool:
    """Whether `value` may become a link: an http(s) URL as `validate_http_url` accepts it."""
    if not isinstance(value, str) or not value:
        return False
    if urlsplit(value.strip()).scheme.lower() not in ("http", "https"):
        return False
    try:
        validate_http_url(value)
    except ValidationError:
        return False
    return True


def http_url_or_blank(value: object, max_length: int = 500) -> str:
    """`value` when it is an http(s) URL no longer than `max_length`, else "" (for untrusted payloads' links)."""
    return value if isinstance(value, str) and len(value) <= max_length and is_http_url(value) else ""


def local_path(url: str | None) -> str | None:
    """A `next` URL only when it stays on this site: a path starting with one "/" (no open redirect)."""
    if url and url.startswith("/") and url_has_allowed_host_and_scheme(url, allowed_hosts=None):
        return url
    return None

"""Domain errors and the one place that turns them into responses.

Services raise `SlipwayError` subclasses; the API answers them with `config.jsonbody.error_body`
(`{"code": …, "detail": …}`, plus `field` and DRF's field-keyed list for a field's error: the agents' and envelope
routes answer the same shape) through `config.api_errors`, and `DomainErrorMiddleware` renders the error page or
htmx partial. This module imports nothing of DRF: models raise these errors, and DRF's views load the API's
settings (`config.api`), which load the models.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from config.jsonbody import error_body


class SlipwayError(Exception):
    """Base for domain errors. Don't raise directly."""

    status = 400
    code = "invalid"

    def __init__(self, detail: str, *, field: str | None = None, extra: dict[str, Any] | None = None):
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.extra = extra or {}

    def as_json(self) -> dict[str, Any]:
        # A field's error also looks like DRF's own: {"version": ["…"], "field": "version", …}.
        return error_body(self.code, self.detail, field=self.field, **self.extra)


class Invalid(SlipwayError):
    status, code = 400, "invalid"


class NotFound(SlipwayError):
    status, code = 404, "not_found"


class Forbidden(SlipwayError):
    status, code = 403, "forbidden"


class Conflict(SlipwayError):
    status, code = 409, "conflict"


class BodyRefused(SlipwayError):
    """A body `config/jsonbody.py` refused: 413 `too_large`, or 400 `invalid_json`, `too_deep`, `out_of_range`."""

    def __init__(self, error) -> None:  # a jsonbody.BodyError (pure module: no import of it here)
        super().__init__(error.detail, field=error.field)
        self.status, self.code = error.status, error.code


def too_big_body() -> dict[str, str]:
    limit = settings.API_MAX_BODY_BYTES
    return error_body("too_large", f"Request body is larger than {limit // 1024} KiB.")


class BodySizeLimitMiddleware:
    """413 before anything reads a body over the limit, for API and agent routes alike."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return JsonResponse(error_body("invalid", "Content-Length is not a number."), status=400)
        if length > settings.API_MAX_BODY_BYTES:
            return JsonResponse(too_big_body(), status=413)
        return self.get_response(request)


class DomainErrorMiddleware:
    """Pages raise domain errors like services do; this renders them with their status."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, SlipwayError):
            return None
        if request.path.startswith(("/api/", "/ofrep/")):
            return JsonResponse(exception.as_json(), status=exception.status)
        template = "error.html#error"
        if not getattr(request, "htmx", False):
            template = "error.html"
        response = render(request, template, {"error": exception}, status=exception.status)
        if getattr(request, "htmx", False):
            # Show the message in the page's error slot whatever the request targeted.
            response["HX-Retarget"] = "#flash"
            response["HX-Reswap"] = "innerHTML"
        return response


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """A refused form post (403) that names the likely cause: in production, usually plain HTTP."""
    hint = ""
    if settings.CSRF_COOKIE_SECURE and not request.is_secure():
        hint = (
            "This page was reached over plain HTTP, but Slipway's cookies are Secure (CSRF_COOKIE_SECURE, "
            "SESSION_COOKIE_SECURE): browsers only send them back over HTTPS, so the form came without its "
            "CSRF cookie. Open Slipway at its https:// address. Behind a proxy that terminates TLS, the proxy "
            "must send X-Forwarded-Proto: https (nginx: proxy_set_header X-Forwarded-Proto $scheme;), which "
            "Slipway trusts when TRUST_X_FORWARDED_PROTO is on (docs/operations.md)."
        )
    elif reason.startswith("Origin checking failed"):
        hint = (
            "The browser's address is not one Slipway knows: add it to CSRF_TRUSTED_ORIGINS "
            "(e.g. https://slipway.example.com), or have the proxy pass the original Host header."
        )
    return render(request, "403_csrf.html", {"reason": reason, "hint": hint}, status=403)

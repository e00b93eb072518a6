"""The DRF exception handler (`REST_FRAMEWORK["EXCEPTION_HANDLER"]`): domain errors, DRF's own, 413 and 429, each
answered in the one error body (`config.jsonbody.error_body`). Apart from `config.errors` because DRF's views,
imported here, load the API's settings and through them the models, which raise domain errors."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from config.errors import SlipwayError, too_big_body
from config.jsonbody import error_body
from config.throttles import retry_after


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, SlipwayError):
        return Response(exc.as_json(), status=exc.status)
    if isinstance(exc, RequestDataTooBig):
        return Response(too_big_body(), status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    if isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    if isinstance(exc, exceptions.Throttled):
        seconds = retry_after(exc.wait)
        return Response(
            error_body("rate_limited", f"Too many requests: retry in {seconds} s."),
            status=status.HTTP_429_TOO_MANY_REQUESTS,
            headers={"Retry-After": str(seconds)},
        )
    response = exception_handler(exc, context)
    if response is not None and isinstance(exc, exceptions.APIException):
        response.data = _with_code(response.data, exc)
    return response


def _with_code(data: Any, exc: exceptions.APIException) -> dict[str, Any]:
    """Every API error body carries a `code` (the OpenAPI schema's `Error`): DRF's own errors get theirs too."""
    if not isinstance(data, dict):  # a serializer's non-field errors come as a list
        data = {"non_field_errors": data}
    if "code" in data:
        return data
    code = exc.default_code if not isinstance(exc, exceptions.ValidationError) else "invalid"
    return {**data, "code": code}

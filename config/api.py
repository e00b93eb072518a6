"""API plumbing shared by every app: bearer tokens, scope checks for reads, pagination."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Exists, OuterRef
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import extend_schema_field
from rest_framework import authentication, exceptions, permissions, renderers, serializers
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response

from config.throttles import charge_address
from config.validators import validate_http_url
from releases.models import ApiToken, Membership, Scope
from releases.permissions import pinned_token_refusal


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <token>`; the token acts as its user, narrowed by its scopes."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Malformed Authorization header: use 'Bearer <token>'.")
        try:
            key = header[1].decode()
        except UnicodeDecodeError:
            charge_address(request)
            raise exceptions.AuthenticationFailed("Invalid token.") from None
        token = authenticate_token(key)
        if token is None:
            charge_address(request)  # guessing tokens is slowed per address
            raise exceptions.AuthenticationFailed("Invalid or revoked token.")
        return token.user, token

    def authenticate_header(self, request) -> str:
        return self.keyword


def authenticate_token(key: str) -> ApiToken | None:
    """The live token for a key, with `user_has_role` (a role on its pinned application) read in the same query.

    One statement: the application's `access_version` and the role check come from the same snapshot, which the
    OFREP route's cache relies on (see releases/access.py).
    """
    role_there = Membership.objects.filter(
        user=OuterRef("user_id"), application=OuterRef("environment__application_id")
    )
    token = (
        ApiToken.objects.select_related("user", "environment__application")
        .annotate(user_has_role=Exists(role_there))
        .filter(key_hash=ApiToken.hash_key(key), revoked_at__isnull=True, user__is_active=True)
        .first()
    )
    if token is not None:
        now = timezone.now()
        # Record use at most once a minute: a token used per request must not write per request.
        if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=1):
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token


class HasScope(permissions.BasePermission):
    """Authenticated; a pinned token's user still holds a role there; a token carries the view's read scope for reads.

    Writes are checked by the service they call (scope, environment pin and role together).
    """

    message = "This token lacks the scope for this endpoint."

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            charge_address(request)  # refused before DRF's throttles run: count it against the address here
            return False
        token = request.auth if isinstance(request.auth, ApiToken) else None
        if token is None:
            return True
        # Every route, reads and writes: a revoked membership stops its pinned tokens at the next request.
        if refusal := pinned_token_refusal(token):
            self.message = refusal
            return False
        if request.method not in permissions.SAFE_METHODS:
            return True
        scope = getattr(view, "read_scope", Scope.RELEASES_READ)
        if not token.has_scope(scope):
            self.message = f"This token lacks the '{scope}' scope."
            return False
        return True


class HttpURLField(serializers.URLField):
    """A URL the API stores and pages may link to: http(s) only (`config/validators.py`), 500 characters at most."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 500)
        super().__init__(**kwargs)
        self.validators.append(validate_http_url)


@extend_schema_field({"anyOf": [{"type": "string", "format": "uri"}, {"type": "string", "maxLength": 0}]})
class OptionalURLOut(serializers.URLField):
    """An answer's URL that may be empty (`""`: none given): documented as such."""

    def __init__(self, **kwargs):
        super().__init__(read_only=True, **kwargs)


class BrowsableAPIRenderer(renderers.BrowsableAPIRenderer):
    """DRF's browsable API without the inline `<style>` it adds for highlighted code: the CSP refuses inline styles
    (`tests/test_fence.py` browses it in Chromium and expects no violation)."""

    def get_context(self, data, accepted_media_type, renderer_context):
        return {**super().get_context(data, accepted_media_type, renderer_context), "code_style": None}


class Pagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 200

    def get_paginated_response_schema(self, schema: dict) -> dict:
        """DRF's, with `next` and `previous` nullable the OpenAPI 3.1 way (the schema is 3.1)."""
        schema = super().get_paginated_response_schema(schema)
        for link in ("next", "previous"):
            schema["properties"][link].pop("nullable", None)
            schema["properties"][link]["type"] = ["string", "null"]
        return schema


def paginated(request, view, items, render) -> Response:
    """A page of `items` (a queryset or list) as every API list answers: `render` turns the page into dicts."""
    paginator = Pagination()
    page = paginator.paginate_queryset(items, request, view=view)
    return paginator.get_paginated_response(render(page))


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """Describes bearer tokens in the OpenAPI schema (`/api/v1/schema/`), so clients know how to authenticate."""

    target_class = "config.api.BearerTokenAuthentication"
    name = "bearerToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token (`manage.py create_api_token` or the API tokens page), with scopes.",
        }

"""Monitoring API: errors and samples in (`metrics:write`), error groups out (`releases:read`), the DSN key."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config import jsonbody
from config.api import Pagination
from config.errors import BodyRefused, Invalid, SlipwayError
from config.schema import PAGE_PARAMETERS, page_of
from environments.models import Environment
from monitoring import selectors
from monitoring.exceptions import ErrorGroupNotFound
from monitoring.models import ErrorGroup, dsn_for
from monitoring.parsing import BadInput, error_from_json, parse_samples
from monitoring.services import (
    do_push_samples,
    do_record_error,
    do_resolve_error_group,
    do_rotate_ingest_key,
)
from releases.api.views import application_for
from releases.exceptions import ApplicationNotFound
from releases.models import Application
from releases.permissions import Actor, may_see


class TooLarge(SlipwayError):
    status, code = 413, "too_large"


def _json_body(request: Request):
    # Bounded like every API body (config/jsonbody.py): nesting, 64-bit integers, finite floats, no NUL.
    try:
        return jsonbody.parse(request.body, max_bytes=settings.API_MAX_BODY_BYTES)
    except jsonbody.BodyError as error:
        raise BodyRefused(error) from None


def _refused(bad: BadInput) -> SlipwayError:
    if bad.status == 413:
        return TooLarge(bad.detail)
    if bad.index is not None:
        name = f"samples[{bad.index}].{bad.field}" if bad.field else f"samples[{bad.index}]"
        return Invalid(bad.detail, field=name, extra={"index": bad.index})
    return Invalid(bad.detail, field=bad.field)


def _application(request: Request, slug: str) -> Application:
    # Writers check the caller's right per environment in the service (a token may be pinned to one); without
    # any role there the application is as unknown as a missing one.
    application = Application.objects.filter(slug=slug).first()
    if application is None or not may_see(Actor.from_request(request), application):
        raise ApplicationNotFound(f"No application '{slug}'.")
    return application


class ErrorIn(serializers.Serializer):
    """Shape only, for the schema: the view parses with `monitoring.parsing.error_from_json`."""

    environment = serializers.CharField(max_length=100)
    version = serializers.CharField(max_length=100, required=False)
    type = serializers.CharField(max_length=200)
    message = serializers.CharField(required=False, help_text="Kept to 2,000 characters.")
    stacktrace = serializers.CharField(
        required=False,
        help_text="A Python, JavaScript or JVM trace; kept to its innermost 16,000 characters.",
    )
    target = serializers.CharField(max_length=100, required=False)
    timestamp = serializers.DateTimeField(required=False)
    fingerprint = serializers.ListField(child=serializers.CharField(), required=False)


class ErrorGroupOut(serializers.ModelSerializer):
    environment = serializers.CharField(source="environment.name")
    version_count = serializers.SerializerMethodField(
        help_text="Events in the version asked for (null without one)."
    )
    new_in_version = serializers.SerializerMethodField(
        help_text="First seen in the version asked for (or, without one, in the version the environment runs)."
    )

    class Meta:
        model = ErrorGroup
        fields = [
            "id",
            "fingerprint",
            "environment",
            "type",
            "title",
            "culprit",
            "status",
            "count",
            "version_count",
            "first_seen",
            "last_seen",
            "first_seen_version",
            "last_seen_version",
            "new_in_version",
        ]
        read_only_fields = fields

    def get_version_count(self, group: ErrorGroup) -> int | None:
        return getattr(group, "version_count", None)

    def get_new_in_version(self, group: ErrorGroup) -> bool:
        version = self.context.get("version")
        if version is None:
            current = group.environment.current_artifact
            version = current.version if current is not None else None
        return bool(version) and group.first_seen_version == version


class ErrorRecordedOut(serializers.Serializer):
    id = serializers.CharField(help_text="The event id.")
    group = ErrorGroupOut()


class ErrorView(APIView):
    """Report one error as plain JSON (an API token with `metrics:write`)."""

    @extend_schema(request=ErrorIn, responses={201: ErrorRecordedOut})
    def post(self, request: Request, slug: str) -> Response:
        application = _application(request, slug)
        try:
            error = error_from_json(_json_body(request))
        except BadInput as bad:
            raise _refused(bad) from None
        group = do_record_error(Actor.from_request(request), application, error)
        return Response(
            {"id": error.event_id, "group": ErrorGroupOut(group, context={"version": error.version}).data},
            status=201,
        )


class ErrorGroupListView(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("environment", str), OpenApiParameter("version", str), *PAGE_PARAMETERS],
        responses=page_of(ErrorGroupOut),
    )
    def get(self, request: Request, slug: str) -> Response:
        application = application_for(request, slug)
        environment = None
        if name := request.query_params.get("environment"):
            environment = Environment.objects.filter(application=application, name=name).first()
            if environment is None:
                raise Invalid(f"{application.slug} has no environment {name!r}.", field="environment")
        version = request.query_params.get("version") or None
        groups = selectors.error_groups(application, environment=environment, version=version)
        groups = groups.select_related("environment__current_artifact")
        paginator = Pagination()
        page = paginator.paginate_queryset(groups, request, view=self)
        return paginator.get_paginated_response(
            ErrorGroupOut(page, many=True, context={"version": version}).data
        )


class ErrorGroupResolveView(APIView):
    """Mark an error group resolved (developers and release managers, `releases:write`); its next event makes it
    `regressed`. Resolving a resolved group changes nothing."""

    @extend_schema(request=None, responses={200: ErrorGroupOut})
    def post(self, request: Request, slug: str, pk: int) -> Response:
        application = application_for(request, slug)
        group = ErrorGroup.objects.filter(application=application, pk=pk).first()
        if group is None:
            raise ErrorGroupNotFound(f"No error group {pk} in {application.slug}.")
        group = do_resolve_error_group(Actor.from_request(request), group)
        return Response(ErrorGroupOut(group).data)


class SampleLabels(serializers.Serializer):
    environment = serializers.CharField()
    version = serializers.CharField(required=False)
    target = serializers.CharField(required=False)


class SampleIn(serializers.Serializer):
    """Shape only, for the schema: the view parses with `monitoring.parsing.parse_samples`."""

    name = serializers.CharField(max_length=100)
    value = serializers.FloatField()
    timestamp = serializers.DateTimeField(
        required=False, help_text="ISO 8601 or epoch seconds; now if absent."
    )
    labels = SampleLabels()


class PushedOut(serializers.Serializer):
    stored = serializers.IntegerField()


class MetricsView(APIView):
    """Push samples: a JSON list (at most 10,000), all stored or none (400 names the bad sample's index and field)."""

    @extend_schema(request=SampleIn(many=True), responses={201: PushedOut})
    def post(self, request: Request, slug: str) -> Response:
        application = _application(request, slug)
        try:
            samples = parse_samples(_json_body(request))
        except BadInput as bad:
            raise _refused(bad) from None
        stored = do_push_samples(Actor.from_request(request), application, samples)
        return Response({"stored": stored}, status=201)


class IngestKeyOut(serializers.Serializer):
    sentry_dsn = serializers.CharField()


class IngestKeyView(APIView):
    """The application's Sentry DSN; POST rotates its key (admins), revoking the old one."""

    @extend_schema(request=None, responses={201: IngestKeyOut})
    def post(self, request: Request, slug: str) -> Response:
        key = do_rotate_ingest_key(Actor.from_request(request), application_for(request, slug))
        return Response({"sentry_dsn": dsn_for(key.public_key, key.application_id)}, status=201)

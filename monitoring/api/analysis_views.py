"""Metric sources, analysis templates (`releases:write`, admin or release manager, to change) and analysis runs.

Bodies are checked by the services (`monitoring.analysis.parse_*`), which name the field of a mistake the way the
push API does (`metrics[2].success_condition`); the serializers here describe the shapes for the schema.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api import Pagination
from config.errors import Invalid
from config.schema import PAGE_PARAMETERS, page_of
from monitoring import selectors
from monitoring.analysis import METRIC_DEFAULTS, TEMPLATE_DEFAULTS
from monitoring.exceptions import AnalysisRunNotFound, AnalysisTemplateNotFound, MetricSourceNotFound
from monitoring.models import AnalysisMeasurement, AnalysisRun, AnalysisTemplate, MetricSource
from monitoring.services import (
    do_create_analysis_template,
    do_create_metric_source,
    do_delete_analysis_template,
    do_delete_metric_source,
    do_update_analysis_template,
    do_update_metric_source,
)
from releases.api.views import application_for
from releases.permissions import Actor

# --- metric sources ----------------------------------------------------------------------------------------------


class MetricSourceIn(serializers.Serializer):
    """Shape only, for the schema."""

    name = serializers.SlugField(max_length=63)
    kind = serializers.ChoiceField(
        choices=MetricSource.Kind.choices,
        help_text="`prometheus`: a Prometheus server; `pushed`: samples pushed to Slipway.",
    )
    url = serializers.CharField(
        max_length=500, required=False, help_text="Prometheus' base URL (prometheus only)."
    )
    auth = serializers.ChoiceField(choices=MetricSource.Auth.choices, required=False, default="none")
    username = serializers.CharField(max_length=200, required=False, help_text="For basic auth.")
    secret = serializers.CharField(
        max_length=2000,
        required=False,
        write_only=True,
        help_text="Bearer token or basic-auth password; never shown again. Left out of a PATCH: kept.",
    )
    timeout_seconds = serializers.FloatField(min_value=0.1, max_value=60, required=False, default=5.0)
    on_missing_data = serializers.ChoiceField(
        choices=MetricSource.OnMissingData.choices,
        required=False,
        default="inconclusive",
        help_text="What a metric without data (source down, timed out, error, no series) makes of the run.",
    )


class MetricSourceOut(serializers.ModelSerializer):
    has_secret = serializers.SerializerMethodField()

    class Meta:
        model = MetricSource
        fields = [
            "name",
            "kind",
            "url",
            "auth",
            "username",
            "has_secret",
            "timeout_seconds",
            "on_missing_data",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_has_secret(self, source: MetricSource) -> bool:
        return bool(source.secret)


def _body(request: Request) -> dict:
    if not isinstance(request.data, dict):
        raise Invalid("A JSON object.", field="non_field_errors")
    return dict(request.data)


def source_for(request: Request, slug: str, name: str) -> MetricSource:
    application = application_for(request, slug)
    source = (
        MetricSource.objects.filter(application=application, name=name).select_related("application").first()
    )
    if source is None:
        raise MetricSourceNotFound(f"No metric source '{name}' in {slug}.")
    return source


class MetricSourceListView(APIView):
    @extend_schema(
        operation_id="applications_metric_sources_list",
        parameters=PAGE_PARAMETERS,
        responses=page_of(MetricSourceOut),
    )
    def get(self, request: Request, slug: str) -> Response:
        application = application_for(request, slug)
        sources = MetricSource.objects.filter(application=application).order_by("name")
        paginator = Pagination()
        page = paginator.paginate_queryset(sources, request, view=self)
        return paginator.get_paginated_response(MetricSourceOut(page, many=True).data)

    @extend_schema(request=MetricSourceIn, responses={201: MetricSourceOut})
    def post(self, request: Request, slug: str) -> Response:
        application = application_for(request, slug)
        source = do_create_metric_source(Actor.from_request(request), application, _body(request))
        return Response(MetricSourceOut(source).data, status=201)


class MetricSourceDetailView(APIView):
    @extend_schema(responses=MetricSourceOut)
    def get(self, request: Request, slug: str, name: str) -> Response:
        return Response(MetricSourceOut(source_for(request, slug, name)).data)

    @extend_schema(request=MetricSourceIn(partial=True), responses=MetricSourceOut)
    def patch(self, request: Request, slug: str, name: str) -> Response:
        source = do_update_metric_source(
            Actor.from_request(request), source_for(request, slug, name), _body(request)
        )
        return Response(MetricSourceOut(source).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, slug: str, name: str) -> Response:
        do_delete_metric_source(Actor.from_request(request), source_for(request, slug, name))
        return Response(status=204)


# --- analysis templates ------------------------------------------------------------------------------------------


class MetricIn(serializers.Serializer):
    name = serializers.RegexField(
        r"^[A-Za-z_][A-Za-z0-9_]{0,62}$",
        max_length=63,
        help_text="Unique in the template; conditions read the value by this name.",
    )
    source = serializers.SlugField(max_length=63, help_text="A metric source of the application.")
    query = serializers.CharField(
        max_length=4000,
        help_text=(
            "PromQL with {{version}}, {{environment}} (use with `=`) and {{target}} (a regex: use with `=~`) inside "
            'double quotes, e.g. `sum(rate(http_errors{version="{{version}}"}[1m]))`; for pushed samples a sample '
            'name, optionally with labels: `http_errors{route="/cart"}`.'
        ),
    )
    direction = serializers.ChoiceField(
        choices=["increase", "decrease", "either"],
        default=METRIC_DEFAULTS["direction"],
        help_text="Which change of the canary against the baseline is bad.",
    )
    critical = serializers.BooleanField(
        default=False, help_text="Failing (or no data) fails the run whatever the score."
    )
    weight = serializers.FloatField(min_value=0, max_value=1000, default=1.0)
    unit = serializers.CharField(
        max_length=20, required=False, help_text='Shown after values; "%": ratios as percent.'
    )
    allowed_increase = serializers.FloatField(
        min_value=0,
        default=1.0,
        help_text="Mean ratio canary/baseline tolerated before an increase fails (1.2: up to 20 % more).",
    )
    allowed_decrease = serializers.FloatField(min_value=0, default=1.0)
    success_condition = serializers.CharField(
        max_length=1000,
        required=False,
        help_text="Threshold check on each canary measurement, e.g. `error_rate < 0.01`.",
    )
    failure_condition = serializers.CharField(max_length=1000, required=False)
    failure_limit = serializers.IntegerField(min_value=-1, default=0)
    consecutive_error_limit = serializers.IntegerField(min_value=0, default=4)
    inconclusive_limit = serializers.IntegerField(min_value=0, default=0)


class AnalysisTemplateIn(serializers.Serializer):
    """Shape only, for the schema: the service checks the body and names the field of a mistake."""

    name = serializers.SlugField(max_length=63)
    description = serializers.CharField(max_length=2000, required=False)
    interval_seconds = serializers.IntegerField(
        min_value=1,
        max_value=3600,
        default=TEMPLATE_DEFAULTS["interval_seconds"],
        help_text="One measurement (and Prometheus step) every this many seconds.",
    )
    count = serializers.IntegerField(
        min_value=1,
        max_value=1000,
        default=TEMPLATE_DEFAULTS["count"],
        help_text="Measurements to take: the analysis lasts count × interval.",
    )
    pass_threshold = serializers.FloatField(min_value=0, max_value=100, default=95.0)
    marginal_threshold = serializers.FloatField(min_value=0, max_value=100, default=75.0)
    metrics = MetricIn(many=True, help_text="1 to 50 metrics.")


class AnalysisTemplateOut(serializers.ModelSerializer):
    metrics = MetricIn(many=True, read_only=True)

    class Meta:
        model = AnalysisTemplate
        fields = [
            "name",
            "description",
            "interval_seconds",
            "count",
            "pass_threshold",
            "marginal_threshold",
            "metrics",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


def template_for(request: Request, slug: str, name: str) -> AnalysisTemplate:
    application = application_for(request, slug)
    template = (
        AnalysisTemplate.objects.filter(application=application, name=name)
        .select_related("application")
        .first()
    )
    if template is None:
        raise AnalysisTemplateNotFound(f"No analysis template '{name}' in {slug}.")
    return template


class AnalysisTemplateListView(APIView):
    @extend_schema(
        operation_id="applications_analysis_templates_list",
        parameters=PAGE_PARAMETERS,
        responses=page_of(AnalysisTemplateOut),
    )
    def get(self, request: Request, slug: str) -> Response:
        application = application_for(request, slug)
        templates = AnalysisTemplate.objects.filter(application=application)
        paginator = Pagination()
        page = paginator.paginate_queryset(templates, request, view=self)
        return paginator.get_paginated_response(AnalysisTemplateOut(page, many=True).data)

    @extend_schema(request=AnalysisTemplateIn, responses={201: AnalysisTemplateOut})
    def post(self, request: Request, slug: str) -> Response:
        application = application_for(request, slug)
        template = do_create_analysis_template(Actor.from_request(request), application, _body(request))
        return Response(AnalysisTemplateOut(template).data, status=201)


class AnalysisTemplateDetailView(APIView):
    @extend_schema(responses=AnalysisTemplateOut)
    def get(self, request: Request, slug: str, name: str) -> Response:
        return Response(AnalysisTemplateOut(template_for(request, slug, name)).data)

    @extend_schema(request=AnalysisTemplateIn(partial=True), responses=AnalysisTemplateOut)
    def patch(self, request: Request, slug: str, name: str) -> Response:
        template = do_update_analysis_template(
            Actor.from_request(request), template_for(request, slug, name), _body(request)
        )
        return Response(AnalysisTemplateOut(template).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, slug: str, name: str) -> Response:
        do_delete_analysis_template(Actor.from_request(request), template_for(request, slug, name))
        return Response(status=204)


# --- analysis runs -----------------------------------------------------------------------------------------------


class SideSummaryOut(serializers.Serializer):
    count = serializers.IntegerField()
    series = serializers.IntegerField()
    dropped = serializers.IntegerField(help_text="NaN or infinite values left out.")
    missing = serializers.CharField(allow_null=True, help_text="Why there is no data, or null.")
    mean = serializers.FloatField(allow_null=True)
    min = serializers.FloatField(allow_null=True)
    max = serializers.FloatField(allow_null=True)
    p05 = serializers.FloatField(allow_null=True)
    p25 = serializers.FloatField(allow_null=True)
    median = serializers.FloatField(allow_null=True)
    p75 = serializers.FloatField(allow_null=True)
    p95 = serializers.FloatField(allow_null=True)


class MeasurementOut(serializers.ModelSerializer):
    canary = SideSummaryOut()
    baseline = SideSummaryOut(allow_null=True, help_text="Empty without a baseline.")

    class Meta:
        model = AnalysisMeasurement
        fields = [
            "metric",
            "source",
            "source_kind",
            "outcome",
            "check_phase",
            "reason",
            "canary_query",
            "baseline_query",
            "canary",
            "baseline",
        ]
        read_only_fields = fields


class MeasurementWithValuesOut(MeasurementOut):
    canary_values = serializers.ListField(
        child=serializers.ListField(child=serializers.FloatField()),
        help_text="[epoch seconds, value] pairs, at most 2,000 (spread evenly).",
    )
    baseline_values = serializers.ListField(child=serializers.ListField(child=serializers.FloatField()))

    class Meta(MeasurementOut.Meta):
        fields = [*MeasurementOut.Meta.fields, "canary_values", "baseline_values"]
        read_only_fields = fields


class AnalysisRunOut(serializers.ModelSerializer):
    template = serializers.CharField(source="template_name")
    environment = serializers.CharField(source="environment.name")
    release = serializers.IntegerField(source="release_id", allow_null=True)
    measurements = MeasurementOut(many=True)

    class Meta:
        model = AnalysisRun
        fields = [
            "id",
            "template",
            "environment",
            "release",
            "rollout_id",
            "canary_version",
            "baseline_version",
            "canary_targets",
            "baseline_targets",
            "started_at",
            "ended_at",
            "baseline_started_at",
            "baseline_ended_at",
            "status",
            "verdict",
            "score",
            "reasons",
            "duration_ms",
            "created_at",
            "measurements",
        ]
        read_only_fields = fields


class AnalysisRunDetailOut(AnalysisRunOut):
    measurements = MeasurementWithValuesOut(many=True)

    class Meta(AnalysisRunOut.Meta):
        fields = [*AnalysisRunOut.Meta.fields, "config"]
        read_only_fields = fields


class AnalysisRunListView(APIView):
    """Newest first; measurements without their raw values (the detail has them)."""

    @extend_schema(
        operation_id="applications_analysis_runs_list",
        parameters=[
            OpenApiParameter("release", int, description="Only this release's runs."),
            OpenApiParameter("template", str),
            *PAGE_PARAMETERS,
        ],
        responses=page_of(AnalysisRunOut),
    )
    def get(self, request: Request, slug: str) -> Response:
        application = application_for(request, slug)
        release = request.query_params.get("release")
        if release is not None and not (release.isdigit() and int(release) < 2**63):
            raise Invalid("A release id.", field="release")
        runs = selectors.analysis_runs(
            application,
            release_id=int(release) if release else None,
            template=request.query_params.get("template") or None,
        )
        paginator = Pagination()
        page = paginator.paginate_queryset(runs, request, view=self)
        return paginator.get_paginated_response(AnalysisRunOut(page, many=True).data)


class AnalysisRunDetailView(APIView):
    @extend_schema(responses=AnalysisRunDetailOut)
    def get(self, request: Request, slug: str, pk: int) -> Response:
        application = application_for(request, slug)
        run = selectors.analysis_run(application, pk, with_values=True)
        if run is None:
            raise AnalysisRunNotFound(f"No analysis run #{pk} in {slug}.")
        return Response(AnalysisRunDetailOut(run).data)

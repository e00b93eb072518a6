"""Environments of an application's pipeline."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api import HttpURLField, OptionalURLOut
from environments.exceptions import EnvironmentNotFound
from environments.models import Environment
from environments.services import (
    EDITABLE_FIELDS,
    SECRET_FIELDS,
    do_create_environment,
    do_update_environment,
)
from releases import selectors
from releases.api.views import application_for
from releases.models import SLUG_PATTERN
from releases.permissions import Actor, Permission

SLUG_MESSAGE = "Use 1–63 lowercase letters, digits and dashes, starting with a letter or digit."


class EnvironmentIn(serializers.Serializer):
    name = serializers.RegexField(SLUG_PATTERN, max_length=63, error_messages={"invalid": SLUG_MESSAGE})
    position = serializers.IntegerField(min_value=0, max_value=10_000)
    requires_approval = serializers.BooleanField(required=False, default=False)
    description = serializers.CharField(max_length=2000, required=False, default="", allow_blank=True)
    approval_policy = serializers.ChoiceField(
        choices=Environment.ApprovalPolicy.choices, required=False, default=Environment.ApprovalPolicy.AUTHORS
    )
    required_approvals = serializers.IntegerField(min_value=1, max_value=20, required=False, default=1)
    auto_promote = serializers.BooleanField(required=False, default=False)
    pending_warn_hours = serializers.IntegerField(min_value=1, max_value=24 * 365, required=False, default=24)
    pending_warn_changes = serializers.IntegerField(
        min_value=1, max_value=100_000, required=False, default=20
    )
    strategy = serializers.JSONField(required=False, default=dict)
    flag_change_requests = serializers.BooleanField(required=False, default=False)
    driver = serializers.ChoiceField(choices=Environment.Driver.choices, required=False, default="agent")
    deploy_command = serializers.CharField(max_length=1000, required=False, default="", allow_blank=True)
    pre_deploy_command = serializers.CharField(max_length=1000, required=False, default="", allow_blank=True)
    manual_gates = serializers.BooleanField(required=False, default=False)
    webhook_url = HttpURLField(required=False, default="", allow_blank=True)
    webhook_secret = serializers.CharField(
        max_length=200, required=False, default="", allow_blank=True, write_only=True
    )
    step_timeout_seconds = serializers.IntegerField(
        min_value=1, max_value=86_400, required=False, default=300
    )
    heartbeat_timeout_seconds = serializers.IntegerField(
        min_value=3, max_value=3600, required=False, default=30
    )
    rollback_batch_size = serializers.IntegerField(
        min_value=1, max_value=10_000, required=False, allow_null=True, default=None
    )
    smoke_test_urls = serializers.ListField(child=HttpURLField(), required=False, default=list, max_length=20)

    smoke_test_command = serializers.CharField(max_length=1000, required=False, default="", allow_blank=True)
    switch_command = serializers.CharField(max_length=1000, required=False, default="", allow_blank=True)
    live_slot = serializers.ChoiceField(choices=Environment.Slot.choices, required=False, default="blue")
    rollback_on_new_errors = serializers.BooleanField(required=False, default=False)


class EnvironmentOut(serializers.ModelSerializer):
    current_version = serializers.CharField(source="current_artifact.version", default=None, allow_null=True)
    webhook_url = OptionalURLOut(help_text="The webhook driver's URL.")

    class Meta:
        model = Environment
        # What the services let people edit, but secrets (never echoed), and what is read only.
        fields = [f for f in EDITABLE_FIELDS if f not in SECRET_FIELDS] + ["current_version", "created_at"]
        read_only_fields = fields


def environment_for(
    request: Request, slug: str, name: str, permission: Permission = Permission.VIEW
) -> Environment:
    application = application_for(request, slug, permission)
    environment = selectors.environments_of(application).filter(name=name).first()
    if environment is None:
        raise EnvironmentNotFound(f"No environment '{name}' in {slug}.")
    environment.application = application
    return environment


class EnvironmentListView(generics.ListAPIView):
    """The pipeline, in order. POST adds an environment (admin role)."""

    serializer_class = EnvironmentOut

    def get_queryset(self):
        return selectors.environments_of(application_for(self.request, self.kwargs["slug"]))

    @extend_schema(request=EnvironmentIn, responses={201: EnvironmentOut})
    def post(self, request: Request, slug: str) -> Response:
        application = application_for(request, slug)
        data = EnvironmentIn(data=request.data)
        data.is_valid(raise_exception=True)
        environment = do_create_environment(Actor.from_request(request), application, **data.validated_data)
        return Response(EnvironmentOut(environment).data, status=201)


class EnvironmentDetailView(APIView):
    @extend_schema(responses=EnvironmentOut)
    def get(self, request: Request, slug: str, name: str) -> Response:
        return Response(EnvironmentOut(environment_for(request, slug, name)).data)

    @extend_schema(request=EnvironmentIn(partial=True), responses=EnvironmentOut)
    def patch(self, request: Request, slug: str, name: str) -> Response:
        environment = environment_for(request, slug, name)
        data = EnvironmentIn(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        changes = {k: v for k, v in data.validated_data.items() if k in request.data}
        environment = do_update_environment(Actor.from_request(request), environment, **changes)
        return Response(EnvironmentOut(environment).data)

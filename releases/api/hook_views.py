"""GitHub's inbound webhook (HMAC-verified) and the configuration of inbound and outgoing hooks."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config import jsonbody
from config.api import HttpURLField, paginated
from config.errors import BodyRefused
from config.schema import PAGE_PARAMETERS, error, page_of
from releases.api.views import application_for
from releases.exceptions import ApplicationNotFound
from releases.models import Application, GitHubHook, NotificationHook
from releases.permissions import Actor
from releases.webhooks import (
    do_add_notification_hook,
    do_configure_github,
    handle_github_event,
    verify_signature,
)


class GitHubEventOut(serializers.Serializer):
    """What Slipway did with the event: one of these keys, by event kind."""

    ok = serializers.BooleanField(required=False, help_text="`ping`: the hook is set up.")
    changes = serializers.IntegerField(required=False, help_text="`push`: commits stored as new changes.")
    blocker = serializers.IntegerField(
        required=False, allow_null=True, help_text="`issues`: the blocker the issue opened, resolved or left."
    )
    state = serializers.ChoiceField(choices=["open", "resolved", "unchanged"], required=False)
    ignored = serializers.CharField(required=False, help_text="Any other event: its name, and nothing done.")


class GitHubWebhookView(APIView):
    """`POST /api/v1/webhooks/github/<slug>/`: GitHub signs the body; a bad signature is a 401 and stores nothing."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        summary="GitHub's webhook: pushes become changes, labelled issues become blockers",
        description="Signed by GitHub with the application's secret (`X-Hub-Signature-256`); `X-GitHub-Event` "
        "names the event. The body is GitHub's own payload.",
        auth=[],
        parameters=[
            OpenApiParameter("X-Hub-Signature-256", str, OpenApiParameter.HEADER, required=True),
            OpenApiParameter("X-GitHub-Event", str, OpenApiParameter.HEADER, required=True),
        ],
        request={"application/json": OpenApiTypes.OBJECT},
        responses={200: GitHubEventOut, 401: error("The signature is missing or wrong (`bad_signature`).")},
    )
    def post(self, request: Request, slug: str) -> Response:
        application = Application.objects.filter(slug=slug).first()
        if application is None:
            raise ApplicationNotFound(f"No application '{slug}'.")
        body = request.body
        verify_signature(
            GitHubHook.objects.filter(application=application).first(),
            body,
            request.headers.get("X-Hub-Signature-256", ""),
        )
        try:
            payload = jsonbody.parse(body, max_bytes=settings.API_MAX_BODY_BYTES)
        except jsonbody.BodyError as error:
            raise BodyRefused(error) from None
        return Response(handle_github_event(application, request.headers.get("X-GitHub-Event", ""), payload))


class GitHubConfigIn(serializers.Serializer):
    secret = serializers.CharField(min_length=16, max_length=200)
    blocker_label = serializers.CharField(max_length=100, required=False, default="deploy-blocker")
    blocker_environments = serializers.ListField(
        child=serializers.SlugField(max_length=63), required=False, default=list, max_length=50
    )


class GitHubConfigOut(serializers.Serializer):
    blocker_label = serializers.CharField()
    blocker_environments = serializers.ListField(child=serializers.CharField())
    url = serializers.CharField(help_text="The webhook's path on this Slipway: give GitHub the full URL.")


class GitHubConfigView(APIView):
    @extend_schema(
        summary="Connect GitHub: the webhook secret and which labelled issues block which environments",
        request=GitHubConfigIn,
        responses=GitHubConfigOut,
    )
    def put(self, request: Request, slug: str) -> Response:
        application = application_for(request, slug)
        data = GitHubConfigIn(data=request.data)
        data.is_valid(raise_exception=True)
        hook = do_configure_github(Actor.from_request(request), application, **data.validated_data)
        return Response(
            {
                "blocker_label": hook.blocker_label,
                "blocker_environments": hook.blocker_environments,
                "url": f"/api/v1/webhooks/github/{slug}/",
            }
        )


class NotificationHookIn(serializers.Serializer):
    url = HttpURLField()
    events = serializers.ListField(child=serializers.CharField(max_length=20), required=False, default=list)


class NotificationHookOut(serializers.ModelSerializer):
    class Meta:
        model = NotificationHook
        fields = ["id", "url", "events", "active", "last_status", "created_at"]
        read_only_fields = fields


class NotificationHookListView(APIView):
    @extend_schema(
        summary="Outgoing notification hooks",
        parameters=PAGE_PARAMETERS,
        responses=page_of(NotificationHookOut),
    )
    def get(self, request: Request, slug: str) -> Response:
        application = application_for(request, slug)
        return paginated(
            request,
            self,
            application.notification_hooks.order_by("pk"),
            lambda page: NotificationHookOut(page, many=True).data,
        )

    @extend_schema(
        summary="Add a notification hook (Slipway POSTs release events to it)",
        request=NotificationHookIn,
        responses={201: NotificationHookOut},
    )
    def post(self, request: Request, slug: str) -> Response:
        application = application_for(request, slug)
        data = NotificationHookIn(data=request.data)
        data.is_valid(raise_exception=True)
        hook = do_add_notification_hook(Actor.from_request(request), application, **data.validated_data)
        return Response(NotificationHookOut(hook).data, status=201)

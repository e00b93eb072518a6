"""Releases, approvals, rollback, recorded deployments, locks, freeze windows and blockers."""

from __future__ import annotations

import zoneinfo

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api import HttpURLField, OptionalURLOut
from config.errors import Invalid
from config.schema import PAGE_PARAMETERS
from environments.api.views import environment_for
from environments.exceptions import EnvironmentNotFound
from environments.models import Environment, FreezeWindow, Lock
from releases import selectors
from releases.api.views import application_for
from releases.batches import ReleaseFacts, describe_releases, group_key
from releases.exceptions import (
    ArtifactNotFound,
    BlockerNotFound,
    FreezeNotFound,
    LockNotFound,
    ReleaseNotFound,
)
from releases.models import Approval, Artifact, Blocker, Release, Rollout
from releases.permissions import Actor
from releases.promotions import (
    do_cancel_release,
    do_create_freeze,
    do_decide,
    do_delete_freeze,
    do_force_release,
    do_lock,
    do_open_blocker,
    do_record_release,
    do_request_release,
    do_resolve_blocker,
    do_rollback,
    do_unlock,
)


def artifact_for(application, version: str) -> Artifact:
    artifact = Artifact.objects.filter(application=application, version=version).first()
    if artifact is None:
        raise ArtifactNotFound(f"No artifact {version} in {application.slug}.", field="version")
    return artifact


def release_for(request: Request, slug: str, pk: int) -> Release:
    application = application_for(request, slug)
    release = selectors.releases_of(application).filter(pk=pk).first()
    if release is None:
        raise ReleaseNotFound(f"No release #{pk} in {slug}.")
    return release


def releases_out(releases) -> list[dict]:
    """Releases as the API shows them, in a number of queries that does not grow with their number."""
    releases = list(releases)
    facts = describe_releases(releases)
    return [release_out(r, facts[r.pk]) for r in releases]


def release_out(release: Release, facts: ReleaseFacts | None = None) -> dict:
    """A release with its batch grouped by author, each group's approval, and what blocks it."""
    facts = facts or describe_releases([release])[release.pk]
    batch, approvals, state = facts.batch, facts.approvals, facts.state
    return {
        "id": release.pk,
        "kind": release.kind,
        "status": release.status,
        "environment": release.environment.name,
        "version": release.artifact.version,
        "batch": {
            "from_version": batch.from_version,
            "to_version": batch.to_version,
            "change_count": batch.change_count,
            "authors": [
                {
                    "author": g.author,
                    "user": g.username,
                    "changes": [{"sha": c.sha, "title": c.title, "url": c.url} for c in g.changes],
                    "approval": _approval_out(state.by_group.get(group_key(g))),
                }
                for g in batch.groups
            ],
        },
        "approvals": [_approval_out(a) for a in approvals],
        "blocked_by": facts.blocked_by,
        "requested_by": release.requested_by.get_username() if release.requested_by else None,
        "forced_by": release.forced_by.get_username() if release.forced_by else None,
        "reason": release.reason,
        "strategy": release.strategy or None,
        "superseded_by": release.superseded_by_id,
        "created_at": release.created_at,
        "started_at": release.started_at,
        "finished_at": release.finished_at,
        "rollout": _rollout_out(release),
    }


def _rollout_out(release: Release) -> dict | None:
    # releases_of() annotates the rollout's id and status: a list of releases costs no query per release.
    if hasattr(release, "rollout_pk"):
        pk, status = release.rollout_pk, release.rollout_status
    else:
        pk, status = Rollout.objects.filter(release=release).values_list("pk", "status").first() or (
            None,
            None,
        )
    if pk is None:
        return None
    return {"id": pk, "status": status, "websocket": f"/ws/rollouts/{pk}/"}


def _approval_out(approval: Approval | None) -> dict | None:
    if approval is None:
        return None
    return {
        "user": approval.user.get_username(),
        "decision": approval.decision,
        "comment": approval.comment,
        "on_behalf": approval.on_behalf,
        "carried_over": approval.carried_over,
        "created_at": approval.created_at,
    }


# The shape release_out() returns, for the OpenAPI schema (documentation only: views build the dict).
class ReleaseRolloutOut(serializers.Serializer):
    id = serializers.IntegerField(help_text="GET …/releases/<id>/rollout/ shows its steps.")
    status = serializers.ChoiceField(choices=Rollout.Status.choices)
    websocket = serializers.CharField(
        help_text="Live view: a WebSocket at this path (session auth, same host) pushes the progress partial "
        "each time the rollout changes."
    )


class ReleaseApprovalOut(serializers.Serializer):
    user = serializers.CharField()
    decision = serializers.ChoiceField(choices=Approval.Decision.choices)
    comment = serializers.CharField()
    on_behalf = serializers.BooleanField()
    carried_over = serializers.BooleanField()
    created_at = serializers.DateTimeField()


class ReleaseChangeOut(serializers.Serializer):
    sha = serializers.CharField()
    title = serializers.CharField()
    url = serializers.CharField()


class ReleaseAuthorOut(serializers.Serializer):
    author = serializers.CharField()
    user = serializers.CharField(allow_null=True)
    changes = ReleaseChangeOut(many=True)
    approval = ReleaseApprovalOut(allow_null=True)


class ReleaseBatchOut(serializers.Serializer):
    from_version = serializers.CharField(allow_null=True)
    to_version = serializers.CharField()
    change_count = serializers.IntegerField()
    authors = ReleaseAuthorOut(many=True)


class ReleaseOut(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=Release.Kind.choices)
    status = serializers.ChoiceField(choices=Release.Status.choices)
    environment = serializers.CharField()
    version = serializers.CharField()
    batch = ReleaseBatchOut()
    approvals = ReleaseApprovalOut(many=True)
    blocked_by = serializers.ListField(
        child=serializers.DictField(), help_text="Each reason it is not shipping now."
    )
    requested_by = serializers.CharField(allow_null=True)
    forced_by = serializers.CharField(allow_null=True)
    reason = serializers.CharField()
    strategy = serializers.JSONField(allow_null=True)
    superseded_by = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    rollout = ReleaseRolloutOut(allow_null=True, help_text="Null until the release starts rolling out.")


class ReleasePageOut(serializers.Serializer):
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = ReleaseOut(many=True)


class ReleaseIn(serializers.Serializer):
    environment = serializers.SlugField(max_length=63)
    version = serializers.CharField(max_length=100)
    reason = serializers.CharField(max_length=2000, required=False, default="", allow_blank=True)
    strategy = serializers.JSONField(
        required=False,
        default=dict,
        help_text="Overrides the environment's rollout strategy for this release.",
    )


class ReleaseListView(APIView):
    """Releases newest first; filter by `environment` and `status`. POST asks for a release."""

    @extend_schema(
        operation_id="applications_releases_list",
        parameters=[
            OpenApiParameter("environment", str),
            OpenApiParameter("status", str, enum=Release.Status.values),
            *PAGE_PARAMETERS,
        ],
        responses=ReleasePageOut,
    )
    def get(self, request: Request, slug: str) -> Response:
        application = application_for(request, slug)
        releases = selectors.releases_of(application)
        if name := request.query_params.get("environment"):
            releases = releases.filter(environment__name=name)
        if status := request.query_params.get("status"):
            if status not in Release.Status.values:
                raise Invalid(f"Unknown status '{status}'.", field="status")
            releases = releases.filter(status=status)
        paginator = generics.GenericAPIView.pagination_class()
        page = paginator.paginate_queryset(releases, request, view=self)
        return paginator.get_paginated_response(releases_out(page))

    @extend_schema(request=ReleaseIn, responses={201: ReleaseOut})
    def post(self, request: Request, slug: str) -> Response:
        data = ReleaseIn(data=request.data)
        data.is_valid(raise_exception=True)
        environment = environment_for(request, slug, data.validated_data["environment"])
        artifact = artifact_for(environment.application, data.validated_data["version"])
        release = do_request_release(
            Actor.from_request(request),
            environment.application,
            environment=environment,
            artifact=artifact,
            reason=data.validated_data["reason"],
            strategy=data.validated_data["strategy"],
        )
        return Response(release_out(release_for(request, slug, release.pk)), status=201)


class ReleaseDetailView(APIView):
    @extend_schema(responses=ReleaseOut)
    def get(self, request: Request, slug: str, pk: int) -> Response:
        return Response(release_out(release_for(request, slug, pk)))


class DecisionIn(serializers.Serializer):
    decision = serializers.ChoiceField(choices=Approval.Decision.choices)
    comment = serializers.CharField(max_length=2000, required=False, default="", allow_blank=True)


class ApprovalView(APIView):
    """Approve or reject as yourself: 403 with nothing of yours to approve, 409 for a second decision."""

    @extend_schema(request=DecisionIn, responses={201: ReleaseOut})
    def post(self, request: Request, slug: str, pk: int) -> Response:
        release = release_for(request, slug, pk)
        data = DecisionIn(data=request.data)
        data.is_valid(raise_exception=True)
        do_decide(Actor.from_request(request), release.pk, **data.validated_data)
        return Response(release_out(release_for(request, slug, pk)), status=201)


class ReasonIn(serializers.Serializer):
    reason = serializers.CharField(max_length=2000)


class ForceView(APIView):
    @extend_schema(request=ReasonIn, responses=ReleaseOut)
    def post(self, request: Request, slug: str, pk: int) -> Response:
        release = release_for(request, slug, pk)
        data = ReasonIn(data=request.data)
        data.is_valid(raise_exception=True)
        do_force_release(Actor.from_request(request), release.pk, reason=data.validated_data["reason"])
        return Response(release_out(release_for(request, slug, pk)))


class CancelView(APIView):
    @extend_schema(request=None, responses=ReleaseOut)
    def post(self, request: Request, slug: str, pk: int) -> Response:
        release = release_for(request, slug, pk)
        do_cancel_release(
            Actor.from_request(request),
            release.pk,
            reason=str(request.data.get("reason", ""))[:2000] if isinstance(request.data, dict) else "",
        )
        return Response(release_out(release_for(request, slug, pk)))


class RollbackIn(serializers.Serializer):
    version = serializers.CharField(max_length=100)
    reason = serializers.CharField(max_length=2000)


class RollbackView(APIView):
    @extend_schema(request=RollbackIn, responses={201: ReleaseOut})
    def post(self, request: Request, slug: str, name: str) -> Response:
        environment = environment_for(request, slug, name)
        data = RollbackIn(data=request.data)
        data.is_valid(raise_exception=True)
        release = do_rollback(
            Actor.from_request(request),
            environment,
            artifact=artifact_for(environment.application, data.validated_data["version"]),
            reason=data.validated_data["reason"],
        )
        return Response(release_out(release_for(request, slug, release.pk)), status=201)


class DeploymentIn(serializers.Serializer):
    version = serializers.CharField(max_length=100)
    status = serializers.ChoiceField(choices=[Release.Status.SUCCEEDED, Release.Status.FAILED])


class DeploymentView(APIView):
    """Record a deployment another tool did."""

    @extend_schema(request=DeploymentIn, responses={201: ReleaseOut})
    def post(self, request: Request, slug: str, name: str) -> Response:
        environment = environment_for(request, slug, name)
        data = DeploymentIn(data=request.data)
        data.is_valid(raise_exception=True)
        release = do_record_release(
            Actor.from_request(request),
            environment,
            status=data.validated_data["status"],
            artifact=artifact_for(environment.application, data.validated_data["version"]),
        )
        return Response(release_out(release_for(request, slug, release.pk)), status=201)


class LockOut(serializers.ModelSerializer):
    locked_by = serializers.CharField(source="locked_by.username", default=None, allow_null=True)
    released_by = serializers.CharField(source="released_by.username", default=None, allow_null=True)

    class Meta:
        model = Lock
        fields = ["id", "reason", "locked_by", "created_at", "released_at", "released_by"]
        read_only_fields = fields


class LockListView(generics.ListAPIView):
    serializer_class = LockOut

    def get_queryset(self):
        environment = environment_for(self.request, self.kwargs["slug"], self.kwargs["name"])
        return Lock.objects.filter(environment=environment).select_related("locked_by", "released_by")

    @extend_schema(request=ReasonIn, responses={201: LockOut})
    def post(self, request: Request, slug: str, name: str) -> Response:
        environment = environment_for(request, slug, name)
        data = ReasonIn(data=request.data)
        data.is_valid(raise_exception=True)
        lock = do_lock(Actor.from_request(request), environment, reason=data.validated_data["reason"])
        return Response(LockOut(lock).data, status=201)


class LockDetailView(APIView):
    @extend_schema(summary="Release a lock", responses={204: None})
    def delete(self, request: Request, slug: str, name: str, pk: int) -> Response:
        environment = environment_for(request, slug, name)
        lock = Lock.objects.filter(environment=environment, pk=pk).first()
        if lock is None:
            raise LockNotFound(f"No lock #{pk} on {slug}/{name}.")
        do_unlock(Actor.from_request(request), lock)
        return Response(status=204)


class FreezeIn(serializers.Serializer):
    reason = serializers.CharField(max_length=500)
    starts_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
    ends_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
    weekdays = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=7), required=False, default=list, max_length=7
    )
    start_time = serializers.TimeField(required=False, allow_null=True, default=None)
    end_time = serializers.TimeField(required=False, allow_null=True, default=None)
    timezone = serializers.CharField(max_length=64, required=False, default="UTC")

    def validate_timezone(self, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise serializers.ValidationError(f"Unknown time zone '{value}'.") from None
        return value


class FreezeOut(serializers.ModelSerializer):
    class Meta:
        model = FreezeWindow
        fields = [
            "id",
            "reason",
            "starts_at",
            "ends_at",
            "weekdays",
            "start_time",
            "end_time",
            "timezone",
            "created_at",
        ]
        read_only_fields = fields


class FreezeListView(generics.ListAPIView):
    serializer_class = FreezeOut

    def get_queryset(self):
        return FreezeWindow.objects.filter(
            environment=environment_for(self.request, self.kwargs["slug"], self.kwargs["name"])
        )

    @extend_schema(request=FreezeIn, responses={201: FreezeOut})
    def post(self, request: Request, slug: str, name: str) -> Response:
        environment = environment_for(request, slug, name)
        data = FreezeIn(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        values["timezone_name"] = values.pop("timezone")
        window = do_create_freeze(Actor.from_request(request), environment, **values)
        return Response(FreezeOut(window).data, status=201)


class FreezeDetailView(APIView):
    @extend_schema(summary="Delete a freeze window", responses={204: None})
    def delete(self, request: Request, slug: str, name: str, pk: int) -> Response:
        environment = environment_for(request, slug, name)
        window = FreezeWindow.objects.filter(environment=environment, pk=pk).first()
        if window is None:
            raise FreezeNotFound(f"No freeze window #{pk} on {slug}/{name}.")
        do_delete_freeze(Actor.from_request(request), window)
        return Response(status=204)


class BlockerIn(serializers.Serializer):
    title = serializers.CharField(max_length=300)
    url = HttpURLField(required=False, default="", allow_blank=True)
    environments = serializers.ListField(
        child=serializers.SlugField(max_length=63), min_length=1, max_length=50
    )


class BlockerOut(serializers.ModelSerializer):
    environments = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)
    url = OptionalURLOut()

    class Meta:
        model = Blocker
        fields = ["id", "title", "url", "environments", "source", "created_at", "resolved_at"]
        read_only_fields = fields


class BlockerListView(generics.ListAPIView):
    serializer_class = BlockerOut

    def get_queryset(self):
        application = application_for(self.request, self.kwargs["slug"])
        return Blocker.objects.filter(application=application).prefetch_related("environments")

    @extend_schema(request=BlockerIn, responses={201: BlockerOut})
    def post(self, request: Request, slug: str) -> Response:
        application = application_for(request, slug)
        data = BlockerIn(data=request.data)
        data.is_valid(raise_exception=True)
        names = data.validated_data["environments"]
        environments = list(Environment.objects.filter(application=application, name__in=names))
        unknown = sorted(set(names) - {e.name for e in environments})
        if unknown:
            raise EnvironmentNotFound(f"No environment {', '.join(unknown)} in {slug}.", field="environments")
        blocker = do_open_blocker(
            Actor.from_request(request),
            application,
            title=data.validated_data["title"],
            url=data.validated_data["url"],
            environments=environments,
        )
        return Response(BlockerOut(blocker).data, status=201)


class BlockerResolveView(APIView):
    @extend_schema(
        summary="Resolve a blocker: releases it held may go on", request=None, responses=BlockerOut
    )
    def post(self, request: Request, slug: str, pk: int) -> Response:
        application = application_for(request, slug)
        blocker = Blocker.objects.filter(application=application, pk=pk).first()
        if blocker is None:
            raise BlockerNotFound(f"No blocker #{pk} in {slug}.")
        return Response(BlockerOut(do_resolve_blocker(Actor.from_request(request), blocker)).data)

"""CI's API: applications, artifacts and author identities. Views parse, call one service, serialize."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from releases import selectors
from releases.api.serializers import (
    ApplicationDetailOut,
    ApplicationIn,
    ApplicationOut,
    ArtifactInSerializer,
    ArtifactListOut,
    ArtifactOut,
)
from releases.exceptions import (
    ApplicationNotFound,
    ArtifactNotFound,
    IdentityNotFound,
    UnknownDecision,
    UserNotFound,
)
from releases.models import Application, AuthorIdentity, identity_validator
from releases.permissions import Actor, Permission, may_see, require
from releases.services import (
    do_confirm_identity,
    do_create_application,
    do_decline_identity,
    do_link_identity,
    do_register_artifact,
    do_unlink_identity,
)


def application_for(request: Request, slug: str, permission: Permission = Permission.VIEW) -> Application:
    """The application named in the URL, once the caller may read it (404 if unknown or the caller holds no role
    there, 403 naming the role if a role lacks the permission)."""
    application = Application.objects.filter(slug=slug).first()
    actor = Actor.from_request(request)
    if application is None or not may_see(actor, application):
        raise ApplicationNotFound(f"No application '{slug}'.")
    require(actor, permission, application)
    return application


class ApplicationListView(generics.ListAPIView):
    serializer_class = ApplicationOut

    def get_queryset(self):
        return selectors.applications_for(self.request.user, Actor.from_request(self.request).token)

    @extend_schema(request=ApplicationIn, responses={201: ApplicationDetailOut})
    def post(self, request: Request) -> Response:
        data = ApplicationIn(data=request.data)
        data.is_valid(raise_exception=True)
        application = do_create_application(Actor.from_request(request), **data.validated_data)
        return Response(ApplicationDetailOut(application).data, status=201)


class ApplicationDetailView(APIView):
    @extend_schema(responses=ApplicationDetailOut)
    def get(self, request: Request, slug: str) -> Response:
        return Response(ApplicationDetailOut(application_for(request, slug)).data)


class ArtifactListView(generics.ListAPIView):
    """Artifacts newest first. POST registers one: 201 new, 200 identical repeat, 409 same version differing."""

    serializer_class = ArtifactListOut

    def get_queryset(self):
        return selectors.artifacts_of(application_for(self.request, self.kwargs["slug"]))

    @extend_schema(request=ArtifactInSerializer, responses={201: ArtifactOut, 200: ArtifactOut})
    def post(self, request: Request, slug: str) -> Response:
        application = application_for(request, slug)
        data = ArtifactInSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        artifact, created = do_register_artifact(
            Actor.from_request(request), application, data.to_artifact_in()
        )
        return Response(_artifact_out(application, artifact.version), status=201 if created else 200)


class ArtifactDetailView(APIView):
    @extend_schema(responses=ArtifactOut)
    def get(self, request: Request, slug: str, version: str) -> Response:
        return Response(_artifact_out(application_for(request, slug), version))


def _artifact_out(application: Application, version: str) -> dict:
    artifact = selectors.artifact_detail(application, version)
    if artifact is None:
        raise ArtifactNotFound(f"No artifact {version} in {application.slug}.")
    artifact.author_groups = selectors.group_by_author(artifact.changes.all())
    return ArtifactOut(artifact).data


class IdentityIn(serializers.Serializer):
    user = serializers.CharField(
        max_length=150, help_text="Your own username, or anyone's for an administrator."
    )
    identity = serializers.CharField(
        max_length=254,
        validators=[identity_validator],
        help_text="A login or an email address the user commits under.",
    )


class IdentityOut(serializers.Serializer):
    id = serializers.IntegerField()
    user = serializers.CharField(source="user.username")
    identity = serializers.CharField()
    status = serializers.ChoiceField(
        choices=AuthorIdentity.Status.choices, help_text="Only a confirmed link maps changes to the user."
    )
    decided_by = serializers.CharField(source="decided_by.username", allow_null=True, default=None)
    decided_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()


class IdentityView(APIView):
    """Your identities; POST links one: 201 when confirmed at once (your own email, or an administrator linking),
    202 with a pending request otherwise, which an administrator or a release manager of an application where the
    identity authored changes confirms. Linking for someone else is for administrators (scope `admin`)."""

    @extend_schema(responses=IdentityOut(many=True))
    def get(self, request: Request) -> Response:
        return Response(IdentityOut(selectors.identities_of(request.user), many=True).data)

    @extend_schema(request=IdentityIn, responses={201: IdentityOut, 202: IdentityOut})
    def post(self, request: Request) -> Response:
        data = IdentityIn(data=request.data)
        data.is_valid(raise_exception=True)
        user = get_user_model().objects.filter(username=data.validated_data["user"]).first()
        if user is None:
            raise UserNotFound(f"No user '{data.validated_data['user']}'.", field="user")
        link = do_link_identity(Actor.from_request(request), user, data.validated_data["identity"])
        return Response(
            IdentityOut(link).data, status=201 if link.status == AuthorIdentity.Status.CONFIRMED else 202
        )


class IdentityDetailView(APIView):
    """DELETE unlinks an identity, or withdraws a request, by id or by the identity itself: yours, or anyone's for
    an administrator (scope `admin`)."""

    @extend_schema(
        responses={204: None},
        parameters=[
            OpenApiParameter(
                "key", str, OpenApiParameter.PATH, description="The link's id, or the identity itself."
            )
        ],
    )
    def delete(self, request: Request, key: str) -> Response:
        link = selectors.identity_link(request.user, key)
        if link is None:
            raise IdentityNotFound(f"No identity '{key}' of yours.")
        do_unlink_identity(Actor.from_request(request), link)
        return Response(status=204)


class IdentityRequestListView(APIView):
    """Pending identity requests you may confirm or decline: all for an administrator; for a release manager, those
    whose identity authored changes in an application they manage."""

    @extend_schema(responses=IdentityOut(many=True))
    def get(self, request: Request) -> Response:
        pending = selectors.identity_requests_for(request.user).filter(status=AuthorIdentity.Status.PENDING)
        return Response(IdentityOut(pending, many=True).data)


class IdentityDecisionIn(serializers.Serializer):
    reason = serializers.CharField(max_length=2000, required=False, default="", allow_blank=True)


class IdentityRequestDecisionView(APIView):
    """Confirm or decline a pending identity request (scope `approvals:write`): 403 unless you may decide it,
    409 once decided."""

    @extend_schema(
        request=IdentityDecisionIn,
        responses=IdentityOut,
        parameters=[OpenApiParameter("decision", str, OpenApiParameter.PATH, enum=["confirm", "decline"])],
    )
    def post(self, request: Request, pk: int, decision: str) -> Response:
        if decision not in ("confirm", "decline"):
            raise UnknownDecision(f"No decision '{decision}': confirm or decline.")
        data = IdentityDecisionIn(data=request.data)
        data.is_valid(raise_exception=True)
        actor = Actor.from_request(request)
        if decision == "confirm":
            link = do_confirm_identity(actor, pk)
        else:
            link = do_decline_identity(actor, pk, reason=data.validated_data["reason"])
        return Response(IdentityOut(link).data)

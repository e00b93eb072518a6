"""CI's API: applications, artifacts and author identities. Views parse, call one service, serialize."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.errors import NotFound
from releases import selectors
from releases.api.serializers import (
    ApplicationDetailOut,
    ApplicationIn,
    ApplicationOut,
    ArtifactInSerializer,
    ArtifactListOut,
    ArtifactOut,
)
from releases.models import Application
from releases.permissions import Actor, Permission, require
from releases.services import do_create_application, do_link_identity, do_register_artifact


def application_for(request: Request, slug: str, permission: Permission = Permission.VIEW) -> Application:
    """The application named in the URL, once the caller may read it (404 if unknown, 403 if not allowed)."""
    application = Application.objects.filter(slug=slug).first()
    if application is None:
        raise NotFound(f"No application '{slug}'.")
    require(Actor.from_request(request), permission, application)
    return application


class ApplicationListView(generics.ListAPIView):
    serializer_class = ApplicationOut

    def get_queryset(self):
        return selectors.applications_for(self.request.user)

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
        artifact, created = do_register_artifact(Actor.from_request(request), application, data.to_artifact_in())
        return Response(_artifact_out(application, artifact.version), status=201 if created else 200)


class ArtifactDetailView(APIView):
    @extend_schema(responses=ArtifactOut)
    def get(self, request: Request, slug: str, version: str) -> Response:
        return Response(_artifact_out(application_for(request, slug), version))


def _artifact_out(application: Application, version: str) -> dict:
    artifact = selectors.artifact_detail(application, version)
    if artifact is None:
        raise NotFound(f"No artifact {version} in {application.slug}.")
    artifact.author_groups = selectors.group_by_author(artifact.changes.all())
    return ArtifactOut(artifact).data


class IdentityIn(serializers.Serializer):
    user = serializers.CharField(max_length=150)
    identity = serializers.CharField(max_length=254)


class IdentityView(APIView):
    """Link a login or email that someone commits under to their Slipway user (scope `admin`)."""

    @extend_schema(request=IdentityIn, responses={201: IdentityIn})
    def post(self, request: Request) -> Response:
        data = IdentityIn(data=request.data)
        data.is_valid(raise_exception=True)
        user = get_user_model().objects.filter(username=data.validated_data["user"]).first()
        if user is None:
            raise NotFound(f"No user '{data.validated_data['user']}'.", field="user")
        link = do_link_identity(Actor.from_request(request), user, data.validated_data["identity"])
        return Response({"user": user.get_username(), "identity": link.identity}, status=201)

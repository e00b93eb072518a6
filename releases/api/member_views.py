"""Members of an application: who holds which role (`GET`), granting (`POST`) and revoking (`DELETE …/<id>/`)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import generics, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.schema import error
from environments.exceptions import EnvironmentNotFound
from environments.models import Environment
from releases import selectors
from releases.api.views import application_for
from releases.exceptions import MembershipNotFound, UserNotFound
from releases.models import Membership, Role
from releases.permissions import Actor
from releases.services import do_grant_role, do_revoke_role


class MemberIn(serializers.Serializer):
    user = serializers.CharField(max_length=150, help_text="Username.")
    role = serializers.ChoiceField(choices=Role.choices)
    environment = serializers.SlugField(
        max_length=63,
        required=False,
        allow_null=True,
        default=None,
        help_text="Environment name: limits a flag editor to that environment.",
    )


class MemberOut(serializers.ModelSerializer):
    user = serializers.CharField(source="user.username")
    environment = serializers.CharField(
        source="environment.name",
        default=None,
        allow_null=True,
        help_text="Set for a flag editor limited to one environment.",
    )

    class Meta:
        model = Membership
        fields = ["id", "user", "role", "environment"]
        read_only_fields = fields


FORBIDDEN = error(
    "Needs scope `admin` and the admin or release-manager role (the admin role itself: admin only).",
)


@extend_schema_view(
    get=extend_schema(summary="Who holds which role on the application (scope `releases:read`)")
)
class MemberListView(generics.ListAPIView):
    serializer_class = MemberOut

    def get_queryset(self):
        return selectors.members_of(application_for(self.request, self.kwargs["slug"]))

    @extend_schema(
        summary="Grant a role (scope `admin`; caller: admin or release manager there)",
        description="`environment` limits a flag editor to one environment. Granting a role held already "
        "answers 200 with it; a new one 201.",
        request=MemberIn,
        responses={
            201: MemberOut,
            200: MemberOut,
            400: error("A field is wrong (keyed by it)."),
            403: FORBIDDEN,
            404: error("No such user or environment (keyed by field)."),
        },
    )
    def post(self, request: Request, slug: str) -> Response:
        application = application_for(request, slug)
        data = MemberIn(data=request.data)
        data.is_valid(raise_exception=True)
        username, environment_name = data.validated_data["user"], data.validated_data["environment"]
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise UserNotFound(f"No user '{username}'.", field="user")
        environment = None
        if environment_name:
            environment = Environment.objects.filter(application=application, name=environment_name).first()
            if environment is None:
                raise EnvironmentNotFound(
                    f"No environment '{environment_name}' in {slug}.", field="environment"
                )
        membership, created = do_grant_role(
            Actor.from_request(request), application, user, data.validated_data["role"], environment
        )
        return Response(MemberOut(membership).data, status=201 if created else 200)


class MemberDetailView(APIView):
    @extend_schema(
        summary="Revoke a membership (scope `admin`; caller: admin or release manager there)",
        description="Its user's tokens lose the role at once (OFREP included). The last admin cannot be revoked.",
        request=None,
        responses={
            204: None,
            403: FORBIDDEN,
            404: error("No such membership."),
            409: error("The application's last admin (`last_admin`)."),
        },
    )
    def delete(self, request: Request, slug: str, pk: int) -> Response:
        application = application_for(request, slug)
        membership = (
            Membership.objects.filter(application=application, pk=pk).select_related("application").first()
        )
        if membership is None:
            raise MembershipNotFound(f"No membership #{pk} on {slug}.")
        do_revoke_role(Actor.from_request(request), membership)
        return Response(status=204)

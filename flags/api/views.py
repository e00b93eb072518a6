"""Flag management API (`flags:write` to change, `flags:read` to read)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api import paginated
from config.schema import PAGE_PARAMETERS, page_of
from environments.api.views import environment_for
from flags.exceptions import ChangeRequestNotFound, FlagEventNotFound, FlagNotFound, UnknownDecision
from flags.models import KEY_PATTERN, ChangeRequest, Flag, FlagEvent, FlagState, ScheduledChange, Segment
from flags.services import (
    do_archive_flag,
    do_change_flag_state,
    do_create_flag,
    do_decide_change,
    do_kill_switch,
    do_revert_flag,
    do_save_segment,
    do_schedule_change,
    do_update_flag,
)
from flags.snapshots import default_state, state_dict
from releases.api.views import application_for
from releases.models import Scope
from releases.permissions import Actor, Permission

MAX_JSON_ITEMS = 200


class FlagIn(serializers.Serializer):
    key = serializers.RegexField(
        KEY_PATTERN,
        max_length=128,
        error_messages={"invalid": "1–128 lowercase letters, digits, dots, dashes and underscores."},
    )
    type = serializers.ChoiceField(choices=Flag.Type.choices, default=Flag.Type.BOOLEAN)
    name = serializers.CharField(max_length=200, required=False, default="", allow_blank=True)
    description = serializers.CharField(max_length=5000, required=False, default="", allow_blank=True)
    variants = serializers.DictField(required=False, allow_empty=False)
    owner = serializers.CharField(max_length=150, required=False, default="", allow_blank=True)
    tags = serializers.ListField(
        child=serializers.CharField(max_length=50), required=False, default=list, max_length=20
    )


class FlagPatch(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(max_length=5000, required=False, allow_blank=True)
    variants = serializers.DictField(required=False, allow_empty=False)
    owner = serializers.CharField(max_length=150, required=False, allow_blank=True)
    tags = serializers.ListField(child=serializers.CharField(max_length=50), required=False, max_length=20)


class StatePatch(serializers.Serializer):
    enabled = serializers.BooleanField(required=False)
    rollout_percentage = serializers.IntegerField(
        min_value=0,
        max_value=100,
        required=False,
        allow_null=True,
        help_text="Roll out to this share of users (the others get off_variant); null removes the rollout.",
    )
    rollout = serializers.JSONField(required=False, allow_null=True)
    off_variant = serializers.CharField(max_length=100, required=False)
    default_variant = serializers.CharField(max_length=100, required=False)
    rules = serializers.ListField(child=serializers.DictField(), required=False, max_length=MAX_JSON_ITEMS)
    prerequisites = serializers.ListField(child=serializers.DictField(), required=False, max_length=20)


# The shapes the views return, for the OpenAPI schema (documentation only: the views build the dicts).
class FlagStateOut(serializers.Serializer):
    enabled = serializers.BooleanField()
    off_variant = serializers.CharField()
    default_variant = serializers.CharField()
    rules = serializers.ListField(
        child=serializers.DictField(), help_text="Targeting rules, first match wins."
    )
    rollout = serializers.JSONField(
        allow_null=True, help_text='`{"weights": {variant: share}, "percentage": P}` or null.'
    )
    prerequisites = serializers.ListField(child=serializers.DictField())


class FlagOut(serializers.Serializer):
    key = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField()
    type = serializers.ChoiceField(choices=Flag.Type.choices)
    variants = serializers.DictField(child=serializers.JSONField(), help_text="Variant name → value served.")
    owner = serializers.CharField()
    tags = serializers.ListField(child=serializers.CharField())
    created_at = serializers.DateTimeField()
    archived = serializers.BooleanField()
    environments = serializers.DictField(child=FlagStateOut(), help_text="Environment name → its state.")


class EnvironmentStateOut(FlagStateOut):
    environment = serializers.CharField()


class ChangeRequestOut(serializers.Serializer):
    id = serializers.IntegerField()
    environment = serializers.CharField()
    changes = serializers.DictField(help_text="The fields of the state PATCH it proposes.")
    status = serializers.ChoiceField(choices=ChangeRequest.Status.choices)
    proposed_by = serializers.CharField(allow_null=True)
    reviewed_by = serializers.CharField(allow_null=True)
    comment = serializers.CharField()
    created_at = serializers.DateTimeField()
    decided_at = serializers.DateTimeField(allow_null=True)


class ProposedOut(serializers.Serializer):
    change_request = ChangeRequestOut(
        help_text="The environment needs a second person: this waits for review."
    )


class FlagEventOut(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    environment = serializers.CharField(allow_null=True)
    actor = serializers.CharField()
    created_at = serializers.DateTimeField()
    before = serializers.JSONField(allow_null=True)
    after = serializers.JSONField(allow_null=True)


class SegmentOut(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField()
    conditions = serializers.ListField(child=serializers.DictField())


class ScheduleOut(serializers.Serializer):
    id = serializers.IntegerField()
    at = serializers.DateTimeField()
    changes = serializers.DictField()
    applied_at = serializers.DateTimeField(allow_null=True)
    error = serializers.CharField()


def flag_out(flag: Flag, states: dict[int, FlagState] | None = None) -> dict:
    environments = list(flag.application.environments.all())
    if states is None:
        states = {s.environment_id: s for s in flag.states.all()}
    return {
        "key": flag.key,
        "name": flag.name,
        "description": flag.description,
        "type": flag.type,
        "variants": flag.variants,
        "owner": flag.owner,
        "tags": flag.tags,
        "created_at": flag.created_at,
        "archived": flag.archived_at is not None,
        "environments": {
            e.name: state_dict(states[e.pk]) if e.pk in states else default_state(flag) for e in environments
        },
    }


def flag_for(request: Request, slug: str, key: str, permission=Permission.READ_FLAGS) -> Flag:
    application = application_for(request, slug, permission)
    flag = Flag.objects.filter(application=application, key=key).select_related("application").first()
    if flag is None:
        raise FlagNotFound(f"No flag '{key}' in {slug}.")
    return flag


class FlagListView(APIView):
    read_scope = Scope.FLAGS_READ

    @extend_schema(
        operation_id="applications_flags_list",
        summary="The application's flags",
        parameters=PAGE_PARAMETERS,
        responses=page_of(FlagOut),
    )
    def get(self, request: Request, slug: str) -> Response:
        application = application_for(request, slug, Permission.READ_FLAGS)
        flags = (
            Flag.objects.filter(application=application, archived_at__isnull=True)
            .select_related("application")
            .prefetch_related("states", "application__environments")
        )
        return paginated(request, self, flags, lambda page: [flag_out(f) for f in page])

    @extend_schema(summary="Create a flag", request=FlagIn, responses={201: FlagOut})
    def post(self, request: Request, slug: str) -> Response:
        application = application_for(request, slug, Permission.READ_FLAGS)
        data = FlagIn(data=request.data)
        data.is_valid(raise_exception=True)
        flag = do_create_flag(Actor.from_request(request), application, **data.validated_data)
        return Response(flag_out(flag), status=201)


class FlagDetailView(APIView):
    read_scope = Scope.FLAGS_READ

    @extend_schema(summary="A flag with its state in each environment", responses=FlagOut)
    def get(self, request: Request, slug: str, key: str) -> Response:
        return Response(flag_out(flag_for(request, slug, key)))

    @extend_schema(
        summary="Rename, describe, retag a flag or change its variants", request=FlagPatch, responses=FlagOut
    )
    def patch(self, request: Request, slug: str, key: str) -> Response:
        flag = flag_for(request, slug, key)
        data = FlagPatch(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        return Response(flag_out(do_update_flag(Actor.from_request(request), flag, **data.validated_data)))

    @extend_schema(summary="Archive a flag (it stops being served)", responses={204: None})
    def delete(self, request: Request, slug: str, key: str) -> Response:
        do_archive_flag(Actor.from_request(request), flag_for(request, slug, key))
        return Response(status=204)


class FlagStateView(APIView):
    """`PATCH …/flags/<key>/environments/<env>/`: on/off, rollout, rules, variants served, prerequisites."""

    @extend_schema(
        summary="Change a flag's state in one environment",
        description="Applied at once (200), or, where the environment asks for a second person, proposed as a "
        "change request (202).",
        request=StatePatch,
        responses={200: EnvironmentStateOut, 202: ProposedOut},
    )
    def patch(self, request: Request, slug: str, key: str, name: str) -> Response:
        flag = flag_for(request, slug, key)
        environment = environment_for(request, slug, name, Permission.READ_FLAGS)
        data = StatePatch(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        result = do_change_flag_state(Actor.from_request(request), flag, environment, **data.validated_data)
        if isinstance(result, ChangeRequest):
            return Response({"change_request": change_request_out(result)}, status=202)
        return Response({"environment": name, **state_dict(result)})


class KillSwitchView(APIView):
    @extend_schema(
        summary="Kill switch: turn the flag off in this environment now",
        request=None,
        responses=EnvironmentStateOut,
    )
    def post(self, request: Request, slug: str, key: str, name: str) -> Response:
        flag = flag_for(request, slug, key)
        state = do_kill_switch(
            Actor.from_request(request), flag, environment_for(request, slug, name, Permission.READ_FLAGS)
        )
        return Response({"environment": name, **state_dict(state)})


class HistoryView(APIView):
    read_scope = Scope.FLAGS_READ

    @extend_schema(
        summary="The flag's history, newest first",
        parameters=PAGE_PARAMETERS,
        responses=page_of(FlagEventOut),
    )
    def get(self, request: Request, slug: str, key: str) -> Response:
        flag = flag_for(request, slug, key)
        events = FlagEvent.objects.filter(flag=flag).select_related("environment")
        return paginated(
            request,
            self,
            events,
            lambda page: [
                {
                    "id": e.pk,
                    "kind": e.kind,
                    "environment": e.environment.name if e.environment else None,
                    "actor": e.actor_label,
                    "created_at": e.created_at,
                    "before": e.before,
                    "after": e.after,
                }
                for e in page
            ],
        )


class RevertView(APIView):
    @extend_schema(
        summary="Put the environment's state back to what it was before a history entry",
        request=None,
        responses=EnvironmentStateOut,
    )
    def post(self, request: Request, slug: str, key: str, event_id: int) -> Response:
        flag = flag_for(request, slug, key)
        event = FlagEvent.objects.filter(flag=flag, pk=event_id).select_related("environment").first()
        if event is None:
            raise FlagEventNotFound(f"No history entry #{event_id} for {key}.")
        state = do_revert_flag(Actor.from_request(request), flag, event)
        return Response({"environment": event.environment.name, **state_dict(state)})


class SegmentIn(serializers.Serializer):
    name = serializers.RegexField(KEY_PATTERN, max_length=100)
    description = serializers.CharField(max_length=2000, required=False, default="", allow_blank=True)
    conditions = serializers.ListField(child=serializers.DictField(), min_length=1, max_length=50)


class SegmentListView(APIView):
    read_scope = Scope.FLAGS_READ

    @extend_schema(
        summary="The application's segments", parameters=PAGE_PARAMETERS, responses=page_of(SegmentOut)
    )
    def get(self, request: Request, slug: str) -> Response:
        application = application_for(request, slug, Permission.READ_FLAGS)
        return paginated(
            request,
            self,
            Segment.objects.filter(application=application).order_by("name"),
            lambda page: [segment_out(s) for s in page],
        )

    @extend_schema(summary="Create or replace a segment", request=SegmentIn, responses={201: SegmentOut})
    def post(self, request: Request, slug: str) -> Response:
        application = application_for(request, slug, Permission.READ_FLAGS)
        data = SegmentIn(data=request.data)
        data.is_valid(raise_exception=True)
        segment = do_save_segment(Actor.from_request(request), application, **data.validated_data)
        return Response(segment_out(segment), status=201)


def segment_out(segment: Segment) -> dict:
    return {"name": segment.name, "description": segment.description, "conditions": segment.conditions}


def change_request_out(change: ChangeRequest) -> dict:
    return {
        "id": change.pk,
        "environment": change.environment.name,
        "changes": change.changes,
        "status": change.status,
        "proposed_by": change.proposed_by.get_username() if change.proposed_by else None,
        "reviewed_by": change.reviewed_by.get_username() if change.reviewed_by else None,
        "comment": change.comment,
        "created_at": change.created_at,
        "decided_at": change.decided_at,
    }


class ChangeRequestListView(APIView):
    read_scope = Scope.FLAGS_READ

    @extend_schema(
        summary="The flag's change requests", parameters=PAGE_PARAMETERS, responses=page_of(ChangeRequestOut)
    )
    def get(self, request: Request, slug: str, key: str) -> Response:
        flag = flag_for(request, slug, key)
        changes = ChangeRequest.objects.filter(flag=flag).select_related(
            "environment", "proposed_by", "reviewed_by"
        )
        return paginated(request, self, changes, lambda page: [change_request_out(c) for c in page])


class ChangeDecisionIn(serializers.Serializer):
    comment = serializers.CharField(max_length=2000, required=False, default="", allow_blank=True)


class ChangeRequestDecisionView(APIView):
    @extend_schema(
        summary="Approve or reject a change request (not your own)",
        parameters=[OpenApiParameter("decision", str, OpenApiParameter.PATH, enum=["approve", "reject"])],
        request=ChangeDecisionIn,
        responses=ChangeRequestOut,
    )
    def post(self, request: Request, slug: str, key: str, pk: int, decision: str) -> Response:
        if decision not in ("approve", "reject"):
            raise UnknownDecision(f"No decision '{decision}': approve or reject.")
        flag = flag_for(request, slug, key)
        change = ChangeRequest.objects.filter(flag=flag, pk=pk).first()
        if change is None:
            raise ChangeRequestNotFound(f"No change request #{pk} for {key}.")
        data = ChangeDecisionIn(data=request.data)
        data.is_valid(raise_exception=True)
        change = do_decide_change(
            Actor.from_request(request),
            change,
            approve=decision == "approve",
            comment=data.validated_data["comment"],
        )
        return Response(change_request_out(change))


class ScheduleIn(serializers.Serializer):
    at = serializers.DateTimeField()
    changes = serializers.DictField()


class ScheduleView(APIView):
    read_scope = Scope.FLAGS_READ

    @extend_schema(
        summary="Changes scheduled for this environment",
        parameters=PAGE_PARAMETERS,
        responses=page_of(ScheduleOut),
    )
    def get(self, request: Request, slug: str, key: str, name: str) -> Response:
        flag = flag_for(request, slug, key)
        environment = environment_for(request, slug, name, Permission.READ_FLAGS)
        return paginated(
            request,
            self,
            ScheduledChange.objects.filter(flag=flag, environment=environment).order_by("run_at", "pk"),
            lambda page: [schedule_out(s) for s in page],
        )

    @extend_schema(summary="Schedule a state change", request=ScheduleIn, responses={201: ScheduleOut})
    def post(self, request: Request, slug: str, key: str, name: str) -> Response:
        flag = flag_for(request, slug, key)
        environment = environment_for(request, slug, name, Permission.READ_FLAGS)
        data = ScheduleIn(data=request.data)
        data.is_valid(raise_exception=True)
        schedule = do_schedule_change(
            Actor.from_request(request),
            flag,
            environment,
            run_at=data.validated_data["at"],
            changes=data.validated_data["changes"],
        )
        return Response(schedule_out(schedule), status=201)


def schedule_out(schedule: ScheduledChange) -> dict:
    return {
        "id": schedule.pk,
        "at": schedule.run_at,
        "changes": schedule.changes,
        "applied_at": schedule.applied_at,
        "error": schedule.error,
    }

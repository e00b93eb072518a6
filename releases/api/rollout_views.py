"""Rollouts, targets and agent registration tokens."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.errors import Invalid
from config.schema import error
from environments.api.views import environment_for
from environments.models import Target
from environments.services import do_create_registration_token
from monitoring.models import AnalysisRun
from releases.api.release_views import release_for
from releases.exceptions import RolloutNotFound, UnknownCommand
from releases.models import Rollout, RolloutStep
from releases.permissions import Actor
from releases.rollouts import do_control_rollout

COMMANDS = ("pause", "resume", "cancel", "revert")

# The serializers below only describe the hand-built JSON for the schema: scripts depend on its exact shape, so
# the views keep building it themselves (tests/releases/test_rollout_schema.py checks the two agree).


class HealthOut(serializers.Serializer):
    ok = serializers.BooleanField()
    detail = serializers.CharField()


class RolloutStepOut(serializers.Serializer):
    index = serializers.IntegerField(help_text="Order of the step in the rollout, from 0.")
    wave = serializers.IntegerField(
        allow_null=True, help_text="Wave the step belongs to, from 1; null for the pre-deploy hook."
    )
    target = serializers.CharField(
        allow_null=True,
        help_text="Target name; null for steps on the wave (smoke test, pause, analysis, gates).",
    )
    action = serializers.CharField(
        help_text="What the step does to its target or wave, e.g. `deploy`, `revert`, "
        "`health`, `pre_deploy`, `smoke`, `pause`, `analysis`, `manual_gate`, `switch`."
    )
    version = serializers.CharField(
        help_text="The version the step puts in place (empty for some wave steps)."
    )
    status = serializers.ChoiceField(choices=RolloutStep.Status.choices)
    health = HealthOut(allow_null=True, help_text="The health check's verdict once reported.")
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    output = serializers.CharField(help_text="Output streamed by the agent or worker, at most 64 KB.")


class RolloutAnalysisOut(serializers.Serializer):
    id = serializers.IntegerField(help_text="The run: `GET …/analysis-runs/<id>/` has its measurements.")
    template = serializers.CharField()
    verdict = serializers.ChoiceField(choices=AnalysisRun.Verdict.choices)
    score = serializers.FloatField(allow_null=True)
    canary_targets = serializers.ListField(child=serializers.CharField())
    baseline_targets = serializers.ListField(child=serializers.CharField())
    started_at = serializers.DateTimeField()
    ended_at = serializers.DateTimeField()
    reasons = serializers.ListField(
        child=serializers.CharField(), help_text="Why: the verdict's reason first."
    )


class NotReachedOut(serializers.Serializer):
    target = serializers.CharField()
    waits_for = serializers.ChoiceField(
        choices=["agent", "person"],
        help_text="agent: tried again as soon as its agent is back; person: resume tries it again, cancel stops.",
    )


class RolloutOut(serializers.Serializer):
    status = serializers.ChoiceField(choices=Rollout.Status.choices)
    strategy = serializers.DictField(
        help_text='The strategy fixed when the rollout started, e.g. {"kind": "cautious"}.'
    )
    targets = serializers.ListField(child=serializers.CharField(), help_text="Target names in deploy order.")
    not_reached = NotReachedOut(
        many=True,
        help_text="A rollback's hosts it has not reached yet (a rollback never reverts the others); empty otherwise.",
    )
    steps = RolloutStepOut(many=True)
    analysis_runs = RolloutAnalysisOut(
        many=True,
        help_text="The analyses its gates ran (between waves, the post-deploy watch), oldest first.",
    )


class TargetOut(serializers.Serializer):
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=Target.Status.choices)
    version = serializers.CharField(
        allow_null=True, help_text="The version it runs now; null before its first deploy."
    )
    last_seen = serializers.DateTimeField(allow_null=True, help_text="Its agent's last heartbeat or request.")
    hostname = serializers.CharField()


class RegistrationTokenOut(serializers.Serializer):
    token = serializers.CharField(
        help_text="`slr_…`: shown once, only its hash is kept. Give it to "
        "`python -m environments.agent --registration-token`."
    )


NOT_FOUND = error("No such application, environment, release or rollout.")


def rollout_out(rollout: Rollout) -> dict:
    held = set(rollout.progress.get("held") or ())
    return {
        "status": rollout.status,
        "strategy": rollout.strategy,
        "targets": rollout.targets,
        "not_reached": [
            {"target": name, "waits_for": "person" if name in held else "agent"}
            for name in (rollout.progress.get("waiting") or ())
            if rollout.status in (Rollout.Status.RUNNING, Rollout.Status.PAUSED)
        ],
        "steps": [
            {
                "index": s.index,
                "wave": s.wave_number,
                "target": s.target_name or None,
                "action": s.action,
                "version": s.version,
                "status": s.status,
                "health": s.health,
                "started_at": s.started_at,
                "finished_at": s.finished_at,
                "output": s.output,
            }
            for s in rollout.steps.order_by("index")
        ],
        "analysis_runs": [
            {
                "id": run.pk,
                "template": run.template_name,
                "verdict": run.verdict,
                "score": run.score,
                "canary_targets": run.canary_targets,
                "baseline_targets": run.baseline_targets,
                "started_at": run.started_at,
                "ended_at": run.ended_at,
                "reasons": run.reasons,
            }
            for run in AnalysisRun.objects.filter(rollout_id=rollout.pk).order_by("id").only(*RUN_FIELDS)
        ],
    }


RUN_FIELDS = (
    "id",
    "template_name",
    "verdict",
    "score",
    "canary_targets",
    "baseline_targets",
    "started_at",
    "ended_at",
    "reasons",
)


class RolloutView(APIView):
    @extend_schema(
        summary="A release's rollout: its status, strategy, targets and every step",
        responses={200: RolloutOut, 404: NOT_FOUND},
    )
    def get(self, request: Request, slug: str, pk: int) -> Response:
        release = release_for(request, slug, pk)
        rollout = Rollout.objects.filter(release=release).first()
        if rollout is None:
            raise RolloutNotFound(f"Release #{pk} has no rollout (its environment has no deploy targets).")
        return Response(rollout_out(rollout))


class RolloutControlView(APIView):
    @extend_schema(
        summary="Pause, resume, cancel or revert a release's rollout",
        description="`cancel` and `revert` put every target touched so far back on the previous version. "
        "Answers with the rollout as `GET …/rollout/` does.",
        parameters=[OpenApiParameter("command", str, OpenApiParameter.PATH, enum=COMMANDS)],
        request=None,
        responses={
            200: RolloutOut,
            404: NOT_FOUND,
            409: error("The release has no rollout, or it has finished."),
        },
    )
    def post(self, request: Request, slug: str, pk: int, command: str) -> Response:
        if command not in COMMANDS:
            raise UnknownCommand(f"No rollout command '{command}'.")
        release = release_for(request, slug, pk)
        return Response(rollout_out(do_control_rollout(Actor.from_request(request), release, command)))


class TargetListView(APIView):
    @extend_schema(
        summary="The environment's targets (hosts) with their status, version and last heartbeat",
        responses={200: TargetOut(many=True), 404: NOT_FOUND},
    )
    def get(self, request: Request, slug: str, name: str) -> Response:
        environment = environment_for(request, slug, name)
        return Response(
            [
                {
                    "name": t.name,
                    "status": t.status,
                    "version": t.version or None,
                    "last_seen": t.last_seen,
                    "hostname": t.hostname,
                }
                for t in Target.objects.filter(environment=environment)
            ]
        )


class RegistrationTokenView(APIView):
    """Scope `admin`: a token agents register with to become targets of this environment."""

    @extend_schema(
        summary="Create a registration token for deploy agents",
        description="Scope `admin`. Agents register with it to become targets of this environment. "
        "The body, if any, is an empty JSON object.",
        request=None,
        responses={201: RegistrationTokenOut, 404: NOT_FOUND},
    )
    def post(self, request: Request, slug: str, name: str) -> Response:
        environment = environment_for(request, slug, name)
        if not isinstance(request.data, dict):
            raise Invalid("The body must be a JSON object.", field="non_field_errors")
        return Response(
            {"token": do_create_registration_token(Actor.from_request(request), environment)}, status=201
        )

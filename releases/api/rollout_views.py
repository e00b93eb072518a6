"""Rollouts, targets and agent registration tokens."""

from __future__ import annotations

from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.errors import Invalid, NotFound
from environments.api.views import environment_for
from environments.models import Target
from environments.services import do_create_registration_token
from releases.api.release_views import release_for
from releases.models import Rollout
from releases.permissions import Actor
from releases.rollouts import do_control_rollout


def rollout_out(rollout: Rollout) -> dict:
    return {
        "status": rollout.status, "strategy": rollout.strategy, "targets": rollout.targets,
        "steps": [{"index": s.index, "wave": s.wave, "target": s.target_name or None, "action": s.action,
                   "version": s.version, "status": s.status, "health": s.health, "started_at": s.started_at,
                   "finished_at": s.finished_at, "output": s.output} for s in rollout.steps.order_by("index")],
    }


class RolloutView(APIView):
    def get(self, request: Request, slug: str, pk: int) -> Response:
        release = release_for(request, slug, pk)
        rollout = Rollout.objects.filter(release=release).first()
        if rollout is None:
            raise NotFound(f"Release #{pk} has no rollout (its environment has no deploy targets).")
        return Response(rollout_out(rollout))


class RolloutControlView(APIView):
    def post(self, request: Request, slug: str, pk: int, command: str) -> Response:
        if command not in ("pause", "resume", "cancel", "revert"):
            raise NotFound(f"No rollout command '{command}'.")
        release = release_for(request, slug, pk)
        return Response(rollout_out(do_control_rollout(Actor.from_request(request), release, command)))


class TargetListView(APIView):
    def get(self, request: Request, slug: str, name: str) -> Response:
        environment = environment_for(request, slug, name)
        return Response([{"name": t.name, "status": t.status, "version": t.version or None, "last_seen": t.last_seen,
                          "hostname": t.hostname} for t in Target.objects.filter(environment=environment)])


class RegistrationTokenView(APIView):
    """Scope `admin`: a token agents register with to become targets of this environment."""

    def post(self, request: Request, slug: str, name: str) -> Response:
        environment = environment_for(request, slug, name)
        if not isinstance(request.data, dict):
            raise Invalid("The body must be a JSON object.", field="non_field_errors")
        return Response({"token": do_create_registration_token(Actor.from_request(request), environment)}, status=201)

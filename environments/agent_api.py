"""The deploy agents' API (`/api/v1/agent/…`): agents connect out to Slipway; nothing reaches into hosts.

The server never sends a command: a job names the artifact to put in place, and the agent runs its own,
locally configured deploy command. Wrong token → 401, another environment's job → 403, malformed → 400.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time

from asgiref.sync import sync_to_async
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from environments.jobs import (
    apply_reports,
    authenticate,
    claim_jobs,
    health_steps,
    parse_report,
    record_heartbeat_version,
)
from environments.models import RegistrationToken, Target
from environments.services import do_register_agent
from releases.models import ApiToken, Rollout, RolloutStep
from releases.rollouts import enqueue_advance, publish_changed

log = logging.getLogger("slipway.agent")
MAX_WAIT = 25.0
POLL = 0.2


def _error(status: int, detail: str, **fields) -> JsonResponse:
    log.warning("agent request refused (%s): %s", status, detail)
    return JsonResponse({"detail": detail, **fields}, status=status)


def _json_body(request: HttpRequest) -> dict | None:
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _target_for(request: HttpRequest) -> Target | None:
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return None
    return authenticate([key.strip()]).get(key.strip())


@csrf_exempt
def register(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return _error(405, "Use POST.")
    body = _json_body(request)
    if body is None:
        return _error(400, "The body must be a JSON object.")
    name, token = body.get("name"), body.get("registration_token")
    if not isinstance(name, str) or not 1 <= len(name) <= 100 or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        return _error(400, "name: 1–100 letters, digits, dots, dashes or underscores.", field="name")
    if not isinstance(token, str) or not token:
        return _error(400, "registration_token is required.", field="registration_token")
    registration = RegistrationToken.objects.select_related("environment").filter(
        token_hash=ApiToken.hash_key(token), revoked_at__isnull=True).first()
    if registration is None:
        return _error(401, "Unknown or revoked registration token.")
    target, key = do_register_agent(registration, name=name, hostname=str(body.get("hostname", "")),
                                    agent_version=str(body.get("agent_version", "")))
    return JsonResponse({"agent_token": key, "target": target.name,
                         "heartbeat_seconds": max(1, registration.environment.heartbeat_timeout_seconds // 3)},
                        status=201)


async def work(request: HttpRequest) -> HttpResponse:
    """Long-poll for the next job; holds no thread or database connection while it waits."""
    target = await sync_to_async(_target_for, thread_sensitive=False)(request)
    if target is None:
        return _error(401, "Unknown agent token: register again.")
    try:
        wait = min(float(request.GET.get("wait", 20)), MAX_WAIT)
    except ValueError:
        return _error(400, "wait must be a number of seconds.", field="wait")
    deadline = time.monotonic() + max(wait, 0)
    while True:
        job = (await sync_to_async(claim_jobs, thread_sensitive=False)([target.pk])).get(target.pk)
        if job is not None:
            return JsonResponse({"job": job})
        if time.monotonic() >= deadline:
            await sync_to_async(Target.objects.filter(pk=target.pk).update, thread_sensitive=False)(
                last_seen=timezone.now())
            return HttpResponse(status=204)
        await asyncio.sleep(POLL)


@csrf_exempt
def heartbeat(request: HttpRequest) -> HttpResponse:
    target = _target_for(request)
    if target is None:
        return _error(401, "Unknown agent token: register again.")
    body = _json_body(request)
    if body is None:
        return _error(400, "The body must be a JSON object.")
    version, job = body.get("version"), body.get("job")
    if version is not None and not isinstance(version, str):
        return _error(400, "version: a string or null.", field="version")
    if job is not None and (not isinstance(job, int) or isinstance(job, bool)):
        return _error(400, "job: the id of the agent's newest job, or null.", field="job")
    if version is not None:
        record_heartbeat_version(target, version, job)
    return JsonResponse({"ok": True})


def _step_for(request: HttpRequest, pk: int) -> tuple[RolloutStep | None, HttpResponse | None]:
    target = _target_for(request)
    if target is None:
        return None, _error(401, "Unknown agent token: register again.")
    step = RolloutStep.objects.select_related("rollout", "target").filter(pk=pk).first()
    if step is None:
        return None, _error(404, f"No job #{pk}.")
    if step.target_id != target.pk:
        return None, _error(403, f"Job #{pk} belongs to another target.")
    return step, None


@csrf_exempt
def output(request: HttpRequest, pk: int) -> HttpResponse:
    step, refusal = _step_for(request, pk)
    if refusal:
        return refusal
    body = _json_body(request)
    if body is None or not isinstance(body.get("chunk"), str):
        return _error(400, "chunk: a string of output.", field="chunk")
    with transaction.atomic():
        step = RolloutStep.objects.select_for_update().get(pk=step.pk)
        step.output = (step.output + body["chunk"])[-RolloutStep.OUTPUT_LIMIT:]
        step.save(update_fields=["output"])
        publish_changed(step.rollout_id)
    return JsonResponse({"ok": True})


@csrf_exempt
def result(request: HttpRequest, pk: int) -> HttpResponse:
    key = request.headers.get("Authorization", "").partition(" ")[2].strip()
    report = parse_report(key, pk, _json_body(request))
    status, body = report if isinstance(report, tuple) else apply_reports([report])[0]
    if status != 200:
        return _error(status, body["detail"], **{k: v for k, v in body.items() if k != "detail"})
    return JsonResponse(body)


@csrf_exempt
def webhook_callback(request: HttpRequest, pk: int) -> HttpResponse:
    """The webhook driver's receiver reports a job, signing the body with the environment's secret."""
    from releases.rollouts import sign

    step = RolloutStep.objects.select_related("rollout__release__environment").filter(pk=pk).first()
    if step is None or step.rollout.release.environment.driver != "webhook":
        return _error(404, f"No webhook job #{pk}.")
    secret = step.rollout.release.environment.webhook_secret
    if not secret or not hmac.compare_digest(sign(secret, request.body),
                                             request.headers.get("X-Slipway-Signature", "")):
        return _error(401, "The X-Slipway-Signature header does not match the body.")
    body = _json_body(request)
    if body is None or body.get("status") not in ("succeeded", "failed"):
        return _error(400, "status: succeeded or failed.", field="status")
    health = body.get("health") or {"ok": body["status"] == "succeeded", "detail": "reported by the webhook"}
    if not isinstance(health, dict):
        return _error(400, "health: an object with ok and detail.", field="health")
    with transaction.atomic():
        Rollout.objects.select_for_update().filter(pk=step.rollout_id).exists()  # as the reconciler: rollout first
        step = RolloutStep.objects.select_for_update(of=("self",)).get(pk=pk)
        if step.status != RolloutStep.Status.RUNNING:
            return _error(409, f"Job #{pk} is {step.status}.")
        ok = body["status"] == "succeeded"
        now = timezone.now()
        step.status = RolloutStep.Status.SUCCEEDED if ok else RolloutStep.Status.FAILED
        step.finished_at = now
        step.health = {"ok": bool(health.get("ok")) and ok, "detail": str(health.get("detail", ""))[:500]}
        step.output = (step.output + str(body.get("output", "")))[-RolloutStep.OUTPUT_LIMIT:]
        checks = health_steps([(step, 0.0)], now) if ok else []
        step.save(update_fields=["status", "finished_at", "health", "output"])
        RolloutStep.objects.bulk_create(checks)
        if ok and step.target_id:
            Target.objects.filter(pk=step.target_id).update(version=step.version)
        enqueue_advance(step.rollout_id)
        publish_changed(step.rollout_id)
    return JsonResponse({"ok": True})

"""The deploy agents' API (`/api/v1/agent/…`): agents connect out to Slipway; nothing reaches into hosts.

The server never sends a command: a job names the artifact to put in place, and the agent runs its own,
locally configured deploy command. Wrong token → 401, another environment's job → 403, malformed → 400, an id
that cannot exist → 404, all as `{"code", "detail"}` (plus `field`); bodies go through `config/jsonbody.py` and
ids are checked before any query.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import time

from asgiref.sync import sync_to_async
from django.core.exceptions import RequestDataTooBig
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from config import jsonbody
from environments.jobs import (
    UNKNOWN_AGENT,
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


MAX_KEY = 200  # longer than any token Slipway issues: unknown without a query


def _error(status: int, detail: str, code: str = "invalid", **fields) -> JsonResponse:
    log.warning("agent request refused (%s): %s", status, detail)
    return JsonResponse({"code": code, "detail": detail, **fields}, status=status)


def _unknown_agent() -> JsonResponse:
    status, body = UNKNOWN_AGENT
    return _error(status, body["detail"], body["code"])


def _not_found(what: str) -> JsonResponse:
    return _error(404, f"No {what}.", "not_found")


def _json_body(request: HttpRequest, *, replace_nul: bool = False) -> dict | JsonResponse:
    """The body as a JSON object (an empty body: {}), or the 400/413 answer refusing it."""
    try:
        body = jsonbody.parse(request.body, max_bytes=jsonbody.MAX_BYTES, empty={}, replace_nul=replace_nul)
    except RequestDataTooBig:  # a chunked body past DATA_UPLOAD_MAX_MEMORY_SIZE (no Content-Length to refuse)
        return _error(413, f"The body is larger than {jsonbody.MAX_BYTES // (1024 * 1024)} MB.", "too_large")
    except jsonbody.BodyError as error:
        return _error(error.status, error.detail, error.code, field="non_field_errors")
    if not isinstance(body, dict):
        return _error(400, "The body must be a JSON object.", field="non_field_errors")
    return body


def _key(request: HttpRequest) -> str:
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    key = key.strip() if scheme.lower() == "bearer" else ""
    return key if len(key) <= MAX_KEY else ""


def _target_for(request: HttpRequest) -> Target | None:
    key = _key(request)
    return authenticate([key]).get(key) if key else None


@csrf_exempt
def register(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return _error(405, "Use POST.", "method_not_allowed")
    body = _json_body(request)
    if isinstance(body, JsonResponse):
        return body
    name, token = body.get("name"), body.get("registration_token")
    if not isinstance(name, str) or not 1 <= len(name) <= 100 or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        return _error(400, "name: 1–100 letters, digits, dots, dashes or underscores.", field="name")
    if not isinstance(token, str) or not 1 <= len(token) <= MAX_KEY:
        return _error(400, "registration_token is required.", field="registration_token")
    registration = RegistrationToken.objects.select_related("environment").filter(
        token_hash=ApiToken.hash_key(token), revoked_at__isnull=True).first()
    if registration is None:
        return _error(401, "Unknown or revoked registration token.", "unknown_registration_token")
    target, key = do_register_agent(registration, name=name, hostname=str(body.get("hostname", "")),
                                    agent_version=str(body.get("agent_version", "")))
    return JsonResponse({"agent_token": key, "target": target.name,
                         "heartbeat_seconds": max(1, registration.environment.heartbeat_timeout_seconds // 3)},
                        status=201)


async def work(request: HttpRequest) -> HttpResponse:
    """Long-poll for the next job; holds no thread or database connection while it waits."""
    try:
        wait = float(request.GET.get("wait", 20))
    except ValueError:
        wait = math.nan
    if not math.isfinite(wait):
        return _error(400, "wait must be a number of seconds.", field="wait")
    target = await sync_to_async(_target_for, thread_sensitive=False)(request)
    if target is None:
        return _unknown_agent()
    deadline = time.monotonic() + min(max(wait, 0), MAX_WAIT)
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
    body = _json_body(request)
    if isinstance(body, JsonResponse):
        return body
    version, job = body.get("version"), body.get("job")
    if version is not None and not isinstance(version, str):
        return _error(400, "version: a string or null.", field="version")
    if job is not None and (isinstance(job, bool) or not isinstance(job, int) or not 0 < job <= jsonbody.INT64_MAX):
        return _error(400, "job: the id of the agent's newest job, or null.", field="job")
    target = _target_for(request)
    if target is None:
        return _unknown_agent()
    if version is not None:
        record_heartbeat_version(target, version, job)
    return JsonResponse({"ok": True})


def _step_for(request: HttpRequest, pk: int) -> tuple[RolloutStep | None, HttpResponse | None]:
    target = _target_for(request)
    if target is None:
        return None, _unknown_agent()
    step = RolloutStep.objects.select_related("rollout", "target").filter(pk=pk).first()
    if step is None:
        return None, _not_found(f"job #{pk}")
    if step.target_id != target.pk:
        return None, _error(403, f"Job #{pk} belongs to another target.", "other_target")
    return step, None


@csrf_exempt
def output(request: HttpRequest, pk: str) -> HttpResponse:
    step_id = jsonbody.id_from_path(pk)
    if step_id is None:
        return _not_found(f"job #{pk[:30]}")
    body = _json_body(request, replace_nul=True)
    if isinstance(body, JsonResponse):
        return body
    if not isinstance(body.get("chunk"), str):
        return _error(400, "chunk: a string of output.", field="chunk")
    step, refusal = _step_for(request, step_id)
    if refusal:
        return refusal
    with transaction.atomic():
        step = RolloutStep.objects.select_for_update().get(pk=step.pk)
        step.output = (step.output + body["chunk"])[-RolloutStep.OUTPUT_LIMIT:]
        step.save(update_fields=["output"])
        publish_changed(step.rollout_id)
    return JsonResponse({"ok": True})


@csrf_exempt
def result(request: HttpRequest, pk: str) -> HttpResponse:
    """Served by the lean route (`agent_asgi`) in production; this view answers the same for Django's test client."""
    step_id = jsonbody.id_from_path(pk)
    if step_id is None:
        return _not_found(f"job #{pk[:30]}")
    body = _json_body(request, replace_nul=True)
    if isinstance(body, JsonResponse):
        return body
    key = _key(request)
    report = parse_report(key, step_id, body)
    if not isinstance(report, tuple):
        report = apply_reports([report])[0] if key else UNKNOWN_AGENT
    status, body = report
    if status != 200:
        return _error(status, body["detail"], **{k: v for k, v in body.items() if k != "detail"})
    return JsonResponse(body)


@csrf_exempt
def webhook_callback(request: HttpRequest, pk: str) -> HttpResponse:
    """The webhook driver's receiver reports a job, signing the body with the environment's secret."""
    from releases.rollouts import sign

    step_id = jsonbody.id_from_path(pk)
    if step_id is None:
        return _not_found(f"webhook job #{pk[:30]}")
    body = _json_body(request, replace_nul=True)
    if isinstance(body, JsonResponse):
        return body
    step = RolloutStep.objects.select_related("rollout__release__environment").filter(pk=step_id).first()
    if step is None or step.rollout.release.environment.driver != "webhook":
        return _not_found(f"webhook job #{step_id}")
    secret = step.rollout.release.environment.webhook_secret
    if not secret or not hmac.compare_digest(sign(secret, request.body),
                                             request.headers.get("X-Slipway-Signature", "")):
        return _error(401, "The X-Slipway-Signature header does not match the body.", "bad_signature")
    if body.get("status") not in ("succeeded", "failed"):
        return _error(400, "status: succeeded or failed.", field="status")
    health = body.get("health") or {"ok": body["status"] == "succeeded", "detail": "reported by the webhook"}
    if not isinstance(health, dict):
        return _error(400, "health: an object with ok and detail.", field="health")
    pk = step_id
    with transaction.atomic():
        Rollout.objects.select_for_update().filter(pk=step.rollout_id).exists()  # as the reconciler: rollout first
        step = RolloutStep.objects.select_for_update(of=("self",)).get(pk=pk)
        if step.status != RolloutStep.Status.RUNNING:
            return _error(409, f"Job #{pk} is {step.status}.", "job_finished")
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

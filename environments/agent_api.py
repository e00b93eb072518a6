"""The deploy agents' API (`/api/v1/agent/…`): agents connect out to Slipway; nothing reaches into hosts.

The server never sends a command: a job names the artifact to put in place, and the agent runs its own,
locally configured deploy command. Wrong token → 401, another environment's job → 403, malformed → 400, an id
that cannot exist → 404, all in the API's error shape (`config.jsonbody.error_body`); bodies go through `config/jsonbody.py` and
ids are checked before any query.
"""

from __future__ import annotations

import hmac
import logging

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from config import jsonbody
from environments.jobs import (
    MAX_KEY,
    UNKNOWN_AGENT,
    HealthProbe,
    agent_key,
    authenticate,
    do_append_output,
    do_record_health_probes,
    do_record_heartbeat,
    do_report_webhook_step,
    job_not_found,
)
from environments.models import RegistrationToken, Target
from environments.services import do_register_agent
from releases.models import ApiToken, RolloutStep
from releases.rollouts import sign

log = logging.getLogger("slipway.agent")


MAX_PROBES = 100  # health probes in one heartbeat (an agent sends those of its last few seconds)
MAX_PROBE_AGE = 3600.0  # seconds: an older probe is refused (the agent keeps what it could not send)
MAX_LATENCY_MS = 3_600_000.0


def _error(status: int, detail: str, code: str = "invalid", *, field: str | None = None) -> JsonResponse:
    return _refusal(status, jsonbody.error_body(code, detail, field=field))


def _refusal(status: int, body: dict) -> JsonResponse:
    log.warning("agent request refused (%s): %s", status, body["detail"])
    return JsonResponse(body, status=status)


def _unknown_agent() -> JsonResponse:
    return _refusal(*UNKNOWN_AGENT)


def _json_body(request: HttpRequest, *, replace_nul: bool = False) -> dict | JsonResponse:
    """The body as a JSON object (an empty body: {}), or the 400/413 answer refusing it."""
    try:
        body = jsonbody.parse(request.body, empty={}, replace_nul=replace_nul)
    except RequestDataTooBig:  # a chunked body past DATA_UPLOAD_MAX_MEMORY_SIZE (no Content-Length to refuse)
        return _refusal(413, jsonbody.too_large().as_json())
    except jsonbody.BodyError as error:
        return _refusal(error.status, error.as_json())  # as the API answers the same body
    if not isinstance(body, dict):
        return _error(400, "The body must be a JSON object.", field="non_field_errors")
    return body


def _target_for(request: HttpRequest) -> Target | None:
    key = agent_key(request.headers.get("Authorization", ""))
    return authenticate([key]).get(key) if key else None


@csrf_exempt
def register(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return _error(405, "Use POST.", "method_not_allowed")
    body = _json_body(request)
    if isinstance(body, JsonResponse):
        return body
    name, token = body.get("name"), body.get("registration_token")
    if (
        not isinstance(name, str)
        or not 1 <= len(name) <= 100
        or not name.replace("-", "").replace("_", "").replace(".", "").isalnum()
    ):
        return _error(400, "name: 1–100 letters, digits, dots, dashes or underscores.", field="name")
    if not isinstance(token, str) or not 1 <= len(token) <= MAX_KEY:
        return _error(400, "registration_token is required.", field="registration_token")
    registration = (
        RegistrationToken.objects.select_related("environment")
        .filter(token_hash=ApiToken.hash_key(token), revoked_at__isnull=True)
        .first()
    )
    if registration is None:
        return _error(401, "Unknown or revoked registration token.", "unknown_registration_token")
    target, key = do_register_agent(
        registration,
        name=name,
        hostname=str(body.get("hostname", "")),
        agent_version=str(body.get("agent_version", "")),
    )
    return JsonResponse(
        {
            "agent_token": key,
            "target": target.name,
            "heartbeat_seconds": max(1, registration.environment.heartbeat_timeout_seconds // 3),
        },
        status=201,
    )


@csrf_exempt
def heartbeat(request: HttpRequest) -> HttpResponse:
    body = _json_body(request)
    if isinstance(body, JsonResponse):
        return body
    version, job = body.get("version"), body.get("job")
    if version is not None and not isinstance(version, str):
        return _error(400, "version: a string or null.", field="version")
    if job is not None and (
        isinstance(job, bool) or not isinstance(job, int) or not 0 < job <= jsonbody.INT64_MAX
    ):
        return _error(400, "job: the id of the agent's newest job, or null.", field="job")
    probes = _probes(body.get("health"))
    if isinstance(probes, JsonResponse):
        return probes
    target = _target_for(request)
    if target is None:
        return _unknown_agent()
    if version is not None:
        do_record_heartbeat(target, version, job)
    if probes:
        do_record_health_probes(target, probes)
    return JsonResponse({"ok": True})


def _probes(health) -> list[HealthProbe] | JsonResponse:
    """A heartbeat's `health`: the agent's health probes since its last heartbeat, each
    `{"ok": true, "latency_ms": 12.5, "version": "1.4.0", "age_seconds": 3.2}` (version and age optional); or the
    400 naming the first bad field."""
    if health is None:
        return []
    if not isinstance(health, list) or len(health) > MAX_PROBES:
        return _error(400, f"health: a list of at most {MAX_PROBES} probes.", field="health")
    probes = []
    for n, probe in enumerate(health):
        at = f"health[{n}]"
        if not isinstance(probe, dict):
            return _error(400, f"{at}: an object with ok and latency_ms.", field=at)
        ok, latency = probe.get("ok"), probe.get("latency_ms")
        version, age = probe.get("version"), probe.get("age_seconds", 0)
        if not isinstance(ok, bool):
            return _error(400, f"{at}.ok: true or false.", field=f"{at}.ok")
        if not _number_within(latency, MAX_LATENCY_MS):
            return _error(
                400, f"{at}.latency_ms: milliseconds, 0 to {MAX_LATENCY_MS:,.0f}.", field=f"{at}.latency_ms"
            )
        if version is not None and (not isinstance(version, str) or not 1 <= len(version) <= 100):
            return _error(400, f"{at}.version: 1–100 characters, or null.", field=f"{at}.version")
        if not _number_within(age, MAX_PROBE_AGE):
            return _error(
                400, f"{at}.age_seconds: seconds, 0 to {MAX_PROBE_AGE:,.0f}.", field=f"{at}.age_seconds"
            )
        probes.append(HealthProbe(ok=ok, latency_ms=float(latency), version=version, age_seconds=float(age)))
    return probes


def _number_within(value, high: float) -> bool:
    return (
        not isinstance(value, bool) and isinstance(value, int | float) and 0 <= value <= high
    )  # JSON has no NaN or infinity (config.jsonbody refuses them)


@csrf_exempt
def output(request: HttpRequest, pk: str) -> HttpResponse:
    step_id = jsonbody.id_from_path(pk)
    if step_id is None:
        return _refusal(*job_not_found(pk))
    body = _json_body(request, replace_nul=True)
    if isinstance(body, JsonResponse):
        return body
    if not isinstance(body.get("chunk"), str):
        return _error(400, "chunk: a string of output.", field="chunk")
    target = _target_for(request)
    if target is None:
        return _unknown_agent()
    return _answer(do_append_output(target, step_id, body["chunk"]))


@csrf_exempt
def webhook_callback(request: HttpRequest, pk: str) -> HttpResponse:
    """The webhook driver's receiver reports a job, signing the body with the environment's secret."""
    step_id = jsonbody.id_from_path(pk)
    if step_id is None:
        return _refusal(*job_not_found(pk))
    body = _json_body(request, replace_nul=True)
    if isinstance(body, JsonResponse):
        return body
    step = RolloutStep.objects.select_related("rollout__release__environment").filter(pk=step_id).first()
    if step is None or step.rollout.release.environment.driver != "webhook":
        return _refusal(*job_not_found(step_id))
    secret = step.rollout.release.environment.webhook_secret
    if not secret or not hmac.compare_digest(
        sign(secret, request.body), request.headers.get("X-Slipway-Signature", "")
    ):
        return _error(401, "The X-Slipway-Signature header does not match the body.", "bad_signature")
    if body.get("status") not in ("succeeded", "failed"):
        return _error(400, "status: succeeded or failed.", field="status")
    health = body.get("health") or {"ok": body["status"] == "succeeded", "detail": "reported by the webhook"}
    if not isinstance(health, dict):
        return _error(400, "health: an object with ok and detail.", field="health")
    return _answer(
        do_report_webhook_step(
            step, succeeded=body["status"] == "succeeded", health=health, output=str(body.get("output", ""))
        )
    )


def _answer(answer) -> JsonResponse:
    status, body = answer
    if status != 200:
        return _refusal(status, body)  # built by jobs.refused: the one error shape
    return JsonResponse(body)

"""OpenFeature Remote Evaluation Protocol: `/ofrep/v1/evaluate/flags[/{key}]`.

A lean view: bearer token (pinned to one application environment, scope `flags:read`), the cached compiled
snapshot, orjson, CORS for browser SDKs; no session, CSRF or template machinery on the evaluation path.
"""

from __future__ import annotations

import hashlib

import orjson
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from config.api import authenticate_token
from flags.engine import ErrorCode, Resolution, evaluate, evaluate_all
from flags.snapshots import snapshots
from flags.usage import usage
from releases.models import Scope
from releases.permissions import pinned_token_refusal

CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, If-None-Match",
    "Access-Control-Expose-Headers": "ETag",
    "Access-Control-Max-Age": "600",
}
STATUS_OF_ERROR = {ErrorCode.FLAG_NOT_FOUND: 404, ErrorCode.INVALID_CONTEXT: 400, ErrorCode.PARSE_ERROR: 400,
                   ErrorCode.TARGETING_KEY_MISSING: 400, ErrorCode.TYPE_MISMATCH: 400}


def _json(body, status: int = 200, **headers: str) -> HttpResponse:
    response = HttpResponse(orjson.dumps(body), status=status, content_type="application/json")
    for name, value in {**CORS, **headers}.items():
        response[name] = value
    return response


def _success(key: str, r: Resolution) -> dict:
    out = {"key": key, "value": r.value, "reason": r.reason, "variant": r.variant, "metadata": dict(r.metadata or {})}
    return out


def _failure(key: str, r: Resolution) -> dict:
    return {"key": key, "errorCode": r.error_code, "errorDetails": r.error_details or r.error_code}


def _authenticate(request: HttpRequest):
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key:
        return None, _json({"errorCode": "GENERAL", "errorDetails": "Send Authorization: Bearer <token>."}, 401)
    token = authenticate_token(key.strip())
    if token is None:
        return None, _json({"errorCode": "GENERAL", "errorDetails": "Invalid or revoked token."}, 401)
    if not token.has_scope(Scope.FLAGS_READ) or token.environment_id is None:
        return None, _json({"errorCode": "GENERAL", "errorDetails":
                            "Use a flags:read token pinned to an environment (--environment app/env)."}, 403)
    if refusal := pinned_token_refusal(token):
        return None, _json({"errorCode": "GENERAL", "errorDetails": refusal}, 403)
    return token, None


def parse_context(raw: bytes):
    """(context, None) or (None, what is wrong): shared by these views and the lean ASGI route."""
    try:
        body = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError:
        return None, "The body is not JSON."
    if not isinstance(body, dict):
        return None, "The body must be an object with a `context` object."
    context = body.get("context", {})
    if not isinstance(context, dict):
        return None, "`context` must be an object."
    return context, None


def _preamble(request: HttpRequest, key: str | None):
    """CORS preflight, method, token and context: (token, context, None) or (None, None, the response)."""
    if request.method == "OPTIONS":
        return None, None, _json({}, 204)
    if request.method != "POST":
        return None, None, _json({"errorCode": "GENERAL", "errorDetails": "Use POST."}, 405)
    token, refusal = _authenticate(request)
    if refusal:
        return None, None, refusal
    context, problem = parse_context(request.body)
    if problem:
        body = {"errorCode": ErrorCode.INVALID_CONTEXT, "errorDetails": problem}
        return None, None, _json({"key": key, **body} if key else body, 400)
    return token, context, None


@csrf_exempt
def evaluate_flag(request: HttpRequest, key: str) -> HttpResponse:
    token, context, early = _preamble(request, key)
    if early:
        return early
    resolution = evaluate(snapshots.get(token.environment_id), key, context)
    if resolution.error_code:
        return _json(_failure(key, resolution), STATUS_OF_ERROR.get(resolution.error_code, 400))
    usage.add(token.environment_id, [(key, resolution)])
    return _json(_success(key, resolution))


@csrf_exempt
def evaluate_flags(request: HttpRequest) -> HttpResponse:
    token, context, early = _preamble(request, None)
    if early:
        return early
    snapshot = snapshots.get(token.environment_id)
    results = evaluate_all(snapshot, context)
    flags = [_failure(k, r) if r.error_code else _success(k, r) for k, r in results.items()]
    body = orjson.dumps({"flags": flags})
    # The ETag covers the flags and the context: same both → 304, the SDK keeps its cache.
    etag = '"' + hashlib.blake2b(snapshot.version.encode() + body, digest_size=12).hexdigest() + '"'
    usage.add(token.environment_id, [(k, r) for k, r in results.items() if not r.error_code])
    if request.headers.get("If-None-Match") == etag:
        response = HttpResponse(status=304)
        for name, value in {**CORS, "ETag": etag}.items():
            response[name] = value
        return response
    response = HttpResponse(body, content_type="application/json")
    for name, value in {**CORS, "ETag": etag}.items():
        response[name] = value
    return response

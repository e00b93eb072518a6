"""Every REST API response the suite produces is checked against the OpenAPI schema Slipway serves.

`tests/conftest.py` wraps Django's test client: each response to `/api/v1/…` (the schema and its UIs aside) is
validated with openapi-core against the document `/api/v1/schema/` serves — the operation must exist, its status
code must be declared, and the JSON body must match the declared schema. A response the schema does not describe
fails the test that produced it, so the schema cannot drift from the API again.
"""

from __future__ import annotations

import functools
import json

from django.http import HttpResponse
from django.test.client import Client

API_PREFIX = "/api/v1/"
UNCHECKED = (
    "/api/v1/schema/",  # the schema itself,
    "/api/v1/docs/",  # Swagger UI
    "/api/v1/webhooks/rollout/",  # a deploy system's signed callback (docs/rollouts.md), not the client API
    "/api/v1/agent/",  # the deploy agents' protocol (environments/agent_asgi.py, docs/rollouts.md)
)


class ContractBroken(AssertionError):
    pass


@functools.cache
def openapi():
    from drf_spectacular.generators import SchemaGenerator
    from openapi_core import OpenAPI

    schema = SchemaGenerator().get_schema(request=None, public=True)
    # Round trip through JSON: the generator's output holds lazy strings and OrderedDicts.
    return OpenAPI.from_dict(json.loads(json.dumps(schema, default=str)))


def check(response: HttpResponse) -> None:
    request = getattr(response, "wsgi_request", None)
    if request is None or not request.path.startswith(API_PREFIX) or request.path.startswith(UNCHECKED):
        return
    if response.status_code in (301, 302, 405) or getattr(response, "streaming", False):
        return  # redirects and wrong methods are the framework's; streams are not JSON
    if response.content and not response.get("Content-Type", "").startswith("application/json"):
        return  # the browsable API's HTML for a browser: the contract is the JSON
    from openapi_core.contrib.django import DjangoOpenAPIResponse

    try:
        openapi().validate_response(_request_without_body(request), DjangoOpenAPIResponse(response))
    except Exception as error:  # openapi-core's errors nest the reasons: show them all
        reasons = [repr(error)]
        cause = error.__cause__ or error.__context__
        while cause is not None:
            reasons.append(repr(cause))
            for inner in getattr(cause, "schema_errors", ()) or ():
                reasons.append(f"  {'/'.join(map(str, inner.path))}: {inner.message}")
            cause = cause.__cause__ or cause.__context__
        body = response.content[:500].decode(errors="replace")
        raise ContractBroken(
            f"{request.method} {request.path} answered {response.status_code}, which the OpenAPI schema does not "
            f"describe:\n" + "\n".join(reasons) + f"\nbody: {body}"
        ) from None


def _request_without_body(request):
    """openapi-core's Django request without the body (DRF has read the stream; only the response is checked)."""
    from openapi_core.contrib.django import DjangoOpenAPIRequest

    class WithoutBody(DjangoOpenAPIRequest):
        body = b""

    return WithoutBody(request)


def install(monkeypatch) -> None:
    original = Client.request

    def request(self, **kwargs):
        response = original(self, **kwargs)
        check(response)
        return response

    monkeypatch.setattr(Client, "request", request)

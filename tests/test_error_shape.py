"""One error body (OpenAPI's `Error`, `config.jsonbody.error_body`) for the API, the agents' routes (the lean
ASGI reports, the Django heartbeat) and a domain error: a client parses them all one way."""

import asyncio

import httpx
import pytest
from django.db import connection

from config.errors import Invalid
from config.jsonbody import error_body
from environments import agent_asgi
from releases.exceptions import ArtifactNotFound
from releases.permissions import Actor
from releases.services import do_create_api_token

NAN_BODY = b'{"version": NaN}'


def answers(requests: list[tuple[str, str, str, bytes]]) -> list[tuple[int, dict]]:
    from config.asgi import application

    async def scenario():
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost", timeout=20) as client:
            found = []
            for method, path, token, body in requests:
                headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
                response = await asyncio.wait_for(
                    client.request(method, path, content=body, headers=headers), 10
                )
                found.append((response.status_code, response.json()))
            return found

    try:
        return asyncio.run(scenario())
    finally:
        agent_asgi.BROKER._executor.submit(lambda: connection.close()).result()


def is_field_error(body: dict) -> bool:
    field = body.get("field")
    return bool(field) and set(body) == {"code", "detail", "field", field} and body[field] == [body["detail"]]


@pytest.mark.django_db(transaction=True)
def test_an_agent_route_and_the_api_refuse_the_same_body_with_the_same_answer(user, app):
    _, key = do_create_api_token(Actor.system(), user, name="t", scopes=["releases:read", "releases:write"])
    api, report, beat = answers(
        [
            ("POST", "/api/v1/applications/shop/releases/", key, NAN_BODY),
            ("POST", "/api/v1/agent/jobs/5/result", "sla_nobody", NAN_BODY),  # lean ASGI route
            ("POST", "/api/v1/agent/heartbeat", "sla_nobody", NAN_BODY),  # Django view
        ]
    )
    assert api[0] == report[0] == beat[0] == 400
    assert api[1] == report[1] == beat[1]
    assert set(api[1]) == {"code", "detail"} and api[1]["code"] == "invalid_json"


@pytest.mark.django_db(transaction=True)
def test_a_field_error_has_one_shape_everywhere(user, app):
    _, key = do_create_api_token(Actor.system(), user, name="t", scopes=["releases:read", "releases:write"])
    (status, report), (beat_status, beat) = answers(
        [
            ("POST", "/api/v1/agent/jobs/5/result", "sla_nobody", b'{"status": ["succeeded"]}'),
            ("POST", "/api/v1/agent/heartbeat", "sla_nobody", b'{"version": 5}'),
        ]
    )
    assert (status, report["code"], report["field"]) == (400, "invalid", "status") and is_field_error(report)
    assert (beat_status, beat["field"]) == (400, "version") and is_field_error(beat)
    api = Invalid("A finite number.", field="value").as_json()
    assert is_field_error(api) and api == error_body("invalid", "A finite number.", field="value")
    not_found = ArtifactNotFound("No artifact 9.9.9 in shop.", field="version").as_json()
    assert is_field_error(not_found) and not_found["code"] == "artifact_not_found"

"""The API contract is complete: every operation documents its body and answers, and the suite holds it to that.

`tests/contract.py` (installed for every test by `tests/conftest.py`) checks each REST response the suite produces
against the served schema; these tests check the schema itself and that the check can fail.
"""

import json

import pytest
from django.core.management import call_command

from tests import contract

pytestmark = pytest.mark.django_db

METHODS = ("get", "post", "put", "patch", "delete")
SHARED = ("401", "403", "429")


@pytest.fixture
def document(client, user):
    client.force_login(user)
    response = client.get("/api/v1/schema/?format=json")
    assert response.status_code == 200
    return response.json()


def operations(document):
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def test_generating_the_schema_gives_no_error_or_warning(tmp_path):
    # Unguessable serializers, colliding names or invalid OpenAPI fail this (drf-spectacular's own validation).
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))


def test_every_operation_documents_its_success_and_error_answers(document):
    assert document["openapi"] == "3.1.0"
    count = 0
    for path, method, operation in operations(document):
        where = f"{method.upper()} {path}"
        count += 1
        answers = operation["responses"]
        success = [code for code in answers if code.startswith("2")]
        assert success, f"{where}: no success answer"
        for code in success:
            if code != "204":
                schema = answers[code].get("content", {}).get("application/json", {}).get("schema")
                assert schema, f"{where}: {code} has no body schema"
        for code in SHARED + (("400", "404", "409") if method != "get" else ()):
            error = answers.get(code, {}).get("content", {}).get("application/json", {}).get("schema")
            assert error == {"$ref": "#/components/schemas/Error"}, f"{where}: {code} is not the shared Error"
        if method in ("post", "put", "patch") and "requestBody" in operation:
            assert operation["requestBody"]["content"], f"{where}: an empty request body"
    assert count >= 70
    ids = [operation["operationId"] for _, _, operation in operations(document)]
    assert len(ids) == len(set(ids))
    assert document["components"]["schemas"]["Error"]["required"] == ["code"]


def test_bodies_are_documented_where_operations_take_one(document):
    takes_body = {
        ("/api/v1/applications/{slug}/flags/{key}/environments/{name}/", "patch"),
        ("/api/v1/applications/{slug}/flags/", "post"),
        ("/api/v1/applications/{slug}/segments/", "post"),
        ("/api/v1/applications/{slug}/github/", "put"),
        ("/api/v1/webhooks/github/{slug}/", "post"),
    }
    for path, method in takes_body:
        assert "requestBody" in document["paths"][path][method], f"{method.upper()} {path}"
    state = document["paths"]["/api/v1/applications/{slug}/flags/{key}/environments/{name}/"]["patch"]
    assert set(state["responses"]) >= {"200", "202"}  # applied, or proposed as a change request


def test_a_response_the_schema_does_not_describe_fails_the_test_that_produced_it(client, user, app):
    client.force_login(user)
    response = client.get(f"/api/v1/applications/{app.slug}/")  # checked on the way out, and it matches
    assert response.status_code == 200
    body = response.json()
    body["slug"] = 42  # drift: a number where the schema says string
    response.content = json.dumps(body).encode()
    with pytest.raises(contract.ContractBroken, match="slug"):
        contract.check(response)
    response.status_code = 418  # an answer the operation does not declare
    with pytest.raises(contract.ContractBroken, match="418"):
        contract.check(response)


def test_every_error_body_carries_a_code(client, user):
    client.force_login(user)
    refused = client.post("/api/v1/applications/", {"slug": "Not A Slug!"}, content_type="application/json")
    assert refused.status_code == 400
    assert refused.json()["code"] == "invalid" and "slug" in refused.json()
    anonymous = client.__class__()
    assert anonymous.get("/api/v1/applications/").json()["code"] == "not_authenticated"

"""The OpenAPI document's shared parts: one `Error` shape, and the error answers every operation can give.

Views declare their success answers (and any error worth a sentence of its own, with `error(...)`); the
postprocessing hook adds the errors every operation shares — 401 without valid credentials, 403, 404 where the
path names something, 400/409/413 on writes, 429 over the rate limit — so no answer goes undocumented.
`tests/contract.py` checks every response the suite produces against the result.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers

ERROR_REF = {"$ref": "#/components/schemas/Error"}
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Every error answer, the API's and the agents' and envelope routes' alike "
    "(`config.jsonbody.error_body`): a machine-readable `code` and a sentence in `detail`; an error about one "
    "field also names it in `field` and keys the sentence by the field as DRF does "
    '(`{"code": "invalid", "detail": "…", "field": "version", "version": ["…"]}`). DRF\'s own validation errors '
    "are keyed by field and carry `code`.",
    "properties": {
        "code": {
            "type": "string",
            "description": "`invalid`, `not_found`, `forbidden`, `not_authenticated`, `conflict`, "
            "`rate_limited`, `too_large`, … or a more precise one named by the operation.",
        },
        "detail": {"type": "string"},
        "field": {"type": "string", "description": "The field the error is about, when it is one."},
    },
    "required": ["code"],
    "additionalProperties": {"description": "A field's errors, keyed by the field: a list of sentences."},
}

SHARED_ERRORS = {
    "400": "Something in the request is wrong: the body names the field.",
    "401": "No valid credentials: `Authorization: Bearer <token>` or a session.",
    "403": "The token lacks the scope, or its user the role, for this.",
    "404": "Nothing by that name or id here (or nothing the caller may see).",
    "409": "The object's state refuses the change now; `code` says why.",
    "413": "The body is larger than the limit.",
    "429": "Over the rate limit: retry after `Retry-After` seconds.",
}
WRITES = {"post", "put", "patch", "delete"}


class Error(serializers.Serializer):
    """Documentation only: replaced by ERROR_SCHEMA (which allows field-keyed errors) in the document."""

    code = serializers.CharField()
    detail = serializers.CharField(required=False)


def error(description: str) -> OpenApiResponse:
    """An error answer worth its own description in an operation's `responses`."""
    return OpenApiResponse(Error, description=description)


PAGE_PARAMETERS = [
    OpenApiParameter("page", int, description="A page number within the paginated result set."),
    OpenApiParameter("page_size", int, description="Items per page (at most 200)."),
]
_pages: dict[type, type] = {}


def page_of(item: type[serializers.Serializer]) -> type[serializers.Serializer]:
    """The paginated list of `item` (`count`, `next`, `previous`, `results`), for APIViews that paginate by hand."""
    if item not in _pages:
        name = item.__name__.removesuffix("Out")
        _pages[item] = type(
            f"Paginated{name}List",
            (serializers.Serializer,),
            {
                "count": serializers.IntegerField(),
                "next": serializers.URLField(allow_null=True),
                "previous": serializers.URLField(allow_null=True),
                "results": item(many=True),
                "__module__": item.__module__,
            },
        )
    return _pages[item]


def add_shared_errors(result: dict[str, Any], generator, request, public) -> dict[str, Any]:
    """drf-spectacular postprocessing hook (SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"])."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    _any_json_is_any(result)
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if method not in WRITES | {"get"}:
                continue
            codes = ["401", "403", "429"]
            parameters = operation.get("parameters", [])
            if "{" in path or method in WRITES or any(p.get("name") == "page" for p in parameters):
                codes.append(
                    "404"
                )  # an unknown object (in the path or named by the body), or a page past the last
            if method in WRITES:
                codes += ["400", "409"]
            elif any(
                p.get("in") == "query" and p.get("name") not in ("page", "page_size") for p in parameters
            ):
                codes.append("400")
            if "requestBody" in operation:
                codes += ["400", "413"]
            responses = operation.setdefault("responses", {})
            for code in sorted(set(codes)):
                responses.setdefault(
                    code,
                    {
                        "description": SHARED_ERRORS[code],
                        "content": {"application/json": {"schema": ERROR_REF}},
                    },
                )
    return result


def _any_json_is_any(node: Any) -> None:
    """A nullable JSONField comes out as `oneOf: [{}, {type: null}]`, which nothing can match (null matches both
    branches): `{}` — any JSON value — already includes null."""
    if isinstance(node, dict):
        branches = node.get("oneOf")
        if isinstance(branches, list) and {} in branches:
            del node["oneOf"]
        for value in node.values():
            _any_json_is_any(value)
    elif isinstance(node, list):
        for value in node:
            _any_json_is_any(value)

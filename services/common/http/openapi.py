"""The OpenAPI document each service publishes: what Litestar generates from the handlers,
finished so that a client generated from it is exact.

- Litestar declares a 400 `application/json` body (its own validation error) on every operation
  with parameters; this clinic never answers one: it is removed. What every operation can answer
  by its shape alone is declared where its route did not: a 401 on each keyed operation; a 400
  (not JSON), 413 (too large) and 422 (a field is wrong) on each with a body; a 422 on each
  with query parameters. Statuses that depend on the route (403, 404, 409) are the route's own.
- Every problem response gets an example of its status, and the `Problem` schema a 422 example.
- A service that calls out (the referral service's webhooks) lists each outgoing call under
  OpenAPI 3.1 `webhooks`, with the schema of its body.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from litestar.openapi.spec import (
    Components,
    Example,
    OpenAPI,
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Parameter,
    PathItem,
    Reference,
    RequestBody,
    Schema,
)

from services.common.http.problems import PROBLEM_MEDIA_TYPE, FieldProblem, Problem

PROBLEM_REF = "#/components/schemas/Problem"
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def _problem(status: int, title: str, detail: str, errors: list[FieldProblem] | None = None) -> Problem:
    return Problem(type="about:blank", title=title, status=status, detail=detail, errors=errors)


_INVALID = _problem(
    422,
    "Invalid request",
    "complaint.intensity: Expected `int` <= 10",
    [FieldProblem(field="complaint.intensity", message="Expected `int` <= 10")],
)
#: A realistic body for each status a route may answer with a problem.
PROBLEM_EXAMPLES: dict[int, Problem] = {
    400: _problem(
        400,
        "Invalid request",
        "The body is not valid JSON: JSON is malformed: expected ',' or '}' (byte 58)",
        [FieldProblem(field="body", message="The body is not valid JSON.")],
    ),
    401: _problem(401, "Unauthorized", "A valid API key is required (Authorization: Bearer <key>)."),
    403: _problem(403, "Forbidden", "A specialist's key sees only its own destination's referrals."),
    404: _problem(404, "Not Found", "No referral 6f1c2b9e-3c4d-4e5f-8a9b-0c1d2e3f4a5b that you can see."),
    409: Problem(
        type="about:blank",
        title="Conflict",
        status=409,
        detail="A referral that is scheduled cannot be moved by 'accept'. "
        "Allowed: complete, no-show, cancel.",
        current_status="scheduled",
        allowed_actions=["complete", "no-show", "cancel"],
    ),
    413: _problem(
        413,
        "Request Entity Too Large",
        "The request body is too large.",
        [FieldProblem(field="body", message="The request body is too large.")],
    ),
    422: _INVALID,
    503: _problem(503, "Service Unavailable", "No inbound secret is configured."),
}


@dataclass(frozen=True)
class OutgoingWebhook:
    """A call the service makes to its subscribers: a POST of `body` (a msgspec Struct)."""

    name: str
    operation_id: str
    summary: str
    description: str
    body: type[msgspec.Struct]
    #: Request headers every call carries, by name, with what they mean.
    headers: Mapping[str, str] = field(default_factory=dict)
    acknowledgement: str = "Received."


def finish_document(document: OpenAPI, webhooks: Sequence[OutgoingWebhook] = ()) -> None:
    """Finish Litestar's document in place (see the module's docstring)."""
    for path_item in (document.paths or {}).values():
        for method in _METHODS:
            operation: Operation | None = getattr(path_item, method, None)
            if operation is not None and operation.responses:
                _finish_responses(operation)
    components = document.components
    if isinstance(components, Components) and components.schemas is not None:
        problem = components.schemas.get("Problem")
        if isinstance(problem, Schema):
            problem.examples = [msgspec.to_builtins(_INVALID)]
    if webhooks:
        _add_webhooks(document, webhooks)


#: What an operation of a given shape can answer, whatever the route.
BY_SHAPE = {
    "keyed": {401: "No API key, or not a valid one."},
    "body": {
        400: "The body is not JSON.",
        413: "The body is over the size limit.",
        422: "A field is not valid; `errors` names each by its full path.",
    },
    "query": {422: "A query parameter is not valid; `errors` names it."},
}


def _shapes(operation: Operation) -> list[str]:
    shapes = [] if operation.security == [{}] else ["keyed"]
    if operation.request_body is not None:
        shapes.append("body")
    if any(isinstance(p, Parameter) and p.param_in == "query" for p in operation.parameters or []):
        shapes.append("query")
    return shapes


def _finish_responses(operation: Operation) -> None:
    responses = operation.responses
    assert responses is not None
    generated = responses.get("400")
    if isinstance(generated, OpenAPIResponse) and PROBLEM_MEDIA_TYPE not in (generated.content or {}):
        del responses["400"]
    for shape in _shapes(operation):
        for status, description in BY_SHAPE[shape].items():
            responses.setdefault(
                str(status),
                OpenAPIResponse(
                    description=description,
                    content={PROBLEM_MEDIA_TYPE: OpenAPIMediaType(schema=Reference(ref=PROBLEM_REF))},
                ),
            )
    for code, response in responses.items():
        if not isinstance(response, OpenAPIResponse) or not response.content:
            continue
        media = response.content.get(PROBLEM_MEDIA_TYPE)
        example = PROBLEM_EXAMPLES.get(int(code)) if code.isdigit() else None
        if media is not None and example is not None:
            media.examples = {
                example.title: Example(summary=response.description, value=msgspec.to_builtins(example))
            }


def _add_webhooks(document: OpenAPI, webhooks: Sequence[OutgoingWebhook]) -> None:
    _, found = msgspec.json.schema_components(
        [hook.body for hook in webhooks], ref_template="#/components/schemas/{name}"
    )
    if not isinstance(document.components, Components):
        document.components = Components()
    schemas = document.components.schemas = dict(document.components.schemas or {})
    for name, schema in found.items():
        converted = to_openapi_schema(schema)
        assert isinstance(converted, Schema)  # a component is a schema, never a bare reference
        schemas[name] = converted
    document.webhooks = {hook.name: PathItem(post=_webhook_operation(hook)) for hook in webhooks}


def _webhook_operation(hook: OutgoingWebhook) -> Operation:
    return Operation(
        operation_id=hook.operation_id,
        summary=hook.summary,
        description=hook.description,
        parameters=[
            Parameter(
                name=name,
                param_in="header",
                required=True,
                description=description,
                schema=Schema(type=OpenAPIType.STRING),
            )
            for name, description in hook.headers.items()
        ],
        request_body=RequestBody(
            required=True,
            content={
                "application/json": OpenAPIMediaType(
                    schema=Reference(ref=f"#/components/schemas/{hook.body.__name__}")
                )
            },
        ),
        responses={"2XX": OpenAPIResponse(description=hook.acknowledgement)},
        security=[],
    )


def to_openapi_schema(schema: Mapping[str, Any]) -> Schema | Reference:
    """A JSON Schema object (as msgspec writes it) as Litestar's OpenAPI model."""
    if "$ref" in schema:
        return Reference(ref=schema["$ref"])
    kind = schema.get("type")
    return Schema(
        type=OpenAPIType(kind) if isinstance(kind, str) else None,
        format=OpenAPIFormat(schema["format"]) if "format" in schema else None,
        title=schema.get("title"),
        description=schema.get("description"),
        enum=schema.get("enum"),
        required=schema.get("required"),
        properties={k: to_openapi_schema(v) for k, v in schema["properties"].items()}
        if "properties" in schema
        else None,
        items=to_openapi_schema(schema["items"]) if "items" in schema else None,
        any_of=[to_openapi_schema(s) for s in schema["anyOf"]] if "anyOf" in schema else None,
        min_length=schema.get("minLength"),
        max_length=schema.get("maxLength"),
        min_items=schema.get("minItems"),
        minimum=schema.get("minimum"),
        maximum=schema.get("maximum"),
    )

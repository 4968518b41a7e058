"""The statuses every operation can answer with, documented from what the operation is.

Routes declare their own business errors (`responses=error_responses(Conflict)`). The errors that
follow from the shape of an operation are added here, once, so no route can forget them and a client
generated from the document (or a conformance run over it) meets no undocumented status:
- a protected operation (not `public()`): 401 without valid credentials, 403 when its permission is
  not granted;
- an operation with a path parameter: 404 when the resource it names does not exist;
- an operation with a request body: 400 when the body is not parseable JSON, 413 when it is too large;
- a paged list (a `cursor` query parameter): 400 for a cursor this API did not issue;
- every operation: 503 when the database or Redis cannot be reached (with `Retry-After`);
- a redirect (3xx) has a `Location` header and no body.
"""

from typing import Any

from kepler_kit.errors import PROBLEM_JSON

Document = dict[str, Any]
PROBLEM_REF = "#/components/schemas/Problem"
_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": '`Bearer`, with `error="invalid_token"` when a token was sent (RFC 6750)',
            "schema": {"type": "string"},
        }
    },
    429: {"Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "string"}}},
    503: {"Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "string"}}},
}
_LOCATION = {"Location": {"description": "Where to go next", "schema": {"type": "string"}, "required": True}}


def _problem(description: str, status: int) -> Document:
    response: Document = {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": {"$ref": PROBLEM_REF}}},
    }
    if status in _HEADERS:
        response["headers"] = dict(_HEADERS[status])
    return response


def implied_errors(operation: Document) -> dict[int, str]:
    """Status → description of the errors an operation can produce by its shape alone."""
    parameters = operation.get("parameters") or []
    errors = {503: "Service unavailable: the database or Redis cannot be reached; retry later"}
    if operation.get("x-kepler-permission", "public") != "public":
        errors |= {401: "Authentication required", 403: "Not allowed"}
    if any(p.get("in") == "path" for p in parameters):
        errors[404] = "Not found"
    if "requestBody" in operation:
        errors |= {400: "Bad request: the body is not valid JSON", 413: "The request body is too large"}
    if any(p.get("in") == "query" and p.get("name") == "cursor" for p in parameters):
        errors[400] = "Bad request: the cursor is not one this API issued"
    return errors


def _operations(document: Document) -> list[Document]:
    paths: dict[str, Document] = document.get("paths") or {}
    return [
        op for item in paths.values() for op in item.values() if isinstance(op, dict) and "responses" in op
    ]


def _problem_media_type(response: Document) -> None:
    """A route whose own media type is not JSON (an event stream) still answers errors as problems."""
    content: Document = response.get("content") or {}
    for media in [m for m, v in content.items() if v.get("schema") == {"$ref": PROBLEM_REF}]:
        content[PROBLEM_JSON] = content.pop(media)


def document_errors(document: Document) -> Document:
    """Adds the implied errors an operation does not declare itself, and describes redirects."""
    for operation in _operations(document):
        responses: dict[str, Document] = operation["responses"]
        for code, description in implied_errors(operation).items():
            responses.setdefault(str(code), _problem(description, code))
        for status, response in responses.items():
            if status[0] in "45":
                _problem_media_type(response)
            if status.startswith("3"):
                response.pop("content", None)
                response.setdefault("headers", {}).update(_LOCATION)
            elif status.isdigit() and int(status) in _HEADERS and "content" in response:
                response.setdefault("headers", {}).update(_HEADERS[int(status)])
    return document

"""OpenAPI post-processing: the error answers every operation can give, so a client (and the
contract fuzz run) can rely on the schema for them too.

drf-spectacular documents what each view declares; the 401/403/429 from authentication,
permissions and throttling, the 413 and 415 from the JSON-only parser and the field-level 400
come from DRF around the view, so they are added here once rather than on every view.
"""

from __future__ import annotations

ERROR = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
    "description": "What went wrong, in a sentence.",
}
FIELD_ERRORS = {
    "type": "object",
    "description": "Each invalid field (or `non_field_errors`) with its messages.",
    "additionalProperties": {},
}


def _answer(description: str, schema_ref: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": schema_ref}}}}


def add_error_responses(result: dict, generator, request, public) -> dict:
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = ERROR
    schemas["FieldErrors"] = FIELD_ERRORS
    error, fields = "#/components/schemas/Error", "#/components/schemas/FieldErrors"
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            added = {
                "401": _answer("No valid credentials: send `Authorization: Bearer <token>`.", error),
                "403": _answer("Your role may not do this.", error),
                "405": _answer("Method not allowed here.", error),
                "429": _answer("Too many requests; retry after the `Retry-After` seconds.", error),
            }
            if "{" in path or method == "get":
                added["404"] = _answer("Not found (or, on a list, a page past the end).", error)
            if method in {"post", "patch", "put"}:
                added["400"] = _answer("Invalid input; nothing was written.", fields)
                added["415"] = _answer("The body must be JSON (`Content-Type: application/json`).", error)
            if "requestBody" in operation:
                added["413"] = _answer("The body is larger than the API reads; nothing was written.", error)
            if method == "get":
                added["400"] = _answer("An invalid filter or page parameter.", fields)
            for code, answer in added.items():
                # A view's own description of an error wins; only the shape is shared.
                if code in responses:
                    responses[code].setdefault("content", answer["content"])
                else:
                    responses[code] = answer
            for code, response in responses.items():
                # The other errors a view declares (409, 422) answer {"detail": ...} too.
                if code.startswith("4"):
                    response.setdefault("content", _answer("", error)["content"])
    return result

"""The published OpenAPI document, with the rules every request obeys stated where a client
(or a fuzzer) reads them: query text may not contain NUL (the middleware refuses it), and the
errors every operation can answer (401, 403, 422, and 404 where the path names something)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from communication_agent.models.schemas.common import NO_NUL_PATTERN


def _declare_no_nul(document: dict[str, Any]) -> None:
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                schema = parameter.get("schema", {})
                for candidate in [schema, *schema.get("anyOf", []), schema.get("items", {})]:
                    constrained = {"pattern", "enum", "format", "const"} & set(candidate)
                    if candidate.get("type") == "string" and not constrained:
                        candidate["pattern"] = NO_NUL_PATTERN


ERROR_SCHEMA = {"$ref": "#/components/schemas/ErrorResponse"}
COMMON_ERRORS = {
    "401": "Not signed in: no bearer token (or console session), or it was revoked.",
    "403": "Signed in, but your role may not do this (or a console write lacked its CSRF token).",
    "422": "The request does not fit this schema, or names something that cannot be used.",
}


def _declare_common_errors(document: dict[str, Any]) -> None:
    """Every API operation can answer these; saying so keeps clients' error handling honest."""
    for path, operations in document.get("paths", {}).items():
        if not path.startswith("/api/"):
            continue
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            errors = dict(COMMON_ERRORS)
            if "{" in path:
                errors["404"] = "Something the path names does not exist."
            for status, description in errors.items():
                responses.setdefault(
                    status,
                    {"description": description,
                     "content": {"application/json": {"schema": ERROR_SCHEMA}}},
                )  # fmt: skip


def install(app: FastAPI) -> None:
    """Replace `app.openapi` with one that post-processes FastAPI's document once."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            _declare_no_nul(document)
            _declare_common_errors(document)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

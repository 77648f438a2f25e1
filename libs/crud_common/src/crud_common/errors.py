"""The services' one error family and its JSON shape.

Every error answer is a JSON object `{"error": "<what is wrong>"}`; a validation error adds
`"details": [{"loc": ["body", "user_id"], "msg": "..."}]`: `loc` a list (body, query or path,
then the field), `msg` pydantic's message.
"""

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

MALFORMED_JSON = "malformed JSON body"
INTERNAL_ERROR = "internal error"
_HTTP_MESSAGES = {404: "not found", 405: "method not allowed"}


def error_body(message: str, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"error": message} if details is None else {"error": message, "details": details}


class ServiceError(Exception):
    """An error answered with its own status and message; each service's errors derive from it."""

    status_code = 500
    message = INTERNAL_ERROR

    def __init__(self, message: str | None = None, details: list[dict[str, Any]] | None = None):
        super().__init__(message or self.message)
        if message:
            self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.details)


def validation_details(
    errors: Iterable[Mapping[str, Any]], prefix: Sequence[str | int] = ()
) -> list[dict[str, Any]]:
    """Pydantic's errors as `details`: [{"loc": [*prefix, *loc], "msg": msg}]."""
    return [
        {"loc": [*prefix, *error.get("loc", ())], "msg": str(error.get("msg", ""))}
        for error in errors
    ]


def is_malformed_json(errors: Iterable[Mapping[str, Any]]) -> bool:
    """Whether pydantic could not read the body as JSON at all (400, not 422)."""
    return any(error.get("type") == "json_invalid" for error in errors)


def http_error_message(status_code: int, detail: object) -> str:
    """The `error` of Starlette's own HTTP errors (an unknown route, a wrong method)."""
    return _HTTP_MESSAGES.get(status_code) or str(detail)

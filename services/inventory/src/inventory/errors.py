"""Inventory's errors: each carries its HTTP status (crud_common.errors' family; the handlers
rendering them are crud_common.handlers')."""

from collections.abc import Iterable, Sequence
from typing import Any

from crud_common import errors as common


class MovieNotFound(common.ServiceError):
    status_code = 404

    def __init__(self, movie_id: object) -> None:
        super().__init__(f"movie {movie_id} not found")


class MalformedJSON(common.ServiceError):
    status_code = 400
    message = common.MALFORMED_JSON


class BodyTooLarge(common.ServiceError):
    status_code = 413

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body larger than {limit} bytes")


def invalid_request(details: list[dict[str, Any]]) -> str:
    """The `error` of a 422: what is wrong where, in one line."""
    summary = "; ".join(
        f"{'.'.join(str(part) for part in d['loc']) or 'body'}: {d['msg']}" for d in details
    )
    return f"invalid request: {summary}"


class ValidationFailed(common.ServiceError):
    status_code = 422

    @classmethod
    def from_errors(
        cls, errors: Iterable[Any], prefix: Sequence[str | int] = ()
    ) -> "ValidationFailed":
        details = common.validation_details(errors, prefix)
        return cls(invalid_request(details), details)

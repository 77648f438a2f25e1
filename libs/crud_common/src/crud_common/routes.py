"""Every route answers with and without a trailing slash, never with a redirect: a redirect turns
a POST into a GET in many clients and costs a round trip."""

from collections.abc import Callable
from typing import Any

from fastapi.routing import APIRouter


def add_route(
    router: APIRouter, path: str, endpoint: Callable[..., Any], method: str, **options: Any
) -> None:
    """Register `path` and `path/` for `method`; the slash variant stays out of the schema."""
    router.add_api_route(path, endpoint, methods=[method], **options)
    router.add_api_route(path + "/", endpoint, methods=[method], include_in_schema=False, **options)

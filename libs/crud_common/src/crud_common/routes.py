"""Every route answers with and without a trailing slash, never with a redirect: a redirect turns
a POST into a GET in many clients and costs a round trip."""

from collections.abc import Callable
from typing import Any

from fastapi.routing import APIRouter

# FastAPI's options for inventory's and billing's apps: no redirect to add or drop a slash, and
# no docs pages (the public Swagger UI is the gateway's).
BACKEND_APP_OPTIONS: dict[str, Any] = {
    "redirect_slashes": False,
    "docs_url": None,
    "redoc_url": None,
}


def add_route(
    router: APIRouter, path: str, endpoint: Callable[..., Any], method: str, **options: Any
) -> None:
    """Register `path` and `path/` for `method`; the slash variant stays out of the schema."""
    router.add_api_route(path, endpoint, methods=[method], **options)
    router.add_api_route(path + "/", endpoint, methods=[method], include_in_schema=False, **options)

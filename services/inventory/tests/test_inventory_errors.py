"""Error answers that inventory shares with billing (crud_common.handlers): the same 503 body while
the database is down, and a 500 that leaves one traced log line."""

import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import httpx
import pytest
from fastapi import FastAPI

from inventory.app import create_app
from inventory.config import Settings


async def test_a_request_while_the_database_is_down_is_the_same_503_as_billings(
    app_with_db_at: Callable[[int], AbstractAsyncContextManager[httpx.AsyncClient]],
    closed_port: int,
) -> None:
    async with app_with_db_at(closed_port) as client:
        response = await client.get("/api/movies/1")
    assert (response.status_code, response.json()) == (503, {"error": "database unreachable"})


async def test_an_unexpected_error_is_logged_once_without_a_second_traceback(
    settings: Settings,
    serve_app: Callable[[FastAPI], AbstractAsyncContextManager[httpx.AsyncClient]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = create_app(settings)

    async def boom() -> None:
        raise RuntimeError("bug")

    app.add_api_route("/boom", boom)
    with caplog.at_level(logging.INFO):
        async with serve_app(app) as client:
            response = await client.get("/boom")
    assert (response.status_code, response.json()) == (500, {"error": "internal error"})
    [line] = [r for r in caplog.records if r.message == "unhandled error"]
    assert (line.levelno, line.error, line.exc_info) == (logging.ERROR, "RuntimeError('bug')", None)

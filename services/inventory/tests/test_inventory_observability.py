"""X-Request-ID, request ids in log lines, and GET /metrics (also across two uvicorn workers)."""

import logging
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import httpx
import orjson
import pytest
from crud_common.logs import JsonFormatter, RequestIdFilter
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from inventory.app import create_app
from inventory.config import Settings

ServeApp = Callable[[FastAPI], AbstractAsyncContextManager[httpx.AsyncClient]]
SERVER = Path(__file__).resolve().parents[1] / "server.py"


async def requests_total(client: httpx.AsyncClient, method: str, route: str, status: int) -> float:
    """The count `GET /metrics` shows (0 before the first such request)."""
    labels = {"method": method, "route": route, "status": str(status)}
    families = text_string_to_metric_families((await client.get("/metrics")).text)
    samples = (sample for family in families for sample in family.samples)
    counts = [s.value for s in samples if s.name == "http_requests_total" and s.labels == labels]
    return counts[0] if counts else 0.0


# --- X-Request-ID ------------------------------------------------------------------------------


@pytest.mark.parametrize("given", ["abc-123", "0f" * 16, "a.b:c_D-9", "x" * 128])
async def test_a_valid_client_request_id_is_echoed(client: httpx.AsyncClient, given: str) -> None:
    response = await client.get("/api/movies", headers={"X-Request-ID": given})
    assert response.headers["x-request-id"] == given


@pytest.mark.parametrize("given", [None, "", "x" * 129, "has space", "semi;colon", "é".encode()])
async def test_a_missing_or_invalid_request_id_is_replaced_by_a_fresh_one(
    client: httpx.AsyncClient, given: str | bytes | None
) -> None:
    headers = {} if given is None else {"X-Request-ID": given}
    first = await client.get("/api/movies", headers=headers)
    second = await client.get("/api/movies", headers=headers)
    assert re.fullmatch("[0-9a-f]{32}", first.headers["x-request-id"])
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


async def test_errors_carry_the_request_id_too(
    client: httpx.AsyncClient, settings: Settings, serve_app: ServeApp
) -> None:
    rid = {"X-Request-ID": "trace-me"}
    for response in (
        await client.get("/api/movies/999999", headers=rid),  # 404
        await client.get("/nowhere", headers=rid),  # unknown route
        await client.post("/api/movies", content=b"{", headers=rid),  # 400
        await client.post("/api/movies", json={}, headers=rid),  # 422
    ):
        assert response.headers["x-request-id"] == "trace-me", response.status_code

    app = create_app(settings)

    async def boom() -> None:
        raise RuntimeError("bug")

    app.add_api_route("/boom", boom)
    async with serve_app(app) as failing:
        response = await failing.get("/boom", headers=rid)
        assert response.status_code == 500
        assert response.headers["x-request-id"] == "trace-me"


@pytest.fixture
def json_log_lines() -> Iterator[list[dict]]:
    """Log lines as the production formatter writes them, from every logger."""
    lines: list[dict] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(orjson.loads(self.format(record)))

    handler = Collect()
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    yield lines
    root.removeHandler(handler)


async def test_log_lines_written_during_a_request_carry_its_id(
    app_with_db_at: Callable[[int], AbstractAsyncContextManager[httpx.AsyncClient]],
    closed_port: int,
    json_log_lines: list[dict],
) -> None:
    async with app_with_db_at(closed_port) as client:  # the database is down: a warning
        response = await client.get("/api/movies/1", headers={"X-Request-ID": "req-42"})
    assert response.status_code == 503
    warnings = [line for line in json_log_lines if "database unavailable" in line["message"]]
    assert warnings and all(line["request_id"] == "req-42" for line in warnings)
    assert {"time", "level", "logger", "message"} <= set(warnings[0])


# --- /metrics ----------------------------------------------------------------------------------


async def test_requests_are_counted_by_route_template_and_status(
    client: httpx.AsyncClient,
) -> None:
    created = (await client.post("/api/movies", json={"title": "t", "description": ""})).json()
    before = {
        "ok": await requests_total(client, "GET", "/api/movies/{id}", 200),
        "absent": await requests_total(client, "GET", "/api/movies/{id}", 404),
        "list": await requests_total(client, "GET", "/api/movies", 200),
        "unmatched": await requests_total(client, "GET", "unmatched", 404),
    }
    await client.get(f"/api/movies/{created['id']}")
    await client.get(f"/api/movies/{created['id']}/")  # the slash variant: same route label
    await client.get("/api/movies/424242")
    await client.get("/api/movies?title=x")
    await client.get("/no/such/path")
    assert await requests_total(client, "GET", "/api/movies/{id}", 200) == before["ok"] + 2
    assert await requests_total(client, "GET", "/api/movies/{id}", 404) == before["absent"] + 1
    assert await requests_total(client, "GET", "/api/movies", 200) == before["list"] + 1
    assert await requests_total(client, "GET", "unmatched", 404) == before["unmatched"] + 1

    text = (await client.get("/metrics")).text
    assert 'http_requests_total{method="GET",route="/api/movies/{id}",status="200"}' in text
    assert "/api/movies/424242" not in text and "/no/such/path" not in text
    bucket = 'http_request_duration_seconds_bucket{le="+Inf",method="GET",route="/api/movies/{id}"}'
    assert bucket in text


@pytest.mark.parametrize("path", ["/metrics", "/metrics/"])
async def test_metrics_are_prometheus_text_not_counted_nor_documented(
    client: httpx.AsyncClient, path: str
) -> None:
    async def scrapes_counted() -> float:  # its own look-ups are GET /metrics too
        unmatched = await requests_total(client, "GET", "unmatched", 200)
        return unmatched + await requests_total(client, "GET", "/metrics", 200)

    before = await scrapes_counted()
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "# TYPE http_requests_total counter" in response.text
    assert await scrapes_counted() == before
    assert "/metrics" not in (await client.get("/openapi.json")).json()["paths"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_healthy(base: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.1)


def test_metrics_cover_every_worker(settings: Settings, migrated: None, tmp_path: Path) -> None:
    """Two uvicorn workers: whichever answers /metrics counts the requests both served."""
    port = free_port()
    env = os.environ | {"INVENTORY_PORT": str(port), "INVENTORY_WORKERS": "2"}
    env |= {"TMPDIR": str(tmp_path)}  # where server.py makes its fresh metrics directory
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    server = subprocess.Popen([sys.executable, str(SERVER)], env=env, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(base)
        for _ in range(60):  # a new connection each: the two workers share them
            response = httpx.get(f"{base}/api/movies/1", headers={"Connection": "close"})
            assert response.status_code == 404
        sample = re.compile(r'http_requests_total\{[^}]*route="/api/movies/\{id\}"[^}]*\} (\S+)')

        def counted() -> float:
            text = httpx.get(f"{base}/metrics", headers={"Connection": "close"}).text
            match = sample.search(text)
            return float(match.group(1)) if match else 0.0

        deadline = time.monotonic() + 10  # each worker adds its tallies within a second
        while counted() != 60.0:
            assert time.monotonic() < deadline, "every request counted"
            time.sleep(0.1)
        (metrics_dir,) = tmp_path.glob("inventory-metrics-*")
        writers = {path.stem.rsplit("_", 1)[1] for path in metrics_dir.glob("counter_*.db")}
        assert len(writers) == 2, "both workers served requests"
        assert {counted() for _ in range(10)} == {60.0}
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=20)
    assert b"Traceback" not in stderr, stderr.decode()
    assert not list(tmp_path.glob("inventory-metrics-*")), "removed at exit"

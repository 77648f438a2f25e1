"""The rate limit of a real gateway process (`python server.py`), with stand-ins for inventory
and billing that record what reaches them.

Clients are told apart by their address: each test sends from its own loopback address
(127.0.0.2, 127.0.0.3, ...), so each starts with a full bucket of BURST requests. The rate is so
low (one token in 50 s) that no token comes back while a test runs.
"""

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web

from .attack_support import running_gateway

RATE = 0.02
BURST = 3
ORDER = {
    "order_id": str(uuid.UUID(int=1)),
    "user_id": 1,
    "number_of_items": 1,
    "total_amount": "1.00",
    "created_at": "2026-01-01T00:00:00Z",
}


class StandIn:
    """An upstream answering every request and recording (method, path) of each."""

    def __init__(self, answer) -> None:
        self.seen: list[tuple[str, str]] = []
        self._answer = answer
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((request.method, request.path))
        return self._answer(request)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def movie_answer(request: web.Request) -> web.Response:
    if request.method == "DELETE":
        return web.Response(status=204)
    status = 201 if request.method == "POST" else 200
    return web.json_response({"id": 1, "title": "t", "description": "d"}, status=status)


def order_answer(request: web.Request) -> web.Response:
    return web.json_response(ORDER)


class Gateway:
    def __init__(self, url: str, inventory: StandIn, billing: StandIn) -> None:
        self.url = url
        self.inventory = inventory
        self.billing = billing

    def client(self, address: str) -> httpx.AsyncClient:
        """A keep-alive client sending from `address` (one connection, reused)."""
        transport = httpx.AsyncHTTPTransport(local_address=address)
        return httpx.AsyncClient(base_url=self.url, transport=transport, timeout=10)

    async def once(self, address: str, method: str, path: str, **kw) -> httpx.Response:
        """One request on a new connection, closed after the answer."""
        async with self.client(address) as client:
            return await client.request(method, path, **kw)

    def upstream_requests(self) -> int:
        return len(self.inventory.seen) + len(self.billing.seen)


@pytest.fixture(scope="module")
async def gateway(tmp_path_factory) -> AsyncIterator[Gateway]:
    inventory, billing = StandIn(movie_answer), StandIn(order_answer)
    await inventory.start()
    await billing.start()
    limits = {"GATEWAY_RATE_LIMIT": RATE, "GATEWAY_RATE_BURST": BURST, "BILLING_URL": billing.url}
    try:
        directory = tmp_path_factory.mktemp("gateway")
        with running_gateway(directory, inventory.url, **limits) as process:
            yield Gateway(f"http://127.0.0.1:{process.port}", inventory, billing)
    finally:
        await inventory.stop()
        await billing.stop()


def assert_too_many(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.json() == {"error": "too many requests"}
    # One token every 50 s, none taken by the refusal: the client is told to wait about that
    # long (a little less, as the clock runs on between the requests).
    assert 45 <= int(response.headers["retry-after"]) <= 50


async def test_a_new_connection_does_not_get_a_fresh_bucket(gateway: Gateway) -> None:
    ports = set()
    for _ in range(BURST):
        async with gateway.client("127.0.0.2") as client:
            response = await client.get("/api/movies/1")
            assert response.status_code == 200
            ports.add(response.extensions["network_stream"].get_extra_info("client_addr")[1])
    assert len(ports) == BURST  # three connections, from three client ports
    assert_too_many(await gateway.once("127.0.0.2", "GET", "/api/movies/1"))
    assert_too_many(await gateway.once("127.0.0.2", "GET", "/api/movies/1"))


async def test_each_client_address_has_its_own_bucket(gateway: Gateway) -> None:
    for _ in range(BURST):
        assert (await gateway.once("127.0.0.3", "GET", "/api/movies/1")).status_code == 200
    assert_too_many(await gateway.once("127.0.0.3", "GET", "/api/movies/1"))
    assert (await gateway.once("127.0.0.4", "GET", "/api/movies/1")).status_code == 200


async def test_order_look_ups_are_rate_limited(gateway: Gateway) -> None:
    before = len(gateway.billing.seen)
    async with gateway.client("127.0.0.5") as client:
        for _ in range(BURST):
            response = await client.get(f"/api/billing/{ORDER['order_id']}")
            assert response.status_code == 200
            assert response.json()["order_id"] == ORDER["order_id"]
        assert_too_many(await client.get(f"/api/billing/{ORDER['order_id']}"))
    assert len(gateway.billing.seen) == before + BURST  # the refused one never reached billing


REQUESTS = [
    ("GET", "/api/movies", {}),
    ("GET", "/api/movies/", {}),
    ("GET", "/api/movies?title=t", {}),
    ("GET", "/api/movies/1", {}),
    ("POST", "/api/movies", {"json": {"title": "t", "description": "d"}}),
    ("PUT", "/api/movies/1", {"json": {"title": "t", "description": "d"}}),
    ("DELETE", "/api/movies/1", {}),
    ("DELETE", "/api/movies", {}),
    ("GET", f"/api/billing/{ORDER['order_id']}", {}),
    ("POST", "/api/billing", {"json": {"user_id": 1, "number_of_items": 1, "total_amount": 1}}),
]


async def test_a_refusal_on_every_path_uses_no_upstream_and_keeps_the_connection(
    gateway: Gateway,
) -> None:
    async with gateway.client("127.0.0.6") as client:
        for _ in range(BURST):
            assert (await client.get("/api/movies/1")).status_code == 200
        before = gateway.upstream_requests()
        # Many refusals on one keep-alive connection: each is answered, none reaches an
        # upstream or holds one of the gateway's upstream connections.
        for _ in range(5):
            for method, path, kw in REQUESTS:
                assert_too_many(await client.request(method, path, **kw))
        assert gateway.upstream_requests() == before
    # Other clients are served on every path but POST /api/billing (it would queue an order):
    # no upstream connection was left taken.
    answers = {"GET": 200, "POST": 201, "PUT": 200, "DELETE": 204}
    for n, (method, path, kw) in enumerate(REQUESTS[:-1], 10):
        response = await gateway.once(f"127.0.0.{n}", method, path, **kw)
        assert response.status_code == answers[method], (method, path)
    assert gateway.upstream_requests() == before + len(REQUESTS) - 1

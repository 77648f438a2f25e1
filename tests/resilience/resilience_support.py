"""Helpers of the resilience tests (and bench/billing): orders, polling, the billing CLI."""

import asyncio
import sys
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import orjson

from amqp_bulk import BulkPublisher
from platform_processes import ROOT, Platform
from polling import eventually
from private_nodes import RabbitNode, free_port

QUEUE = "billing_queue"
DLQ = f"{QUEUE}.dlq"


def services_env(*node_settings: dict[str, str], **extra: str) -> dict[str, str]:
    """Billing and a gateway on free loopback ports, pointed at the private nodes whose
    `settings_env()` are given, with `extra` settings on top."""
    billing_port = free_port()
    return {
        **{name: value for settings in node_settings for name, value in settings.items()},
        "APP_ENV": "development",
        "LOG_LEVEL": "INFO",
        "BILLING_HOST": "127.0.0.1",
        "BILLING_PORT": str(billing_port),
        "BILLING_QUEUE": QUEUE,
        "BILLING_PREFETCH": "500",
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(free_port()),
        "GATEWAY_WORKERS": "1",
        "GATEWAY_API_KEYS": "",  # whatever ../../.env says: open, no rate limit
        "GATEWAY_RATE_LIMIT": "0",
        "BILLING_URL": f"http://127.0.0.1:{billing_port}",
        "INVENTORY_URLS": f"http://127.0.0.1:{free_port()}",  # not needed here: nothing there
        **extra,
    }


def broker_ok(response: httpx.Response) -> bool:
    """Gateway readiness without inventory (its /health is 503 for that alone)."""
    try:
        return response.json().get("broker") == "ok"
    except ValueError:
        return False


def start_gateway(platform: Platform) -> None:
    platform.start("gateway", wait=False)
    platform.wait_healthy("gateway", ready=broker_ok)


# --- orders ------------------------------------------------------------------------------------
def order_body(order_id: str, n: int) -> bytes:
    """An order as the gateway publishes it (see tests/contract)."""
    return orjson.dumps(
        {
            "order_id": order_id,
            "user_id": 1 + n % 1000,
            "number_of_items": 1 + n % 7,
            "total_amount": f"{n % 10000}.{n % 100:02d}",
        }
    )


def new_orders(count: int) -> list[tuple[str, bytes]]:
    orders = []
    for n in range(count):
        order_id = str(uuid.uuid4())
        orders.append((order_id, order_body(order_id, n)))
    return orders


async def publish_orders(rabbit: RabbitNode, orders: Iterable[tuple[str, bytes]]) -> int:
    """Publish persistent orders, all confirmed by the broker on return ("accepted")."""
    async with BulkPublisher(rabbit.url) as publisher:
        await publisher.declare(QUEUE)
        return await publisher.publish(QUEUE, orders)


async def publish_new_orders(rabbit: RabbitNode, count: int) -> list[str]:
    """Publish `count` new orders, every one confirmed by the broker (accepted); their ids."""
    orders = new_orders(count)
    assert await publish_orders(rabbit, orders) == count, "not every order was confirmed"
    return [order_id for order_id, _ in orders]


async def stored_ids(db: asyncpg.Connection) -> list[str]:
    return [str(row[0]) for row in await db.fetch("SELECT order_id FROM orders")]


async def count_orders(db: asyncpg.Connection) -> int:
    return await db.fetchval("SELECT count(*) FROM orders")


async def stored_at_least(db: asyncpg.Connection, count: int) -> bool:
    return await count_orders(db) >= count


async def stored_and_acked(
    db: asyncpg.Connection, rabbit: RabbitNode, count: int, within: float, message: str
) -> None:
    """Until `count` orders are stored and none is left on the queue, ready or unacknowledged
    (billing acks a batch once it is committed)."""
    await eventually(lambda: stored_at_least(db, count), within=within, message=message)
    await eventually(
        lambda: rabbit.queue_counts(QUEUE)["messages"] == 0, within=15, message="orders acked"
    )


async def run_billing_cli(
    platform_env: dict[str, str], *args: str, within: float = 60
) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "billing",
        *args,
        cwd=ROOT / "services/billing",
        env=platform_env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), within)
    return await process.wait(), out.decode(), err.decode()  # wait() gives the exit code


def vm_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


async def post_order(client: httpx.AsyncClient, n: int = 1) -> httpx.Response:
    return await client.post(
        "/api/billing", json={"user_id": n + 1, "number_of_items": "2", "total_amount": "20.50"}
    )


async def queue_depth(channel, name: str) -> int:
    """Ready messages (passive declare: what /health reports as queue_depth)."""
    queue = await channel.declare_queue(name, passive=True)
    return queue.declaration_result.message_count or 0


# --- a steady stream of orders through the gateway ---------------------------------------------
@dataclass
class Answer:
    started: float
    taken: float
    status: int  # 0: no answer (transport error or client timeout)
    order_id: str | None = None

    @property
    def ended(self) -> float:
        return self.started + self.taken


@dataclass
class OrderStream:
    """Client threads POSTing orders one after another, each answer recorded. Threads, so that
    the test's own blocking steps (starting a node takes seconds) never pause the stream."""

    url: str
    clients: int = 4
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> "OrderStream":
        self._threads = [
            threading.Thread(target=self._post, args=(n,), daemon=True) for n in range(self.clients)
        ]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _post(self, n: int) -> None:
        order = {"user_id": n + 1, "number_of_items": 1, "total_amount": "1.50"}
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    response = client.post("/api/billing", json=order)
                except httpx.HTTPError:
                    self.answers.append(Answer(started, time.monotonic() - started, 0))
                    continue
                order_id = response.json().get("order_id") if response.status_code == 200 else None
                self.answers.append(
                    Answer(started, time.monotonic() - started, response.status_code, order_id)
                )
                self._stop.wait(0.005)

    def with_status(self, status: int, since: float = 0) -> list[Answer]:
        return [a for a in list(self.answers) if a.status == status and a.started >= since]

    @property
    def accepted_ids(self) -> list[str]:
        return [a.order_id for a in self.with_status(200) if a.order_id]


async def assert_every_200_stored_once(
    orders_db, stream: OrderStream, also: Iterable[str] = ()
) -> list[str]:
    """Every order answered 200 (and those in `also`, accepted otherwise) ends up stored, once;
    beyond them only orders answered 503 (not confirmed in time, maybe taken after all)."""
    accepted = stream.accepted_ids
    assert len(accepted) == len(set(accepted))
    expected = set(accepted) | set(also)
    await eventually(
        lambda: stored_at_least(orders_db, len(expected)), within=90, message="every 200 stored"
    )
    stored = await stored_ids(orders_db)
    assert len(stored) == len(set(stored)), "an order was stored twice"
    missing = expected - set(stored)
    assert not missing, f"{len(missing)} accepted orders were lost, e.g. {sorted(missing)[:3]}"
    assert len(stored) - len(expected) <= len(stream.with_status(503))
    return stored

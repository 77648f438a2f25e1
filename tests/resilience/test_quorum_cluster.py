"""Three private RabbitMQ nodes clustered on this machine, billing_queue a quorum queue on all
three, gateway and billing given the three addresses. Under a steady stream of orders, nodes are
killed with SIGKILL: every order answered 200 is stored exactly once, 503 only while no quorum
exists, and neither service is restarted."""

import asyncio
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from platform_processes import Platform
from private_nodes import RabbitCluster, free_port, private_root
from resilience_support import QUEUE, count_orders, eventually, start_gateway, stored_ids

CONNECTED = re.compile(r"connected to the broker 127\.0\.0\.1:(\d+)")


@pytest.fixture(scope="module")
def cluster() -> Iterator[RabbitCluster]:
    started = time.monotonic()
    nodes = RabbitCluster(private_root("cluster"))
    try:
        nodes.start()
        print(f"three-node cluster up in {time.monotonic() - started:.1f}s")
        yield nodes
    finally:
        nodes.close()
        shutil.rmtree(nodes.root, ignore_errors=True)


@pytest.fixture
def platform(tmp_path: Path, cluster: RabbitCluster, postgres, orders_db) -> Iterator[Platform]:
    for node in cluster.nodes:
        node.start()
    cluster.running_node().ctl("delete_queue", "-p", cluster.nodes[0].vhost, QUEUE, check=False)
    billing_port = free_port()
    env = {
        **cluster.settings_env(),
        **postgres.settings_env(),
        "APP_ENV": "development",
        "BILLING_HOST": "127.0.0.1",
        "BILLING_PORT": str(billing_port),
        "BILLING_QUEUE": QUEUE,
        "BILLING_PREFETCH": "500",
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(free_port()),
        "GATEWAY_API_KEYS": "",
        "GATEWAY_RATE_LIMIT": "0",
        "BILLING_URL": f"http://127.0.0.1:{billing_port}",
        "INVENTORY_URLS": f"http://127.0.0.1:{free_port()}",
    }
    running = Platform(tmp_path, env=env)
    try:
        yield running
    finally:
        running.stop_all()


class OrderStream:
    """Posts orders one after another on a few connections, remembering every answer."""

    def __init__(self, url: str, clients: int = 4) -> None:
        self.url, self.clients = url, clients
        self.accepted: list[tuple[float, str]] = []  # (time, order_id) of each 200
        self.unavailable: list[tuple[float, float]] = []  # (time, seconds taken) of each 503
        self.other: list[int] = []
        self._tasks: list[asyncio.Task] = []

    async def __aenter__(self) -> "OrderStream":
        self._tasks = [asyncio.create_task(self._post(n)) for n in range(self.clients)]
        return self

    async def __aexit__(self, *_: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _post(self, n: int) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=15) as client:
            while True:
                started = time.monotonic()
                response = await client.post(
                    "/api/billing", json={"user_id": n + 1, "number_of_items": 1, "total_amount": 1}
                )
                if response.status_code == 200:
                    self.accepted.append((time.monotonic(), response.json()["order_id"]))
                elif response.status_code == 503:
                    self.unavailable.append((started, time.monotonic() - started))
                else:
                    self.other.append(response.status_code)
                await asyncio.sleep(0.005)

    def accepted_since(self, moment: float) -> int:
        return sum(1 for at, _ in self.accepted if at > moment)

    @property
    def ids(self) -> list[str]:
        return [order_id for _, order_id in self.accepted]


def consumer_node(platform: Platform, cluster: RabbitCluster):
    """The node billing is connected to now (its last "connected to the broker" log line)."""
    return cluster.by_port(int(CONNECTED.findall(platform.log("billing"))[-1]))


async def test_orders_survive_killing_the_leader_then_the_consumers_node(
    platform, cluster, orders_db
):
    billing = platform.start("billing")
    start_gateway(platform)
    gateway = platform.processes["gateway"]
    vhost = cluster.nodes[0].vhost
    report = {}
    async with OrderStream(platform.url("gateway")) as stream:
        await eventually(lambda: len(stream.accepted) >= 100, within=30, message="orders flow")

        for victim in ("leader", "consumer"):
            node = cluster.leader(QUEUE, vhost) if victim == "leader" else None
            node = node or consumer_node(platform, cluster)
            stored_before = await count_orders(orders_db)
            killed = time.monotonic()
            node.kill()  # SIGKILL
            await eventually(lambda k=killed: stream.accepted_since(k) >= 100, within=30)
            accepting = min(at for at, _ in stream.accepted if at > killed) - killed
            await eventually(
                lambda n=stored_before + 200: _more(orders_db, n), within=30, message="storing"
            )
            report[victim] = (accepting, time.monotonic() - killed)
            node.start()  # back in the cluster; the queue's member on it catches up
            await eventually(lambda: stream.accepted_since(time.monotonic() - 1) > 10, within=30)

    await eventually(
        lambda: _more(orders_db, len(stream.accepted)), within=60, message="all stored"
    )
    stored = await stored_ids(orders_db)
    assert len(stored) == len(set(stored))
    assert sorted(stored) == sorted(stream.ids)  # every 200 stored, exactly once
    assert stream.other == []
    assert stream.unavailable == []  # a quorum existed all along: never a 503
    assert billing.poll() is None and gateway.poll() is None  # nothing restarted
    assert platform.processes["billing"].pid == billing.pid
    print(
        f"accepted {len(stream.accepted)}, stored {len(stored)}, 503s 0; "
        + "; ".join(
            f"{victim} killed: 200 again after {a:.2f}s, storing again within {s:.1f}s"
            for victim, (a, s) in report.items()
        )
    )


async def test_two_nodes_down_is_503_fast_and_one_back_recovers(platform, cluster, orders_db):
    billing = platform.start("billing")
    start_gateway(platform)
    gateway = platform.processes["gateway"]
    async with OrderStream(platform.url("gateway")) as stream:
        await eventually(lambda: len(stream.accepted) >= 50, within=30, message="orders flow")
        first, second, _ = cluster.nodes
        down = time.monotonic()
        first.kill()
        second.kill()  # the survivor is a minority: it pauses, no node can confirm

        await eventually(lambda: len(stream.unavailable) >= 20, within=30, message="503s")
        no_quorum = [taken for at, taken in stream.unavailable if at > down + 1]
        assert no_quorum and max(no_quorum) < 1.0, no_quorum  # fast, not a confirm timeout

        back = time.monotonic()
        first.start()  # a majority again
        await eventually(lambda: stream.accepted_since(back) >= 50, within=90, message="200s")
        recovered = min(at for at, _ in stream.accepted if at > back) - back
        last_503 = max((at for at, _ in stream.unavailable), default=down)
    second.start()

    await eventually(
        lambda: _more(orders_db, len(stream.accepted)), within=60, message="all stored"
    )
    stored = await stored_ids(orders_db)
    assert sorted(stored) == sorted(stream.ids)
    assert all(down <= at <= back + recovered for at, _ in stream.unavailable)  # only then
    assert billing.poll() is None and gateway.poll() is None
    print(
        f"accepted {len(stream.accepted)}, stored {len(stored)}, 503s {len(stream.unavailable)} "
        f"(slowest {max(t for _, t in stream.unavailable):.2f}s); 200 again {recovered:.1f}s "
        f"after a node returned (last 503 at +{last_503 - back:.1f}s)"
    )


async def _more(db, count: int) -> bool:
    return await count_orders(db) >= count

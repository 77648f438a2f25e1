"""Three private RabbitMQ nodes clustered on this machine, billing_queue a quorum queue on all
three, a real gateway and a real billing given the three addresses. Under a steady stream of
orders nodes are killed with SIGKILL: every order answered 200 is stored exactly once, 503 only
while no quorum exists, and neither service is restarted."""

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from platform_processes import Platform
from polling import eventually
from private_nodes import RabbitCluster, RabbitNode, owned, private_root
from resilience_support import (
    DLQ,
    QUEUE,
    OrderStream,
    assert_every_200_stored_once,
    count_orders,
    services_env,
    start_gateway,
    stored_at_least,
)

PUBLISH_TIMEOUT = 5.0  # GATEWAY_PUBLISH_TIMEOUT, the default
CONNECTED = re.compile(r"connected to the broker 127\.0\.0\.1:(\d+)")

pytestmark = pytest.mark.timeout(420)


@pytest.fixture(scope="module")
def cluster() -> Iterator[RabbitCluster]:
    with owned(RabbitCluster(private_root("cluster"))) as nodes:
        nodes.start()
        yield nodes


@pytest.fixture
def platform(tmp_path: Path, cluster: RabbitCluster, postgres, orders_db) -> Iterator[Platform]:
    for node in cluster.nodes:
        node.start()
    cluster.nodes[0].ctl("await_online_nodes", str(len(cluster.nodes)))
    for name in (QUEUE, DLQ):
        cluster.nodes[0].ctl("delete_queue", "-p", cluster.nodes[0].vhost, name, check=False)
    env = services_env(
        cluster.settings_env(),
        postgres.settings_env(),
        GATEWAY_PUBLISH_TIMEOUT=str(PUBLISH_TIMEOUT),
    )
    running = Platform(tmp_path, env=env)
    try:
        yield running
    finally:
        running.stop_all()


def consumer_node(platform: Platform, cluster: RabbitCluster) -> RabbitNode:
    """The node billing is connected to now (its last "connected to the broker" log line)."""
    return cluster.by_port(int(CONNECTED.findall(platform.log("billing"))[-1]))


async def test_orders_survive_killing_the_leader_then_the_consumers_node(
    platform, cluster, orders_db
):
    billing = platform.start("billing")
    start_gateway(platform)
    gateway = platform.processes["gateway"]
    vhost = cluster.nodes[0].vhost
    report = []
    with OrderStream(platform.url("gateway")) as stream:
        await eventually(lambda: len(stream.with_status(200)) >= 200, within=30, message="flow")
        for victim in ("leader", "consumer"):
            if victim == "leader":
                node = await asyncio.to_thread(cluster.leader, QUEUE, vhost)
            else:
                node = consumer_node(platform, cluster)
            stored_at_kill = await count_orders(orders_db)
            killed = time.monotonic()
            await asyncio.to_thread(node.kill)  # SIGKILL: no goodbye to clients or peers
            await eventually(
                lambda k=killed: len(stream.with_status(200, since=k)) >= 200,
                within=60,
                message=f"200s again after killing the {victim}",
            )
            await eventually(
                lambda n=stored_at_kill + 201: stored_at_least(orders_db, n),
                within=60,
                message=f"billing storing again after killing the {victim}",
            )
            storing_again = time.monotonic() - killed
            around = [
                a for a in list(stream.answers) if a.ended > killed and a.started < killed + 30
            ]
            report.append(
                f"{victim} killed: slowest answer {max(a.taken for a in around):.2f}s, "
                f"storing again within {storing_again:.1f}s"
            )
            await asyncio.to_thread(node.start)  # back in the cluster; its member catches up
            since = time.monotonic()
            await eventually(
                lambda s=since: len(stream.with_status(200, since=s)) >= 100,
                within=30,
                message=f"200s after the {victim}'s node returned",
            )

    stored = await assert_every_200_stored_once(orders_db, stream)
    statuses = {a.status for a in stream.answers}
    # A majority of nodes was up all along: a quorum existed, so never a 503 (nor another error).
    assert statuses == {200}, [a for a in stream.answers if a.status != 200][:10]
    assert billing.poll() is None and gateway.poll() is None  # nothing restarted
    assert platform.processes["billing"] is billing and platform.processes["gateway"] is gateway
    print(
        f"\naccepted {len(stream.accepted_ids)}, stored {len(stored)}, 503s 0; " + "; ".join(report)
    )


async def test_two_nodes_down_is_503_fast_and_one_back_recovers(platform, cluster, orders_db):
    billing = platform.start("billing")
    start_gateway(platform)
    gateway = platform.processes["gateway"]
    with OrderStream(platform.url("gateway")) as stream:
        await eventually(lambda: len(stream.with_status(200)) >= 100, within=30, message="flow")
        first, second, _ = cluster.nodes
        down = time.monotonic()
        await asyncio.to_thread(first.kill)
        await asyncio.to_thread(second.kill)  # the survivor is a minority: it pauses
        no_quorum = time.monotonic()

        # Orders keep being answered, 503: each within the publish timeout, and once the gateway
        # knows no node can confirm (the survivor paused: it refuses clients), at once.
        later = no_quorum + PUBLISH_TIMEOUT
        await eventually(
            lambda: len(stream.with_status(503, since=later)) >= 50, within=60, message="503s"
        )
        assert max(a.taken for a in stream.with_status(503)) < PUBLISH_TIMEOUT + 1
        settled = [a.taken for a in stream.with_status(503, since=later)]
        assert max(settled) < 1, sorted(settled)[-10:]  # not waiting for a confirm
        assert not stream.with_status(200, since=no_quorum)  # no confirm without a quorum

        back = time.monotonic()
        await asyncio.to_thread(first.start)  # a majority again
        quorum_again = time.monotonic()
        await eventually(
            lambda: len(stream.with_status(200, since=quorum_again)) >= 100,
            within=90,
            message="200s after a node returned",
        )
        recovered = min(a.ended for a in stream.with_status(200, since=quorum_again))
    await asyncio.to_thread(second.start)

    stored = await assert_every_200_stored_once(orders_db, stream)
    unavailable = stream.with_status(503)
    assert {a.status for a in stream.answers} == {200, 503}
    # 503s only while no quorum existed: from the kill until a majority was back and connected.
    assert all(down <= a.ended and a.started <= recovered for a in unavailable)
    assert billing.poll() is None and gateway.poll() is None  # nothing restarted
    assert platform.processes["billing"] is billing and platform.processes["gateway"] is gateway
    print(
        f"\naccepted {len(stream.accepted_ids)}, stored {len(stored)}, 503s {len(unavailable)} "
        f"(slowest {max(a.taken for a in unavailable):.2f}s, after the first "
        f"{PUBLISH_TIMEOUT:.0f}s at most {max(settled):.3f}s); node back up in "
        f"{quorum_again - back:.1f}s, 200 again {recovered - quorum_again:.1f}s later"
    )

"""The upgrade of an older install (classic `billing_queue` with a backlog) to the quorum queue by
`python -m billing queues migrate` while orders keep arriving at the running gateway: no order
lost or stored twice, and the gateway takes orders again by itself once the queue is a quorum
queue. (The migration alone, message by message: services/billing/tests/test_billing_queues.py.)"""

import aio_pika

from polling import eventually
from resilience_support import (
    DLQ,
    QUEUE,
    OrderStream,
    assert_every_200_stored_once,
    new_orders,
    run_billing_cli,
)

BACKLOG = 1000  # the command moves ~100 messages/s here (one basic.get each)


async def test_migrating_under_a_stream_of_orders_loses_none_and_doubles_none(
    platform, rabbit, orders_db
):
    # The older install: both queues classic, a backlog waiting, billing stopped (the command
    # refuses to run under a consumer).
    backlog = new_orders(BACKLOG)
    connection = await aio_pika.connect(rabbit.url)
    async with connection:
        channel = await connection.channel()  # publisher confirms: every one "accepted"
        for name in (DLQ, QUEUE):
            await channel.declare_queue(name, durable=True)
        for order_id, body in backlog:
            message = aio_pika.Message(body, message_id=order_id, delivery_mode=2)
            await channel.default_exchange.publish(message, routing_key=QUEUE)

    # The upgraded gateway runs and is asked for orders throughout: until the queue is a quorum
    # queue it cannot declare it and answers 503; nothing it answers 200 may be lost.
    gateway = platform.start("gateway", wait=False)
    platform.wait_healthy("gateway", ready=lambda response: response.status_code in (200, 503))
    with OrderStream(platform.url("gateway")) as stream:
        await eventually(lambda: len(stream.answers) >= 50, within=30, message="orders answered")
        assert not stream.with_status(200)  # the classic queue refuses the quorum declaration
        code, out, err = await run_billing_cli(
            platform.envs["gateway"], "queues", "migrate", within=120
        )
        assert code == 0, err
        assert f"{QUEUE}: now a quorum queue ({BACKLOG} message(s) moved over)" in out, out
        assert f"{DLQ}: now a quorum queue (0 message(s) moved over)" in out, out
        await eventually(  # within the gateway's reconnect backoff (at most 10 s), no restart
            lambda: len(stream.with_status(200)) >= 300, within=30, message="200s after it"
        )

    billing = platform.start("billing")
    stored = await assert_every_200_stored_once(orders_db, stream, also=[i for i, _ in backlog])
    assert {a.status for a in stream.answers} == {200, 503}
    assert gateway.poll() is None and billing.poll() is None
    print(
        f"\nbacklog {BACKLOG} moved; stream: {len(stream.with_status(200))} accepted, "
        f"{len(stream.with_status(503))} answered 503 (classic queue still there); "
        f"stored {len(stored)} = backlog + accepted, none twice"
    )

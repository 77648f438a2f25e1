"""deliveries.py buffers deliveries from inside aiormq's channel reader, through aiormq's private
reader methods (so billing pins aiormq exactly): this test fails when an aiormq version changes
them, instead of the consumer silently falling back to a task per delivery."""

import asyncio
import uuid

import aio_pika
from aiormq.abc import DeliveredMessage

from billing.config import Settings
from billing.deliveries import Deliveries


async def test_deliveries_reach_the_buffer_without_aiormqs_consumer_callback(
    amqp: aio_pika.abc.AbstractConnection, settings: Settings
) -> None:
    queue = f"deliveries_{uuid.uuid4().hex[:8]}"
    channel = await amqp.channel()
    await channel.declare_queue(queue, auto_delete=True)
    deliveries = Deliveries(channel, settings.model_copy(update={"billing_queue": queue}))
    called_back: list[object] = []

    async def on_delivery(message: DeliveredMessage) -> None:  # aiormq's: a task per delivery
        called_back.append(message)
        deliveries._append(message)

    deliveries._on_delivery = on_delivery  # type: ignore[method-assign]
    consuming = asyncio.create_task(deliveries.consume())
    try:
        sent = [f"order {n}".encode() for n in range(3)]
        for body in sent:
            await channel.default_exchange.publish(aio_pika.Message(body), routing_key=queue)
        taken: list[bytes] = []
        async with asyncio.timeout(10):
            while len(taken) < len(sent):
                taken += [message.body for message in await deliveries.take(3, 0.1)]
        assert taken == sent
        assert called_back == []  # every delivery was buffered by the reader itself
    finally:
        deliveries.stop()
        await consuming
        await channel.close()

"""The broker side of billing: connecting to one of the configured nodes, and the queues.

`billing_queue` and `<queue>.dlq` are quorum queues: replicated by Raft on every node of the
cluster (one node on a single machine), so a publisher confirm means a majority of nodes has the
message and the queue survives the loss of a minority. The gateway declares `billing_queue` with
the very same arguments (tests/contract checks it): RabbitMQ refuses a declaration that differs.

`x-delivery-limit`: a message handed out that many times without being acknowledged (the
consumer crashes on it, or keeps failing on it and requeueing it) is dead-lettered by the broker
itself to `<queue>.dlq`, with `x-death` reason `delivery_limit`, instead of cycling forever.
Connection losses count too, hence a limit well above what a few node failures cost a message.
"""

import contextlib
import logging
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage
from aio_pika.exceptions import ChannelPreconditionFailed
from aiormq.abc import AbstractChannel as AmqpChannel

from billing.config import Settings

log = logging.getLogger(__name__)

DELIVERY_LIMIT = 20
CONNECT_TIMEOUT = 5
DLQ_ARGUMENTS = {"x-queue-type": "quorum"}
# What a message published again keeps of the original's properties (not its expiration, which
# would run again, nor its user_id, which the broker checks against the publishing user).
KEPT_PROPERTIES = (
    "content_type",
    "content_encoding",
    "priority",
    "correlation_id",
    "reply_to",
    "message_id",
    "timestamp",
    "type",
    "app_id",
)


def queue_arguments(dead_letter_queue: str) -> dict[str, object]:
    """billing_queue's arguments (the gateway's publisher declares the same)."""
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": DELIVERY_LIMIT,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": dead_letter_queue,
    }


def persistent_copy(message: AbstractIncomingMessage, headers: dict[str, Any]) -> aio_pika.Message:
    """`message` to publish again (dead-lettered, replayed, moved): its body and properties,
    persistent, with `headers` instead of its own."""
    kept = {name: getattr(message, name) for name in KEPT_PROPERTIES}
    return aio_pika.Message(
        message.body, headers=headers, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, **kept
    )


class QueueMismatch(RuntimeError):
    """The queue exists with other arguments: a classic queue of an older install."""


def _mismatch(name: str, exc: Exception) -> QueueMismatch:
    return QueueMismatch(
        f"{name} exists with other arguments ({exc}); a classic queue from before quorum "
        "queues is moved over by `python -m billing queues migrate`"
    )


async def declare_queues(channel: AbstractChannel, settings: Settings) -> None:
    """Declare the dead-letter queue, then billing_queue (QueueMismatch if either differs)."""
    dlq, queue = settings.dead_letter_queue, settings.billing_queue
    for name, arguments in ((dlq, DLQ_ARGUMENTS), (queue, queue_arguments(dlq))):
        try:
            await channel.declare_queue(name, durable=True, arguments=arguments)
        except ChannelPreconditionFailed as exc:
            raise _mismatch(name, exc) from exc


async def redeclare(amqp: AmqpChannel, settings: Settings) -> None:
    """billing_queue declared again on an aiormq channel (after the broker cancelled a consumer,
    the queue may have been deleted)."""
    queue = settings.billing_queue
    await amqp.queue_declare(
        queue, durable=True, arguments=queue_arguments(settings.dead_letter_queue), timeout=5
    )


async def connect(settings: Settings, start: int = 0) -> tuple[AbstractConnection, int]:
    """A connection to the first node that answers, trying them in order from `start`;
    returns it and the node's index in `settings.rabbitmq_addresses`. Raises the last error
    when none answers."""
    addresses = settings.rabbitmq_addresses
    error: Exception | None = None
    for n in range(len(addresses)):
        index = (start + n) % len(addresses)
        host, port = addresses[index]
        connection = aio_pika.Connection(
            aio_pika.connection.make_url(
                host=host,
                port=port,
                login=settings.rabbitmq_user,
                password=settings.rabbitmq_password.get_secret_value(),
                virtualhost=settings.rabbitmq_vhost,
            )
        )
        try:
            await connection.connect(timeout=CONNECT_TIMEOUT)
        except BaseException as exc:
            with contextlib.suppress(Exception):  # keep the original error (or cancellation)
                await connection.close()
            if not isinstance(exc, Exception):
                raise
            log.debug("broker %s:%d unreachable: %r", host, port, exc)
            error = exc
            continue
        return connection, index
    assert error is not None
    raise error

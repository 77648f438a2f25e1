"""SQL for the `orders` table. Functions take a connection; callers own the transaction."""

from collections.abc import Sequence
from uuid import UUID

import asyncpg

from billing.schemas import NewOrder

_COLUMNS = "order_id, user_id, number_of_items, total_amount, created_at"

_INSERT_MANY = """
INSERT INTO orders (order_id, user_id, number_of_items, total_amount)
SELECT * FROM unnest($1::uuid[], $2::int[], $3::int[], $4::numeric[])
ON CONFLICT (order_id) DO NOTHING
"""

_INSERT_ONE = f"""
INSERT INTO orders (order_id, user_id, number_of_items, total_amount)
VALUES ($1, $2, $3, $4)
ON CONFLICT (order_id) DO NOTHING
RETURNING {_COLUMNS}
"""

_GET = f"SELECT {_COLUMNS} FROM orders WHERE order_id = $1"


async def insert_orders(conn: asyncpg.Connection, orders: Sequence[NewOrder]) -> int:
    """Insert many orders in one statement; already known order_ids are skipped.

    Returns how many rows were new.
    """
    if not orders:
        return 0
    status = await conn.execute(
        _INSERT_MANY, *(list(column) for column in zip(*orders, strict=True))
    )
    return int(status.rsplit(" ", 1)[-1])


async def insert_order(conn: asyncpg.Connection, order: NewOrder) -> tuple[asyncpg.Record, bool]:
    """Insert one order, or return the stored one with the same order_id (created=False)."""
    row = await conn.fetchrow(_INSERT_ONE, *order)
    if row is not None:
        return row, True
    existing = await conn.fetchrow(_GET, order.order_id)
    assert existing is not None  # the conflicting row is committed, we read committed data
    return existing, False


async def get_order(conn: asyncpg.Connection, order_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(_GET, order_id)

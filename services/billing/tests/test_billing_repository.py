"""The orders table through the repository, on the real test database."""

import uuid
from decimal import Decimal

import asyncpg
import pytest

from billing import repository
from billing.db import transaction
from billing.schemas import NewOrder

pytestmark = pytest.mark.usefixtures("clean")


def new_order(**changes: object) -> NewOrder:
    order = NewOrder(uuid.uuid4(), 7, 2, Decimal("20.50"))
    return order._replace(**changes)


async def test_insert_then_get_returns_the_stored_order(pool: asyncpg.Pool) -> None:
    order = new_order()
    async with transaction(pool) as conn:
        row, created = await repository.insert_order(conn, order)
    assert created
    async with pool.acquire() as conn:
        stored = await repository.get_order(conn, order.order_id)
    assert stored is not None
    assert (stored["order_id"], stored["user_id"], stored["number_of_items"]) == order[:3]
    assert stored["total_amount"] == Decimal("20.50")
    assert stored["created_at"].tzinfo is not None
    assert dict(row) == dict(stored)


async def test_same_order_id_twice_keeps_the_first_row(pool: asyncpg.Pool) -> None:
    order = new_order()
    async with transaction(pool) as conn:
        await repository.insert_order(conn, order)
    async with transaction(pool) as conn:
        row, created = await repository.insert_order(conn, order._replace(user_id=99))
    assert not created
    assert row["user_id"] == 7
    assert await pool.fetchval("SELECT count(*) FROM orders") == 1


async def test_batch_insert_skips_known_and_repeated_order_ids(pool: asyncpg.Pool) -> None:
    known = new_order()
    async with transaction(pool) as conn:
        await repository.insert_orders(conn, [known])
    fresh = [new_order(user_id=i) for i in range(1, 4)]
    async with transaction(pool) as conn:
        inserted = await repository.insert_orders(conn, [known, *fresh, fresh[0]])
    assert inserted == 3
    assert await pool.fetchval("SELECT count(*) FROM orders") == 4


async def test_get_unknown_order_is_none(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        assert await repository.get_order(conn, uuid.uuid4()) is None


@pytest.mark.parametrize(
    "changes",
    [{"user_id": 0}, {"number_of_items": -1}, {"total_amount": Decimal("-0.01")}],
)
async def test_check_constraints_refuse_what_validation_refuses(
    pool: asyncpg.Pool, changes: dict[str, object]
) -> None:
    with pytest.raises(asyncpg.CheckViolationError):
        async with transaction(pool) as conn:
            await repository.insert_orders(conn, [new_order(**changes)])
    assert await pool.fetchval("SELECT count(*) FROM orders") == 0


async def test_an_empty_batch_inserts_nothing_without_a_statement() -> None:
    assert await repository.insert_orders(None, []) == 0  # type: ignore[arg-type]

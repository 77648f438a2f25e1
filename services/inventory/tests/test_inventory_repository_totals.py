"""Totals past the exact-count limit, against the real test database: the default limit, and an
unfiltered list whose table size estimate is known (set by ANALYZE, then left behind)."""

import asyncpg
import pytest

from inventory import repository
from inventory.config import Settings


async def add_numbered(pool: asyncpg.Pool, first: int, last: int) -> None:
    """Movies "m<first>" .. "m<last>", in id order."""
    await pool.execute(
        "INSERT INTO movies (title, description) "
        "SELECT 'm' || n, 'd' FROM generate_series($1::int, $2::int) AS n",
        first,
        last,
    )


@pytest.mark.parametrize("title", [None, "m"])
async def test_by_default_the_total_is_exact_up_to_the_documented_limit(
    pool: asyncpg.Pool, title: str | None
) -> None:
    limit = Settings.model_fields["inventory_exact_count_limit"].default  # INVENTORY_EXACT_...
    await add_numbered(pool, 1, limit)
    page = await repository.list_movies(pool, title, 1, 0)
    assert (page.total, page.exact) == (limit, True)
    await add_numbered(pool, limit + 1, limit + 1)
    assert (await repository.list_movies(pool, title, 1, 0)).exact is False


@pytest.mark.parametrize(
    ("count_limit", "limit", "offset", "total"),
    [
        (3, 2, 0, 5),  # the estimate (5) is above what the page shows and the limit: taken
        (3, 1, 4, 6),  # the pages show 6 at least (m5 and one after it): above the estimate
        (3, 2, 6, 9),  # m7, m8 and one after them
        (3, 2, 7, 9),  # m8, m9: the last page, nothing after it
        (5, 1, 0, 6),  # count_limit + 1 = 6 match at least: above the estimate
    ],
)
async def test_an_inexact_list_total_is_the_estimate_or_what_is_known_to_exist(
    pool: asyncpg.Pool, count_limit: int, limit: int, offset: int, total: int
) -> None:
    await add_numbered(pool, 1, 5)
    await pool.execute("ANALYZE movies")  # the estimate: 5 (a small table is read whole)
    await add_numbered(pool, 6, 9)  # 9 movies; 4 changes do not trigger an automatic ANALYZE
    estimate = await pool.fetchval("SELECT reltuples FROM pg_class WHERE oid = 'movies'::regclass")
    assert estimate == 5
    page = await repository.list_movies(pool, None, limit, offset, count_limit)
    assert page.exact is False
    assert page.items[0]["title"] == f"m{offset + 1}"
    assert page.total == total


@pytest.mark.parametrize("title", [None, "m"])
async def test_a_page_past_the_end_never_raises_an_inexact_total_to_its_offset(
    pool: asyncpg.Pool, title: str | None
) -> None:
    await add_numbered(pool, 1, 9)
    page = await repository.list_movies(pool, title, 2, 20, count_limit=3)
    assert page.items == []
    assert page.exact is False
    assert 4 <= page.total <= 9  # at least count_limit + 1 match, and 9 exist

"""Repository functions against the real test database."""

import asyncpg
import pytest

from inventory import repository
from inventory.errors import MovieNotFound


async def add(pool: asyncpg.Pool, *titles: str) -> list[repository.Movie]:
    return [await repository.create_movie(pool, title, f"about {title}") for title in titles]


def titles(page: repository.Page) -> list[str]:
    return [movie["title"] for movie in page.items]


async def test_create_then_get_returns_the_stored_row(pool: asyncpg.Pool) -> None:
    created = await repository.create_movie(pool, "Dune", "spice")
    assert created == {"id": created["id"], "title": "Dune", "description": "spice"}
    assert await repository.get_movie(pool, created["id"]) == created


async def test_ids_increase(pool: asyncpg.Pool) -> None:
    first, second = await add(pool, "A", "B")
    assert second["id"] > first["id"]


async def test_get_missing_raises_not_found(pool: asyncpg.Pool) -> None:
    with pytest.raises(MovieNotFound, match="movie 42 not found"):
        await repository.get_movie(pool, 42)


async def test_replace_overwrites_both_fields(pool: asyncpg.Pool) -> None:
    (movie,) = await add(pool, "Old")
    replaced = await repository.replace_movie(pool, movie["id"], "New", "fresh")
    assert replaced == {"id": movie["id"], "title": "New", "description": "fresh"}
    assert await repository.get_movie(pool, movie["id"]) == replaced


async def test_replace_missing_raises_not_found(pool: asyncpg.Pool) -> None:
    with pytest.raises(MovieNotFound):
        await repository.replace_movie(pool, 7, "x", "y")


async def test_delete_removes_only_that_movie(pool: asyncpg.Pool) -> None:
    gone, kept = await add(pool, "Gone", "Kept")
    await repository.delete_movie(pool, gone["id"])
    with pytest.raises(MovieNotFound):
        await repository.get_movie(pool, gone["id"])
    assert await repository.get_movie(pool, kept["id"]) == kept
    with pytest.raises(MovieNotFound):
        await repository.delete_movie(pool, gone["id"])


async def test_delete_all_empties_the_table(pool: asyncpg.Pool) -> None:
    await add(pool, "A", "B", "C")
    await repository.delete_all_movies(pool)
    assert await repository.list_movies(pool, None, 100, 0) == repository.Page([], 0)


async def test_list_is_ordered_by_id(pool: asyncpg.Pool) -> None:
    first, *rest = await add(pool, "film C", "film A", "film B")
    # An update writes a new row version at the end of the heap: without ORDER BY id a
    # scan would now return the first movie last.
    first = await repository.replace_movie(pool, first["id"], "film C2", "moved")
    page = await repository.list_movies(pool, None, 100, 0)
    assert page == repository.Page([first, *rest], 3)
    assert await repository.list_movies(pool, "FILM", 100, 0) == page


class CountingExecutor:
    """Passes queries to the pool and remembers them."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.queries: list[str] = []

    async def fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        self.queries.append(query)
        return await self.pool.fetch(query, *args)

    async def fetchrow(self, query: str, *args: object) -> asyncpg.Record | None:
        self.queries.append(query)
        return await self.pool.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: object) -> object:
        self.queries.append(query)
        return await self.pool.fetchval(query, *args)


@pytest.mark.parametrize(
    ("title", "limit", "offset", "queries"),
    [
        (None, 10, 0, 1),  # the page query counts too
        ("m", 10, 0, 1),
        (None, 2, 4, 1),
        (None, 2, 0, 1),
        ("m", 2, 0, 1),
        (None, 2, 9, 2),  # past the end: no row carries the count
        ("m", 2, 9, 2),
    ],
)
async def test_a_page_and_its_exact_total_take_one_query(
    pool: asyncpg.Pool, title: str | None, limit: int, offset: int, queries: int
) -> None:
    await add(pool, "m1", "m2", "m3", "m4", "m5")
    executor = CountingExecutor(pool)
    page = await repository.list_movies(executor, title, limit, offset)  # type: ignore[arg-type]
    assert (page.total, page.exact, page.more) == (5, True, offset + limit < 5)
    assert len(executor.queries) == queries


@pytest.mark.parametrize("title", [None, "m"])
@pytest.mark.parametrize(
    ("limit", "offset", "expected_titles", "more"),
    [
        (2, 0, ["m1", "m2"], True),
        (2, 2, ["m3", "m4"], True),
        (2, 4, ["m5"], False),
        (10, 0, ["m1", "m2", "m3", "m4", "m5"], False),
        (2, 6, [], False),
    ],
)
async def test_past_the_count_limit_the_total_is_flagged_inexact(
    pool: asyncpg.Pool,
    title: str | None,
    limit: int,
    offset: int,
    expected_titles: list[str],
    more: bool,
) -> None:
    await add(pool, "m1", "m2", "m3", "m4", "m5")
    page = await repository.list_movies(pool, title, limit, offset, count_limit=3)
    assert titles(page) == expected_titles  # the right page, ordered by id, all the same
    assert (page.exact, page.more) == (False, more)
    # More than the limit match: the total says so (at least limit + 1), and never less
    # than what the pages show.
    # At least count_limit + 1 and what the page shows (an empty page past the end shows
    # nothing), never more than exist.
    shown = offset + len(page.items) + more if page.items else 0
    assert max(4, shown) <= page.total <= 5


async def test_up_to_the_count_limit_the_total_is_exact(pool: asyncpg.Pool) -> None:
    await add(pool, "m1", "m2", "m3", "x4")
    assert (await repository.list_movies(pool, "m", 1, 0, count_limit=3))[1:] == (3, True, True)
    assert (await repository.list_movies(pool, None, 1, 0, count_limit=4))[1:] == (4, True, True)


@pytest.mark.parametrize(
    ("limit", "offset", "expected_titles"),
    [
        (2, 0, ["m1", "m2"]),  # full page: total counted
        (2, 4, ["m5"]),  # short last page: total = offset + rows
        (5, 0, ["m1", "m2", "m3", "m4", "m5"]),  # exactly everything in a full page
        (10, 0, ["m1", "m2", "m3", "m4", "m5"]),  # short first page
        (2, 5, []),  # past the end: total still counted
        (2, 50, []),
    ],
)
async def test_list_pages_report_the_full_total(
    pool: asyncpg.Pool, limit: int, offset: int, expected_titles: list[str]
) -> None:
    await add(pool, "m1", "m2", "m3", "m4", "m5")
    page = await repository.list_movies(pool, None, limit, offset)
    assert titles(page) == expected_titles
    assert page.total == 5


async def test_total_of_an_empty_table_is_zero(pool: asyncpg.Pool) -> None:
    assert await repository.list_movies(pool, None, 10, 0) == repository.Page([], 0)
    assert await repository.list_movies(pool, "x", 10, 3) == repository.Page([], 0)


async def test_search_is_a_case_insensitive_substring(pool: asyncpg.Pool) -> None:
    await add(pool, "The Matrix", "MATRIX Reloaded", "Amatrix", "Dune")
    page = await repository.list_movies(pool, "maTRix", 100, 0)
    assert titles(page) == ["The Matrix", "MATRIX Reloaded", "Amatrix"]
    assert page.total == 3


async def test_search_total_counts_only_matches(pool: asyncpg.Pool) -> None:
    await add(pool, "star 1", "other", "Star 2", "STAR 3", "none")
    page = await repository.list_movies(pool, "star", 2, 0)
    assert titles(page) == ["star 1", "Star 2"]
    assert page.total == 3


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        ("100%", ["100% Love"]),  # % is not a wildcard
        ("a_b", ["a_b"]),  # _ is not a wildcard
        ("\\", ["back\\slash"]),  # a backslash is literal, not an escape
        ("%", ["100% Love"]),
        ("_", ["a_b"]),
    ],
)
async def test_search_takes_wildcards_literally(
    pool: asyncpg.Pool, search: str, expected: list[str]
) -> None:
    await add(pool, "100% Love", "1000 Love", "a_b", "axb", "back\\slash", "backslash")
    assert titles(await repository.list_movies(pool, search, 100, 0)) == expected


def test_contains_pattern_escapes_like_metacharacters() -> None:
    assert repository.contains_pattern("a%b_c\\d") == "%a\\%b\\_c\\\\d%"


async def test_a_write_outside_a_transaction_block_is_committed_when_it_returns(
    pool: asyncpg.Pool,
) -> None:
    # The routes run each write as one statement on a pooled connection, with no BEGIN/COMMIT:
    # PostgreSQL commits it before answering, so another connection sees it at once.
    async with pool.acquire() as writer, pool.acquire() as reader:
        movie = await repository.create_movie(writer, "Kept", "committed")
        assert not writer.is_in_transaction()
        assert await repository.get_movie(reader, movie["id"]) == movie


# --- boundaries ----------------------------------------------------------------------------------
@pytest.mark.parametrize("count_limit", [repository.DEFAULT_COUNT_LIMIT, 3])  # exact, inexact
@pytest.mark.parametrize("title", [None, "M"])
async def test_a_last_page_of_exactly_limit_rows_has_no_next(
    pool: asyncpg.Pool, title: str | None, count_limit: int
) -> None:
    await add(pool, "m1", "m2", "m3", "m4")
    last = await repository.list_movies(pool, title, 2, 2, count_limit)
    assert (titles(last), last.more) == (["m3", "m4"], False)
    whole = await repository.list_movies(pool, title, 4, 0, count_limit)
    assert (titles(whole), whole.more) == (["m1", "m2", "m3", "m4"], False)
    before_last = await repository.list_movies(pool, title, 2, 1, count_limit)
    assert (titles(before_last), before_last.more) == (["m2", "m3"], True)


@pytest.mark.parametrize("count_limit", [repository.DEFAULT_COUNT_LIMIT, 2])
@pytest.mark.parametrize("offset", [0, 1, 5])
async def test_a_search_without_match_is_an_exact_zero(
    pool: asyncpg.Pool, count_limit: int, offset: int
) -> None:
    await add(pool, "m1", "m2", "m3", "m4")
    page = await repository.list_movies(pool, "zzz", 2, offset, count_limit)
    assert page == repository.Page([], 0, True, False)


async def test_a_search_past_the_count_limit_pages_through_every_match_in_id_order(
    pool: asyncpg.Pool,
) -> None:
    movies = await add(pool, "Star 1", "other", "STAR 2", "none", "sTaR 3", "star 4", "StAr 5")
    # Rewritten rows move to the end of the table: the physical order is no longer the id order.
    first = await repository.replace_movie(pool, movies[0]["id"], "Star 1 (remastered)", "r")
    moved = await repository.replace_movie(pool, movies[1]["id"], "Superstar", "now matching")
    expected = [first, moved, movies[2], movies[4], movies[5], movies[6]]
    seen: list[repository.Movie] = []
    for offset in range(0, 8, 2):
        page = await repository.list_movies(pool, "sTAR", 2, offset, count_limit=2)
        seen += page.items
        assert page.exact is False  # more than 2 match, on every page
        assert page.more is (offset + 2 < len(expected))
        shown = offset + len(page.items) + page.more if page.items else 0
        assert max(3, shown) <= page.total <= len(expected)
    assert seen == expected


async def test_a_search_past_its_only_match_still_counts_it(pool: asyncpg.Pool) -> None:
    await add(pool, "m1", "x")
    assert await repository.list_movies(pool, "m", 10, 1) == repository.Page([], 1, True, False)


@pytest.mark.parametrize(("limit", "offset"), [(2, 0), (1, 1), (2, 4)])
async def test_an_inexact_search_total_is_the_least_it_can_be(
    pool: asyncpg.Pool, limit: int, offset: int
) -> None:
    await add(pool, "m1", "m2", "m3", "m4", "m5")
    page = await repository.list_movies(pool, "m", limit, offset, count_limit=3)
    # At least count_limit + 1 match, and at least as many as the pages have shown.
    assert page.total == max(4, offset + len(page.items) + page.more)

"""Plain SQL on the `movies` table. Functions take a pool or a connection and never open a
transaction: every write is one statement, which PostgreSQL commits (durably, with
synchronous_commit on) before it answers; a caller needing several in one transaction opens it."""

from typing import NamedTuple, TypedDict

import asyncpg

from inventory.errors import MovieNotFound

Executor = asyncpg.Pool | asyncpg.Connection


class Movie(TypedDict):
    id: int
    title: str
    description: str


class Page(NamedTuple):
    """One page of movies. `total` is exact when `exact`; otherwise more than `count_limit`
    movies match and `total` is a lower bound (title search) or PostgreSQL's estimate of the
    table size (no filter), never below `count_limit + 1`. `more`: a further page exists."""

    items: list[Movie]
    total: int
    exact: bool = True
    more: bool = False


# X-Total-Count is exact up to this many matching movies (INVENTORY_EXACT_COUNT_LIMIT).
DEFAULT_COUNT_LIMIT = 10_000


_COLUMNS = "id, title, description"


def contains_pattern(text: str) -> str:
    """ILIKE pattern matching `text` anywhere, with `\\`, `%` and `_` taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def get_movie(db: Executor, movie_id: int) -> Movie:
    row = await db.fetchrow(f"SELECT {_COLUMNS} FROM movies WHERE id = $1", movie_id)
    if row is None:
        raise MovieNotFound(movie_id)
    return dict(row)  # type: ignore[return-value]


# Title search, one query in the common case: all matches (at most count_limit + 1 of them,
# in no order) are counted by the window, then sorted and paged. When the count reaches
# count_limit + 1 the page came from an arbitrary subset and _SEARCH_PAGE is run instead.
_SEARCH = (
    f"SELECT {_COLUMNS}, count(*) OVER () FROM ("
    f"SELECT {_COLUMNS} FROM movies WHERE title ILIKE $1 ESCAPE '\\' LIMIT $4"
    ") AS matches ORDER BY id LIMIT $2 OFFSET $3"
)
_SEARCH_PAGE = (
    f"SELECT {_COLUMNS} FROM movies WHERE title ILIKE $1 ESCAPE '\\' ORDER BY id LIMIT $2 OFFSET $3"
)
_SEARCH_COUNT = (
    "SELECT count(*) FROM (SELECT FROM movies WHERE title ILIKE $1 ESCAPE '\\' LIMIT $2) AS m"
)
# Unfiltered, one query: the page (plus one row, telling whether more follow), the number of
# movies counted up to count_limit + 1 (a scan of at most that many rows, not of the table)
# and the planner's table size estimate, used only past count_limit.
_TOTALS = (
    "(SELECT count(*) FROM (SELECT FROM movies LIMIT $1) AS m), "
    "(SELECT reltuples::bigint FROM pg_class WHERE oid = 'movies'::regclass)"
)
_LIST = (
    f"SELECT {_COLUMNS}, {_TOTALS.replace('$1', '$3')} FROM movies ORDER BY id LIMIT $1 OFFSET $2"
)
_COUNT_ALL = f"SELECT {_TOTALS}"


def _movies(rows: list[asyncpg.Record]) -> list[Movie]:
    return [{"id": row[0], "title": row[1], "description": row[2]} for row in rows]


async def list_movies(
    db: Executor,
    title: str | None,
    limit: int,
    offset: int,
    count_limit: int = DEFAULT_COUNT_LIMIT,
) -> Page:
    """One page ordered by id, and how many movies match (exact up to `count_limit`).

    Run title searches on a connection that plans every statement with its parameters
    (db.create_pool(..., custom_plans=True)): a generic plan cannot know whether a pattern is
    rare (use the trigram index) or common (scan by id and stop early).
    """
    if title:
        return await _search(db, contains_pattern(title), limit, offset, count_limit)
    rows = await db.fetch(_LIST, limit + 1, offset, count_limit + 1)
    if rows:
        counted, estimate = rows[0][3], rows[0][4]
    else:
        counted, estimate = await db.fetchrow(_COUNT_ALL, count_limit + 1)
    items = _movies(rows[:limit])
    more = len(rows) > limit
    if counted <= count_limit:
        return Page(items, counted, True, more)
    return Page(items, max(estimate, _shown(offset, items, more), count_limit + 1), False, more)


async def _search(db: Executor, pattern: str, limit: int, offset: int, count_limit: int) -> Page:
    rows = await db.fetch(_SEARCH, pattern, limit, offset, count_limit + 1)
    if rows:
        counted = rows[0][3]
    elif offset == 0:
        return Page([], 0)
    else:  # past the end of the matches, or past count_limit + 1 of them
        counted = await db.fetchval(_SEARCH_COUNT, pattern, count_limit + 1)
    if counted <= count_limit:
        items = _movies(rows)
        return Page(items, counted, True, offset + len(items) < counted)
    rows = await db.fetch(_SEARCH_PAGE, pattern, limit + 1, offset)
    items = _movies(rows[:limit])
    more = len(rows) > limit
    return Page(items, max(_shown(offset, items, more), count_limit + 1), False, more)


def _shown(offset: int, items: list[Movie], more: bool) -> int:
    """How many match at least, from a page: those before and on it (and one after, if there
    is one). A page past the end shows nothing: its offset proves nothing."""
    return offset + len(items) + more if items else 0


async def create_movie(db: Executor, title: str, description: str) -> Movie:
    row = await db.fetchrow(
        f"INSERT INTO movies (title, description) VALUES ($1, $2) RETURNING {_COLUMNS}",
        title,
        description,
    )
    return dict(row)  # type: ignore[return-value]


async def replace_movie(db: Executor, movie_id: int, title: str, description: str) -> Movie:
    row = await db.fetchrow(
        f"UPDATE movies SET title = $2, description = $3 WHERE id = $1 RETURNING {_COLUMNS}",
        movie_id,
        title,
        description,
    )
    if row is None:
        raise MovieNotFound(movie_id)
    return dict(row)  # type: ignore[return-value]


async def delete_movie(db: Executor, movie_id: int) -> None:
    if await db.fetchval("DELETE FROM movies WHERE id = $1 RETURNING id", movie_id) is None:
        raise MovieNotFound(movie_id)


async def delete_all_movies(db: Executor) -> None:
    # TRUNCATE is transactional in PostgreSQL and, unlike DELETE, constant-time on millions of
    # rows. Identities are not restarted: a deleted movie's id is never handed out again.
    await db.execute("TRUNCATE movies")

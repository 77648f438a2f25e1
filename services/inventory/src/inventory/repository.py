"""Plain SQL on the `movies` table. Functions take a pool or a connection and never commit:
the caller owns the transaction (see db.transaction)."""

from typing import NamedTuple, TypedDict

import asyncpg

from inventory.errors import MovieNotFound

Executor = asyncpg.Pool | asyncpg.Connection


class Movie(TypedDict):
    id: int
    title: str
    description: str


class Page(NamedTuple):
    items: list[Movie]
    total: int


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


async def list_movies(db: Executor, title: str | None, limit: int, offset: int) -> Page:
    """One page ordered by id, and how many movies match in all.

    The count is a second query, run only when the page cannot tell it: a page shorter than
    `limit` that is not empty (or is the first one) ends the result set.
    """
    if title:
        pattern = contains_pattern(title)
        rows = await db.fetch(
            f"SELECT {_COLUMNS} FROM movies WHERE title ILIKE $1 ESCAPE '\\' "
            "ORDER BY id LIMIT $2 OFFSET $3",
            pattern,
            limit,
            offset,
        )
    else:
        rows = await db.fetch(
            f"SELECT {_COLUMNS} FROM movies ORDER BY id LIMIT $1 OFFSET $2", limit, offset
        )
    items: list[Movie] = [dict(row) for row in rows]  # type: ignore[misc]
    if len(items) < limit and (items or offset == 0):
        return Page(items, offset + len(items))
    if title:
        total = await db.fetchval(
            "SELECT count(*) FROM movies WHERE title ILIKE $1 ESCAPE '\\'", pattern
        )
    else:
        total = await db.fetchval("SELECT count(*) FROM movies")
    return Page(items, total)


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

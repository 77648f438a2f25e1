"""HTTP behaviour of the inventory service, in process, against the real test database."""

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request

from inventory.app import create_app
from inventory.config import Settings
from inventory.routing import DirectRoute

SLASH = pytest.mark.parametrize("slash", ["", "/"], ids=["no-slash", "slash"])
StartApp = Callable[[int], AbstractAsyncContextManager[httpx.AsyncClient]]


async def post(client: httpx.AsyncClient, title: str, description: str = "d") -> dict[str, Any]:
    response = await client.post("/api/movies", json={"title": title, "description": description})
    assert response.status_code == 201, response.text
    return response.json()


def assert_error(response: httpx.Response, status: int, contains: str = "") -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert isinstance(body["error"], str)
    assert contains in body["error"]
    return body


# --- POST /api/movies ----------------------------------------------------------------------


@SLASH
async def test_create_answers_201_with_the_movie_and_its_location(
    client: httpx.AsyncClient, slash: str
) -> None:
    response = await client.post(
        f"/api/movies{slash}", json={"title": "Dune", "description": "spice"}
    )
    assert response.status_code == 201
    movie = response.json()
    assert movie == {"id": movie["id"], "title": "Dune", "description": "spice"}
    assert response.headers["location"] == f"/api/movies/{movie['id']}"
    assert (await client.get(response.headers["location"])).json() == movie


async def test_create_trims_the_title_and_ignores_unknown_fields(
    client: httpx.AsyncClient,
) -> None:
    movie = await client.post(
        "/api/movies", json={"title": "  Alien \t", "description": " kept ", "year": 1979}
    )
    assert movie.json() == {"id": movie.json()["id"], "title": "Alien", "description": " kept "}


async def test_create_reads_json_whatever_the_content_type(client: httpx.AsyncClient) -> None:
    # `curl -d '{...}'` sends application/x-www-form-urlencoded.
    response = await client.post(
        "/api/movies",
        content=b'{"title": "Heat", "description": ""}',
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 201
    assert response.json()["title"] == "Heat"


async def test_create_accepts_the_longest_allowed_values(client: httpx.AsyncClient) -> None:
    title, description = "t" * 255, "d" * 10_000
    movie = await post(client, title, description)
    assert (movie["title"], movie["description"]) == (title, description)


INVALID_BODIES = {
    "missing title": {"description": "d"},
    "blank title": {"title": "   ", "description": "d"},
    "empty title": {"title": "", "description": "d"},
    "title too long": {"title": "t" * 256, "description": "d"},
    "title a number": {"title": 123, "description": "d"},
    "title null": {"title": None, "description": "d"},
    "title a list": {"title": ["x"], "description": "d"},
    "title with NUL": {"title": "a\u0000b", "description": "d"},
    "missing description": {"title": "t"},
    "description too long": {"title": "t", "description": "d" * 10_001},
    "description a number": {"title": "t", "description": 5},
    "description null": {"title": "t", "description": None},
}


@pytest.mark.parametrize("body", INVALID_BODIES.values(), ids=INVALID_BODIES.keys())
async def test_create_rejects_invalid_movies_with_422(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    error = assert_error(await client.post("/api/movies", json=body), 422, "invalid request")
    assert error["details"] and all(d["loc"][0] == "body" and d["msg"] for d in error["details"])
    assert (await client.get("/api/movies")).json() == []


async def test_create_422_names_the_failing_field(client: httpx.AsyncClient) -> None:
    error = assert_error(await client.post("/api/movies", json={"description": "d"}), 422)
    assert error["details"] == [{"loc": ["body", "title"], "msg": "Field required"}]
    assert "body.title" in error["error"]


@pytest.mark.parametrize("raw", [b'{"title": "x",', b"not json", b"", b"{'title': 'x'}"])
async def test_create_rejects_malformed_json_with_400(
    client: httpx.AsyncClient, raw: bytes
) -> None:
    response = await client.post(
        "/api/movies", content=raw, headers={"content-type": "application/json"}
    )
    assert assert_error(response, 400) == {"error": "malformed JSON body"}


@pytest.mark.parametrize("raw", [b"[]", b'["Dune", "spice"]', b'"Dune"', b"42", b"null"])
async def test_create_rejects_a_body_that_is_not_an_object_with_422(
    client: httpx.AsyncClient, raw: bytes
) -> None:
    response = await client.post("/api/movies", content=raw)
    assert assert_error(response, 422, "JSON object")["details"][0]["loc"] == ["body"]


async def test_create_rejects_an_oversized_body_with_413(client: httpx.AsyncClient) -> None:
    body = {"title": "t", "description": "d" * (2 << 20)}
    assert_error(await client.post("/api/movies", json=body), 413)


# --- GET /api/movies ------------------------------------------------------------------------


@SLASH
async def test_list_returns_all_movies_ordered_by_id(client: httpx.AsyncClient, slash: str) -> None:
    created = [await post(client, title) for title in ("B", "A", "C")]
    response = await client.get(f"/api/movies{slash}")
    assert response.status_code == 200
    assert response.json() == created
    assert response.headers["x-total-count"] == "3"
    assert "link" not in response.headers


async def test_list_of_nothing_is_an_empty_array(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/movies")
    assert (response.status_code, response.json()) == (200, [])
    assert response.headers["x-total-count"] == "0"


async def test_list_defaults_to_100_per_page(client: httpx.AsyncClient) -> None:
    for i in range(101):
        await post(client, f"m{i}")
    response = await client.get("/api/movies")
    assert len(response.json()) == 100
    assert response.headers["x-total-count"] == "101"
    assert response.headers["link"] == '</api/movies?limit=100&offset=100>; rel="next"'


async def test_list_pages_with_limit_offset_and_next_links(client: httpx.AsyncClient) -> None:
    created = [await post(client, f"m{i}") for i in range(5)]
    seen: list[dict[str, Any]] = []
    url: str | None = "/api/movies?limit=2"
    for _ in range(5):  # 3 pages; a link that never ends fails below
        if url is None:
            break
        response = await client.get(url)
        assert response.headers["x-total-count"] == "5"
        seen += response.json()
        link = response.headers.get("link")
        url = link.removesuffix('>; rel="next"').removeprefix("<") if link else None
    assert url is None
    assert seen == created
    page = await client.get("/api/movies?limit=2&offset=2")
    assert page.json() == created[2:4]
    assert page.headers["link"] == '</api/movies?limit=2&offset=4>; rel="next"'


async def test_list_past_the_end_is_empty_with_the_true_total(client: httpx.AsyncClient) -> None:
    for i in range(3):
        await post(client, f"m{i}")
    response = await client.get("/api/movies?offset=10")
    assert response.json() == []
    assert response.headers["x-total-count"] == "3"
    assert "link" not in response.headers


@SLASH
async def test_search_is_case_insensitive_substring(client: httpx.AsyncClient, slash: str) -> None:
    matrix, reloaded = await post(client, "The Matrix"), await post(client, "MATRIX Reloaded")
    await post(client, "Dune")
    response = await client.get(f"/api/movies{slash}", params={"title": "mAtRiX"})
    assert response.json() == [matrix, reloaded]
    assert response.headers["x-total-count"] == "2"


@pytest.mark.parametrize(
    ("search", "expected"),
    [("100%", ["100% Love"]), ("a_b", ["a_b"]), ("%", ["100% Love"]), ("_", ["a_b"])],
)
async def test_search_takes_percent_and_underscore_literally(
    client: httpx.AsyncClient, search: str, expected: list[str]
) -> None:
    for title in ("100% Love", "1000 Love", "a_b", "axb"):
        await post(client, title)
    response = await client.get("/api/movies", params={"title": search})
    assert [movie["title"] for movie in response.json()] == expected


async def test_search_next_link_keeps_the_encoded_title(client: httpx.AsyncClient) -> None:
    for i in range(3):
        await post(client, f"Tom & Jerry/{i}")
    await post(client, "Other")
    response = await client.get("/api/movies", params={"title": "tom & jerry/", "limit": 2})
    assert response.headers["x-total-count"] == "3"
    link = response.headers["link"]
    assert link == '</api/movies?title=tom%20%26%20jerry%2F&limit=2&offset=2>; rel="next"'
    last = await client.get(link[1 : link.index(">")])
    assert [movie["title"] for movie in last.json()] == ["Tom & Jerry/2"]
    assert "link" not in last.headers


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=1001",
        "limit=-5",
        "limit=abc",
        "limit=1.5",
        "offset=-1",
        "offset=x",
        "offset=9223372036854775808",
        "title=a%00b",
    ],
)
async def test_list_rejects_bad_query_parameters_with_422(
    client: httpx.AsyncClient, query: str
) -> None:
    body = assert_error(await client.get(f"/api/movies?{query}"), 422, "invalid request")
    assert body["details"][0]["loc"][0] == "query"


async def test_list_accepts_the_limit_bounds(client: httpx.AsyncClient) -> None:
    await post(client, "only")
    for limit in (1, 1000):
        assert (await client.get(f"/api/movies?limit={limit}")).status_code == 200


# --- DELETE /api/movies ---------------------------------------------------------------------


@SLASH
async def test_delete_all_answers_204_and_empties_the_list(
    client: httpx.AsyncClient, slash: str
) -> None:
    first = await post(client, "A")
    await post(client, "B")
    response = await client.delete(f"/api/movies{slash}")
    assert (response.status_code, response.content) == (204, b"")
    assert (await client.get("/api/movies")).json() == []
    assert_error(await client.get(f"/api/movies/{first['id']}"), 404)


# --- /api/movies/{id} -----------------------------------------------------------------------


@SLASH
async def test_get_by_id(client: httpx.AsyncClient, slash: str) -> None:
    movie = await post(client, "Heat", "L.A.")
    response = await client.get(f"/api/movies/{movie['id']}{slash}")
    assert (response.status_code, response.json()) == (200, movie)
    assert response.headers["content-type"] == "application/json"


@SLASH
async def test_put_replaces_the_movie(client: httpx.AsyncClient, slash: str) -> None:
    movie = await post(client, "Old", "old text")
    response = await client.put(
        f"/api/movies/{movie['id']}{slash}", json={"title": " New ", "description": "new"}
    )
    expected = {"id": movie["id"], "title": "New", "description": "new"}
    assert (response.status_code, response.json()) == (200, expected)
    assert (await client.get(f"/api/movies/{movie['id']}")).json() == expected


@pytest.mark.parametrize("body", INVALID_BODIES.values(), ids=INVALID_BODIES.keys())
async def test_put_validates_like_post(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    movie = await post(client, "Kept", "as is")
    assert_error(await client.put(f"/api/movies/{movie['id']}", json=body), 422)
    assert (await client.get(f"/api/movies/{movie['id']}")).json() == movie


async def test_put_is_a_full_replace_not_a_patch(client: httpx.AsyncClient) -> None:
    movie = await post(client, "Kept", "as is")
    assert_error(await client.put(f"/api/movies/{movie['id']}", json={"title": "x"}), 422)


async def test_put_rejects_malformed_json_with_400(client: httpx.AsyncClient) -> None:
    movie = await post(client, "Kept")
    assert_error(await client.put(f"/api/movies/{movie['id']}", content=b"{"), 400, "malformed")


@SLASH
async def test_delete_by_id_answers_204_then_the_movie_is_gone(
    client: httpx.AsyncClient, slash: str
) -> None:
    gone, kept = await post(client, "Gone"), await post(client, "Kept")
    response = await client.delete(f"/api/movies/{gone['id']}{slash}")
    assert (response.status_code, response.content) == (204, b"")
    assert_error(await client.get(f"/api/movies/{gone['id']}"), 404)
    assert (await client.get("/api/movies")).json() == [kept]


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
@SLASH
async def test_absent_movie_is_404(client: httpx.AsyncClient, method: str, slash: str) -> None:
    body = {"title": "t", "description": "d"}
    response = await client.request(method, f"/api/movies/4242{slash}", json=body)
    assert assert_error(response, 404) == {"error": "movie 4242 not found"}


@pytest.mark.parametrize(
    "movie_id",
    [
        "abc",
        "1.5",
        "-1",
        "0x10",
        "1e3",
        "%201",
        "\u0661",  # ARABIC-INDIC DIGIT ONE: str.isdigit() but not an id
        "9223372036854775807",  # largest BIGINT, absent
        "9223372036854775808",  # one past BIGINT
        "99999999999999999999999999",
    ],
)
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_ids_that_name_no_movie_are_404_never_500(
    client: httpx.AsyncClient, method: str, movie_id: str
) -> None:
    await post(client, "One")  # id 1 exists: nothing above may resolve to it
    body = {"title": "t", "description": "d"}
    response = await client.request(method, f"/api/movies/{movie_id}", json=body)
    assert_error(response, 404, "not found")
    assert (await client.get("/api/movies/1")).json()["title"] == "One"


# --- unknown routes and methods ------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/api", "/api/movie", "/api/movies/1/extra", "/docs"])
async def test_unknown_routes_are_json_404(client: httpx.AsyncClient, path: str) -> None:
    assert assert_error(await client.get(path), 404) == {"error": "not found"}


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PATCH", "/api/movies", "DELETE, GET, POST"),
        ("PUT", "/api/movies/", "DELETE, GET, POST"),
        ("POST", "/api/movies/1", "DELETE, GET, PUT"),
        ("PATCH", "/api/movies/1/", "DELETE, GET, PUT"),
        ("DELETE", "/health", "GET"),
    ],
)
async def test_wrong_methods_are_json_405_with_allow(
    client: httpx.AsyncClient, method: str, path: str, allow: str
) -> None:
    response = await client.request(method, path)
    assert assert_error(response, 405) == {"error": "method not allowed"}
    assert response.headers["allow"] == allow


async def test_no_route_redirects(client: httpx.AsyncClient) -> None:
    movie = await post(client, "A")
    for path in ("/api/movies", "/api/movies/", f"/api/movies/{movie['id']}/", "/health/"):
        assert (await client.get(path)).status_code == 200


# --- /health and failures -------------------------------------------------------------------


@SLASH
async def test_health_ok_when_the_database_answers(client: httpx.AsyncClient, slash: str) -> None:
    response = await client.get(f"/health{slash}")
    assert (response.status_code, response.json()) == (200, {"status": "ok", "database": "ok"})


async def test_health_503_when_the_database_is_unreachable(
    app_with_db_at: StartApp, closed_port: int
) -> None:
    async with app_with_db_at(closed_port) as client:
        response = await client.get("/health")
        body = assert_error(response, 503, "database")
        assert body["status"] == "unavailable"
        assert body["database"] == "unreachable"
        # Requests that need the database are 503 too, not 500.
        assert_error(await client.get("/api/movies/1"), 503, "database")
        assert_error(await client.post("/api/movies", json={"title": "t", "description": ""}), 503)


async def test_health_answers_503_when_the_database_hangs(
    app_with_db_at: StartApp, silent_port: int
) -> None:
    async with app_with_db_at(silent_port) as client:
        # /health gives up on the database after 1.5 s; 10 s only tells "answers" from "hangs".
        async with asyncio.timeout(10):
            response = await client.get("/health")
        assert_error(response, 503, "database unreachable")


@pytest.mark.parametrize("route_class", [None, DirectRoute], ids=["fastapi", "direct"])
async def test_unexpected_errors_are_json_500(
    settings: Settings,
    serve_app: Callable[[FastAPI], AbstractAsyncContextManager[httpx.AsyncClient]],
    route_class: type[DirectRoute] | None,
) -> None:
    app: FastAPI = create_app(settings)

    async def boom(request: Request) -> None:
        raise RuntimeError("bug")

    app.router.add_api_route("/boom", boom, route_class_override=route_class)
    async with serve_app(app) as client:
        assert assert_error(await client.get("/boom"), 500) == {"error": "internal error"}


async def test_openapi_documents_the_movie_routes(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert set(paths["/api/movies"]) == {"get", "post", "delete"}
    assert set(paths["/api/movies/{movie_id}"]) == {"get", "put", "delete"}
    movie = {"$ref": "#/components/schemas/MoviePublic"}
    assert paths["/api/movies/{movie_id}"]["get"]["responses"]["200"]["content"] == {
        "application/json": {"schema": movie}
    }
    listed = paths["/api/movies"]["get"]["responses"]["200"]["content"]["application/json"]
    assert listed["schema"]["items"] == movie
    body = paths["/api/movies"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["title", "description"]
    assert "/api/movies/" not in paths


@pytest.mark.parametrize("query", ["", "&title=movie"])
async def test_totals_past_the_count_limit_are_flagged_inexact(
    settings: Settings,
    serve_app: Callable[[FastAPI], AbstractAsyncContextManager[httpx.AsyncClient]],
    query: str,
) -> None:
    app = create_app(settings.model_copy(update={"inventory_exact_count_limit": 2}))
    async with serve_app(app) as client:
        for n in range(4):
            await post(client, f"movie {n}")
        response = await client.get(f"/api/movies?limit=1{query}")
        assert [movie["title"] for movie in response.json()] == ["movie 0"]
        assert response.headers["x-total-count-exact"] == "false"
        assert int(response.headers["x-total-count"]) >= 3  # "more than 2"
        assert 'rel="next"' in response.headers["link"]
        exact = await client.get(f"/api/movies?limit=1{query.replace('movie', 'movie 3')}")
        if query:  # one match: exact again
            assert exact.headers["x-total-count"] == "1"
            assert "x-total-count-exact" not in exact.headers


# --- boundaries ----------------------------------------------------------------------------------
@pytest.mark.parametrize("query", ["", "&title=M"])
async def test_a_last_page_of_exactly_limit_rows_links_no_next_page(
    client: httpx.AsyncClient, query: str
) -> None:
    created = [await post(client, f"m{i}") for i in range(4)]
    last = await client.get(f"/api/movies?limit=2&offset=2{query}")
    assert last.json() == created[2:]
    assert last.headers["x-total-count"] == "4"
    assert "link" not in last.headers


async def test_a_search_without_match_counts_zero(client: httpx.AsyncClient) -> None:
    for i in range(3):
        await post(client, f"m{i}")
    for url in ("/api/movies?title=zzz", "/api/movies?title=zzz&offset=2"):
        response = await client.get(url)
        assert (response.status_code, response.json()) == (200, [])
        assert response.headers["x-total-count"] == "0"
        assert "x-total-count-exact" not in response.headers
        assert "link" not in response.headers


async def test_a_search_past_the_count_limit_follows_links_to_every_match(
    settings: Settings,
    serve_app: Callable[[FastAPI], AbstractAsyncContextManager[httpx.AsyncClient]],
) -> None:
    app = create_app(settings.model_copy(update={"inventory_exact_count_limit": 2}))
    async with serve_app(app) as client:
        star, _ = await post(client, "Star 1"), await post(client, "other")
        rest = [await post(client, title) for title in ("STAR 2", "sTaR 3", "star 4")]
        # Replaced rows go to the end of the table: its physical order is no longer by id.
        body = {"title": "Star 1 (remastered)", "description": "r"}
        star = (await client.put(f"/api/movies/{star['id']}", json=body)).json()
        url: str | None = "/api/movies?title=sTAR&limit=2"
        seen: list[dict[str, Any]] = []
        for _ in range(4):  # 2 pages; a link that never ends fails below
            if url is None:
                break
            response = await client.get(url)
            assert response.headers["x-total-count-exact"] == "false"
            assert int(response.headers["x-total-count"]) >= 3
            seen += response.json()
            link = response.headers.get("link")
            url = link.removesuffix('>; rel="next"').removeprefix("<") if link else None
        assert url is None
        assert seen == [star, *rest]

"""Movies through the gateway only, against the real inventory process and PostgreSQL."""

import time

import pytest


async def test_movie_lifecycle_through_the_gateway(gateway, movies_db):
    created = await gateway.post(
        "/api/movies", json={"title": "  Alien ", "description": "In space"}
    )
    assert created.status_code == 201
    movie = created.json()
    assert movie == {"id": movie["id"], "title": "Alien", "description": "In space"}
    assert created.headers["location"] == f"/api/movies/{movie['id']}"

    fetched = await gateway.get(f"/api/movies/{movie['id']}/")
    assert fetched.status_code == 200
    assert fetched.json() == movie

    replaced = await gateway.put(
        f"/api/movies/{movie['id']}", json={"title": "Aliens", "description": "Sequel"}
    )
    assert replaced.status_code == 200
    assert replaced.json()["title"] == "Aliens"
    assert await movies_db.fetchval("SELECT title FROM movies WHERE id = $1", movie["id"]) == (
        "Aliens"
    )

    deleted = await gateway.delete(f"/api/movies/{movie['id']}")
    assert deleted.status_code == 204
    missing = await gateway.get(f"/api/movies/{movie['id']}")
    assert missing.status_code == 404
    assert "error" in missing.json()


async def test_search_pagination_and_delete_all(gateway, movies_db):
    for title in ("The Matrix", "Matrix Reloaded", "100% Matrix", "Heat"):
        response = await gateway.post("/api/movies/", json={"title": title, "description": ""})
        assert response.status_code == 201

    found = await gateway.get("/api/movies", params={"title": "matrix", "limit": 2})
    assert found.status_code == 200
    assert [m["title"] for m in found.json()] == ["The Matrix", "Matrix Reloaded"]
    assert found.headers["x-total-count"] == "3"
    assert 'rel="next"' in found.headers["link"]

    literal = await gateway.get("/api/movies/", params={"title": "100%"})
    assert [m["title"] for m in literal.json()] == ["100% Matrix"]

    assert (await gateway.delete("/api/movies")).status_code == 204
    assert (await gateway.get("/api/movies")).json() == []
    assert await movies_db.fetchval("SELECT count(*) FROM movies") == 0


@pytest.mark.parametrize(
    ("query", "titles"),
    [
        ("title=The%20Matrix", ["The Matrix"]),
        ("title=matrix%20reloaded", ["Matrix Reloaded"]),
        ("title=Am%C3%A9lie", ["Amélie"]),
        ("title=%C3%A9lie&limit=1", ["Amélie"]),
        ("title=Caf%C3%A9%20de%20Flore", ["Café de Flore"]),
        ("title=100%25%20Matrix", ["100% Matrix"]),
    ],
)
async def test_percent_encoded_searches_through_the_gateway(gateway, movies_db, query, titles):
    for title in ("The Matrix", "Matrix Reloaded", "Amélie", "Café de Flore", "100% Matrix"):
        response = await gateway.post("/api/movies", json={"title": title, "description": ""})
        assert response.status_code == 201
    found = await gateway.get(f"/api/movies?{query}")
    assert found.request.url.raw_path == f"/api/movies?{query}".encode()  # sent as written
    assert found.status_code == 200
    assert [movie["title"] for movie in found.json()] == titles


async def test_large_search_answers_alternate_with_small_searches_without_stalling(
    gateway, movies_db
):
    for number in range(1, 41):
        movie = {"title": f"stallprobe {number}", "description": "d" * 10000}
        assert (await gateway.post("/api/movies", json=movie)).status_code == 201
    assert (
        await gateway.post("/api/movies", json={"title": "The Matrix", "description": ""})
    ).status_code == 201
    for _ in range(6):
        big = await gateway.get("/api/movies?title=stall%70robe&limit=100")
        assert (big.status_code, len(big.json())) == (200, 40)
        assert len(big.content) > 400_000
        small = await gateway.get("/api/movies?title=The%20Matrix&limit=1")
        assert (small.status_code, [m["title"] for m in small.json()]) == (200, ["The Matrix"])


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"description": "no title"}, 422),
        ({"title": "   ", "description": "blank"}, 422),
        ({"title": "x" * 256, "description": "long"}, 422),
        ({"title": 12, "description": "number"}, 422),
        ([1, 2], 422),
    ],
)
async def test_bad_movies_get_a_json_4xx(gateway, movies_db, body, status):
    response = await gateway.post("/api/movies", json=body)
    assert response.status_code == status
    assert isinstance(response.json()["error"], str)


async def test_malformed_json_is_a_client_error(gateway, movies_db):
    response = await gateway.post(
        "/api/movies", content=b'{"title": ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400  # malformed JSON; 422 is for a well-formed invalid movie
    assert "error" in response.json()


async def test_inventory_down_gives_a_quick_json_error(platform, gateway, movies_db):
    connect_timeout = float(platform.envs["gateway"]["GATEWAY_CONNECT_TIMEOUT"])
    platform.stop("inventory")
    try:
        started = time.monotonic()
        response = await gateway.get("/api/movies")
        elapsed = time.monotonic() - started
        assert response.status_code == 502  # refused connection: unreachable
        assert "error" in response.json()
        assert elapsed < connect_timeout  # refused is final: the connect timeout is not waited
        assert (await gateway.get("/health")).status_code == 503
    finally:
        platform.start("inventory")
    assert (await gateway.get("/api/movies")).status_code == 200

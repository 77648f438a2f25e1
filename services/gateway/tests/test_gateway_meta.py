"""/health, the offline Swagger UI, the OpenAPI document, JSON 404/405, settings."""

import asyncio
import re
from pathlib import Path

import pytest
from aiohttp import web
from pydantic import ValidationError

from gateway.config import Settings


async def test_health_ok_names_every_dependency(gateway_factory, inventory, poll):
    async with gateway_factory(inventory_urls=inventory.url) as gw:
        await poll(lambda: gw.publisher.connected, 10, "the broker connection")
        response = await gw.client.get("/health")
        slash = await gw.client.get("/health/")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "broker": "ok", "inventory": "ok"}
    assert slash.status_code == 200


async def test_health_503_when_inventory_is_down(gateway_factory, unused_port, poll):
    async with gateway_factory(inventory_urls=f"http://127.0.0.1:{unused_port()}") as gw:
        await poll(lambda: gw.publisher.connected, 10, "the broker connection")
        response = await gw.client.get("/health")
    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "error": "inventory unreachable",
        "broker": "ok",
        "inventory": "unreachable",
    }


async def test_health_503_when_the_broker_is_down(gateway_factory, inventory, unused_port):
    async with gateway_factory(inventory_urls=inventory.url, rabbitmq_port=unused_port()) as gw:
        response = await gw.client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["broker"] == "unreachable"
    assert body["inventory"] == "ok"
    assert body["error"] == "broker unreachable"


async def test_health_answers_when_inventory_hangs(gateway_factory):
    async def hang(_: web.Request) -> web.Response:
        await asyncio.sleep(60)
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/health", hang)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        async with gateway_factory(
            inventory_urls=f"http://127.0.0.1:{runner.addresses[0][1]}"
        ) as gw:
            # Its own timeout on inventory (1.5 s) answers, long before the hang would end;
            # 10 s only tells "answers" from "hangs", it measures no speed.
            async with asyncio.timeout(10):
                response = await gw.client.get("/health")
    finally:
        await runner.cleanup()
    assert response.status_code == 503
    assert response.json()["inventory"] == "unreachable"


@pytest.mark.parametrize("path", ["/docs", "/docs/"])
async def test_swagger_ui_uses_local_assets_only(gateway_factory, path):
    async with gateway_factory() as gw:
        page = await gw.client.get(path)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        html = page.text
        assert not re.search(r"https?://", html), "the page must not load anything remote"
        assets = re.findall(r"""(?:src|href)\s*=\s*['"]([^'"]+)['"]""", html)
        assert any(a.endswith(".js") for a in assets)
        assert any(a.endswith(".css") for a in assets)
        assert "/openapi.json" in html
        for asset in assets:
            response = await gw.client.get(asset)
            assert response.status_code == 200, asset
            assert response.content, asset


async def test_openapi_documents_movies_and_billing(gateway_factory):
    async with gateway_factory() as gw:
        response = await gw.client.get("/openapi.json")
    assert response.status_code == 200
    doc = response.json()
    assert doc["openapi"].startswith("3.")
    paths = doc["paths"]
    assert set(paths["/api/movies"]) == {"get", "post", "delete"}
    assert set(paths["/api/movies/{id}"]) == {"get", "put", "delete"}
    assert set(paths["/api/billing"]) == {"post"}
    assert set(paths["/api/billing/{order_id}"]) == {"get"}
    assert "get" in paths["/health"]
    assert not any(path.endswith("/") for path in paths)  # slash variants stay undocumented

    schemas = doc["components"]["schemas"]
    assert {"Movie", "MovieCreate", "Error", "OrderCreate", "OrderAccepted"} <= set(schemas)

    listing = paths["/api/movies"]["get"]
    assert {p.get("name") for p in listing["parameters"]} == {"title", "limit", "offset", None}
    assert {"X-Total-Count", "Link"} <= set(listing["responses"]["200"]["headers"])
    assert {"200", "422", "502", "504"} <= set(listing["responses"])
    create = paths["/api/movies"]["post"]
    assert "Location" in create["responses"]["201"]["headers"]
    assert {"201", "400", "422", "502", "504"} <= set(create["responses"])
    assert "204" in paths["/api/movies"]["delete"]["responses"]
    one = paths["/api/movies/{id}"]
    assert {"200", "404", "502", "504"} <= set(one["get"]["responses"])
    assert {"200", "400", "404", "422"} <= set(one["put"]["responses"])
    assert {"204", "404"} <= set(one["delete"]["responses"])

    order = paths["/api/billing"]["post"]
    assert {"200", "400", "422", "503"} <= set(order["responses"])
    assert order["responses"]["503"]["content"]["application/json"]["example"] == {
        "error": "message broker unavailable"
    }
    lookup = paths["/api/billing/{order_id}"]["get"]
    assert {"200", "404", "503", "504"} <= set(lookup["responses"])
    # Only our error shape is documented, not FastAPI's default validation error.
    assert "HTTPValidationError" not in schemas


async def test_openapi_documents_request_ids_and_protections(gateway_factory):
    async with gateway_factory() as gw:
        doc = (await gw.client.get("/openapi.json")).json()
    components = doc["components"]
    assert components["parameters"]["RequestId"]["name"] == "X-Request-ID"
    scheme = components["securitySchemes"]["apiKey"]
    assert set(scheme) == {"type", "scheme", "description"}
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    # The description tells a reader when a key is needed: writes, once GATEWAY_API_KEYS is set.
    assert "GATEWAY_API_KEYS" in scheme["description"]
    assert "writes" in scheme["description"]
    request_id = {"$ref": "#/components/headers/RequestId"}
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            assert {"$ref": "#/components/parameters/RequestId"} in operation["parameters"]
            for response in operation["responses"].values():
                assert response["headers"]["X-Request-ID"] == request_id
            codes = set(operation["responses"])
            api = path.startswith("/api/")
            assert ("429" in codes) == api, (path, method)
            assert ("401" in codes) == (api and method != "get"), (path, method)
            optional_key = [{"apiKey": []}, {}]
            assert (operation.get("security") == optional_key) == ("401" in codes), (path, method)
            assert ("413" in codes) == ("requestBody" in operation), (path, method)
            if "429" in codes:
                assert "Retry-After" in operation["responses"]["429"]["headers"]
    assert "/metrics" not in doc["paths"]


async def test_unknown_route_and_wrong_method_are_json(gateway_factory):
    async with gateway_factory() as gw:
        missing = await gw.client.get("/nope")
        wrong = await gw.client.put("/health")
        wrong_billing = await gw.client.get("/api/billing")
    assert (missing.status_code, missing.json()) == (404, {"error": "not found"})
    assert (wrong.status_code, wrong.json()) == (405, {"error": "method not allowed"})
    assert wrong_billing.status_code == 405
    assert "date" in missing.headers  # the gateway's own answers carry a Date


async def test_an_unexpected_error_is_a_json_500_not_a_dropped_connection(gateway_factory):
    async def fails() -> None:
        raise RuntimeError("a bug")

    async with gateway_factory() as gw:
        gw.app.app.add_api_route("/fails", fails)  # a route of the FastAPI part with a bug
        response = await gw.client.get("/fails", headers={"X-Request-ID": "bug-1"})
        after = await gw.client.get("/openapi.json")  # the connection is still served
    assert (response.status_code, response.json()) == (500, {"error": "internal error"})
    assert response.headers["x-request-id"] == "bug-1"
    assert after.status_code == 200


def test_settings_defaults_follow_the_contract(monkeypatch):
    for name in ("GATEWAY_PORT", "GATEWAY_WORKERS", "BILLING_QUEUE"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(_env_file=None, rabbitmq_password="x")
    assert settings.gateway_port == 8082
    assert settings.gateway_workers == 1
    assert settings.billing_queue == "billing_queue"


def test_every_setting_is_read_from_its_upper_case_variable_in_env_example(monkeypatch):
    """Fields are the variables' names in lower case; deploy files and .env.example name them in
    upper case, and each one reaches its field."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    env_example = Path(__file__).resolve().parents[3] / ".env.example"
    settings = Settings(_env_file=env_example)
    assert settings.model_fields_set == set(Settings.model_fields)


def test_settings_split_inventory_urls_and_quote_amqp_credentials():
    settings = Settings(
        _env_file=None,
        inventory_urls=" http://a:1/ , http://b:2",
        rabbitmq_user="u@x",
        rabbitmq_password="p/w:d",
        rabbitmq_vhost="/",
        rabbitmq_host="h",
        rabbitmq_port=5,
    )
    assert settings.inventory_url_list == ["http://a:1", "http://b:2"]
    assert settings.amqp_url == "amqp://u%40x:p%2Fw%3Ad@h:5/%2F"


def test_production_refuses_the_placeholder_password():
    def production(**settings: str) -> Settings:  # with a key: writes are not the reason
        return Settings(_env_file=None, app_env="production", gateway_api_keys="k", **settings)

    with pytest.raises(ValidationError, match="rabbitmq_password"):
        production(rabbitmq_password="generate-me")
    production(rabbitmq_password="not-the-placeholder")
    Settings(_env_file=None, app_env="development", rabbitmq_password="generate-me")

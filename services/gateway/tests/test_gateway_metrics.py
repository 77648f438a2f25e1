"""/metrics: requests by route template and status, latency histograms, published orders."""

import httpx
from prometheus_client.parser import text_string_to_metric_families

from .attack_support import running_gateway


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def requests(values, method: str, route: str, status: str) -> float:
    key = ("http_requests_total", (("method", method), ("route", route), ("status", status)))
    return values.get(key, 0.0)


def observed(values, method: str, route: str) -> float:
    key = ("http_request_duration_seconds_count", (("method", method), ("route", route)))
    return values.get(key, 0.0)


async def test_requests_are_counted_by_route_template_and_status(gateway_factory, inventory):
    async with gateway_factory(inventory_urls=inventory.url) as gw:
        for path in ("/api/movies/1", "/api/movies/2/", "/api/movies/big?size=10"):
            await gw.client.get(path)
        await gw.client.get("/api/movies?status=404")
        await gw.client.get("/api/movies/")
        await gw.client.get("/api/movies/1/extra")
        await gw.client.post("/api/billing", json={"user_id": "x"})
        await gw.client.get("/api/billing/not-a-uuid/")
        await gw.client.get("/no/such/route")
        await gw.client.get("/metrics")
        scrape = await gw.client.get("/metrics/")
    assert scrape.status_code == 200
    assert scrape.headers["content-type"].startswith("text/plain; version=0.0.4")
    values = samples(scrape.text)
    assert requests(values, "GET", "/api/movies/{id}", "200") == 3
    assert requests(values, "GET", "/api/movies", "404") == 1
    assert requests(values, "GET", "/api/movies", "200") == 1
    assert requests(values, "GET", "unmatched", "200") == 1  # /api/movies/1/extra: still proxied
    assert requests(values, "POST", "/api/billing", "422") == 1
    assert requests(values, "GET", "/api/billing/{order_id}", "404") == 1
    assert requests(values, "GET", "unmatched", "404") == 1
    assert observed(values, "GET", "/api/movies/{id}") == 3
    assert observed(values, "POST", "/api/billing") == 1
    movie = (("method", "GET"), ("route", "/api/movies/{id}"))
    buckets = sorted(
        (float(dict(labels)["le"]), value)
        for (name, labels), value in values.items()
        if name == "http_request_duration_seconds_bucket" and set(movie) <= set(labels)
    )
    counts = [value for _, value in buckets]
    assert counts == sorted(counts) and buckets[-1] == (float("inf"), 3)  # cumulative
    assert dict(buckets)[10.0] == 3  # each answered well within 10 s
    assert 0 < values[("http_request_duration_seconds_sum", movie)] < 3 * 10
    assert not any("metrics" in dict(labels).get("route", "") for _, labels in values)
    routes = {dict(labels).get("route") for name, labels in values if name.startswith("http_")}
    assert "/api/movies/1" not in routes and "/no/such/route" not in routes


async def test_published_orders_are_counted_ok_and_unavailable(
    gateway_factory, poll, queue_name, unused_port
):
    order = {"user_id": 1, "number_of_items": 1, "total_amount": "2.50"}
    async with gateway_factory(billing_queue=queue_name) as gw:
        await poll(lambda: gw.publisher.connected, 10, "the broker connection")
        for _ in range(2):
            assert (await gw.client.post("/api/billing", json=order)).status_code == 200
        up = samples((await gw.client.get("/metrics")).text)
    async with gateway_factory(rabbitmq_port=unused_port()) as gw:
        assert (await gw.client.post("/api/billing", json=order)).status_code == 503
        down = samples((await gw.client.get("/metrics")).text)
    assert up[("orders_published_total", (("result", "ok"),))] == 2
    assert up[("orders_published_total", (("result", "unavailable"),))] == 0
    assert down[("orders_published_total", (("result", "unavailable"),))] == 1
    assert down[("orders_published_total", (("result", "ok"),))] == 0


async def test_several_workers_report_their_sum(inventory, tmp_path, poll):
    """server.py with 2 workers: whichever worker answers /metrics counts every worker's work."""
    with running_gateway(tmp_path, inventory.url, GATEWAY_WORKERS=2) as gateway:
        url = f"http://127.0.0.1:{gateway.port}"
        async with httpx.AsyncClient(base_url=url, timeout=5) as client:
            # New connections each time: the kernel spreads them over both workers.
            for _ in range(40):
                async with httpx.AsyncClient(timeout=5) as once:
                    response = await once.get(f"{url}/api/movies/1")
                    assert response.status_code == 200

            async def counted() -> float:
                values = samples((await client.get("/metrics")).text)
                return requests(values, "GET", "/api/movies/{id}", "200")

            async def all_counted() -> bool:
                return await counted() == 40

            # Each worker adds its tallies to the shared files within a second.
            await poll(all_counted, 10, "both workers' counts")
            totals = {await counted() for _ in range(6)}
    assert totals == {40}

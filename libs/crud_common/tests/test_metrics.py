"""crud_common.metrics: what a scrape shows of the answers tallied (pure logic, own registry).

The tallies reach the histogram through prometheus-client's private `_sum` and `_buckets`
(prometheus-client is pinned exactly): these tests fail if they change.
"""

from crud_common.metrics import RequestMetrics
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

ROUTE = "/api/things/{id}"


def scrape(metrics: RequestMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, content_type = metrics.render()
    assert content_type == b"text/plain; version=0.0.4; charset=utf-8"
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def count(values, method: str, route: str, status: str) -> float:
    labels = (("method", method), ("route", route), ("status", status))
    return values.get(("http_requests_total", labels), 0.0)


def buckets(values, method: str, route: str) -> dict[str, float]:
    return {
        dict(labels)["le"]: value
        for (name, labels), value in values.items()
        if name == "http_request_duration_seconds_bucket"
        and {("method", method), ("route", route)} <= set(labels)
    }


def test_a_scrape_counts_answers_by_method_route_and_status() -> None:
    metrics = RequestMetrics(CollectorRegistry())
    for status in (200, 200, 404):
        metrics.observe("GET", ROUTE, status, 0.002)
    metrics.observe("POST", ROUTE, 201, 0.002)
    metrics.observe("BREW", "unmatched", 405, 0.002)  # any method token: label kept bounded
    values = scrape(metrics)
    assert count(values, "GET", ROUTE, "200") == 2
    assert count(values, "GET", ROUTE, "404") == 1
    assert count(values, "POST", ROUTE, "201") == 1
    assert count(values, "OTHER", "unmatched", "405") == 1
    assert not any(dict(labels).get("method") == "BREW" for _, labels in values)


def test_durations_fall_in_cumulative_buckets_from_half_a_millisecond() -> None:
    metrics = RequestMetrics(CollectorRegistry())
    for seconds in (0.0001, 0.0005, 0.003, 0.7, 12.0):  # 0.0005: on a bound, counted in it
        metrics.observe("GET", ROUTE, 200, seconds)
    values = scrape(metrics)
    le = buckets(values, "GET", ROUTE)
    assert (le["0.0005"], le["0.001"], le["0.0025"], le["0.005"]) == (2, 2, 2, 3)
    assert (le["0.5"], le["1.0"], le["10.0"], le["+Inf"]) == (3, 4, 4, 5)
    assert len(le) == 15  # 14 bounds and +Inf
    key = (("method", "GET"), ("route", ROUTE))
    assert values[("http_request_duration_seconds_count", key)] == 5
    assert abs(values[("http_request_duration_seconds_sum", key)] - 12.7036) < 1e-9


def test_each_answer_is_added_once_over_successive_scrapes() -> None:
    metrics = RequestMetrics(CollectorRegistry())
    metrics.observe("GET", ROUTE, 200, 0.002)
    first = scrape(metrics)
    again = scrape(metrics)
    metrics.observe("GET", ROUTE, 200, 0.02)
    later = scrape(metrics)
    assert [count(v, "GET", ROUTE, "200") for v in (first, again, later)] == [1, 1, 2]
    assert [buckets(v, "GET", ROUTE)["0.0025"] for v in (first, again, later)] == [1, 1, 1]
    assert [buckets(v, "GET", ROUTE)["0.025"] for v in (first, again, later)] == [1, 1, 2]

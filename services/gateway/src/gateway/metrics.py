"""Prometheus metrics of the gateway, served at /metrics (text format).

- `http_requests_total{method,route,status}` and `http_request_duration_seconds{method,route}`:
  route is the route template (`/api/movies/{id}`), `unmatched` for unknown paths, so the label
  values stay few whatever clients send; /metrics itself is not counted.
- `orders_published_total{result="ok|unavailable"}`: POST /api/billing outcomes.

Answers are tallied in plain dicts and added to the Prometheus metrics when /metrics is
rendered (and, with several workers, at most a second later): prometheus-client's own
`inc` + `observe` take three locks and a Python bucket loop, ~5 µs per request, a tenth of
what the gateway spends proxying a GET.

With one worker the process's own registry is served. With several, server.py points
PROMETHEUS_MULTIPROC_DIR at a fresh directory before the workers start: each worker then writes
its values there and /metrics (answered by any worker) sums them all (prometheus-client's
multiprocess mode).
"""

import asyncio
import os
from bisect import bisect_left

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

MOVIES = "/api/movies"
MOVIE = "/api/movies/{id}"
UNMATCHED = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# The gateway answers most requests in about a millisecond: finer buckets at the low end.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def movies_route(path: str) -> str:
    """The template of a proxied path: /api/movies[/] or /api/movies/<id>[/]."""
    rest = path[len(MOVIES) + 1 :].rstrip("/")  # path starts with /api/movies
    if not rest:
        return MOVIES
    return UNMATCHED if "/" in rest else MOVIE


class Metrics:
    def __init__(self) -> None:
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.registry = CollectorRegistry()
        if not self.multiprocess:
            ProcessCollector(registry=self.registry)
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests answered, by method, route template and status",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route template",
            ("method", "route"),
            buckets=BUCKETS,
            registry=self.registry,
        )
        published = Counter(
            "orders_published_total",
            "Orders POSTed to /api/billing: confirmed by RabbitMQ (ok) or refused with 503",
            ("result",),
            registry=self.registry,
        )
        self.published_ok = published.labels("ok")
        self.published_unavailable = published.labels("unavailable")
        # (method, route, status) -> [sum of seconds, count per bucket..., count over]
        self._tallies: dict[tuple[str, str, int], list[float]] = {}
        self._flush_due: asyncio.TimerHandle | None = None

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        if method not in _METHODS:
            method = "OTHER"  # any token is a valid method: keep the label bounded
        key = (method, route, status)
        tally = self._tallies.get(key)
        if tally is None:
            tally = self._tallies[key] = [0] * (len(BUCKETS) + 2)
            if self.multiprocess and self._flush_due is None:
                self._flush_due = asyncio.get_running_loop().call_later(1.0, self.flush)
        tally[0] += seconds
        tally[1 + bisect_left(BUCKETS, seconds)] += 1  # buckets are "less than or equal"

    def flush(self) -> None:
        """Adds the tallies to the Prometheus metrics (through the histogram's private per-bucket
        values, hence prometheus-client pinned exactly in pyproject.toml:
        prometheus-client has no call that observes many values at once)."""
        if self._flush_due is not None:
            self._flush_due.cancel()
            self._flush_due = None
        tallies, self._tallies = self._tallies, {}
        for (method, route, status), (total, *buckets) in tallies.items():
            self.requests.labels(method, route, str(status)).inc(sum(buckets))
            histogram = self.latency.labels(method, route)
            histogram._sum.inc(total)
            for bucket, n in zip(histogram._buckets, buckets, strict=True):
                if n:
                    bucket.inc(n)

    def render(self) -> tuple[bytes, bytes]:
        """(body, content type) of a scrape."""
        self.flush()
        if self.multiprocess:
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_PLAIN_0_0_4.encode()
        return generate_latest(self.registry), CONTENT_TYPE_PLAIN_0_0_4.encode()

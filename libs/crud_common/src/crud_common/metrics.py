"""The request metrics of the three services, served at /metrics (Prometheus text format):

- `http_requests_total{method,route,status}`
- `http_request_duration_seconds{method,route}`, buckets `BUCKETS` (from 0.5 ms: most answers take
  about a millisecond)

Each answer is tallied in a plain dict and added to the Prometheus metrics when /metrics is
rendered (and, with several workers, at most a second later): prometheus-client's own
`inc` + `observe` take three locks and a Python bucket loop, ~5 µs per request.

With one worker the registry given is served. With several, the service's server.py points
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
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4.encode()
UNMATCHED = "unmatched"  # the route label of a path no route matched
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestMetrics:
    """The two request metrics in `registry`, with the tallies not yet added to them."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests answered, by method, route template and status",
            ("method", "route", "status"),
            registry=registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route template",
            ("method", "route"),
            buckets=BUCKETS,
            registry=registry,
        )
        # (method, route, status) -> [sum of seconds, count per bucket..., count over]
        self._tallies: dict[tuple[str, str, int], list[float]] = {}
        self._flush_due: asyncio.TimerHandle | None = None

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Counts one answer; `route` is a template or `UNMATCHED`, never the raw path."""
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
        values, hence prometheus-client pinned exactly in pyproject.toml and
        tests/test_metrics.py: prometheus-client has no call that observes many values at once)."""
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
        """(body, content type) of a scrape: the registry's metrics, or with several workers the
        sum of every worker's."""
        self.flush()
        registry = self.registry
        if self.multiprocess:
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE

"""Prometheus metrics of the gateway, served at /metrics (text format).

- The request metrics of every service (`crud_common.metrics`): `http_requests_total` and
  `http_request_duration_seconds`; route is the route template (`/api/movies/{id}`), `unmatched`
  for unknown paths, so the label values stay few whatever clients send; /metrics itself is not
  counted.
- `orders_published_total{result="ok|unavailable"}`: POST /api/billing outcomes.
"""

from crud_common.metrics import UNMATCHED, RequestMetrics
from prometheus_client import CollectorRegistry, Counter, ProcessCollector

MOVIES = "/api/movies"
MOVIE = "/api/movies/{id}"


def movies_route(path: str) -> str:
    """The template of a proxied path: /api/movies[/] or /api/movies/<id>[/]."""
    rest = path[len(MOVIES) + 1 :].rstrip("/")  # path starts with /api/movies
    if not rest:
        return MOVIES
    return UNMATCHED if "/" in rest else MOVIE


class Metrics(RequestMetrics):
    """The gateway's registry: request metrics, published orders, and (one worker) the process's
    own metrics."""

    def __init__(self) -> None:
        super().__init__(CollectorRegistry())
        if not self.multiprocess:
            ProcessCollector(registry=self.registry)
        published = Counter(
            "orders_published_total",
            "Orders POSTed to /api/billing: confirmed by RabbitMQ (ok) or refused with 503",
            ("result",),
            registry=self.registry,
        )
        self.published_ok = published.labels("ok")
        self.published_unavailable = published.labels("unavailable")

"""Request ids and Prometheus metrics of inventory: `crud_common.observe.Observe` around the
whole application (request ids, requests by route template and status, `GET /metrics`).

Several uvicorn workers: server.py points PROMETHEUS_MULTIPROC_DIR at a fresh directory before
the workers start, prometheus-client then keeps every worker's values in files there, and
/metrics, whichever worker answers it, sums them all.
"""

import os

from crud_common import observe
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

REQUESTS, DURATION = observe.request_metrics(REGISTRY)


def metrics_text() -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


class Observe(observe.Observe):
    requests = REQUESTS
    durations = DURATION

    def route_label(self, template: str) -> str:
        """One label for both slash variants, ids named `{id}`."""
        return super().route_label(template).replace("{movie_id}", "{id}")

    async def metrics_body(self, scope: observe.Scope) -> bytes:
        return metrics_text()

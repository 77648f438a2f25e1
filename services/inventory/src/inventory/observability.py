"""Request ids and Prometheus metrics of inventory: `crud_common.observe.Observe` around the
whole application (request ids, requests by route template and status, `GET /metrics`), the
metrics in prometheus-client's global registry (`crud_common.metrics`; with several workers
/metrics sums every worker's).
"""

from crud_common import observe
from crud_common.metrics import RequestMetrics
from prometheus_client import REGISTRY

METRICS = RequestMetrics(REGISTRY)


class Observe(observe.Observe):
    metrics = METRICS

    def route_label(self, template: str) -> str:
        """One label for both slash variants, ids named `{id}`."""
        return super().route_label(template).replace("{movie_id}", "{id}")

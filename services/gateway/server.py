"""Starts the gateway with uvicorn: `python server.py` (cwd = this directory or the repo root)."""

import os
import tempfile

import uvicorn
from crud_common.logs import logging_config

from gateway.config import get_settings
from gateway.serving import UVICORN_OPTIONS


def main() -> None:
    settings = get_settings()
    if settings.GATEWAY_WORKERS > 1:
        # Several workers: each writes its metrics here and /metrics sums them (metrics.py).
        # A fresh directory per start, so counters never carry over from an earlier run.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="gateway-metrics-")
    uvicorn.run(
        "gateway.app:create_app",
        factory=True,
        host=settings.GATEWAY_HOST,
        port=settings.GATEWAY_PORT,
        workers=settings.GATEWAY_WORKERS,
        log_config=logging_config(settings.APP_ENV, settings.LOG_LEVEL),
        **UVICORN_OPTIONS,
    )


if __name__ == "__main__":
    main()

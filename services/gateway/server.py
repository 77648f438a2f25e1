"""Starts the gateway: `python server.py` (cwd = this directory or the repo root)."""

import logging
import logging.config
import os
import tempfile

from crud_common.logs import logging_config

from gateway.config import get_settings


def main() -> None:
    settings = get_settings()
    if settings.gateway_workers > 1:
        # Several workers: each writes its metrics here and /metrics sums them (metrics.py).
        # A fresh directory per start, so counters never carry over from an earlier run; set
        # before prometheus-client is imported (by the workers, started afresh).
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="gateway-metrics-")
    log_config = logging_config(settings.app_env, settings.log_level)
    logging.config.dictConfig(log_config)
    if not settings.api_keys:
        logging.getLogger("gateway").warning(
            "writes are open to anyone: set GATEWAY_API_KEYS to require a key for them"
        )
    from gateway.serving import run

    run(settings, log_config)


if __name__ == "__main__":
    main()

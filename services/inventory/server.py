"""Start the inventory service: `python server.py` (cwd = this directory, or anywhere)."""

import os
import shutil
import tempfile

import uvicorn
from crud_common.logs import logging_config

from inventory.coalescing import CoalescingHttpToolsProtocol
from inventory.config import get_settings


def main() -> None:
    settings = get_settings()
    # Metrics of all workers in one /metrics: prometheus-client's multiprocess mode, in a fresh
    # directory (values left by an earlier run would be added in), removed at exit. Set before
    # the workers start (and import prometheus_client), so that they all inherit it.
    metrics_dir = tempfile.mkdtemp(prefix="inventory-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        uvicorn.run(
            "inventory.app:create_app",  # each worker builds its app
            factory=True,
            host=settings.inventory_host,
            port=settings.inventory_port,
            workers=settings.inventory_workers,
            loop="uvloop",
            http=CoalescingHttpToolsProtocol,  # one write per response (crud_common)
            access_log=False,
            log_config=logging_config(settings.app_env, settings.log_level),
            server_header=False,
            proxy_headers=False,  # nothing here reads the client address
        )
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


if __name__ == "__main__":
    main()

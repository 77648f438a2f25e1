"""Start the inventory service: `python server.py` (cwd = this directory, or anywhere)."""

import uvicorn

from inventory.config import get_settings
from inventory.logging import logging_config


def main() -> None:
    settings = get_settings()
    uvicorn.run(
        "inventory.app:app",
        host=settings.inventory_host,
        port=settings.inventory_port,
        workers=settings.inventory_workers,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_config=logging_config(settings.app_env, settings.log_level),
        server_header=False,
        proxy_headers=False,  # nothing here reads the client address
    )


if __name__ == "__main__":
    main()

"""Starts the gateway with uvicorn: `python server.py` (cwd = this directory or the repo root)."""

import uvicorn

from gateway.config import get_settings
from gateway.logging import logging_config
from gateway.serving import UVICORN_OPTIONS


def main() -> None:
    settings = get_settings()
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

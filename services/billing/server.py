"""Start billing: `python server.py` (from this directory; PM2 runs it the same way)."""

import logging.config

import uvicorn
from crud_common.logs import logging_config

from billing.app import create_app
from billing.config import get_settings


def main() -> None:
    settings = get_settings()
    # Configured here rather than by uvicorn: create_app() logs, and billing logs to stdout.
    logging.config.dictConfig(
        logging_config(settings.app_env, settings.log_level, "ext://sys.stdout")
    )
    uvicorn.run(
        create_app(settings),
        host=settings.billing_host,
        port=settings.billing_port,
        workers=1,  # one consumer per process; scale with more processes, not workers
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_config=None,
    )


if __name__ == "__main__":
    main()

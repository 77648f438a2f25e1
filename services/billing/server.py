"""Start billing: `python server.py` (from this directory; PM2 runs it the same way)."""

import uvicorn

from billing.app import create_app
from billing.config import get_settings
from billing.logging import configure_logging


def main() -> None:
    settings = get_settings()
    configure_logging(settings.app_env, settings.log_level)
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

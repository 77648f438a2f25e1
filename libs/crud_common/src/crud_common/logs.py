"""Log lines of the three services: readable in development, one JSON object per line in
production.

Every record carries `request_id`: the X-Request-ID of the HTTP request being served, or the
AMQP correlation id of the order being handled (`-` outside both), set by each service in the
`request_id` context variable. A field in JSON, `[id]` in readable lines.
"""

import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson

request_id: ContextVar[str] = ContextVar("request_id", default="-")

READABLE = "%(asctime)s %(levelname)-7s [%(request_id)s] %(name)s: %(message)s"
# Attributes every LogRecord has; anything else came through `extra=` and is logged as a field.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}


class RequestIdFilter(logging.Filter):
    """Puts the current request id on every record (attribute `request_id`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update((k, v) for k, v in record.__dict__.items() if k not in _STANDARD)
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def logging_config(app_env: str, level: str, stream: str = "ext://sys.stderr") -> dict[str, Any]:
    """A `logging.config.dictConfig` mapping: one handler on the root logger, uvicorn's loggers
    propagating to it. Handed to uvicorn as `log_config=`, every worker process configures
    itself the same way at start-up."""
    formatter: dict[str, Any] = (
        {"()": JsonFormatter} if app_env == "production" else {"format": READABLE}
    )
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "filters": {"request_id": {"()": RequestIdFilter}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "filters": ["request_id"],
                "stream": stream,
            }
        },
        "root": {"level": level, "handlers": ["default"]},
        "loggers": {
            name: {"level": level, "handlers": [], "propagate": True}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }

"""Settings and logging: placeholder secrets refused in production, JSON log lines."""

import logging

import orjson
import pytest
from crud_common.logs import JsonFormatter
from pydantic import ValidationError

from billing.config import Settings


def make(**values: str) -> Settings:
    defaults = {"billing_db_password": "s3cret", "rabbitmq_password": "s3cret"}
    return Settings(_env_file=None, **{**defaults, **values})  # type: ignore[call-arg]


@pytest.mark.parametrize("field", ["billing_db_password", "rabbitmq_password"])
def test_production_refuses_the_placeholder_secret(field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        make(app_env="production", **{field: "generate-me"})


def test_development_accepts_it_and_secrets_stay_masked() -> None:
    settings = make(app_env="development", rabbitmq_password="generate-me")
    assert "generate-me" not in repr(settings)
    assert settings.dead_letter_queue == f"{settings.billing_queue}.dlq"


def test_production_logs_are_one_json_object_per_line() -> None:
    record = logging.LogRecord("billing.x", logging.WARNING, "f.py", 1, "hello %s", ("you",), None)
    record.order_id = "abc"
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = orjson.loads(line)
    assert entry["level"] == "WARNING" and entry["logger"] == "billing.x"
    assert (entry["message"], entry["order_id"]) == ("hello you", "abc")
    assert "time" in entry

"""Production refuses to run with writes open to anyone: no API keys in APP_ENV=production is an
error naming what to set, unless GATEWAY_ALLOW_ANONYMOUS_WRITES=true says it is wanted. In
development (the default) writes stay open, and `writes_open` says so for the start-up line."""

import pytest
from pydantic import ValidationError

from gateway.config import Settings


def settings(**values) -> Settings:
    return Settings(_env_file=None, RABBITMQ_PASSWORD="a-real-secret", **values)


def test_production_without_api_keys_refuses_to_start_and_says_what_to_set():
    with pytest.raises(ValidationError) as refused:
        settings(APP_ENV="production", GATEWAY_API_KEYS=" , ")
    message = str(refused.value)
    assert "GATEWAY_API_KEYS" in message
    assert "GATEWAY_ALLOW_ANONYMOUS_WRITES=true" in message


def test_production_runs_with_api_keys_and_writes_closed():
    production = settings(APP_ENV="production", GATEWAY_API_KEYS="k1,k2")
    assert production.writes_open is False


def test_production_runs_open_only_when_anonymous_writes_are_allowed_explicitly():
    production = settings(APP_ENV="production", GATEWAY_ALLOW_ANONYMOUS_WRITES="true")
    assert production.writes_open is True


def test_anonymous_writes_are_not_allowed_by_default():
    assert settings().GATEWAY_ALLOW_ANONYMOUS_WRITES is False


def test_development_keeps_writes_open_without_keys():
    development = settings()
    assert development.APP_ENV == "development"
    assert development.writes_open is True
    assert settings(GATEWAY_API_KEYS="k").writes_open is False

"""Production refuses to run with writes open to anyone: no API keys in APP_ENV=production is an
error naming what to set, unless GATEWAY_ALLOW_ANONYMOUS_WRITES=true says it is wanted. In
development (the default) writes stay open, and `writes_open` says so for the start-up line.
A refusal never shows the values read (the RabbitMQ password)."""

import pytest
from pydantic import ValidationError

from gateway.config import Settings


def settings(**values) -> Settings:
    return Settings(_env_file=None, rabbitmq_password="a-real-secret", **values)


def test_production_without_api_keys_refuses_to_start_and_says_what_to_set():
    with pytest.raises(ValidationError) as refused:
        settings(app_env="production", gateway_api_keys=" , ")
    message = str(refused.value)
    assert "GATEWAY_API_KEYS" in message
    assert "GATEWAY_ALLOW_ANONYMOUS_WRITES=true" in message


def test_a_refusal_does_not_show_the_password_read(monkeypatch):
    for name in Settings.model_fields:  # only these two inputs: pydantic shortens a long list
        monkeypatch.delenv(name.upper(), raising=False)
    with pytest.raises(ValidationError) as refused:  # the refusal is what the start-up log shows
        Settings(_env_file=None, app_env="production", rabbitmq_password="a-real-secret")
    assert "GATEWAY_API_KEYS" in str(refused.value)
    assert "a-real-secret" not in str(refused.value)


def test_production_runs_with_api_keys_and_writes_closed():
    production = settings(app_env="production", gateway_api_keys="k1,k2")
    assert production.writes_open is False


def test_production_runs_open_only_when_anonymous_writes_are_allowed_explicitly():
    production = settings(app_env="production", gateway_allow_anonymous_writes="true")
    assert production.writes_open is True


def test_anonymous_writes_are_not_allowed_by_default():
    assert settings().gateway_allow_anonymous_writes is False


def test_development_keeps_writes_open_without_keys():
    development = settings()
    assert development.app_env == "development"
    assert development.writes_open is True
    assert settings(gateway_api_keys="k").writes_open is False

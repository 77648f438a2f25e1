"""The settings convention of the services: one typed pydantic-settings object per service, read
from the environment, then the repository's `.env` and the service's own (the environment wins);
field names are the variable names, lower case (matched case-insensitively, no prefix)."""

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from crud_common.brokers import broker_addresses

PLACEHOLDER_SECRET = "generate-me"  # what .env.example holds; refused with APP_ENV=production


class ServiceSettings(BaseSettings):
    """The base of each service's settings. With APP_ENV=production every secret (a SecretStr
    field) must be set, and not to the placeholder. A refusal names the variables to change,
    never the values read: pydantic would print every input, passwords included, into the
    start-up log."""

    model_config = SettingsConfigDict(
        env_file=("../../.env", ".env"), extra="ignore", hide_input_in_errors=True
    )

    app_env: Literal["development", "production"] = "development"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("*")
    @classmethod
    def _real_secret_in_production(cls, value: object, info: ValidationInfo) -> object:
        # Per field, after app_env (declared first): the error names this field only.
        if (
            isinstance(value, SecretStr)
            and info.data.get("app_env") == "production"
            and value.get_secret_value() in ("", PLACEHOLDER_SECRET)
        ):
            raise ValueError("must be set to a real secret in production")
        return value


class BrokerSettings(ServiceSettings):
    """The settings of a service that talks to RabbitMQ (the gateway and billing)."""

    # One broker, or the nodes of a cluster: "host[:port], host[:port], ..." (port: rabbitmq_port).
    rabbitmq_host: str = "127.0.0.1"
    rabbitmq_port: int = Field(default=5672, ge=1, le=65535)
    rabbitmq_vhost: str = "crud_master"
    rabbitmq_user: str = "crud_master"
    rabbitmq_password: SecretStr
    billing_queue: str = "billing_queue"

    @property
    def rabbitmq_addresses(self) -> list[tuple[str, int]]:
        """The brokers to try, in order: (host, port) for each entry of rabbitmq_host."""
        return broker_addresses(self.rabbitmq_host, self.rabbitmq_port)

    @field_validator("rabbitmq_host")
    @classmethod
    def _broker_list(cls, value: str) -> str:
        broker_addresses(value, 5672)  # raises ValueError on a malformed entry
        return value


@dataclass(frozen=True)
class Database:
    """Where a service's PostgreSQL database is (each service names it with its own variables)."""

    host: str
    port: int
    name: str
    user: str
    password: SecretStr

    def connect_args(self) -> dict[str, Any]:
        """asyncpg's arguments for connecting (create_pool, connect)."""
        return {
            "host": self.host,
            "port": self.port,
            "database": self.name,
            "user": self.user,
            "password": self.password.get_secret_value(),
        }

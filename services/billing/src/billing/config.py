"""Billing settings: one typed object read from the environment and `.env`."""

from functools import lru_cache

from crud_common.brokers import broker_addresses
from crud_common.settings import PLACEHOLDER_SECRET, Database, ServiceSettings
from pydantic import Field, SecretStr, ValidationInfo, field_validator


class Settings(ServiceSettings):
    """Billing settings (the convention is crud_common.settings')."""

    billing_host: str = "0.0.0.0"
    billing_port: int = Field(default=8081, ge=1, le=65535)

    billing_db_host: str = "127.0.0.1"
    billing_db_port: int = Field(default=5432, ge=1, le=65535)
    billing_db_name: str = "orders"
    billing_db_user: str = "orders_user"
    billing_db_password: SecretStr

    # Unacked deliveries at most; above the batch size, the next batch arrives during a commit.
    billing_prefetch: int = Field(default=1000, ge=1)
    # Largest batch stored in one transaction, and how long to wait for it to fill.
    billing_batch_size: int = Field(default=500, ge=1)
    billing_batch_linger: float = Field(default=0.02, ge=0)

    # One broker, or the nodes of a cluster: "host[:port], host[:port], ..." (port: rabbitmq_port).
    rabbitmq_host: str = "127.0.0.1"
    rabbitmq_port: int = Field(default=5672, ge=1, le=65535)
    rabbitmq_vhost: str = "crud_master"
    rabbitmq_user: str = "crud_master"
    rabbitmq_password: SecretStr
    billing_queue: str = "billing_queue"

    @property
    def database(self) -> Database:
        return Database(
            self.billing_db_host,
            self.billing_db_port,
            self.billing_db_name,
            self.billing_db_user,
            self.billing_db_password,
        )

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.billing_queue}.dlq"

    @property
    def rabbitmq_addresses(self) -> list[tuple[str, int]]:
        """The brokers to try, in order: (host, port) for each entry of rabbitmq_host."""
        return broker_addresses(self.rabbitmq_host, self.rabbitmq_port)

    @field_validator("rabbitmq_host")
    @classmethod
    def _broker_list(cls, value: str) -> str:
        broker_addresses(value, 5672)  # raises ValueError on a bad entry
        return value

    @field_validator("billing_db_password", "rabbitmq_password")
    @classmethod
    def _no_placeholder_in_production(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        # Per field: an error shows this value only (the placeholder), never the other settings.
        if info.data.get("app_env") == "production" and value.get_secret_value() in (
            "",
            PLACEHOLDER_SECRET,
        ):
            raise ValueError("must be set to a real secret in production")
        return value


@lru_cache
def get_settings() -> Settings:
    return Settings()  # type: ignore[call-arg]  # passwords come from the environment

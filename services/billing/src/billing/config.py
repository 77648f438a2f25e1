"""Billing settings: one typed object read from the environment and `.env`."""

from functools import lru_cache

from crud_common.settings import BrokerSettings, Database
from pydantic import Field, SecretStr


class Settings(BrokerSettings):
    """Billing settings (the convention is crud_common.settings'; RABBITMQ_* and BILLING_QUEUE
    come from BrokerSettings)."""

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


@lru_cache
def get_settings() -> Settings:
    return Settings()  # type: ignore[call-arg]  # passwords come from the environment

"""Typed settings read from the environment and the repository's .env (see .env.example)."""

from functools import lru_cache

from crud_common.settings import Database, ServiceSettings
from pydantic import Field, SecretStr, model_validator


class Settings(ServiceSettings):
    """Inventory settings (the convention is crud_common.settings')."""

    inventory_host: str = "0.0.0.0"
    inventory_port: int = Field(default=8080, ge=1, le=65535)
    inventory_workers: int = Field(default=2, ge=1)

    inventory_db_host: str = "127.0.0.1"
    inventory_db_port: int = Field(default=5432, ge=1, le=65535)
    inventory_db_name: str = "movies"
    inventory_db_user: str = "movies_user"
    inventory_db_password: SecretStr
    # Connections each worker opens at start-up, and the most it keeps.
    inventory_db_pool_min_size: int = Field(default=2, ge=0)
    inventory_db_pool_max_size: int = Field(default=10, ge=1)
    # X-Total-Count is exact up to this many matching movies; past it the count stops (see
    # repository.Page) and X-Total-Count-Exact: false is added.
    inventory_exact_count_limit: int = Field(default=10_000, ge=1)

    @property
    def database(self) -> Database:
        return Database(
            self.inventory_db_host,
            self.inventory_db_port,
            self.inventory_db_name,
            self.inventory_db_user,
            self.inventory_db_password,
        )

    @model_validator(mode="after")
    def _check(self) -> "Settings":
        if self.inventory_db_pool_min_size > self.inventory_db_pool_max_size:
            raise ValueError("INVENTORY_DB_POOL_MIN_SIZE exceeds INVENTORY_DB_POOL_MAX_SIZE")
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()

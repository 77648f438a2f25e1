"""The settings convention of the services: one typed pydantic-settings object per service, read
from the environment, then the repository's `.env` and the service's own (the environment wins);
field names are the variable names, lower case (matched case-insensitively, no prefix)."""

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRET = "generate-me"  # what .env.example holds; refused with APP_ENV=production


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=("../../.env", ".env"), extra="ignore")

    app_env: Literal["development", "production"] = "development"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


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

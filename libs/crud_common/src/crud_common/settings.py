"""The settings convention of the services: one typed pydantic-settings object per service, read
from the environment, then the repository's `.env` and the service's own (the environment wins);
field names are the variable names, lower case (matched case-insensitively, no prefix)."""

from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRET = "generate-me"  # what .env.example holds; refused with APP_ENV=production


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=("../../.env", ".env"), extra="ignore")

    app_env: Literal["development", "production"] = "development"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

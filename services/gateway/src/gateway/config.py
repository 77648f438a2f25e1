"""Gateway settings: one typed object read from the environment and `.env`."""

import math
from functools import lru_cache
from typing import Literal
from urllib.parse import quote

from crud_common.brokers import broker_addresses
from crud_common.settings import PLACEHOLDER_SECRET
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Gateway settings. Field names are the variables' names in upper case, unlike inventory's and
    billing's (crud_common.settings), as the gateway's server code reads them."""

    model_config = SettingsConfigDict(env_file=("../../.env", ".env"), extra="ignore")

    APP_ENV: Literal["development", "production"] = "development"
    LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    GATEWAY_HOST: str = "0.0.0.0"
    GATEWAY_PORT: int = Field(default=8082, ge=0, le=65535)
    GATEWAY_WORKERS: int = Field(default=1, ge=1)
    INVENTORY_URLS: str = "http://127.0.0.1:8080"
    BILLING_URL: str = "http://127.0.0.1:8081"
    GATEWAY_CONNECT_TIMEOUT: float = Field(default=1.0, gt=0)
    GATEWAY_UPSTREAM_TIMEOUT: float = Field(default=10.0, gt=0)
    GATEWAY_PUBLISH_TIMEOUT: float = Field(default=5.0, gt=0)
    # Request bodies larger than this are refused with 413 (also chunked ones, mid-stream).
    GATEWAY_MAX_BODY_BYTES: int = Field(default=1024 * 1024, gt=0)
    # Request line and headers larger than this are refused with 431.
    GATEWAY_MAX_HEADER_BYTES: int = Field(default=16384, ge=1024)
    # Seconds a client has to send a whole request head once it began, and then its body (408).
    GATEWAY_HEADER_TIMEOUT: float = Field(default=10.0, gt=0)
    GATEWAY_BODY_TIMEOUT: float = Field(default=30.0, gt=0)
    # Seconds an idle client connection is kept open between requests.
    GATEWAY_KEEP_ALIVE_TIMEOUT: float = Field(default=5.0, gt=0)
    # Client connections per worker; one more is answered 503 and closed.
    GATEWAY_MAX_CONNECTIONS: int = Field(default=1000, ge=1)
    # Comma-separated bearer keys; when set, every POST/PUT/PATCH/DELETE under /api needs one.
    GATEWAY_API_KEYS: str = ""
    # In production, no API keys is refused unless anonymous writes are wanted, explicitly.
    GATEWAY_ALLOW_ANONYMOUS_WRITES: bool = False
    # Requests per second per client IP under /api (token bucket per worker); 0 = no limit.
    GATEWAY_RATE_LIMIT: float = Field(default=0.0, ge=0)
    # Bucket size: requests a client may send at once; 0 = the rate, rounded up (at least 1).
    GATEWAY_RATE_BURST: int = Field(default=0, ge=0)

    # One broker, or the nodes of a cluster: "host[:port],host[:port],..." (port: RABBITMQ_PORT).
    RABBITMQ_HOST: str = "127.0.0.1"
    RABBITMQ_PORT: int = Field(default=5672, ge=1, le=65535)
    RABBITMQ_VHOST: str = "crud_master"
    RABBITMQ_USER: str = "crud_master"
    RABBITMQ_PASSWORD: str
    BILLING_QUEUE: str = "billing_queue"

    @field_validator("INVENTORY_URLS", "BILLING_URL")
    @classmethod
    def _http_urls(cls, value: str) -> str:
        urls = [u.strip().rstrip("/") for u in value.split(",") if u.strip()]
        if not urls or not all(u.startswith(("http://", "https://")) for u in urls):
            raise ValueError("expected comma-separated http(s):// URLs")
        return ",".join(urls)

    @model_validator(mode="after")
    def _no_placeholder_in_production(self) -> "Settings":
        if self.APP_ENV == "production" and self.RABBITMQ_PASSWORD == PLACEHOLDER_SECRET:
            raise ValueError("RABBITMQ_PASSWORD is the placeholder 'generate-me'")
        if self.APP_ENV == "production" and PLACEHOLDER_SECRET in self.api_keys:
            raise ValueError("GATEWAY_API_KEYS holds the placeholder 'generate-me'")
        return self

    @model_validator(mode="after")
    def _no_open_writes_in_production(self) -> "Settings":
        if (
            self.APP_ENV == "production"
            and self.writes_open
            and not self.GATEWAY_ALLOW_ANONYMOUS_WRITES
        ):
            raise ValueError(
                "APP_ENV=production with no GATEWAY_API_KEYS would let anyone write: set "
                "GATEWAY_API_KEYS=<key>[,<key>...], or GATEWAY_ALLOW_ANONYMOUS_WRITES=true "
                "to run open on purpose"
            )
        return self

    @property
    def api_keys(self) -> list[str]:
        return [key.strip() for key in self.GATEWAY_API_KEYS.split(",") if key.strip()]

    @property
    def writes_open(self) -> bool:
        """True when POST/PUT/PATCH/DELETE need no API key."""
        return not self.api_keys

    @property
    def rate_burst(self) -> int:
        return self.GATEWAY_RATE_BURST or max(1, math.ceil(self.GATEWAY_RATE_LIMIT))

    @property
    def inventory_urls(self) -> list[str]:
        return self.INVENTORY_URLS.split(",")

    @field_validator("RABBITMQ_HOST")
    @classmethod
    def _broker_hosts(cls, value: str) -> str:
        broker_addresses(value, 5672)  # raises ValueError on a malformed entry
        return value

    @property
    def amqp_url(self) -> str:
        """The broker's AMQP URL; with several nodes, their URLs comma-separated."""
        user = quote(self.RABBITMQ_USER, safe="")
        password = quote(self.RABBITMQ_PASSWORD, safe="")
        vhost = quote(self.RABBITMQ_VHOST, safe="")
        return ",".join(
            f"amqp://{user}:{password}@{host}:{port}/{vhost}"
            for host, port in broker_addresses(self.RABBITMQ_HOST, self.RABBITMQ_PORT)
        )


@lru_cache
def get_settings() -> Settings:
    return Settings()

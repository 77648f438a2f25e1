"""Gateway settings: one typed object read from the environment and `.env`."""

import math
from functools import lru_cache
from urllib.parse import quote

from crud_common.settings import PLACEHOLDER_SECRET, BrokerSettings
from pydantic import Field, field_validator, model_validator


class Settings(BrokerSettings):
    """Gateway settings (the convention is crud_common.settings'; RABBITMQ_* and BILLING_QUEUE
    come from BrokerSettings)."""

    gateway_host: str = "0.0.0.0"
    gateway_port: int = Field(default=8082, ge=0, le=65535)
    gateway_workers: int = Field(default=1, ge=1)
    inventory_urls: str = "http://127.0.0.1:8080"
    billing_url: str = "http://127.0.0.1:8081"
    gateway_connect_timeout: float = Field(default=1.0, gt=0)
    gateway_upstream_timeout: float = Field(default=10.0, gt=0)
    gateway_publish_timeout: float = Field(default=5.0, gt=0)
    # Request bodies larger than this are refused with 413 (also chunked ones, mid-stream).
    gateway_max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    # Request line and headers larger than this are refused with 431.
    gateway_max_header_bytes: int = Field(default=16384, ge=1024)
    # Seconds a client has to send a whole request head once it began, and then its body (408).
    gateway_header_timeout: float = Field(default=10.0, gt=0)
    gateway_body_timeout: float = Field(default=30.0, gt=0)
    # Seconds an idle client connection is kept open between requests.
    gateway_keep_alive_timeout: float = Field(default=5.0, gt=0)
    # Client connections per worker; one more is answered 503 and closed.
    gateway_max_connections: int = Field(default=1000, ge=1)
    # Comma-separated bearer keys; when set, every POST/PUT/PATCH/DELETE under /api needs one.
    gateway_api_keys: str = ""
    # In production, no API keys is refused unless anonymous writes are wanted, explicitly.
    gateway_allow_anonymous_writes: bool = False
    # Requests per second per client IP under /api (token bucket per worker); 0 = no limit.
    gateway_rate_limit: float = Field(default=0.0, ge=0)
    # Bucket size: requests a client may send at once; 0 = the rate, rounded up (at least 1).
    gateway_rate_burst: int = Field(default=0, ge=0)

    @field_validator("inventory_urls", "billing_url")
    @classmethod
    def _http_urls(cls, value: str) -> str:
        urls = [u.strip().rstrip("/") for u in value.split(",") if u.strip()]
        if not urls or not all(u.startswith(("http://", "https://")) for u in urls):
            raise ValueError("expected comma-separated http(s):// URLs")
        return ",".join(urls)

    @model_validator(mode="after")
    def _no_placeholder_or_open_writes_in_production(self) -> "Settings":
        if self.app_env != "production":
            return self
        if PLACEHOLDER_SECRET in self.api_keys:
            raise ValueError("GATEWAY_API_KEYS holds the placeholder 'generate-me'")
        if self.writes_open and not self.gateway_allow_anonymous_writes:
            raise ValueError(
                "APP_ENV=production with no GATEWAY_API_KEYS would let anyone write: set "
                "GATEWAY_API_KEYS=<key>[,<key>...], or GATEWAY_ALLOW_ANONYMOUS_WRITES=true "
                "to run open on purpose"
            )
        return self

    @property
    def api_keys(self) -> list[str]:
        return [key.strip() for key in self.gateway_api_keys.split(",") if key.strip()]

    @property
    def writes_open(self) -> bool:
        """True when POST/PUT/PATCH/DELETE need no API key."""
        return not self.api_keys

    @property
    def rate_burst(self) -> int:
        return self.gateway_rate_burst or max(1, math.ceil(self.gateway_rate_limit))

    @property
    def inventory_url_list(self) -> list[str]:
        return self.inventory_urls.split(",")

    @property
    def amqp_url(self) -> str:
        """The broker's AMQP URL; with several nodes, their URLs comma-separated."""
        user = quote(self.rabbitmq_user, safe="")
        password = quote(self.rabbitmq_password.get_secret_value(), safe="")
        vhost = quote(self.rabbitmq_vhost, safe="")
        return ",".join(
            f"amqp://{user}:{password}@{host}:{port}/{vhost}"
            for host, port in self.rabbitmq_addresses
        )


@lru_cache
def get_settings() -> Settings:
    return Settings()  # type: ignore[call-arg]  # the password comes from the environment

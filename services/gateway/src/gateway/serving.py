"""How uvicorn runs the gateway (server.py and the tests share this)."""

from typing import Any

from .protocol import GatewayHttpProtocol

# Date/Server headers are off because proxied responses carry the upstream's; the gateway adds
# Date to its own answers (proxy.Gateway).
UVICORN_OPTIONS: dict[str, Any] = {
    "loop": "uvloop",
    "http": GatewayHttpProtocol,
    "ws": "none",
    "access_log": False,
    "server_header": False,
    "date_header": False,
    "proxy_headers": False,  # the gateway is the public entry: nobody in front to trust
    "lifespan": "on",
}

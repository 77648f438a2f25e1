"""Asks billing for a stored order through the shared aiohttp session (also used by /health)."""

import logging
from uuid import UUID

import aiohttp
from crud_common.logs import request_id

from .errors import BillingBadAnswer, BillingTimedOut, BillingUnreachable, OrderNotFound

log = logging.getLogger(__name__)


class BillingClient:
    def __init__(self, base_url: str, session: aiohttp.ClientSession) -> None:
        self._base = base_url.rstrip("/")
        self._session = session

    async def get_order(self, order_id: str) -> bytes:
        """The stored order as billing's JSON bytes (relayed, not re-parsed)."""
        try:
            canonical = str(UUID(order_id))
        except ValueError:
            raise OrderNotFound from None  # never stored: no need to ask billing
        url = f"{self._base}/api/orders/{canonical}"
        try:
            async with self._session.get(
                url, allow_redirects=False, headers={"X-Request-ID": request_id.get()}
            ) as response:
                body = await response.read()
                status = response.status
        except aiohttp.ServerTimeoutError as exc:
            if isinstance(exc, aiohttp.ConnectionTimeoutError):
                raise BillingUnreachable from exc
            raise BillingTimedOut from exc
        except aiohttp.ClientError as exc:
            log.warning("billing unreachable: %r", exc)
            raise BillingUnreachable from exc
        if status == 404:
            raise OrderNotFound
        if status != 200:
            log.warning("billing answered %s for order %s", status, canonical)
            raise BillingBadAnswer
        return body


def new_session(connect_timeout: float, timeout: float) -> aiohttp.ClientSession:
    """The process's one aiohttp session: billing look-ups and health checks."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(
            keepalive_timeout=4.0,  # below uvicorn's 5 s idle close: avoids a closing socket
            ttl_dns_cache=60,
        ),
        timeout=aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_connect=connect_timeout, sock_read=timeout
        ),
        cookie_jar=aiohttp.DummyCookieJar(),
        raise_for_status=False,
        trust_env=False,
    )

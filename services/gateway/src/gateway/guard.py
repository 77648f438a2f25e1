"""Protection of /api: bearer API keys for writes, a per-client-IP token bucket for everything.

Both are off unless configured (GATEWAY_API_KEYS, GATEWAY_RATE_LIMIT) and then cost one dict
look-up (rate) and, on writes only, one constant-time comparison per key.
"""

import hmac
import math
import time

import orjson
from crud_common.errors import error_body

# Methods that change nothing: open to everyone even when API keys are set.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class ApiKeys:
    def __init__(self, keys: list[str]) -> None:
        self._keys = [key.encode() for key in keys]

    def __bool__(self) -> bool:
        return bool(self._keys)

    def allows(self, authorization: bytes | None) -> bool:
        """True for `Authorization: Bearer <one of the keys>`; every key is compared in constant
        time, whichever matches (no early exit a timing could reveal)."""
        if authorization is None or authorization[:7].lower() != b"bearer ":
            return False
        presented = authorization[7:].strip()
        found = False
        for key in self._keys:
            found |= hmac.compare_digest(presented, key)
        return found


class RateLimiter:
    """Token buckets per client IP: `rate` tokens a second, at most `burst` held.

    Memory is bounded: a client idle long enough for its bucket to be full again carries no
    information and is dropped by a sweep (once a minute, or when `max_clients` is reached); if
    every tracked client is active at the limit, the least recently seen half is dropped.
    """

    SWEEP_EVERY = 60.0

    def __init__(self, rate: float, burst: int, max_clients: int = 100_000) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = float(burst)
        self.max_clients = max_clients
        self._idle_after = burst / rate  # seconds for an empty bucket to fill up
        self._buckets: dict[str, list[float]] = {}  # client -> [tokens, last seen]
        self._next_sweep = time.monotonic() + self.SWEEP_EVERY

    def __len__(self) -> int:
        return len(self._buckets)

    def wait(self, client: str, now: float | None = None) -> float:
        """0.0 when the request may go (a token is taken), else seconds until one is there."""
        if now is None:
            now = time.monotonic()
        bucket = self._buckets.get(client)
        if bucket is None:
            if now >= self._next_sweep or len(self._buckets) >= self.max_clients:
                self._sweep(now)
            self._buckets[client] = [self.burst - 1.0, now]
            return 0.0
        tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return 0.0
        bucket[0] = tokens
        return (1.0 - tokens) / self.rate

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + self.SWEEP_EVERY
        buckets = self._buckets
        for client in [c for c, (_, last) in buckets.items() if now - last >= self._idle_after]:
            del buckets[client]
        if len(buckets) >= self.max_clients:
            by_age = sorted(buckets, key=lambda c: buckets[c][1])
            for client in by_age[: len(by_age) // 2 + 1]:
                del buckets[client]


def retry_after(seconds: float) -> bytes:
    """A Retry-After value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds))).encode()


Refusal = tuple[int, bytes, list[tuple[bytes, bytes]]]  # status, JSON body, extra headers

UNAUTHORIZED: Refusal = (
    401,
    orjson.dumps(error_body("missing or invalid API key")),
    [(b"www-authenticate", b"Bearer")],
)
_TOO_MANY = orjson.dumps(error_body("too many requests"))


class Guard:
    """What the gateway checks before serving any request under /api (front.py, one place)."""

    def __init__(self, keys: ApiKeys, limiter: RateLimiter | None) -> None:
        self.keys = keys
        self.limiter = limiter

    def check(self, client: str, method: str, authorization: bytes | None) -> Refusal | None:
        """429 when the client is over its rate, 401 for a write without a valid key."""
        if self.limiter is not None:
            wait = self.limiter.wait(client)
            if wait:
                return 429, _TOO_MANY, [(b"retry-after", retry_after(wait))]
        if self.keys and method not in SAFE_METHODS:
            if not self.keys.allows(authorization):
                return UNAUTHORIZED
        return None

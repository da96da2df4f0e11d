"""A token bucket per client, in process memory: enough to keep one client from flooding the public
online check. Several service processes each keep their own buckets (so the effective limit is
per process); a shared limiter belongs in front of the service (reverse proxy) if that matters."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from core.errors import EsealError, InvalidInput

MAX_CLIENTS: Final = 10_000


class RateLimited(EsealError):
    code = "rate_limited"
    status = 429
    title_zh, title_en = "请求过于频繁", "Too many requests"


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBucket:
    """``rate`` tokens per second up to ``burst``; each request takes one."""

    def __init__(self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise InvalidInput("速率须大于 0，突发量至少为 1", "rate must be > 0 and burst ≥ 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def try_take(self, client: str) -> float:
        """0 when the request may go ahead, else the seconds until a token is available."""
        now = self._clock()
        with self._lock:
            bucket = self._buckets.pop(client, None)
            if bucket is None:
                bucket = _Bucket(float(self.burst), now)
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
            self._buckets[client] = bucket  # most recently used last
            while len(self._buckets) > MAX_CLIENTS:
                self._buckets.popitem(last=False)
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / self.rate

    def take(self, client: str) -> None:
        """Take a token or raise :class:`RateLimited` (HTTP 429) with ``retry_after`` seconds."""
        wait = self.try_take(client)
        if wait > 0:
            seconds = max(1, int(wait + 0.999))
            raise RateLimited(
                f"请求过于频繁，请 {seconds} 秒后再试",
                f"too many requests; retry in {seconds} s",
                retry_after=seconds,
            )


__all__ = ["RateLimited", "TokenBucket"]

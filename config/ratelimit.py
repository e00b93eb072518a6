"""Token buckets for rate limits: in this process (no I/O), or shared by every process through Redis.

Pure: no Django here (the DRF throttle in `config/throttles.py` and the OFREP route build the buckets from settings).
A bucket holds up to `burst` tokens and refills at `per_second`; each request takes one. `take` answers 0 when the
request may go on, else the seconds until a token is there (the response's Retry-After).
"""

import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)

_UNITS = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
}


@dataclass(frozen=True, slots=True)
class Rate:
    per_second: float
    burst: int

    @classmethod
    def parse(cls, text: str, burst: int | None = None) -> "Rate | None":
        """`"20/s"`, `"600/min"`, `"1000/hour"`; `"off"` (or `"0"`, `""`) is no limit. Burst defaults to one second's worth."""
        text = text.strip().lower()
        if text in ("", "0", "off", "none"):
            return None
        match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*/\s*([a-z]+)", text)
        if not match or match.group(2) not in _UNITS:
            raise ValueError(f"A rate is like '20/s', '600/min' or 'off', not {text!r}.")
        per_second = float(match.group(1)) / _UNITS[match.group(2)]
        if per_second <= 0:
            return None
        return cls(per_second=per_second, burst=max(1, burst if burst is not None else round(per_second)))

    def divided(self, parts: int) -> "Rate":
        """This rate shared by `parts` processes, each enforcing its share."""
        parts = max(1, parts)
        return Rate(per_second=self.per_second / parts, burst=max(1, round(self.burst / parts)))


class Buckets(Protocol):
    def take(self, key: str) -> float: ...


class LocalBuckets:
    """Buckets in this process's memory: a dict lookup and some arithmetic per request."""

    def __init__(self, rate: Rate, *, max_keys: int = 100_000, clock=time.monotonic):
        self.rate = rate
        self.max_keys = max_keys
        self.clock = clock
        self._state: dict[str, tuple[float, float]] = {}  # key → (tokens, at)
        self._lock = threading.Lock()  # the API's sync views run on several threads; OFREP on one event loop

    def take(self, key: str) -> float:
        now = self.clock()
        rate = self.rate
        with self._lock:
            tokens, at = self._state.get(key, (rate.burst, now))
            tokens = min(rate.burst, tokens + (now - at) * rate.per_second)
            if tokens >= 1:
                self._state[key] = (tokens - 1, now)
                if len(self._state) > self.max_keys:
                    self._forget_full(now)
                return 0.0
            self._state[key] = (tokens, now)
            return (1 - tokens) / rate.per_second

    def _forget_full(self, now: float) -> None:
        # A bucket refilled to the brim is the same as no entry: drop those (many addresses, each seen once).
        full_after = self.rate.burst / self.rate.per_second
        self._state = {k: v for k, v in self._state.items() if now - v[1] < full_after}

    def clear(self) -> None:
        with self._lock:
            self._state.clear()


# Refill and take in one step on the Redis server, with its clock: every process and host sees the same bucket.
_TAKE = """
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(state[1]), tonumber(state[2])
if tokens == nil then tokens, at = burst, now end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""


class RedisBuckets:
    """Buckets in Redis, one round trip per request; when Redis fails the request goes on (logged): limits protect
    Slipway, they must not take it down with Redis."""

    def __init__(self, rate: Rate, client: Any, *, prefix: str):
        self.rate = rate
        self.prefix = prefix
        self._script = client.register_script(_TAKE)
        self._warned_at = 0.0

    def take(self, key: str) -> float:
        try:
            return float(self._script(keys=[self.prefix + key], args=[self.rate.per_second, self.rate.burst]))
        except Exception as error:  # any Redis failure: let the request through
            if time.monotonic() - self._warned_at > 60:
                self._warned_at = time.monotonic()
                log.warning("rate limit not applied, Redis failed: %r", error)
            return 0.0

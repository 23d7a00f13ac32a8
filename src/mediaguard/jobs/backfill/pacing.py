"""Pacing: at most so many submissions a second."""

from __future__ import annotations

import time
from collections.abc import Callable


class RateLimiter:
    """Paces calls to at most ``rate`` a second: a token bucket that holds one token."""

    def __init__(
        self,
        rate: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate is not None and rate <= 0:
            raise ValueError("rate must be positive")
        self._interval = 1.0 / rate if rate else 0.0
        self._clock = clock
        self._sleep = sleep
        self._next = float("-inf")

    def wait(self) -> float:
        """Block until the next call is allowed; returns the seconds waited."""
        if not self._interval:
            return 0.0
        now = self._clock()
        delay = max(0.0, self._next - now)
        if delay:
            self._sleep(delay)
        self._next = max(now, self._next) + self._interval
        return delay

"""One client-side request budget shared by every thread and stream of a run.

Customer.io counts "10 requests per 1 s" per key over a sliding window of *arrivals*: the 11th
request must reach the server a full second after the 1st. So the budget schedules request starts,
not completions:

- starts are spaced ``1 / rate`` apart, so several requests are in flight at once when latency is
  high;
- a start must also come a window (plus a small margin) after the start N requests earlier, N
  being the window's count;
- the server may count a request later than it was sent (queueing, a busy server). We cannot see
  when, but a request that took longer than the fastest one to the same endpoint *may* have been
  counted that much later, so the request N places after it waits that much longer too (bounded).
  This keeps zero 429s under jitter without a large fixed margin, which would cost throughput on
  every request.

A 429 pauses the whole budget (Retry-After), not only the thread that received it.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass

SAFETY_MARGIN = 0.015  # of the window: 15 ms per second at 10 req/s
MAX_DELAY_CREDIT = 1.0  # seconds: a request slower than this is assumed counted by then


@dataclass
class Ticket:
    """One request's place in the budget."""

    start: float
    done: float | None = None
    delay: float = 0.0  # how much later than the fastest comparable request it finished


class RateLimiter:
    """Thread-safe scheduler of request starts: ``acquire()``, send, ``release()``."""

    def __init__(
        self, rate: float, *, margin: float = SAFETY_MARGIN, max_delay: float = MAX_DELAY_CREDIT
    ) -> None:
        if not rate > 0:
            raise ValueError("rate must be greater than 0 requests per second")
        self.rate = rate
        # "r per second" as the server counts it: N requests per window of N / r seconds
        # (below 1/s: 1 request per 1 / r seconds).
        self.window_count = max(1, math.floor(rate))
        self.window = self.window_count / rate
        self.interval = 1.0 / rate
        self.margin = margin
        self.max_delay = max_delay
        self._cond = threading.Condition()
        self._issued = 0
        self._next_turn = 0
        self._last_start = -math.inf
        self._paused_until = -math.inf
        self._recent: deque[Ticket] = deque(maxlen=self.window_count)
        self._fastest: dict[str, float] = {}
        self.acquired = 0

    def acquire(self) -> Ticket:
        """Block until this caller may start a request (callers start in arrival order)."""
        with self._cond:
            turn = self._issued
            self._issued += 1
            while True:
                now = time.monotonic()
                if turn == self._next_turn:
                    earliest = self._earliest_start(now)
                    if earliest <= now:
                        break
                    self._cond.wait(earliest - now)
                else:
                    self._cond.wait()
            ticket = Ticket(start=now)
            self._recent.append(ticket)
            self._last_start = now
            self._next_turn += 1
            self.acquired += 1
            self._cond.notify_all()
            return ticket

    def release(self, ticket: Ticket, endpoint: str, *, ok: bool = True) -> None:
        """The request of ``ticket`` is over; ``endpoint`` groups comparable requests.

        Only successful answers teach the fastest time: a reset connection answers in a millisecond
        and would make every normal request look late.
        """
        with self._cond:
            now = time.monotonic()
            duration = now - ticket.start
            if ok:
                self._fastest[endpoint] = min(self._fastest.get(endpoint, duration), duration)
            fastest = self._fastest.get(endpoint, duration)
            ticket.delay = min(max(duration - fastest, 0.0), self.max_delay)
            ticket.done = now
            self._cond.notify_all()

    def pause(self, seconds: float) -> None:
        """Hold every caller back for ``seconds`` (the server's Retry-After)."""
        with self._cond:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)
            self._cond.notify_all()

    def _earliest_start(self, now: float) -> float:
        earliest = max(self._last_start + self.interval, self._paused_until)
        if len(self._recent) == self.window_count:
            oldest = self._recent[0]
            # Still in flight: it may yet be counted, so wait for its answer (release() wakes us),
            # up to a bound.
            delay = oldest.delay if oldest.done is not None else self.max_delay
            earliest = max(earliest, oldest.start + self.window * (1 + self.margin) + delay)
        return earliest

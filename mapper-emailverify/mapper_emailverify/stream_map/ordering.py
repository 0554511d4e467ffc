"""The reorder buffer: verdicts finish out of order, but STATE never gets ahead of the records
before it.

Input is cut into intervals by barrier messages (STATE, and also SCHEMA and ACTIVATE_VERSION, which
must keep their place relative to records). Inside the interval at the head, a record is written the
moment its verdict is known, so one slow mail server does not hold back the others. Records of later
intervals wait until every earlier interval is written, then its barrier, then they follow.
Therefore a STATE message is written only after every record read before it, and a resumed run never
skips an unverified record.

Records waiting for a verdict or held behind a barrier count against `window`, and the size of their
input lines against `max_bytes`; the reader blocks when either is full, so memory stays bounded
whatever the input size and however large its records (a few huge records behind one slow verdict
fill the byte budget long before the record count).

A gate (`hold` / `release`) stops all output while closed, in order: the mapper keeps it closed
until the engine has shown that its verdicts describe the addresses and not its own setup (see
`records.FirstContactGate`), so a run that must stop has written nothing.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

Message = dict[str, Any]


class Interval:
    """Records between two barriers: how many await a verdict, and finished ones held back (each
    with the size of its input line)."""

    __slots__ = ("barrier", "held", "pending")

    def __init__(self) -> None:
        self.pending = 0
        self.held: list[tuple[Message, int]] = []
        self.barrier: Message | None = None


class ReorderBuffer:
    """Thread-safe: the reader adds, the engine thread completes; `emit` runs under the lock.

    `size` arguments are the byte sizes of the records' input lines (0: not counted).
    """

    def __init__(
        self, emit: Callable[[Message], None], window: int, max_bytes: int = sys.maxsize
    ) -> None:
        self._emit = emit
        self.window = max(1, window)
        self.max_bytes = max(1, max_bytes)
        self._cond = threading.Condition(threading.Lock())
        self._intervals: deque[Interval] = deque([Interval()])
        self._closed = False
        self._open = True
        #: Records pending a verdict or held behind a barrier (read without the lock as a hint).
        self.size = 0
        #: The sizes of their input lines (read without the lock as a hint).
        self.held_bytes = 0

    @property
    def full(self) -> bool:
        """The reader should wait (see `wait_for_room`)."""
        return self.size >= self.window or self.held_bytes >= self.max_bytes

    # -- reader side -------------------------------------------------------------------------------

    def ready(self, message: Message, size: int = 0) -> None:
        """A record whose output is known now."""
        with self._cond:
            if len(self._intervals) == 1 and self._open:
                self._emit(message)
            else:
                self._intervals[-1].held.append((message, size))
                self.size += 1
                self.held_bytes += size

    def reserve(self, size: int = 0) -> Interval:
        """A record whose verdict will come later; pass the ticket (and `size`) to `complete`."""
        with self._cond:
            tail = self._intervals[-1]
            tail.pending += 1
            self.size += 1
            self.held_bytes += size
            return tail

    def barrier(self, message: Message) -> None:
        """A message that no record may cross (STATE, SCHEMA, ACTIVATE_VERSION)."""
        with self._cond:
            head = self._intervals[0]
            if len(self._intervals) == 1 and head.pending == 0 and not head.held and self._open:
                self._emit(message)
                return
            self._intervals[-1].barrier = message
            self._intervals.append(Interval())

    def wait_for_room(self, stop: Callable[[], bool] = lambda: False) -> None:
        """Backpressure: block the reader while the window (records or bytes) is full."""
        with self._cond:
            while self.full and not stop():
                self._cond.wait(0.5)

    def drain(self, stop: Callable[[], bool] = lambda: False, timeout: float | None = None) -> bool:
        """Wait until everything read has been written (end of input). False on stop or timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self.size or len(self._intervals) > 1:
                if stop() or (deadline is not None and time.monotonic() >= deadline):
                    return False
                self._cond.wait(0.5)
        return True

    # -- engine side -------------------------------------------------------------------------------

    def complete(self, ticket: Interval, message: Message, size: int = 0) -> None:
        with self._cond:
            if self._closed:
                return
            ticket.pending -= 1
            if ticket is self._intervals[0] and self._open:
                self._emit(message)
                self.size -= 1
                self.held_bytes -= size
                self._advance()
            else:
                ticket.held.append((message, size))
            self._cond.notify_all()

    # -- the gate ----------------------------------------------------------------------------------

    def hold(self) -> None:
        """Close the gate: nothing is written until `release`."""
        with self._cond:
            self._open = False

    def release(self, *, stay_open: bool = True) -> None:
        """Write everything the gate held back that order allows; keep the gate open, or close
        it again behind what was written (`stay_open=False`)."""
        with self._cond:
            if self._closed:
                return
            self._open = True
            self._emit_held(self._intervals[0])
            self._advance()
            self._open = stay_open
            self._cond.notify_all()

    @property
    def holding(self) -> bool:
        return not self._open

    def close(self) -> tuple[int, int]:
        """Stop for good (SIGTERM): later completions are dropped, held barriers never written.

        Returns (records not written, barriers not written).
        """
        with self._cond:
            self._closed = True
            barriers = sum(1 for interval in self._intervals if interval.barrier is not None)
            unwritten = self.size
            self._cond.notify_all()
            return unwritten, barriers

    def _advance(self) -> None:
        intervals = self._intervals
        while self._open and len(intervals) > 1 and intervals[0].pending == 0:
            done = intervals.popleft()
            assert done.barrier is not None
            self._emit(done.barrier)
            self._emit_held(intervals[0])

    def _emit_held(self, interval: Interval) -> None:
        for message, size in interval.held:
            self._emit(message)
            self.held_bytes -= size
        self.size -= len(interval.held)
        interval.held.clear()

"""The reorder buffer: verdicts finish out of order, but STATE never gets ahead of the records
before it.

Input is cut into intervals by hard barriers (SCHEMA and ACTIVATE_VERSION, which must keep their
place relative to records). Inside the interval at the head, a record is written the moment its
verdict is known, so one slow mail server does not hold back the others. Records of later intervals
wait until every earlier interval is written, then its barrier, then they follow.

STATE is a soft barrier: it is written only after every record read before it, but records read
after it may be written first. A resumed run therefore never skips an unverified record (a record
that overtook a STATE is at worst verified and written again, which the target's upsert makes
harmless), and a record that waits minutes for a greylisting server (`park`) holds back only the
STATE behind it, not the stream.

Records waiting for a verdict or held behind a barrier count against `window`, and the size of their
input lines against `max_bytes`; the reader blocks when either is full, so memory stays bounded
whatever the input size and however large its records. A parked record leaves the window (it holds
no engine slot while it waits) but keeps its bytes counted.

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


class _Epoch:
    """Records read between two STATE messages of one interval, and the STATE that closes them."""

    __slots__ = ("pending", "state")

    def __init__(self) -> None:
        self.pending = 0
        self.state: Message | None = None


class Interval:
    """Records between two hard barriers: how many await a verdict (by epoch, so each STATE knows
    when the records before it are done), finished ones held back (each with the size of its input
    line), and the hard barrier that ends the interval."""

    __slots__ = ("barrier", "epochs", "held")

    def __init__(self) -> None:
        self.epochs: deque[_Epoch] = deque([_Epoch()])
        self.held: list[tuple[Message, int]] = []
        self.barrier: Message | None = None

    @property
    def pending(self) -> int:
        return sum(epoch.pending for epoch in self.epochs)

    @property
    def states(self) -> int:
        return sum(1 for epoch in self.epochs if epoch.state is not None)


class Ticket:
    """One record waiting for its verdict."""

    __slots__ = ("epoch", "interval", "parked")

    def __init__(self, interval: Interval, epoch: _Epoch) -> None:
        self.interval = interval
        self.epoch = epoch
        self.parked = False


def _is_state(message: Message) -> bool:
    return message.get("type") == "STATE"


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
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._intervals: deque[Interval] = deque([Interval()])
        self._closed = False
        self._open = True
        #: Records pending a verdict (not parked) or held behind a barrier (read without the lock
        #: as a hint).
        self.size = 0
        #: Records parked: waiting for a verdict outside the window (a greylisting retry).
        self.parked = 0
        #: The sizes of the input lines of every record not written yet (read without the lock).
        self.held_bytes = 0

    @property
    def full(self) -> bool:
        """The reader should wait (see `wait_for_room`)."""
        return self.size >= self.window or self.held_bytes >= self.max_bytes

    # -- reader side -------------------------------------------------------------------------------

    def ready(self, message: Message, size: int = 0) -> None:
        """A record whose output is known now."""
        with self._lock:  # the condition's lock, without its Python-level `__enter__`
            if len(self._intervals) == 1 and self._open:
                self._emit(message)
            else:
                self._intervals[-1].held.append((message, size))
                self.size += 1
                self.held_bytes += size

    def reserve(self, size: int = 0) -> Ticket:
        """A record whose verdict will come later; pass the ticket (and `size`) to `complete`."""
        with self._cond:
            tail = self._intervals[-1]
            epoch = tail.epochs[-1]
            epoch.pending += 1
            self.size += 1
            self.held_bytes += size
            return Ticket(tail, epoch)

    def park(self, ticket: Ticket) -> None:
        """The record's verdict will take long (a greylisting retry): it leaves the window, so the
        reader goes on; its bytes stay counted."""
        with self._cond:
            if ticket.parked or self._closed:
                return
            ticket.parked = True
            self.size -= 1
            self.parked += 1
            self._cond.notify_all()

    def barrier(self, message: Message) -> None:
        """A message no record read before it may follow: STATE (soft: later records may pass it),
        SCHEMA and ACTIVATE_VERSION (hard: nothing passes them)."""
        with self._cond:
            tail = self._intervals[-1]
            if (
                len(self._intervals) == 1
                and tail.pending == 0
                and not tail.held
                and tail.states == 0
                and self._open
            ):
                self._emit(message)
                return
            if _is_state(message):
                tail.epochs[-1].state = message
                tail.epochs.append(_Epoch())
                self._flush_states(tail)
                return
            tail.barrier = message
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
            while self.size or self.parked or len(self._intervals) > 1 or self._intervals[0].states:
                if stop() or (deadline is not None and time.monotonic() >= deadline):
                    return False
                self._cond.wait(0.5)
        return True

    # -- engine side -------------------------------------------------------------------------------

    def complete(self, ticket: Ticket, message: Message, size: int = 0) -> None:
        with self._cond:
            if self._closed:
                return
            if ticket.parked:
                ticket.parked = False
                self.parked -= 1
                self.size += 1
            ticket.epoch.pending -= 1
            interval = ticket.interval
            if interval is self._intervals[0] and self._open:
                self._emit(message)
                self.size -= 1
                self.held_bytes -= size
                self._flush_states(interval)
                self._advance()
            else:
                interval.held.append((message, size))
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
            barriers = sum(
                (interval.barrier is not None) + interval.states for interval in self._intervals
            )
            unwritten = self.size + self.parked
            self._cond.notify_all()
            return unwritten, barriers

    def _flush_states(self, interval: Interval) -> None:
        """Write the STATE messages of the head interval whose earlier records are all written."""
        if interval is not self._intervals[0] or not self._open or interval.held:
            return
        epochs = interval.epochs
        while len(epochs) > 1 and epochs[0].pending == 0:
            state = epochs.popleft().state
            assert state is not None
            self._emit(state)

    def _advance(self) -> None:
        intervals = self._intervals
        while self._open and len(intervals) > 1 and intervals[0].pending == 0:
            self._flush_states(intervals[0])  # every record of it is written: all its STATEs
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
        self._flush_states(interval)

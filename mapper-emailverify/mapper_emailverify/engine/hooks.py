"""Hooks an embedder sets around a verification (kept apart from `verifier` so that setting them
does not load the engine: a run answered from the cache never imports dnspython)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar

#: Called (with no argument) when the verification in this context starts waiting for a
#: greylisting server: the mapper then lets the record leave its window (`ordering.park`).
ON_GREYLIST_WAIT: ContextVar[Callable[[], None] | None] = ContextVar(
    "on_greylist_wait", default=None
)

#: Called (with no argument) when the verification in this context no longer needs its
#: `concurrency` slot: it waits in a mail host's queue (our politeness), which holds nothing but a
#: future, so the slot goes to the next address (set by `Verifier`; idempotent).
LEAVE_SLOT: ContextVar[Callable[[], None] | None] = ContextVar("leave_slot", default=None)

#: The running verification's `verification_deadline` (set by `Verifier`): time spent waiting for
#: our own politeness (a mail host's recipient rate) is not the server's, so it is not counted.
DEADLINE: ContextVar[asyncio.Timeout | None] = ContextVar("verification_deadline", default=None)


def leave_slot() -> None:
    """Give the running verification's `concurrency` slot to the next address (see LEAVE_SLOT)."""
    leave = LEAVE_SLOT.get()
    if leave is not None:
        leave()


def stop_deadline() -> Callable[[], None] | None:
    """Stop the running verification's deadline clock; returns what restarts it with the time
    that was left (None when no deadline runs)."""
    timeout = DEADLINE.get()
    when = timeout.when() if timeout is not None else None
    if timeout is None or when is None:
        return None
    loop = asyncio.get_running_loop()
    left = when - loop.time()
    timeout.reschedule(None)

    def restart() -> None:
        timeout.reschedule(loop.time() + max(left, 0.0))

    return restart


@contextlib.asynccontextmanager
async def deadline_paused() -> AsyncIterator[None]:
    """Stop the verification's deadline clock for the duration of the block."""
    restart = stop_deadline()
    try:
        yield
    finally:
        if restart is not None:
            restart()

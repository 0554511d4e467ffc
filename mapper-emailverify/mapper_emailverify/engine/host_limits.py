"""Per-mail-host caps shared with the other workers that probe from the same egress IP.

A mail server judges politeness by the client's IP: three workers behind one IP, each holding its
own `max_connections_per_mx`, look to the server like one client with three times the
connections and three times the recipients per minute. An embedder that runs several workers
gives the prober a `SharedHostLimits` (the mapper's lives in the PostgreSQL database of its shared
cache, `stream_map/host_limits_pg.py`): the prober then holds a shared slot besides its own for
every session and books every recipient on the shared rate besides its own.

Sharing is politeness, never a verdict: a store that fails stops sharing (each worker keeps its
own caps, as before) and never fails or delays a probe for long. A host that asks one worker to
slow down pauses them all; each still halves its own rate.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol


class SharedHostLimits(Protocol):
    """Connection slots and a recipient rate per mail host (by IP), shared by workers.

    Called from the prober's event loop; `reset_loop` when the prober moves to another loop.
    """

    def slot(self, ip: str, cap: int) -> AbstractAsyncContextManager[None]:
        """Held for one session: waits until fewer than `cap` sessions of any worker sharing it
        talk to `ip` (enters at once when the store failed)."""
        ...

    async def book(self, ip: str, interval: float, burst: float) -> tuple[float, float]:
        """Book one recipient to `ip` on the shared rate (one every `interval` seconds, `burst`
        seconds of credit): the seconds to wait before it may go, and the seconds left of a pause
        a worker was asked for by `ip` (0, 0 when the store failed)."""
        ...

    async def pause(self, ip: str, seconds: float) -> None:
        """`ip` asked to slow down: no worker books it for `seconds`."""
        ...

    def reset_loop(self) -> None: ...

    async def aclose(self) -> None:
        """Give back the slots this worker holds (the prober closes it: it lives on its loop)."""
        ...

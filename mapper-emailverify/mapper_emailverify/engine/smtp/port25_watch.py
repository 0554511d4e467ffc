"""Is outbound port 25 blocked from this host? Decided on evidence no handful of sign-ups can fake.

A blocked port looks like this: every connect times out or comes back "unreachable", whichever
mail host it is for. A few sign-ups can produce the same picture for their own domains (MX records
pointing at blackholed or unroutable addresses), and if that flipped a run-wide switch, three
records could turn verification off for everyone. So:

- only dials to addresses the policy allows count (multicast, broadcast and the like are never
  dialled at all, see `address_policy`);
- the failures must span `needed` distinct networks (/24, /48) of `needed` distinct domains, with
  no connection having succeeded in this run (a refused connection counts as success: a RST proves
  the path works);
- then the watch checks actively: it dials port 25 of up to `needed` hosts of *other* domains in
  the run (the ones with the most recipients waiting first, so an attacker would need more
  sign-ups than the run's common providers have), and only if none of them answers either is the
  port declared blocked. A run with no other domain to try decides on the failures alone.

Declared blocked, every remaining address gets `Unknown/smtp_unavailable`, which the mapper's
infrastructure watch turns into a stop before anything is written.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from mapper_emailverify.engine.address_policy import network_of

log = logging.getLogger(__name__)

#: Dial one address (TCP only): True when the path works (connected or refused), else False.
Dial = Callable[[str], Awaitable[bool]]
#: Addresses of other domains worth dialling, excluding the given networks, best first.
Candidates = Callable[[set[str], set[str]], Iterable[str]]


class Port25Watch:
    """Notices once, on independent evidence and an active check, that port 25 is blocked."""

    def __init__(
        self,
        needed: int,
        dial: Dial | None = None,
        candidates: Candidates | None = None,
    ) -> None:
        self.needed = max(1, needed)
        self.alive = False
        self.unavailable = False
        self._dial = dial
        self._candidates = candidates
        self._networks: set[str] = set()
        self._domains: set[str] = set()
        self._checking = False
        self._decided: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def _event(self) -> asyncio.Event:
        if self._decided is None:
            self._decided = asyncio.Event()
        return self._decided

    @property
    def evidence(self) -> int:
        """Independent failures so far: distinct networks, each of a distinct domain."""
        return min(len(self._networks), len(self._domains))

    def reached(self) -> None:
        if not self.alive and not self.unavailable:
            self.alive = True
            self._event().set()

    def unreachable(self, ip: str, domain: str) -> None:
        if self.alive or self.unavailable:
            return
        if len(self._networks) < 10 * self.needed:  # enough to decide; the sets stay small
            self._networks.add(network_of(ip))
            self._domains.add(domain)
        if self.evidence >= self.needed and not self._checking:
            self._checking = True
            task = asyncio.get_running_loop().create_task(self._check())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _check(self) -> None:
        """Dial hosts of other domains before believing the failures."""
        try:
            others: list[str] = []
            if self._dial is not None and self._candidates is not None:
                for ip in self._candidates(set(self._networks), set(self._domains)):
                    others.append(ip)
                    if len(others) >= self.needed:
                        break
            if others and self._dial is not None:
                answers = await asyncio.gather(
                    *(self._dial(ip) for ip in others), return_exceptions=True
                )
                if any(answer is True for answer in answers):
                    self.reached()
                    return
            if self.alive:
                return
            self.unavailable = True
            self._event().set()
            log.warning(
                "Outbound SMTP (TCP port 25) looks blocked from this host: mail servers in %d "
                "networks could not be reached, nor %d others dialled to check. Remaining "
                "addresses get Unknown/smtp_unavailable. Set `socks_proxy` to a SOCKS5 proxy with "
                "port 25 open, or use `backend: emailverify`.",
                self.evidence,
                len(others),
            )
        finally:
            self._checking = False

    async def settle(self, grace: float) -> bool:
        """Wait briefly for the verdict; True when SMTP is unavailable."""
        if not (self.alive or self.unavailable):
            try:
                async with asyncio.timeout(grace):
                    await self._event().wait()
            except TimeoutError:
                pass
        return self.unavailable

    def reset_loop(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        self._checking = False
        self._decided = None

"""Whether mail servers refuse the probe itself: our sender domain, our IP, our rate.

One mail host refusing us is that host's policy: its recipients get `Unknown/smtp_blocked`. Several
independent mail hosts refusing us, and no more of them answering about mailboxes, means the probe's
own setup is wrong (a `mail_from` domain that does not resolve, an IP on a block list, a missing
reverse DNS); every verdict of the run would then be about us, so the run stops with one line that
says what to fix instead of writing them. A refusal about us is therefore held (`settle`) until the
watch has decided, so no such verdict leaves the engine before the decision.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import re
import time

from mapper_emailverify.engine.errors import UserError
from mapper_emailverify.engine.smtp.replies import Outcome, Reading, Reply

#: Outcomes that show a server judged the recipient: our side of the conversation was accepted.
MAILBOX_LEVEL = frozenset(
    {
        Outcome.ACCEPTED,
        Outcome.NOT_FOUND,
        Outcome.DISABLED,
        Outcome.FULL,
        Outcome.FULL_TEMPORARY,
        Outcome.BAD_ADDRESS,
    }
)
_ADDRESS = re.compile(r"<?[^\s<>@]+@[^\s<>]+>?")


class ProbeSetupError(UserError):
    """Mail servers refuse the probe itself: no verdict of the run could be right."""


def provider_of(host: str) -> str:
    """Hosts of one operator count once: the last two labels of the name (or the IP itself)."""
    name = host.strip(".").lower()
    try:
        ipaddress.ip_address(name)
        return name
    except ValueError:
        return ".".join(name.split(".")[-2:])


class SetupWatch:
    """Counts, per independent mail provider, refusals of us and answers about mailboxes."""

    def __init__(self, needed: int, grace: float, sender: str, helo: str) -> None:
        self.needed = max(1, needed)
        self.grace = grace
        self.sender = sender
        self.helo = helo
        self._answered: set[str] = set()
        self._refusing: dict[str, tuple[Reading, Reply, str]] = {}
        self._grace_passed = False
        self.failure: ProbeSetupError | None = None
        self._changed: asyncio.Event | None = None

    @property
    def confirmed(self) -> bool:
        """Our probe works somewhere, or refusals of it stayed with too few hosts to matter."""
        return self.failure is None and (bool(self._answered) or self._grace_passed)

    def answered(self, host: str) -> None:
        self._answered.add(provider_of(host))
        self._notify()

    def refused(self, host: str, reading: Reading, reply: Reply) -> None:
        self._refusing.setdefault(provider_of(host), (reading, reply, host))
        refusing = len(self._refusing)
        if self.failure is None and refusing >= self.needed and refusing >= len(self._answered):
            self.failure = ProbeSetupError(self._message())
        self._notify()

    async def settle(self) -> None:
        """Wait until a refusal of us is judged: raise when the setup is at fault, return when
        the refusal is that host's own (our probe works elsewhere, or `grace` passed)."""
        deadline = time.monotonic() + self.grace
        while True:
            if self.failure is not None:
                raise self.failure
            if len(self._answered) > len(self._refusing):
                return  # more providers answer about mailboxes than refuse us: this host's policy
            left = deadline - time.monotonic()
            if left <= 0:
                self._grace_passed = True
                return
            event = self._event()
            event.clear()
            try:
                async with asyncio.timeout(left):
                    await event.wait()
            except TimeoutError:
                continue

    def reset_loop(self) -> None:
        self._changed = None

    def _event(self) -> asyncio.Event:
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()

    def _message(self) -> str:
        kinds = collections.Counter(reading.outcome for reading, _, _ in self._refusing.values())
        kind = kinds.most_common(1)[0][0]
        _, reply, host = next(r for r in self._refusing.values() if r[0].outcome is kind)
        quoted = _ADDRESS.sub("<address>", f"{reply.code} {reply.text}")[:160]
        if kind is Outcome.SENDER:
            advice = (
                f"they refuse the envelope sender {self.sender}: set mail_from to an address "
                "whose domain resolves (MX or A) and whose SPF allows this host"
            )
        elif kind is Outcome.RATE:
            advice = (
                "this host is rate-limited: lower concurrency and max_connections_per_mx, or "
                "probe from another IP (socks_proxy)"
            )
        else:
            advice = (
                f"they refuse this host: give its IP a reverse DNS name that matches helo_hostname "
                f"({self.helo}), check the IP against block lists, or use socks_proxy or "
                "backend: emailverify"
            )
        return (
            f"Mail servers of {len(self._refusing)} independent providers refuse the probe itself, "
            f"not the recipients (e.g. {host}: '{quoted}'); {advice}. The run stops before "
            "writing verdicts that would only describe this."
        )

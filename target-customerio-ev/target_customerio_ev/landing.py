"""The landing check: after the last write, read a sample of the People written back through the App
API and see the new values there, so writes that are accepted and never land fail the run.

Customer.io answers 200 to writes that it then drops or applies elsewhere (an email-only identify
Pipelines does not map, a source wired to another workspace): the API's answer alone proves nothing.

- Sampling (`LandingSample`): one reservoir per identifier kind (id, email only, cio_id), filled
  with the writes the API accepted as they are acknowledged; memory is bounded by the sample size,
  whatever the run's length. At the end the sample is split evenly across the kinds present, each
  kind at least `MIN_PER_KIND`, so a whole class that never lands cannot hide behind the others.
- Reading (`LandingChecker`): `GET /v1/customers/{identifier}/attributes?id_type=...`, Bearer auth
  with the App API key, at most `REQUESTS_PER_SECOND` (the App API allows 10), 429 `Retry-After`
  honoured. Writes become visible with a delay, so the sample is read in rounds with a growing wait
  until every Person shows its values or `landing_check_timeout` passes. Each read is bounded
  (`bounded.py`): `request_timeout` in all, and at most `ANSWER_CAP` bytes of answer (a Person has
  at most 300 attributes of 1000 bytes: about 350 KB).
- The verdict (`LandingReport`): counts by kind, never an identifier; its `phrase()` goes into the
  run's summary line and `error()` is the one line a failed check ends the run with.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import msgspec

from . import __version__, bounded
from .errors import CertificateError, ConfigError, DeliveryError
from .identify import Write, comparable, kind_name
from .retry import is_certificate_failure, parse_retry_after
from .settings import Settings
from .stats import RunStats

KINDS = ("id", "email", "cio_id")
MIN_PER_KIND = 3  # each kind present is read at least this often (or as often as it was written)
REQUESTS_PER_SECOND = 4.0  # well under the App API's 10 per second
FIRST_WAIT = 1.0  # seconds between the first two rounds; doubles each round
MAX_WAIT = 30.0
CIO_PREFIX = "cio_"
ANSWER_CAP = (
    1024 * 1024
)  # bytes of one App API answer read (a Person's attributes: ~350 KB at most)


class LandingError(DeliveryError):
    """Sampled writes never showed through the App API: the run fails and STATE does not move."""


@dataclass
class Sampled:
    """One Person of the sample: how it was written, and the trait values it must show."""

    kind: str
    value: str
    traits: dict[str, Any]
    update_only: bool = False  # written with _update: a Person that does not exist stays absent


class LandingSample:
    """Reservoir samples (algorithm R) of the accepted writes, one per identifier kind.

    Thread-safe: senders add from their worker threads. A Person written again while sampled has
    its expected values updated (the later write wins, as it does in Customer.io).
    """

    def __init__(self, capacity: int, rng: random.Random | None = None) -> None:
        self.capacity = max(0, capacity)
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._reservoirs: dict[str, list[Sampled]] = {}
        self._where: dict[str, dict[str, int]] = {}  # kind -> identifier value -> slot
        self.written: Counter[str] = Counter()

    def add(self, writes: Iterable[Write], *, update_only: bool = False) -> None:
        if self.capacity == 0:
            return
        with self._lock:
            for write in writes:
                kind, value = write.identifier.kind, write.identifier.value
                self.written[kind] += 1
                reservoir = self._reservoirs.setdefault(kind, [])
                where = self._where.setdefault(kind, {})
                slot = where.get(value)
                if slot is not None:
                    reservoir[slot].traits.update(write.traits)
                    continue
                entry = Sampled(kind, value, dict(write.traits), update_only)
                if len(reservoir) < self.capacity:
                    where[value] = len(reservoir)
                    reservoir.append(entry)
                    continue
                slot = self._rng.randrange(self.written[kind])
                if slot < self.capacity:
                    del where[reservoir[slot].value]
                    where[value] = slot
                    reservoir[slot] = entry

    def draw(self, total: int) -> list[Sampled]:
        """Up to `total` sampled People split evenly across the kinds present (each at least
        `MIN_PER_KIND`, or all it has)."""
        with self._lock:
            pools = {kind: list(pool) for kind, pool in self._reservoirs.items() if pool}
        quotas = split_evenly({kind: len(pool) for kind, pool in pools.items()}, total)
        drawn: list[Sampled] = []
        for kind in sorted(pools, key=_kind_order):
            drawn += self._rng.sample(pools[kind], quotas[kind])
        return drawn


def split_evenly(available: Mapping[str, int], total: int) -> dict[str, int]:
    """How many of each kind to read: `total` shared evenly, at least `MIN_PER_KIND` each (never
    more than a kind has); what a small kind cannot use goes to the others."""
    quotas = {kind: min(n, MIN_PER_KIND) for kind, n in available.items() if n > 0}
    left = total - sum(quotas.values())
    while left > 0:
        growing = sorted(
            (kind for kind, q in quotas.items() if q < available[kind]),
            key=lambda kind: (quotas[kind], _kind_order(kind)),
        )
        if not growing:
            break
        for kind in growing:
            if left == 0:
                break
            quotas[kind] += 1
            left -= 1
    return quotas


def _kind_order(kind: str) -> int:
    return KINDS.index(kind) if kind in KINDS else len(KINDS)


def shows(attributes: Mapping[str, Any], expected: Mapping[str, Any]) -> bool:
    """Whether stored attributes (strings, as the App API returns them) hold the written values.

    Objects and lists are not compared: how Customer.io stores them as text is not documented.
    """
    for name, value in expected.items():
        if isinstance(value, Mapping | list | tuple):
            continue
        if comparable(attributes.get(name)) != comparable(value):
            return False
    return True


# ------------------------------------------------------------------------------------ verdict
@dataclass
class LandingReport:
    """What the check found, by identifier kind: counts only, never an identifier."""

    checked: bool
    reason: str = ""  # why it was not checked
    timeout: float = 0.0
    sampled: Counter[str] = field(default_factory=Counter)
    shown: Counter[str] = field(default_factory=Counter)
    missing: Counter[str] = field(default_factory=Counter)  # read, without the new values
    absent: Counter[str] = field(default_factory=Counter)  # update-only write, no such Person
    unread: Counter[str] = field(default_factory=Counter)  # never read (App API errors)
    problem: str = ""  # the last App API problem, for unread People

    @classmethod
    def not_checked(cls, reason: str) -> LandingReport:
        return cls(checked=False, reason=reason)

    @property
    def expected(self) -> int:
        """Sampled People that should show the values (those an update-only write left absent
        are not among them)."""
        return sum(self.sampled.values()) - sum(self.absent.values())

    @property
    def passed(self) -> bool:
        if not self.checked:
            return True
        everyone_absent = sum(self.sampled.values()) > 0 and self.expected == 0
        return not (self.missing or self.unread or everyone_absent)

    def phrase(self) -> str:
        """The landing part of the summary line."""
        if not self.checked:
            return f"landing: not checked ({self.reason})"
        shown = sum(self.shown.values())
        text = f"landing: {shown} of {self.expected} sampled People show the new values"
        notes = []
        if self.missing:
            notes.append("missing " + _by_kind(self.missing))
        if self.unread:
            notes.append("not readable " + _by_kind(self.unread))
        if self.absent:
            notes.append(f"{sum(self.absent.values())} not in the workspace (update-only)")
        return text + (f" ({'; '.join(notes)})" if notes else "")

    def error(self, settings: Settings) -> LandingError | None:
        """The one line a failed check stops the run with, or None when it passed."""
        if self.passed:
            return None
        after = "STATE was not advanced; rerun once fixed (writes are idempotent)."
        if self.missing:
            missing = sum(self.missing.values())
            parts = ", ".join(
                f"{kind_name(k)} {self.missing[k]} of {self.sampled[k] - self.absent[k]}"
                for k in sorted(self.missing, key=_kind_order)
            )
            kinds = sorted(self.missing, key=_kind_order)
            hints = " ".join(_hint(kind, settings) for kind in kinds)
            return LandingError(
                f"Landing check: {missing} of {self.expected} sampled People did not show the new "
                f"values within {self.timeout:g} s ({parts}). {hints} {after}"
            )
        if self.unread:
            return LandingError(
                f"Landing check: {sum(self.unread.values())} sampled People could not be read "
                f"through the App API within {self.timeout:g} s ({self.problem}), so landing is "
                f"unverified: check app_api_url and region '{settings.region}', or rerun. {after}"
            )
        return LandingError(
            f"Landing check: none of the {sum(self.sampled.values())} sampled People exists in the "
            "workspace that app_api_key reads (update-only writes left them alone): the App API "
            "key and the write credentials must belong to the same workspace and region. " + after
        )


def _by_kind(counts: Counter[str]) -> str:
    return ", ".join(f"{counts[k]} {kind_name(k)}" for k in sorted(counts, key=_kind_order))


def _hint(kind: str, settings: Settings) -> str:
    """Which setting to look at when People written this way did not land."""
    if kind == "email":
        if settings.api == "track":
            return (
                "Email-only People: email must be an identifier of the workspace (Track "
                "identifiers.email)."
            )
        return (
            f"Email-only People: check email_only_identify (now {settings.email_only_identify}; "
            "Pipelines may accept an empty userId without landing it: try email_as_user_id or "
            "track)."
        )
    if kind == "cio_id":
        return (
            "People by cio_id: Pipelines may not read a cio_ userId as a cio_id: check identify_by "
            "(auto or id)."
        )
    if settings.api == "track":
        return (
            "People by id: track_site_id and app_api_key must belong to the same workspace and "
            "region."
        )
    return (
        "People by id: check the Pipelines source of pipelines_api_key (its Customer.io "
        "destination, workspace) and region."
    )


# ------------------------------------------------------------------------------------ reading
_EMAIL_IN_URL = re.compile(r"[^\s/?&=\"']+(?:@|%40)[^\s/?&\"']+", re.IGNORECASE)


class QuietReads(logging.Filter):
    """httpx logs every request's URL at INFO. The landing check's name People (an id, an email
    address): drop those lines (the check logs counts instead), and mask any address left."""

    def __init__(self, origin: str) -> None:
        super().__init__()
        self.marker = f"GET {origin}/v1/customers"

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.marker in message:
            return False
        redacted = _EMAIL_IN_URL.sub("<email>", message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


class LandingChecker:
    """Reads sampled People back through the App API until they show their values, or time runs
    out. `clock` and `sleep` are injectable for tests."""

    def __init__(
        self,
        settings: Settings,
        stats: RunStats,
        logger: logging.Logger,
        *,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.stats = stats
        self.logger = logger
        self._transport = transport
        self._clock = clock
        self._sleep = sleep
        self._next_request = 0.0
        self._deadline = 0.0
        self._cio_form: str | None = None  # "raw" or "prefixed", once one of them found a Person
        self._email_by_search = False  # id_type=email refused (email is not an identifier)
        self.problem = ""

    def run(self, entries: list[Sampled]) -> LandingReport:
        # The timeout bounds the wait for late writes; every sampled Person is read at least once
        # (up to two requests each, at REQUESTS_PER_SECOND), however short it is.
        timeout = max(self.settings.landing_check_timeout, 2 * len(entries) / REQUESTS_PER_SECOND)
        report = LandingReport(checked=True, timeout=timeout)
        report.sampled.update(entry.kind for entry in entries)
        if not entries:
            return report
        quiet = QuietReads(self.settings.app_base_url)
        logging.getLogger("httpx").addFilter(quiet)
        try:
            return self._run(entries, report)
        finally:
            logging.getLogger("httpx").removeFilter(quiet)

    def _run(self, entries: list[Sampled], report: LandingReport) -> LandingReport:
        timeout = report.timeout
        self.logger.info(
            "Landing check: reading back %d sampled People (%s) through the App API, for up to "
            "%g s.",
            len(entries),
            _by_kind(report.sampled),
            timeout,
        )
        self._deadline = self._clock() + timeout
        read_once: set[int] = set()
        pending = list(entries)
        wait = FIRST_WAIT
        with httpx.Client(
            base_url=self.settings.app_base_url,
            headers={
                "Authorization": f"Bearer {self.settings.app_api_key}",
                "Accept": "application/json",
                "User-Agent": f"target-customerio-ev/{__version__}",
                **bounded.IDENTITY,
            },
            timeout=self.settings.request_timeout,
            transport=self._transport or bounded.transport(),
        ) as client:
            while pending and self._clock() < self._deadline:
                still: list[Sampled] = []
                for position, entry in enumerate(pending):
                    if self._clock() >= self._deadline:
                        still += pending[position:]
                        break
                    outcome = self._look(client, entry)
                    if outcome != "unread":
                        read_once.add(id(entry))
                    if outcome == "shown":
                        report.shown[entry.kind] += 1
                    elif outcome == "absent":
                        report.absent[entry.kind] += 1
                    else:
                        still.append(entry)
                pending = still
                remaining = self._deadline - self._clock()
                if not pending or remaining <= 0:
                    break
                pause = min(wait, remaining)
                self.logger.info(
                    "Landing check: %d of %d sampled People do not show the new values yet; "
                    "looking again in %.0f s.",
                    len(pending),
                    len(entries),
                    pause,
                )
                self._sleep(pause)
                wait = min(wait * 2, MAX_WAIT)
        for entry in pending:
            (report.missing if id(entry) in read_once else report.unread)[entry.kind] += 1
        report.problem = self.problem or "no answer"
        return report

    # One look at one Person: "shown", "pending" (read, values not there yet), "absent" (an
    # update-only write and no such Person) or "unread" (the App API did not answer usefully).
    def _look(self, client: httpx.Client, entry: Sampled) -> str:
        if entry.kind == "cio_id":
            customer = self._by_cio_id(client, entry.value)
        elif entry.kind == "email" and self._email_by_search:
            customer = self._by_email_search(client, entry.value)
        else:
            id_type = "email" if entry.kind == "email" else "id"
            customer = self._get(client, _attributes_path(entry.value), {"id_type": id_type})
            if customer == 400 and entry.kind == "email":
                self._email_by_search = True  # email is not an identifier in this workspace
                customer = self._by_email_search(client, entry.value)
        if isinstance(customer, dict):
            attributes = customer.get("attributes")
            if isinstance(attributes, Mapping) and shows(attributes, entry.traits):
                return "shown"
            return "pending"
        if customer == 404:
            return "absent" if entry.update_only else "pending"
        return "unread"

    def _by_cio_id(self, client: httpx.Client, cio_id: str) -> dict[str, Any] | int | None:
        """Customer.io's docs disagree on whether a cio_id is asked for as `3000001` or
        `cio_3000001`: try both until one finds a Person, then keep that form."""
        forms = [self._cio_form] if self._cio_form else ["raw", "prefixed"]
        answer: dict[str, Any] | int | None = None
        for form in forms:
            value = CIO_PREFIX + cio_id if form == "prefixed" else cio_id
            answer = self._get(client, _attributes_path(value), {"id_type": "cio_id"})
            if isinstance(answer, dict):
                self._cio_form = form
                return answer
            if answer != 404:
                return answer
        return answer

    def _by_email_search(self, client: httpx.Client, email: str) -> dict[str, Any] | int | None:
        """`GET /v1/customers?email=`, then the Person by cio_id: for workspaces where email is
        not an identifier (id_type=email is a 400 there)."""
        found = self._get(client, "/v1/customers", {"email": email}, key="results")
        if not isinstance(found, list):
            return found if isinstance(found, int) else None
        cio_ids = [str(r["cio_id"]) for r in found if isinstance(r, dict) and r.get("cio_id")]
        if not cio_ids:
            return 404
        return self._by_cio_id(client, cio_ids[0])

    def _get(
        self, client: httpx.Client, path: str, params: dict[str, str], *, key: str = "customer"
    ) -> Any:
        """The answer's `key` object; else the HTTP status (404, 400) or None when the App API did
        not answer usefully. A 429 waits as told and asks again; a refused key stops the run."""
        while self._clock() < self._deadline:
            self._pace()
            self.stats.count("landing_requests")
            try:
                with (
                    bounded.deadline(self.settings.request_timeout),
                    client.stream("GET", path, params=params) as response,
                ):
                    content = bounded.read_capped(response, ANSWER_CAP)
            except httpx.HTTPError as exc:
                if is_certificate_failure(exc):
                    raise CertificateError(
                        f"the TLS certificate of {self.settings.app_base_url} could not be "
                        "verified: check app_api_url, and if a proxy inspects TLS, point "
                        "SSL_CERT_FILE at its CA certificate (verification is never turned off)."
                    ) from None
                self.problem = _problem(exc, self.settings.request_timeout)
                return None
            status = response.status_code
            if status in (401, 403):
                raise ConfigError(
                    f"Customer.io App API refused app_api_key (HTTP {status}) during the landing "
                    "check: it must be an App API key (Bearer) of the workspace written to, and "
                    f"region '{self.settings.region}' must match it (or app_api_url)."
                )
            if status == 429:
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                pause = min(
                    retry_after if retry_after is not None else FIRST_WAIT,
                    self.settings.max_backoff_seconds,
                    max(0.0, self._deadline - self._clock()),
                )
                self.stats.count("landing_rate_limited")
                self._sleep(pause)
                continue
            if status == 200:
                try:
                    body = msgspec.json.decode(content)
                except msgspec.DecodeError:
                    body = None
                found = body.get(key) if isinstance(body, dict) else None
                if found is not None:
                    return found
                self.problem = "an answer without the Person"
                return None
            if status in (400, 404):
                return status
            self.problem = f"HTTP {status}"
            return None
        return None

    def _pace(self) -> None:
        now = self._clock()
        if now < self._next_request:
            self._sleep(self._next_request - now)
            now = self._next_request
        self._next_request = now + 1 / REQUESTS_PER_SECOND


def _problem(exc: httpx.HTTPError, timeout: float) -> str:
    """A failed read in a few words, never the server's."""
    if isinstance(exc, httpx.TimeoutException):
        return f"no complete answer within {timeout:g} s"
    if isinstance(exc, bounded.AnswerTooLarge):
        return str(exc)
    return type(exc).__name__


def _attributes_path(identifier: str) -> str:
    """`/v1/customers/{identifier}/attributes`, the identifier percent-encoded (`+`, `@`, `/`)."""
    return f"/v1/customers/{quote(identifier, safe='')}/attributes"


__all__ = [
    "MIN_PER_KIND",
    "LandingChecker",
    "LandingError",
    "LandingReport",
    "LandingSample",
    "Sampled",
    "shows",
    "split_evenly",
]

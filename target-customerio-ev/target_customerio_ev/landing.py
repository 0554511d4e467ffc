"""The landing check: after the last write, read a sample of the People written back through the App
API and see the new values there, so writes that are accepted and never land fail the run.

Customer.io answers 200 to writes that it then drops or applies elsewhere (an email-only identify
Pipelines does not map, a source wired to another workspace): the API's answer alone proves nothing.

- Sampling (`LandingSample`): one reservoir per identifier kind (id, email only, cio_id), filled
  with the writes the API accepted as they are acknowledged; memory is bounded by the sample size,
  whatever the run's length. At the end the sample is split evenly across the kinds present, each
  kind at least `MIN_PER_KIND`, so a whole class that never lands cannot hide behind the others.
- Reading (`LandingChecker`): People whose record carried their `cio_id` (the tap's records do)
  are read `BATCH_SIZE` at a time, `POST /v1/customers/attributes?id_type=cio_id` with
  `{"ids": [...]}`, whatever identifier the write used: if an identify created a second Person
  instead of updating this one, this one does not show the values, which is what the check is
  for. The form of a cio_id (`3000001` or `cio_3000001`) is left open by the vendor's definitions
  and a wrong one is not an error (the answer just leaves the ids out): the record's form is tried
  first, a batch that comes back missing most of its People is asked again in the other form, and
  the form that answers is kept. Other People are read one by one,
  `GET /v1/customers/{identifier}/attributes?id_type=...`. Bearer auth with the App API key, at
  most `REQUESTS_PER_SECOND` (the App API allows 10), 429 `Retry-After` honoured. Writes become
  visible with a delay, so the sample is read in rounds with a growing wait (the first round at
  once) until every Person shows its values or `landing_check_timeout` passes; each round asks
  only the People still missing. Each read is bounded (`bounded.py`): `request_timeout` in all,
  and at most `ANSWER_CAP` bytes of answer (a Person has at most 300 attributes of 1000 bytes:
  about 350 KB), `BATCH_ANSWER_CAP` for a batch.
- The verdict (`LandingReport`): counts by kind, never an identifier; its `phrase()` goes into the
  run's summary line and `error()` is the one line a failed check ends the run with. The check's
  own App API requests are counted (`requests`, `batch_requests`) and logged in one INFO line.
"""

from __future__ import annotations

import logging
import math
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
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
BATCH_SIZE = 100  # ids per POST /v1/customers/attributes (the App API takes 1 to 100)
BATCH_ANSWER_CAP = 40 * ANSWER_CAP  # a batch answer: BATCH_SIZE People at their largest
CIO_ID_FORMS = ("raw", "prefixed")


class LandingError(DeliveryError):
    """Sampled writes never showed through the App API: the run fails and STATE does not move."""


@dataclass
class Sampled:
    """One Person of the sample: how it was written, and the trait values it must show."""

    kind: str
    value: str
    traits: dict[str, Any]
    update_only: bool = False  # written with _update: a Person that does not exist stays absent
    cio_id: str | None = None  # the Person's cio_id when the record carried it: read by it

    def __post_init__(self) -> None:
        if self.cio_id is None and self.kind == "cio_id":
            self.cio_id = self.value


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
                    reservoir[slot].cio_id = reservoir[slot].cio_id or write.cio_id
                    continue
                entry = Sampled(kind, value, dict(write.traits), update_only, write.cio_id)
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
    requests: int = 0  # App API requests the check made (429s included)
    batch_requests: int = 0  # of which POST /v1/customers/attributes
    rounds: int = 0  # reads of the People still missing

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
        self.markers = (f"GET {origin}/v1/customers", f"POST {origin}/v1/customers")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(marker in message for marker in self.markers):
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
        self._batch_refused = False  # the batch endpoint answered 400/404: read one by one
        self.problem = ""
        self.requests = 0
        self.batch_requests = 0

    def run(self, entries: list[Sampled]) -> LandingReport:
        # The timeout bounds the wait for late writes; every sampled Person is read at least once
        # (up to two requests per Person or per batch, at REQUESTS_PER_SECOND), however short it is.
        batched = sum(1 for entry in entries if entry.cio_id)
        once = len(entries) - batched + math.ceil(batched / BATCH_SIZE)
        timeout = max(self.settings.landing_check_timeout, 2 * once / REQUESTS_PER_SECOND)
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
        started = self._clock()
        self._deadline = started + timeout
        read_once: set[int] = set()
        pending = list(entries)
        wait = FIRST_WAIT
        rounds = 0
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
                rounds += 1
                still: list[Sampled] = []
                for entry, outcome in self._round(client, pending):
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
        report.requests, report.batch_requests = self.requests, self.batch_requests
        report.rounds = rounds
        self.logger.info(
            "Landing check: App API requests %d (batch %d, single %d), rounds %d, %.1f s.",
            self.requests,
            self.batch_requests,
            self.requests - self.batch_requests,
            rounds,
            self._clock() - started,
        )
        return report

    def _round(self, client: httpx.Client, pending: list[Sampled]) -> Iterator[tuple[Sampled, str]]:
        """One look at each pending Person: those with a cio_id in batches, the others one by one.
        People not asked before the deadline come out "unread"."""
        batched = [] if self._batch_refused else [entry for entry in pending if entry.cio_id]
        chosen = {id(entry) for entry in batched}
        single = [entry for entry in pending if id(entry) not in chosen]
        for start in range(0, len(batched), BATCH_SIZE):
            chunk = batched[start : start + BATCH_SIZE]
            if self._batch_refused:
                single += chunk
                continue
            if self._clock() >= self._deadline:
                yield from ((entry, "unread") for entry in chunk)
                continue
            looked = self._look_batch(client, chunk)
            if looked is None:  # the batch endpoint is refused: these People one by one
                single += chunk
                continue
            yield from looked
        for entry in single:
            if self._clock() >= self._deadline:
                yield entry, "unread"
                continue
            yield entry, self._look(client, entry)

    def _look_batch(
        self, client: httpx.Client, chunk: list[Sampled]
    ) -> list[tuple[Sampled, str]] | None:
        """One look at up to BATCH_SIZE People by cio_id (None: the endpoint refused the batch).

        The form the workspace answers, else the record's, first; when the answer leaves out most
        of the batch, the missing People are asked again in the other form."""
        first = self._cio_form or _form_of(chunk[0].cio_id or "")
        found = self._fetch(client, chunk, first)
        if isinstance(found, int):
            self._batch_refused = True
            self.logger.info(
                "Landing check: the App API refused a batch read (HTTP %d); reading People one "
                "by one.",
                found,
            )
            return None
        if found is None:
            return [(entry, "unread") for entry in chunk]
        answered = first if found else None
        missing = [entry for entry in chunk if _bare(entry.cio_id) not in found]
        if missing and len(missing) * 2 > len(chunk) and self._clock() < self._deadline:
            second = _other_form(first)
            more = self._fetch(client, missing, second)
            if isinstance(more, dict):
                if len(more) > len(found):
                    answered = second
                found.update(more)
        if answered is not None:
            self._cio_form = answered
        looked: list[tuple[Sampled, str]] = []
        for entry in chunk:
            attributes = found.get(_bare(entry.cio_id))
            if attributes is None:  # neither form knows this Person
                looked.append((entry, "absent" if entry.update_only else "pending"))
            elif shows(attributes, entry.traits):
                looked.append((entry, "shown"))
            else:
                looked.append((entry, "pending"))
        return looked

    def _fetch(
        self, client: httpx.Client, chunk: list[Sampled], form: str
    ) -> dict[str, Mapping[str, Any]] | int | None:
        """The attributes of the People of `chunk` the App API knows in `form`, by bare cio_id;
        else the HTTP status (400, 404) or None when it did not answer usefully."""
        ids = [_in_form(entry.cio_id or "", form) for entry in chunk]
        answer = self._get(
            client,
            "/v1/customers/attributes",
            {"id_type": "cio_id"},
            key="customers",
            body={"ids": ids},
        )
        if not isinstance(answer, list):
            return answer if isinstance(answer, int) else None
        found: dict[str, Mapping[str, Any]] = {}
        for item in answer:
            customer = item.get("customer", item) if isinstance(item, Mapping) else None
            if not isinstance(customer, Mapping):
                continue
            attributes = customer.get("attributes")
            identifiers = customer.get("identifiers")
            cio_id = (identifiers.get("cio_id") if isinstance(identifiers, Mapping) else None) or (
                attributes.get("cio_id") if isinstance(attributes, Mapping) else None
            )
            if cio_id and isinstance(attributes, Mapping):
                found[_bare(str(cio_id))] = attributes
        if answer and not found:
            self.problem = "an answer without the People's cio_ids"
            return None
        return found

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
        self,
        client: httpx.Client,
        path: str,
        params: dict[str, str],
        *,
        key: str = "customer",
        body: dict[str, Any] | None = None,
    ) -> Any:
        """The answer's `key` object (a POST of `body` when given, else a GET); else the HTTP
        status (404, 400) or None when the App API did not answer usefully. A 429 waits as told
        and asks again; a refused key stops the run."""
        method, cap = ("GET", ANSWER_CAP) if body is None else ("POST", BATCH_ANSWER_CAP)
        while self._clock() < self._deadline:
            self._pace()
            self.stats.count("landing_requests")
            self.requests += 1
            if body is not None:
                self.stats.count("landing_batch_requests")
                self.batch_requests += 1
            try:
                with (
                    bounded.deadline(self.settings.request_timeout),
                    client.stream(method, path, params=params, json=body) as response,
                ):
                    content = bounded.read_capped(response, cap)
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
                    decoded = msgspec.json.decode(content)
                except msgspec.DecodeError:
                    decoded = None
                found = decoded.get(key) if isinstance(decoded, dict) else None
                if found is None and body is not None and isinstance(decoded, dict):
                    found = [] if key in decoded else None  # "customers": null, nobody known
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


def _bare(cio_id: str | None) -> str:
    """A cio_id without the `cio_` prefix."""
    return (cio_id or "").removeprefix(CIO_PREFIX)


def _form_of(cio_id: str) -> str:
    """The form a record's cio_id has: "prefixed" (`cio_3000001`) or "raw" (`3000001`)."""
    return "prefixed" if cio_id.startswith(CIO_PREFIX) else "raw"


def _other_form(form: str) -> str:
    return CIO_ID_FORMS[1] if form == CIO_ID_FORMS[0] else CIO_ID_FORMS[0]


def _in_form(cio_id: str, form: str) -> str:
    """`cio_id` as the App API is asked for it: raw or `cio_`-prefixed."""
    bare = _bare(cio_id)
    return CIO_PREFIX + bare if form == "prefixed" else bare


def _attributes_path(identifier: str) -> str:
    """`/v1/customers/{identifier}/attributes`, the identifier percent-encoded (`+`, `@`, `/`)."""
    return f"/v1/customers/{quote(identifier, safe='')}/attributes"


__all__ = [
    "BATCH_SIZE",
    "MIN_PER_KIND",
    "LandingChecker",
    "LandingError",
    "LandingReport",
    "LandingSample",
    "Sampled",
    "shows",
    "split_evenly",
]

"""How one record gets its verdict, cheapest first.

No address or a non-string value (decided here); a verification the record already carries that is
younger than `reverify_after_days` (see `freshness`); the verdict cache (see `verdict_cache`);
otherwise the verification engine, running concurrently on a background event loop (see
`engine_thread`). Every record leaves through the reorder buffer (see `ordering`), in input order
between two barrier messages.

Hard-bounce history: records of the bounce stream (type `bounces` or `invalid_emails`, or any record
when the stream has no `type` field) are remembered by hashed address; they pass through untouched.
A bounce seen since a carried verification outranks it; a bounce voids the cached verdict.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from mapper_emailverify.engine.errors import UserError
from mapper_emailverify.stream_map.engine_thread import EngineThread
from mapper_emailverify.stream_map.extra_fields import ExtraFields
from mapper_emailverify.stream_map.freshness import FieldNames, carried, carried_verdict, definite
from mapper_emailverify.stream_map.health import InfrastructureWatch
from mapper_emailverify.stream_map.ordering import ReorderBuffer, Ticket
from mapper_emailverify.stream_map.plan import StreamPlan
from mapper_emailverify.stream_map.progress import Progress
from mapper_emailverify.stream_map.settings import MapperSettings
from mapper_emailverify.stream_map.verdict_cache import (
    ResultsCache,
    Verdict,
    address_key,
    is_transient,
)

#: Suppression types that are hard bounces (Customer.io as the sender: bounces and invalid emails).
HARD_BOUNCE_TYPES = frozenset({"bounces", "invalid_emails"})
_MISSING = object()


#: What `RecordVerifier.prepare` works out ahead for one message: (the message, its record, its
#: address, the address's key, the record's fresh verdict).
_Prepared = tuple[dict[str, Any], dict[str, Any], str, str, Verdict | None]

#: `_iso` by whole second: the verdicts a run writes fall on few distinct seconds (cached ones were
#: reached in bursts, new ones within the run).
_ISO_SECONDS: dict[int, str] = {}
_ISO_REMEMBERED = 4096


def _iso(seconds: float) -> str:
    """UTC ISO 8601 to the second, as `datetime.isoformat(timespec="seconds")` writes it."""
    try:
        whole = math.floor(seconds)
    except (OverflowError, ValueError):  # not finite: datetime says why
        return _iso_exactly(seconds)
    if seconds - whole >= 0.999999:  # datetime rounds to microseconds: maybe up to the next second
        return _iso_exactly(seconds)
    text = _ISO_SECONDS.get(whole)
    if text is None:
        text = _iso_exactly(whole)
        if len(_ISO_SECONDS) >= _ISO_REMEMBERED:
            _ISO_SECONDS.clear()
        _ISO_SECONDS[whole] = text
    return text


def _iso_exactly(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="seconds")


class RecordVerifier:
    """Gives each RECORD of a verified stream its three fields, then hands it to the reorder
    buffer."""

    def __init__(
        self,
        settings: MapperSettings,
        cache: ResultsCache,
        engine: EngineThread,
        out: ReorderBuffer,
        progress: Progress,
        logger: logging.Logger,
    ) -> None:
        self.names = FieldNames.for_prefix(settings.field_prefix)
        #: The `extra_fields` selected (none: records get the three fields only).
        self.extras = ExtraFields(settings.field_prefix, settings.extras)
        self.max_age = settings.max_age
        self.transient_max_age = settings.transient_max_age
        self.not_before = settings.not_before
        self.cache = cache
        self.engine = engine
        self.out = out
        self.progress = progress
        self.logger = logger
        self._bounce_known = cache.has_bounces()
        #: Set by the mapper: told after every verdict (see `gate.FirstContactGate`), and told
        #: what must stop the run (see `health.InfrastructureWatch`).
        self.after_verdict: Callable[[], None] = lambda: None
        self.on_fatal: Callable[[UserError], None] = lambda error: None
        self.health = InfrastructureWatch(settings.infrastructure_unknown_threshold)
        #: `prepare`'s work by id of message.
        self._prepared: dict[int, _Prepared] = {}

    def prepare(self, batch: list[tuple[dict[str, Any], StreamPlan]]) -> None:
        """Records about to be verified, in input order: their keys and carried verdicts are
        worked out now, for `verify`, and the cache is asked for all the keys that need it at
        once (`ResultsCache.prefetch`). Only what was already read is passed here, so nothing
        waits for it."""
        prepared: dict[int, _Prepared] = {}
        keys: list[str] = []
        bounces: list[str] = []
        for message, plan in batch:
            record = message.get("record")
            if not isinstance(record, dict):
                continue
            value = plan.email(record)
            if not isinstance(value, str) or not value.strip():
                continue
            key = address_key(value)
            fresh = self._carried(record)
            prepared[id(message)] = (message, record, value, key, fresh)
            if fresh is None:
                keys.append(key)
            elif fresh.status != "Invalid" and self._bounce_known:
                bounces.append(key)
        self._prepared = prepared
        if keys or bounces:
            self.cache.prefetch(keys, bounces)

    def verify(self, message: dict[str, Any], plan: StreamPlan, size: int = 0) -> None:
        """`size`: of the record's input line, for the reorder buffer's byte budget."""
        ahead = self._prepared.pop(id(message), None)
        if ahead is not None and ahead[0] is message:  # `prepare` checked record and address
            _, record, value, key, fresh = ahead
        else:
            found = message.get("record")
            if not isinstance(found, dict):
                self.pass_through(message, size)
                return
            record = found
            value = plan.email(record)
            if value is None or (isinstance(value, str) and not value.strip()):
                verdict = Verdict("Unknown", "no_email", time.time())
                self._finish_local(message, record, verdict, size)
                return
            if not isinstance(value, str):
                verdict = Verdict("Invalid", "invalid_syntax", time.time())
                self._finish_local(message, record, verdict, size)
                return
            key, fresh = address_key(value), self._carried(record)
        # A bounce seen since that verification outranks it (unless it already said Invalid).
        if fresh is not None and (fresh.status == "Invalid" or not self._is_bounce(key)):
            self._finish_now(message, record, "fresh", fresh, size, value)
            return
        cached = self.cache.get(key)  # a bounce voids the cached verdict, so no bounce check here
        if cached is not None and (
            self.not_before is None or cached.validated_at >= self.not_before
        ):
            self._finish_now(message, record, "cache", cached, size, value)
            return
        ticket = self.out.reserve(size)
        domain = value.rpartition("@")[2].strip().lower()
        self.health.asked(domain)
        self.engine.submit(
            value,
            self._is_bounce(key),
            partial(self._on_verdict, ticket, message, key, domain, size, value),
            on_wait=partial(self.out.park, ticket),
        )

    def pass_through(self, message: dict[str, Any], size: int = 0) -> None:
        self.progress.stats.count("passthrough_records")
        self.out.ready(message, size)

    def remember_bounce(self, record: Any, plan: StreamPlan) -> None:
        if not isinstance(record, dict):
            return
        kind = record.get("type", _MISSING)
        if kind is not _MISSING and kind not in HARD_BOUNCE_TYPES:
            return
        value = plan.email(record)
        if isinstance(value, str) and value.strip():
            self.cache.add_bounce(address_key(value))
            self._bounce_known = True
            self.progress.stats.count("hard_bounces_seen")

    # -- verdicts --------------------------------------------------------------------------------

    def _carried(self, record: dict[str, Any]) -> Verdict | None:
        if self.max_age <= 0:
            return None
        return carried_verdict(
            record, self.names, time.time(), self.max_age, self.transient_max_age, self.not_before
        )

    def _finish_local(
        self, message: dict[str, Any], record: dict[str, Any], verdict: Verdict, size: int
    ) -> None:
        """A verdict that needs no lookup; a fresh carried copy of it keeps its timestamp (no
        rewrite)."""
        fresh = self._carried(record)
        if fresh is not None and (fresh.status, fresh.substatus) == (
            verdict.status,
            verdict.substatus,
        ):
            self._finish_now(message, record, "fresh", fresh, size)
            return
        self._finish_now(message, record, "local", verdict, size)

    def _is_bounce(self, key: str) -> bool:
        return self._bounce_known and self.cache.is_bounce(key)

    def _finish_now(
        self,
        message: dict[str, Any],
        record: dict[str, Any],
        source: str,
        verdict: Verdict,
        size: int,
        address: str | None = None,
    ) -> None:
        if verdict.status == "Unknown":  # only an Unknown can be transient
            kept = self._earlier_definite(record, verdict)
            if kept is not None:
                source, verdict = "kept", kept
        self._write(record, verdict.status, verdict.substatus, verdict.validated_at)
        if self.extras:
            self.extras.write(record, address, verdict.substatus)
        self.progress.count(source, verdict.status, verdict.substatus)
        if address is not None:
            self.progress.count_domain(verdict.status, address)
        self.out.ready(message, size)

    def _earlier_definite(self, record: dict[str, Any], new: Verdict) -> Verdict | None:
        """A transient Unknown never replaces a definite earlier verdict: the earlier one, then."""
        if not is_transient(new.status, new.substatus):
            return None
        earlier = carried(record, self.names)
        return earlier if definite(earlier) else None

    def _on_verdict(
        self,
        ticket: Ticket,
        message: dict[str, Any],
        key: str,
        domain: str,
        size: int,
        address: str,
        status: str,
        substatus: str,
        rule: str,
        result: Any = None,
    ) -> None:
        """On the engine thread: remember, count, and hand the record to the reorder buffer."""
        self.health.add(domain, substatus)
        problem = self.health.problem()
        if problem is not None:
            self.on_fatal(problem)  # the record stays unwritten, and so does every later one
            return
        now = time.time()
        try:
            self.cache.put(key, Verdict(status, substatus, now))
        except Exception as exc:  # a cache failure costs a re-check next run, never this record
            self.logger.warning("Could not store a verdict in the cache: %s", type(exc).__name__)
        record = message["record"]
        kept = self._earlier_definite(record, Verdict(status, substatus, now))
        if kept is not None:
            self._write(record, kept.status, kept.substatus, kept.validated_at)
            self.progress.count_engine_kept(kept.status, kept.substatus)
            self.progress.count_engine_domain(kept.status, address)
        else:
            self._write(record, status, substatus, now)
            self.progress.count_engine(status, substatus, rule)
            self.progress.count_engine_domain(status, address)
        if self.extras:
            mx_hosts = getattr(getattr(result, "evidence", None), "mx_hosts", None) or ()
            self.extras.write_verified(record, address, substatus, mx_hosts)
        if status == "Unknown":
            self.progress.explain(result)
        self.out.complete(ticket, message, size)
        self.after_verdict()

    def _write(self, record: dict[str, Any], status: str, substatus: str, at: float) -> None:
        names = self.names
        record[names.status] = status
        record[names.substatus] = substatus
        record[names.timestamp] = _iso(at)

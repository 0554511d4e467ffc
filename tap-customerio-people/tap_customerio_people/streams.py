"""The tap's streams: People (search + concurrent hydration), segments and ESP suppressions."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from singer_sdk import typing as th
from singer_sdk.pagination import OffsetPaginator
from singer_sdk.singerlib import SchemaMessage
from typing_extensions import override

from . import errors, settings
from .audience import PRESETS, describe, resolved
from .client import CustomerIOStream
from .listing import PeopleListing
from .people import HYDRATION_BATCH, Hydrator, search_filter
from .pipeline import run_ahead

if TYPE_CHECKING:
    from collections.abc import Generator, Iterable

    import requests
    from singer_sdk.helpers.types import Context

SEGMENT_READY_STATES = frozenset({"finished"})
SUPPRESSION_TYPES = ("bounces", "blocks", "spam_reports", "invalid_emails")
SUPPRESSION_PAGE_SIZE = 1000
PAGES_AHEAD = 3  # search pages' worth of hydration chunks queued ahead of the consumer


@dataclass(slots=True)
class CountedSchemaMessage(SchemaMessage):
    """A SCHEMA message that says how many records of its stream follow (README, "Progress").

    An extra top-level key, not a new message type (Singer readers such as singer-sdk's refuse
    unknown types) and not inside `schema` (a changed schema makes SDK targets start a new sink):
    targets read the keys they know from a SCHEMA message and ignore the others.
    """

    expected_record_count: int | None = None


class PeopleStream(CustomerIOStream):
    """Every Person (or the People of ``segment_ids``), with its current attributes."""

    name = "people"
    path = "/customers"
    primary_keys = ("cio_id",)
    replication_key = None
    schema = th.PropertiesList(
        th.Property(
            "cio_id",
            th.StringType(nullable=False),
            required=True,
            description="Customer.io's own id of the Person; stable, never null.",
        ),
        th.Property(
            "id",
            th.StringType(nullable=True),
            description="Your id of the Person; null if email-only.",
        ),
        th.Property(
            "email", th.StringType(nullable=True), description="The email address, as stored."
        ),
        th.Property(
            "attributes",
            th.ObjectType(additional_properties=th.StringType(nullable=True)),
            description="Every attribute as Customer.io returns it (strings), EV_* ones included.",
        ),
        th.Property("unsubscribed", th.BooleanType, description="Unsubscribed from all messages."),
    ).to_dict()

    #: People the listing found, once it has (the SCHEMA message carries it); None before.
    expected: int | None = None
    _schema_held = False

    @override
    def _write_schema_message(self) -> None:
        """Held back (`sync` calls this before `get_records`) until the listing has counted the
        People: `announce` writes it then, with the count, still before the first record."""
        self._schema_held = True

    def announce(self, count: int) -> None:
        """Write the held SCHEMA message, saying that `count` records follow."""
        self.expected = count
        if self._schema_held:
            self._schema_held = False
            super()._write_schema_message()

    @override
    def _generate_schema_messages(self) -> Generator[SchemaMessage, None, None]:
        for message in super()._generate_schema_messages():
            yield CountedSchemaMessage(
                message.stream,
                message.schema,
                message.key_properties,
                message.bookmark_properties,
                expected_record_count=self.expected,
            )

    @override
    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        """List every matching Person first (`listing.py` says why), then hydrate that snapshot."""
        segment_ids = settings.segment_ids(self.config)
        if segment_ids:
            self.check_segments(segment_ids)
        audience = resolved(
            settings.value(self.config, "filter"), settings.value(self.config, "status_attribute")
        )
        body = search_filter(segment_ids, audience)
        self.log_filter(body["filter"])
        page_size = settings.integer(self.config, "page_size")
        workers = settings.integer(self.config, "hydration_concurrency")
        started = time.monotonic()
        partition = settings.partition(self.config)
        # Before hydration, as early as the App API allows: its search cannot filter by hash.
        keep = partition.selects if partition else None
        listing = PeopleListing(self, body, page_size, stats=self.run.stats, keep=keep)
        snapshot = listing.run()
        listed_in = time.monotonic() - started
        if partition:
            self.logger.info(
                "people: partition %s: hydrating the %d listed People of this partition only "
                "(%d search hits of the other partitions dropped, over every pass)",
                partition,
                len(snapshot),
                listing.outside,
            )
        self.announce(len(snapshot))
        self.cancelled = threading.Event()
        hydrator = Hydrator(self, self.run.stats, self.logger)
        emitted = 0
        batches_per_page = math.ceil(page_size / HYDRATION_BATCH)
        try:
            for records in run_ahead(
                snapshot.chunks(HYDRATION_BATCH),
                hydrator,
                workers=workers,
                max_pending=max(workers, PAGES_AHEAD * batches_per_page),
                cancelled=self.cancelled,
            ):
                emitted += len(records)
                yield from records
        finally:
            snapshot.close()
        elapsed = max(time.monotonic() - started, 1e-9)
        stats = self.run.stats.snapshot()
        self.logger.info(
            "people: %d records in %.1f s (%.0f/s); listed %d People from %s in "
            "%s (%.1f s; %d found by the second pass only, %d repeats within a pass "
            "dropped); %d requests, %d rate limited (429), %d retries; "
            "%d of %d listed People could not be hydrated (deleted since the listing)",
            emitted,
            elapsed,
            emitted / elapsed,
            len(snapshot),
            plural(listing.pages, "search page"),
            plural(listing.passes_run, "pass"),
            listed_in,
            listing.second_pass_only,
            listing.duplicates,
            stats.get("requests", 0),
            stats.get("rate_limited", 0),
            stats.get("retries", 0),
            stats.get("unhydrated", 0),
            stats.get("listed", 0),
        )
        hydrator.check_run()

    def log_filter(self, audience: dict[str, Any]) -> None:
        """Name the filter in use: node kinds, segment ids and fields, never a value."""
        chosen = settings.value(self.config, "filter")
        preset = f"preset {chosen}: " if isinstance(chosen, str) and chosen in PRESETS else ""
        self.logger.info("people: listing the People of filter %s%s", preset, describe(audience))

    def check_segments(self, segment_ids: list[int]) -> None:
        """Fail fast on a segment that does not exist; warn about one still building.

        People who join a segment still building are missing from this run.
        """
        for segment_id in segment_ids:
            try:
                segment = self.send("GET", f"/segments/{segment_id}").json().get("segment") or {}
            except errors.NotFoundError:
                raise errors.SegmentNotFoundError(
                    errors.segment_not_found_message(segment_id)
                ) from None
            state = segment.get("state")
            if state is not None and state not in SEGMENT_READY_STATES:
                progress = segment.get("progress")
                self.logger.warning(
                    "segment %d is still building (state %s%s): People who join it later are "
                    "read on the next run",
                    segment_id,
                    state,
                    f", {progress}%" if progress is not None else "",
                )


def plural(count: int, noun: str) -> str:
    """``1 pass``, ``2 passes``, ``3 search pages``."""
    if count == 1:
        return f"1 {noun}"
    return f"{count} {noun}{'es' if noun.endswith('s') else 's'}"


class SegmentsStream(CustomerIOStream):
    """The workspace's segments (ids, names, build state)."""

    name = "segments"
    path = "/segments"
    primary_keys = ("id",)
    replication_key = None
    records_jsonpath = "$.segments[*]"
    schema = th.PropertiesList(
        th.Property("id", th.IntegerType(nullable=False), required=True),
        th.Property("deduplicate_id", th.StringType),
        th.Property("name", th.StringType),
        th.Property("description", th.StringType),
        th.Property(
            "state",
            th.StringType,
            description="events, build, events_queued, build_queued or finished",
        ),
        th.Property("progress", th.IntegerType(nullable=True)),
        th.Property("type", th.StringType, description="dynamic or manual"),
        th.Property("tags", th.ArrayType(th.StringType)),
        th.Property("created_at", th.IntegerType, description="Unix seconds"),
        th.Property("updated_at", th.IntegerType, description="Unix seconds"),
    ).to_dict()


class SuppressionOffsetPaginator(OffsetPaginator):
    """Offset paging that ends on a short page."""

    @override
    def has_more(self, response: requests.Response) -> bool:
        return len(response.json().get("suppressions") or []) >= self.page_size


class SuppressionsStream(CustomerIOStream):
    """Addresses Customer.io (as the sender) suppresses.

    One partition per kind: bounces, blocks, spam reports, invalid emails.
    """

    name = "suppressions"
    path = "/esp/suppression/{type}"
    primary_keys = ("type", "email")
    replication_key = None
    records_jsonpath = "$.suppressions[*]"
    schema = th.PropertiesList(
        th.Property(
            "type",
            th.StringType(nullable=False),
            required=True,
            allowed_values=list(SUPPRESSION_TYPES),
        ),
        th.Property("email", th.StringType(nullable=False), required=True),
        th.Property("created", th.IntegerType, description="Unix seconds"),
        th.Property("reason", th.StringType),
        th.Property(
            "status", th.StringType, description="SMTP status as recorded by the sender, e.g. 550"
        ),
    ).to_dict()

    @property
    @override
    def partitions(self) -> list[dict[str, Any]]:
        return [{"type": kind} for kind in SUPPRESSION_TYPES]

    @override
    def get_new_paginator(self) -> SuppressionOffsetPaginator:
        return SuppressionOffsetPaginator(start_value=0, page_size=SUPPRESSION_PAGE_SIZE)

    @override
    def get_url_params(self, context: Context | None, next_page_token: Any) -> dict[str, Any]:
        return {"limit": SUPPRESSION_PAGE_SIZE, "offset": next_page_token or 0}

    @override
    def post_process(
        self, row: dict[str, Any], context: Context | None = None
    ) -> dict[str, Any] | None:
        return {**row, "type": (context or {})["type"]}

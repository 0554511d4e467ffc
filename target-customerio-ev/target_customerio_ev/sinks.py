"""One BatchSink per stream: records become Person writes as they arrive; a drain sends them."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from singer_sdk.helpers._typing import get_datelike_property_type
from singer_sdk.sinks import BatchSink
from typing_extensions import override

from .errors import UserError
from .identify import SKIPPED_UNCHANGED, Rejected, Write, WriteBuilder
from .validation import RecordValidator

if TYPE_CHECKING:
    from collections.abc import Sequence

    from singer_sdk import Target
    from singer_sdk.helpers.conform import DatetimeErrorTreatmentEnum

    from .deadletter import DeadLetters
    from .sender import Sender
    from .settings import Settings
    from .stats import RunStats


class DrainInterrupted(UserError):
    """A drain re-entered a sink whose batch is being sent (meltano/sdk#3775): refuse, no STATE."""


@runtime_checkable
class SinkHost(Protocol):
    """What a `CustomerIOSink` needs from its target (`TargetCustomerIOEV` provides it)."""

    settings: Settings
    stats: RunStats
    sender: Sender
    dead_letters: DeadLetters


class CustomerIOSink(BatchSink):
    """Writes each record's traits onto its Person; streams without any trait are ignored.

    A drain hands its batch to the sender and returns, so the next batch is read while this one is
    sent; the target waits for every send before it emits STATE (`_write_state_message`).
    """

    # A full batch drains as max_in_flight (4) requests of max_batch_messages (500) sent together.
    MAX_SIZE_DEFAULT = 2000
    # A record that does not match its schema is dead-lettered with the reason; the run goes on.
    fail_on_record_validation_exception = False

    @override
    def __init__(
        self,
        target: Target,
        stream_name: str,
        schema: dict[str, Any],
        key_properties: Sequence[str] | None,
    ) -> None:
        if not isinstance(target, SinkHost):
            raise TypeError("CustomerIOSink needs a target with settings, stats and a sender")
        super().__init__(target, stream_name, schema, key_properties)
        settings = target.settings
        self.settings = settings
        self.stats = target.stats
        self.sender = target.sender
        self.dead_letters = target.dead_letters
        self.builder = WriteBuilder.for_schema(
            schema,
            identify_by=settings.identify_by,
            traits=settings.traits,
            timestamp_format=settings.timestamp_format,
            skip_unchanged=settings.skip_unchanged,
        )
        properties = schema.get("properties") or {}
        self.ignored = not any(name in properties for name in settings.traits)
        if self.ignored:
            self.logger.info(
                "Stream '%s' carries none of the traits %s: its records are not sent.",
                stream_name,
                ", ".join(settings.traits),
            )
        self._sending = threading.Lock()
        # Only traits are read, so only date-like traits need parsing (_parse_timestamps_in_record).
        self._datelike_schema: dict[str, Any] = {
            "properties": {
                name: properties[name]
                for name in settings.traits
                if name in properties and get_datelike_property_type(properties[name])
            }
        }

    @override
    def _parse_timestamps_in_record(
        self,
        record: dict[str, Any],
        schema: dict[str, Any],
        treatment: DatetimeErrorTreatmentEnum,
    ) -> None:
        """Parse only the date-like traits: the SDK's walk over every field was a tenth of a run."""
        if self.ignored or not self._datelike_schema["properties"]:
            return
        subset = {
            name: record[name] for name in self._datelike_schema["properties"] if name in record
        }
        super()._parse_timestamps_in_record(subset, self._datelike_schema, treatment)
        record.update(subset)

    @override
    def get_validator(self) -> RecordValidator | None:
        return RecordValidator(self.schema) if self.validate_schema else None

    @override
    def start_batch(self, context: dict[str, Any]) -> None:
        context["writes"] = []

    @override
    def process_record(self, record: dict[str, Any], context: dict[str, Any]) -> None:
        # The SDK validated this record just before (`_validator`); a rejection is dead-lettered.
        invalid = (
            self._validator.take_rejection(record)
            if isinstance(self._validator, RecordValidator)
            else None
        )
        if self.ignored:
            return
        outcome = Rejected(invalid, record.get("cio_id")) if invalid else self.builder.build(record)
        if isinstance(outcome, Write):
            context["writes"].append(outcome)
        elif isinstance(outcome, Rejected):
            self.stats.count("dead_lettered")
            self.dead_letters.add(
                stream=self.stream_name, reason=outcome.reason, cio_id=outcome.cio_id
            )
        elif outcome == SKIPPED_UNCHANGED:
            self.stats.count("skipped_unchanged")
        else:
            self.stats.count("skipped_empty")

    @override
    def process_batch(self, context: dict[str, Any]) -> None:
        if not self._sending.acquire(blocking=False):
            raise DrainInterrupted(
                f"Stream '{self.stream_name}': a drain started while its batch was still "
                "being sent (termination signal); STATE is not advanced."
            )
        try:
            if "writes" not in context and self.current_size > 0:
                raise DrainInterrupted(
                    f"Stream '{self.stream_name}': asked to drain a batch it no longer "
                    "holds; STATE is not advanced."
                )
            writes: list[Write] = context.get("writes", [])
            if not writes:
                return
            if self.settings.dry_run:
                self.stats.count("would_send", len(writes))
                self.logger.info(
                    "Dry run: stream '%s' would send %d identifies.", self.stream_name, len(writes)
                )
                return
            self.sender.submit(writes, self.stream_name)
        finally:
            self._sending.release()

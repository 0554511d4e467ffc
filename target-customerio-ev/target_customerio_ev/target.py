"""target-customerio-ev: upsert email-verification traits onto Customer.io People.

The wiring: which sender writes for the settings (Pipelines API by default, the Track API v2 for
`api: track`), the run's counters and dead letters, and the SDK hooks that keep STATE behind what
has landed.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, ClassVar

from singer_sdk import Target
from singer_sdk.exceptions import ConfigValidationError
from typing_extensions import override

from .deadletter import DeadLetters
from .errors import Terminated, UserError, exit_with
from .pipelines import PipelinesSender
from .reader import LineNumberingReader
from .settings import CONFIG_SCHEMA, Settings, config_errors
from .sinks import CustomerIOSink
from .stats import RunStats
from .track import TrackSender

if TYPE_CHECKING:
    from types import FrameType

    from .sender import BatchSender


class TargetCustomerIOEV(Target):
    """Upserts email-verification traits onto Customer.io People (Pipelines or Track API)."""

    name = "target-customerio-ev"
    config_jsonschema = CONFIG_SCHEMA
    default_sink_class = CustomerIOSink
    message_reader_class = LineNumberingReader
    # Which sender writes, by the `api` setting.
    senders: ClassVar[dict[str, type[BatchSender]]] = {
        "pipelines": PipelinesSender,
        "track": TrackSender,
    }

    @override
    def __init__(self, **kwargs: Any) -> None:
        if kwargs.get("message_reader") is None:
            # The SDK's `listen` is final: reading tells us when a run stops early.
            kwargs["message_reader"] = LineNumberingReader(on_stop=self.finish)
        super().__init__(**kwargs)
        self.settings = Settings.from_config(self.config)
        self.stats = RunStats()
        self.dead_letters = DeadLetters(self.settings.dead_letter_path, self.logger)
        self.sender = self.make_sender()
        # How often pending batches drain and STATE is emitted (the SDK's max record age, 5 min).
        self._MAX_RECORD_AGE_IN_MINUTES = self.settings.checkpoint_interval_seconds / 60
        if self.settings.api == "pipelines" and not self.settings.dry_run:
            self.logger.info(
                "Writing through the Pipelines API: identify creates People that do not exist "
                "(use api: track with update_only: true to only update)."
            )

    def make_sender(self) -> BatchSender:
        """The sender for the `api` setting."""
        sender_class = self.senders.get(self.settings.api, PipelinesSender)
        return sender_class(self.settings, self.stats, self.dead_letters, self.logger)

    def finish(self) -> None:
        """End of a run, finished or not: close the sender and log the summary line."""
        self.sender.close()
        self.logger.info("%s", self.stats.line(dry_run=self.settings.dry_run))

    @override
    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        """The schema (with the SDK's built-in settings) and the rules it cannot express, one line
        each; fills the schema defaults into the config, as the SDK's own check does."""
        schema = self.config_jsonschema
        self.append_builtin_config(schema)
        errors = config_errors(self._config, schema)
        if errors and raise_errors:
            raise ConfigValidationError("Config validation failed", errors=errors, schema=schema)
        for error in errors:
            self.logger.warning("Config problem: %s", error)
        return errors

    @override
    def _write_state_message(self, state: dict[str, Any]) -> None:
        """STATE acknowledges every record before it: wait until they all landed, or raise."""
        self.sender.flush()
        super()._write_state_message(state)

    @override
    def process_endofpipe(self) -> None:
        try:
            super().process_endofpipe()
            self.sender.flush()  # also when no STATE came: the run succeeds only if all landed
        finally:
            self.finish()

    @override
    def _handle_termination(self, signum: int, frame: FrameType | None) -> None:  # pragma: no cover
        """Drain what is pending; if a batch was mid-send, exit without STATE (sdk#3775).

        Either way the exit code is 128 + signum: input was cut short, so the run is not a success
        (Meltano must not record it as complete), even though everything read has landed.
        """
        self.logger.info("Received termination signal %d, draining all sinks...", signum)
        try:
            self.drain_all(is_endofpipe=True)
            self.sender.flush()
        except Exception as exc:
            self.sender.abort()
            # The reader's on_stop (or process_endofpipe) still closes the sender, logs the summary.
            exit_with(Terminated(f"Stopped by signal {signum}: {exc}", signum), self.logger)
        self.logger.warning(
            "Stopped by signal %d: everything read so far has landed and its STATE was emitted; "
            "run again to finish.",
            signum,
        )
        sys.exit(128 + signum)

    @classmethod
    @override
    def invoke(cls, *args: Any, **kwargs: Any) -> None:
        """The SDK's run; a `UserError` becomes one line and its exit code (`exit_with`)."""
        try:
            super().invoke(*args, **kwargs)
        except UserError as exc:
            exit_with(exc, cls.logger)


if __name__ == "__main__":
    TargetCustomerIOEV.cli()

"""target-customerio-ev: upsert email-verification traits onto Customer.io People.

Writes through the Pipelines API (default) or the Track API v2 (`api: track`, for `update_only`).
"""

from __future__ import annotations

import sys
import typing as t

from singer_sdk import Target
from singer_sdk.exceptions import ConfigValidationError

from .client import DeliveryError, make_sender
from .deadletter import DeadLetters
from .reader import InputError, LineNumberingReader
from .settings import CONFIG_SCHEMA, Settings, config_errors
from .sinks import CustomerIOSink, DrainInterrupted
from .summary import RunStats

if t.TYPE_CHECKING:
    from types import FrameType

# Failures the user acts on: logged as their one-line message, without a traceback.
USER_FACING = (DeliveryError, DrainInterrupted, InputError)


class TargetCustomerIOEV(Target):
    """Upserts email-verification traits onto Customer.io People (Pipelines or Track API)."""

    name = "target-customerio-ev"
    config_jsonschema = CONFIG_SCHEMA
    default_sink_class = CustomerIOSink
    message_reader_class = LineNumberingReader

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self.settings = Settings.from_config(dict(self.config))
        self.stats = RunStats()
        self.dead_letters = DeadLetters(self.settings.dead_letter_path, self.logger)
        self.sender = make_sender(self.settings, self.stats, self.dead_letters, self.logger)
        # How often pending batches drain and STATE is emitted (the SDK's max record age, 5 min).
        self._MAX_RECORD_AGE_IN_MINUTES = self.settings.checkpoint_interval_seconds / 60
        if self.settings.api == "pipelines" and not self.settings.dry_run:
            self.logger.info(
                "Writing through the Pipelines API: identify creates People that do not exist "
                "(use api: track with update_only: true to only update)."
            )

    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        errors = super()._validate_config(raise_errors=raise_errors)
        extra = config_errors(dict(self._config))
        if extra and raise_errors:
            raise ConfigValidationError(
                "Config validation failed", errors=extra, schema=self.config_jsonschema
            )
        return errors + extra

    def _write_state_message(self, state: dict) -> None:
        """STATE acknowledges every record before it: wait until they all landed, or raise."""
        self.sender.flush()
        super()._write_state_message(state)

    def process_endofpipe(self) -> None:
        super().process_endofpipe()
        self.sender.flush()  # also when no STATE came: the run succeeds only if everything landed

    def listen(self, file_input: t.IO[str] | None = None) -> None:
        try:
            super().listen(file_input)
        finally:
            self.sender.close()
            self.logger.info("%s", self.stats.line(dry_run=self.settings.dry_run))

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
            self.logger.error("Stopped by signal %d: %s", signum, exc)
            sys.exit(128 + signum)  # listen() still closes the sender and logs the summary
        self.logger.warning(
            "Stopped by signal %d: everything read so far has landed and its STATE was emitted; "
            "run again to finish.",
            signum,
        )
        sys.exit(128 + signum)

    @classmethod
    def invoke(cls, *args: t.Any, **kwargs: t.Any) -> None:  # type: ignore[override]
        try:
            super().invoke(*args, **kwargs)
        except USER_FACING as exc:
            cls.logger.error("%s", exc)
            sys.exit(1)


if __name__ == "__main__":
    TargetCustomerIOEV.cli()

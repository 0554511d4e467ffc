"""target-customerio-ev: upsert email-verification traits onto Customer.io People.

The wiring: which sender writes for the settings (Pipelines API by default, the Track API v2 for
`api: track`, both for `email_only_identify: track`), the run's counters and dead letters, the
landing check, and the SDK hooks that keep STATE behind what has landed.

STATE: every STATE line waits until the writes before it were acknowledged (`_write_state_message`
flushes the senders). The final one also waits for the end-of-run checks (a class of writes the API
refused every time; the landing check) and is not written when they fail. With the landing check
on, every STATE is held until it passed: the sample is drawn from the whole run, so only its
verdict covers the writes before a checkpoint, and a checkpoint STATE written earlier would let the
next run resume past writes found lost (Meltano keeps STATE from a failed run).
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from typing import TYPE_CHECKING, Any, ClassVar

from singer_sdk import Target
from singer_sdk.exceptions import ConfigValidationError
from typing_extensions import override

from . import bounded
from .deadletter import DeadLetters
from .errors import Terminated, UserError, exit_with
from .landing import LandingChecker, LandingReport, LandingSample
from .pipelines import PipelinesSender
from .reader import LineNumberingReader
from .routing import SplitSender
from .run_report import run_report, write_report
from .settings import CONFIG_SCHEMA, Settings, config_errors
from .sinks import CustomerIOSink
from .stats import RunStats
from .track import TrackSender

if TYPE_CHECKING:
    from types import FrameType

    from .sender import BatchSender, Sender


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
        self.dead_letters = DeadLetters(
            self.settings.dead_letter_path, self.logger, secrets=self.settings.secrets
        )
        bounded.redact_logs(self.settings.secrets)  # servers' reason phrases in httpx's lines
        self.quiet_console()
        self.landing_sample = (
            LandingSample(self.settings.landing_check_sample)
            if self.settings.landing_check
            else None
        )
        self.landing_report = LandingReport.not_checked(self.unchecked_reason())
        self.sender = self.make_sender()
        self.ending = False  # the final drain: its STATE waits for the end-of-run checks
        self.completed = False  # the end-of-run checks passed (and the final STATE went out)
        self.held_state: dict[str, Any] | None = None
        # How often pending batches drain and STATE is emitted (the SDK's max record age, 5 min).
        self._MAX_RECORD_AGE_IN_MINUTES = self.settings.checkpoint_interval_seconds / 60
        if self.settings.api == "pipelines" and not self.settings.dry_run:
            self.logger.info(
                "Writing through the Pipelines API: identify creates People that do not exist "
                "(use api: track with update_only: true to only update)%s.",
                "; People without an id through the Track API, update only"
                if self.settings.email_only_identify == "track"
                else "",
            )
        if self.settings.landing_check:
            self.logger.info(
                "Landing check on: STATE is written once a sample of the People written has been "
                "read back with the new values."
            )

    def quiet_console(self) -> None:
        """Keep per-request lines off the console a person follows: the SDK's METRIC lines wait
        for `metrics_log_level`, httpx's status line per request for LOGLEVEL=DEBUG."""
        plugin_level = self.metrics_logger.getEffectiveLevel()  # the SDK set it from LOGLEVEL
        wanted = logging.getLevelName(self.settings.metrics_log_level)
        self.metrics_logger.setLevel(max(plugin_level, wanted))
        if plugin_level > logging.DEBUG:
            logging.getLogger("httpx").setLevel(logging.WARNING)

    def unchecked_reason(self) -> str:
        """Why the landing check does not run (or, when it does, the reason if it never gets to)."""
        if self.settings.dry_run:
            return "dry run"
        if not self.settings.app_api_key:
            return "no app_api_key"
        if self.settings.landing_check_sample == 0:
            return "landing_check_sample is 0"
        return "the run stopped before the check"

    def make_sender(self) -> Sender:
        """The sender for the `api` and `email_only_identify` settings."""
        settings = self.settings
        collaborators = (self.stats, self.dead_letters, self.logger)
        sender_class = self.senders.get(settings.api, PipelinesSender)
        main = sender_class(settings, *collaborators, landing=self.landing_sample)
        if settings.api == "pipelines" and settings.email_only_identify == "track":
            by_email = dataclasses.replace(
                settings, api="track", base_url=settings.track_base_url, update_only=True
            )
            return SplitSender(
                main, TrackSender(by_email, *collaborators, landing=self.landing_sample)
            )
        return main

    def finish(self) -> None:
        """End of a run, finished or not: close the sender and log the summary line."""
        self.sender.close()
        self.logger.info(
            "%s",
            self.stats.line(dry_run=self.settings.dry_run, landing=self.landing_report.phrase()),
        )
        if self.settings.report_path:
            self.write_run_report(self.settings.report_path)

    def write_run_report(self, path: str) -> None:
        """The summary as JSON (`report_path`); a failure to write it is logged, never fatal: what
        it describes has already happened."""
        report = run_report(
            self.stats,
            self.landing_report,
            self.dead_letters,
            dry_run=self.settings.dry_run,
            completed=self.completed,
        )
        try:
            write_report(path, report)
        except OSError as exc:
            self.logger.error(
                "Could not write report_path (%s): check the directory is writable.",
                exc.strerror or type(exc).__name__,
            )

    def verify_landing(self) -> None:
        """Read a sample of this run's writes back through the App API; raise when some never
        show the new values (`LandingError`)."""
        settings = self.settings
        if settings.dry_run or settings.landing_check_sample == 0:
            return
        if self.landing_sample is None:
            if self.stats["written"]:
                self.logger.warning(
                    "Landing not verified: without app_api_key no written Person is read back, so "
                    "writes Customer.io accepted but never applied would go unnoticed (set "
                    "app_api_key, or landing_check_sample: 0 to turn the check off)."
                )
            return
        entries = self.landing_sample.draw(settings.landing_check_sample)
        if not entries:
            self.landing_report = LandingReport.not_checked("nothing written")
            return
        self.landing_report = LandingChecker(settings, self.stats, self.logger).run(entries)
        error = self.landing_report.error(settings)
        if error is not None:
            raise error

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
        """STATE acknowledges every record before it: wait until they all landed, or raise.

        The final STATE (and, with the landing check on, every STATE) is held: `process_endofpipe`
        writes it once the end-of-run checks passed.
        """
        self.sender.flush()
        if self.ending or self.settings.landing_check:
            self.held_state = state
            return
        super()._write_state_message(state)

    @override
    def process_endofpipe(self) -> None:
        self.ending = True
        try:
            super().process_endofpipe()
            self.sender.flush()  # also when no STATE came: the run succeeds only if all landed
            self.sender.check_rejections()
            self.verify_landing()
            if self.held_state is not None:
                super()._write_state_message(self.held_state)
            self.completed = True
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
        if self.held_state is not None:
            self.logger.warning(
                "Stopped by signal %d: everything read so far was accepted, but STATE is held "
                "back because the end-of-run checks did not run; run again to finish.",
                signum,
            )
        else:
            self.logger.warning(
                "Stopped by signal %d: everything read so far has landed and its STATE was "
                "emitted; run again to finish.",
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

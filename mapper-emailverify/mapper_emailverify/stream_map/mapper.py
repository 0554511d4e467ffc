"""`mapper-emailverify`: a Singer stream map that adds `{prefix}Status`, `{prefix}SubStatus` and
`{prefix}Validation_Timestamp` to every record of a stream that has an email field.

This class is the adapter between the SDK's message loop and the parts that do the work: `plan`
decides per stream from its SCHEMA, `records` gives each record its verdict (freshness, cache,
engine), `ordering` keeps output order and STATE safety (records may be reordered only between two
barrier messages, and a STATE message is written only after every record read before it).

In a `meltano run`, have the tap emit the bounce stream (`bounce_history_stream`) before the People
stream to apply bounces in the same run.

Signals: SIGTERM/SIGINT stop reading at once; verifications in flight are abandoned, their records
and every STATE message after them are never written (the next run resumes from the last STATE
written) and the mapper exits with 128 + signal number so that Meltano marks the run failed instead
of complete.
"""

from __future__ import annotations

import contextlib
import sqlite3
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar

from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.helpers.capabilities import PluginCapabilities
from singer_sdk.mapper_base import InlineMapper
from typing_extensions import override

from mapper_emailverify.engine.config import VerifierConfig
from mapper_emailverify.engine.errors import ConfigError, UserError, exit_with
from mapper_emailverify.engine.host_limits import SharedHostLimits
from mapper_emailverify.stream_map.cache_choice import (
    open_cache,
    open_domain_knowledge,
    open_host_limits,
)
from mapper_emailverify.stream_map.domain_cache import DomainStore
from mapper_emailverify.stream_map.engine_thread import Engine, EngineThread
from mapper_emailverify.stream_map.extra_fields import OTHER
from mapper_emailverify.stream_map.gate import FirstContactGate
from mapper_emailverify.stream_map.meltano_config import describe as describe_meltano
from mapper_emailverify.stream_map.meltano_config import meltano_plugin_config
from mapper_emailverify.stream_map.ordering import ReorderBuffer
from mapper_emailverify.stream_map.plan import PASS, Planner, Treatment, with_verdict_fields
from mapper_emailverify.stream_map.progress import Progress, Ticker, expected_count
from mapper_emailverify.stream_map.records import RecordVerifier
from mapper_emailverify.stream_map.settings import CONFIG_SCHEMA, MapperSettings
from mapper_emailverify.stream_map.singer_io import (
    FLUSH_BYTES,
    BufferedMsgSpecWriter,
    EmailVerifyReader,
    InputError,
    Interrupted,
    InterruptibleInput,
)

WINDOW_PER_SLOT = 4  # records in flight or held, per unit of `concurrency`
MIN_WINDOW = 64
#: Input bytes of the records in flight or held: huge records behind a slow verdict make the
#: reader wait long before the record count would.
WINDOW_BYTES = 32 * 1024 * 1024
# The mapper's own verdict cache (SQLite or in memory) answers a repeated address before the engine
# is asked, so the engine's per-run memo of full results needs to be small: at the engine's default
# (100,000 results) it grew the mapper by about 80 MB per million People.
ENGINE_RESULT_MEMORY = 1_000


def _config_error(message: str) -> ConfigValidationError:
    return ConfigValidationError(message, errors=[message])


class EmailVerifyMapper(InlineMapper):
    """Verifies the email of every record of the streams that have one."""

    name = "mapper-emailverify"
    package_name = "mapper-emailverify"
    #: Only what is honoured: stream maps and flattening are not applied by this mapper.
    capabilities: ClassVar[list[Any]] = [
        PluginCapabilities.ABOUT,
        PluginCapabilities.STRUCTURED_LOGGING,
    ]
    message_reader_class = EmailVerifyReader
    message_writer_class = BufferedMsgSpecWriter
    config_jsonschema = CONFIG_SCHEMA
    #: Settings `invoke` read from meltano.yml's plugin config (see `meltano_config`).
    from_meltano: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self, *, engine_factory: Callable[[], Engine] | None = None, **kwargs: Any
    ) -> None:
        self._guard = InterruptibleInput()
        super().__init__(**kwargs)
        config = dict(self.config)
        try:
            settings = MapperSettings.from_config(config)
            engine_config = VerifierConfig.from_settings(
                {"result_memory": ENGINE_RESULT_MEMORY, **config}
            )
        except (ConfigError, ValueError, TypeError) as exc:
            raise _config_error(
                str(exc) if isinstance(exc, ConfigError) else f"Invalid mapper setting: {exc}"
            ) from None
        self.settings = settings
        if self.from_meltano:
            self.logger.info("%s", describe_meltano(self.from_meltano))
        self.logger.info("Verifying with %s.", engine_config.describe())
        reader, writer = self.message_reader, self.message_writer
        if not isinstance(reader, EmailVerifyReader) or not isinstance(
            writer, BufferedMsgSpecWriter
        ):
            raise TypeError("the mapper needs its own reader and writer (singer_io)")
        reader.guard = self._guard
        reader.logger = self.logger
        self._reader = reader
        try:
            cache = open_cache(
                settings.cache_path or None,
                settings.cache_ttl_days,
                settings.reverify_unknown_after_hours,
                self.logger,
                url=settings.cache_url or None,
            )
        except (OSError, sqlite3.Error) as exc:
            raise _config_error(
                f"cache_path cannot be opened as SQLite ({exc}); point it at a writable file."
            ) from None
        except ConfigError as exc:  # cache_url: a database that cannot be used at start
            raise _config_error(str(exc)) from None
        self._cache = cache
        self._planner = Planner(
            settings.email_field,
            settings.email_fields,
            settings.bounce_history_stream or None,
            self.logger,
        )
        self._writer = writer
        self._out = ReorderBuffer(
            self._writer.write_message,
            max(MIN_WINDOW, WINDOW_PER_SLOT * engine_config.concurrency),
            WINDOW_BYTES,
        )
        #: What the engine learns about domains, kept next to the cache (opened with the engine).
        self._knowledge: DomainStore[Any] | None = None
        if engine_factory is None:

            def engine_factory() -> Engine:
                # Imported on first use: a run answered from freshness and the cache never loads it.
                from mapper_emailverify.engine.verifier import Verifier

                if self._knowledge is None:
                    self._knowledge = open_domain_knowledge(
                        settings.cache_path or None,
                        settings.domain_cache_ttl_days,
                        self.logger,
                        url=settings.cache_url or None,
                        beside=cache,
                    )
                return Verifier(
                    engine_config,
                    knowledge=self._knowledge,
                    host_limits=self._shared_host_limits(settings, engine_config),
                )

        self._engine = EngineThread(engine_factory, self.logger, on_fatal=self._guard.fail)
        self.progress = Progress(self.logger, log_every=settings.progress_interval_seconds)
        self._records = RecordVerifier(
            settings, cache, self._engine, self._out, self.progress, self.logger
        )
        if "Provider" in settings.extras:
            # Opened now, not with the engine: cached and fresh records read providers from it.
            self._knowledge = open_domain_knowledge(
                settings.cache_path or None,
                settings.domain_cache_ttl_days,
                self.logger,
                url=settings.cache_url or None,
                beside=cache,
            )
            self._records.extras.domain_provider = self._known_provider
        self.progress.engine_counters = self._engine_counters
        probing = engine_config.uses_builtin and engine_config.smtp_check
        self._gate = FirstContactGate(
            self._out, self._engine, self.logger, active=probing, veto=self._environment_broken
        )
        self._records.after_verdict = self._gate.check
        reader.on_records = self._look_ahead
        self._records.on_fatal = self._guard.fail
        self._input_ended = False
        self._ticker = Ticker(
            0.2,
            [
                self._flush_if_pending,
                cache.commit,
                self.progress.maybe_log,
                self.progress.maybe_sample,
            ],
            self.logger,
        ).start()

    @property
    def engine_started(self) -> bool:
        """Whether any record needed the engine (fresh and cached verdicts never start it)."""
        return self._engine.started

    # -- SDK hooks ---------------------------------------------------------------------------------

    @override
    def map_schema_message(self, message_dict: dict[str, Any]) -> Iterable[Any]:
        """Decide per stream; verified streams get the three nullable fields in their schema, and
        the record count a tap announces (`expected_record_count`) becomes the progress total.

        Messages leave through the reorder buffer, not the return value, because verdicts finish
        later.
        """
        self._assert_line_requires(message_dict, requires={"stream", "schema"})
        plan = self._planner.on_schema(message_dict["stream"], message_dict["schema"])
        if plan.kind is Treatment.VERIFY:
            self.progress.expect(str(message_dict["stream"]), expected_count(message_dict))
            message_dict = with_verdict_fields(
                message_dict, self._records.names, self._records.extras.properties()
            )
        self._out.barrier(message_dict)
        self._gate.check()
        return ()

    @override
    def map_record_message(self, message_dict: dict[str, Any]) -> Iterable[Any]:
        out = self._out
        if out.size >= out.window or out.held_bytes >= out.max_bytes:
            self._gate.check()
            out.wait_for_room(self._stopping)
            self._check_stop()
        size = self._reader.line_bytes
        plan = self._planner.get(message_dict.get("stream"))
        if plan is None:
            self._no_schema(message_dict.get("stream"))
            plan = PASS
        if plan.kind is Treatment.VERIFY:
            self._records.verify(message_dict, plan, size)
        else:
            if plan.kind is Treatment.BOUNCES:
                self._records.remember_bounce(message_dict.get("record"), plan)
            self._records.pass_through(message_dict, size)
        if self._writer.pending_bytes >= FLUSH_BYTES:
            self._writer.flush()
        return ()

    def _shared_host_limits(
        self, settings: MapperSettings, engine_config: VerifierConfig
    ) -> SharedHostLimits | None:
        """With `cache_url`, each mail host's caps shared by the workers on this `egress_ip`."""
        if not (settings.cache_url and engine_config.uses_builtin and engine_config.smtp_check):
            return None
        return open_host_limits(
            settings.cache_url, settings.egress_ip or "", self.logger, beside=self._cache
        )

    def _known_provider(self, domain: str) -> str | None:
        """The provider the domain knowledge (`cache_path` or `cache_url`) holds for `domain` (see
        `extra_fields`)."""
        facts = self._knowledge.domain(domain) if self._knowledge is not None else None
        return None if facts is None else facts.provider or OTHER

    def _look_ahead(self, messages: list[dict[str, Any]]) -> None:
        """RECORD messages the reader decoded ahead (see `singer_io.EmailVerifyReader`): those of
        verified streams have their addresses looked up in the cache together."""
        planner = self._planner
        verified = []
        for message in messages:
            plan = planner.get(message.get("stream"))
            if plan is not None and plan.kind is Treatment.VERIFY:
                verified.append((message, plan))
        if verified:
            self._records.prepare(verified)

    @override
    def map_state_message(self, message_dict: dict[str, Any]) -> Iterable[Any]:
        self._out.barrier(message_dict)
        self._gate.check()
        self._writer.flush()
        return ()

    @override
    def map_activate_version_message(self, message_dict: dict[str, Any]) -> Iterable[Any]:
        self._out.barrier(message_dict)
        self._gate.check()
        return ()

    @override
    def map_batch_message(self, message_dict: dict[str, Any]) -> Iterable[Any]:
        """Refused in one line: the records sit in files this mapper does not read, and passing
        the message on would send them to the target unverified (the SDK raises a traceback)."""
        raise InputError(
            f"Input line {self._reader.line_number}: mapper-emailverify cannot read BATCH "
            "messages: turn off batch_config on the tap (plain RECORD messages are verified)."
        )

    @override
    def process_endofpipe(self) -> None:
        """End of input: every record read is verified and written, then held STATE follows."""
        self._input_ended = True
        self._gate.check()
        if not self._out.drain(self._stopping):
            self._check_stop()
        self._engine.close()
        self._writer.flush()
        self._close(interrupted=False)

    @override
    def _handle_termination(self, signum: int, frame: Any) -> None:
        self._guard.stop_signal = signum
        if self._guard.in_read:
            raise Interrupted(signum)

    @override
    @classmethod
    def invoke(  # type: ignore[override]  # keyword-only, as the SDK's CLI calls it
        cls,
        *,
        about: bool = False,
        about_format: str | None = None,
        config: Any = None,
        file_input: Any = None,
    ) -> None:
        """As `InlineMapper.invoke`, plus the SIGTERM/SIGINT exit of the module docstring."""
        super(InlineMapper, cls).invoke(about=about, about_format=about_format)
        cls.print_version(print_fn=cls.logger.info)
        from_meltano = meltano_plugin_config(logger=cls.logger)
        settings = {**from_meltano, **(config.config if config else {})}
        cls.from_meltano = tuple(sorted(from_meltano))
        mapper = cls(
            config=settings,
            validate_config=True,
            parse_env_config=config.parse_env if config is not None else False,
        )
        try:
            mapper.listen(file_input)
        except Interrupted as stop:
            mapper.abort(stop.signum)
            sys.exit(128 + stop.signum)
        except UserError as error:
            mapper.abort(None)
            exit_with(error, mapper.logger)

    def abort(self, signum: int | None) -> None:
        """Stop without writing unfinished records or the STATE held behind them (on a signal, or
        on a failure the user must fix when `signum` is None)."""
        unwritten, held_states = self._out.close()
        self._engine.close(cancel=True, timeout=5)
        with contextlib.suppress(BrokenPipeError):
            self._writer.flush()
        self.logger.warning(
            "Stopped%s: %d unfinished records and %d held messages (STATE/SCHEMA) were not "
            "written; the next run resumes from the last STATE written.",
            f" by signal {signum}" if signum is not None else "",
            unwritten,
            held_states,
        )
        self._close(interrupted=True)

    # -- plumbing ----------------------------------------------------------------------------------

    def _no_schema(self, stream: Any) -> None:
        shown = repr(stream) if isinstance(stream, str) and len(stream) <= 80 else "(unnamed)"
        raise self._reader.input_error(f"RECORD for stream {shown} before its SCHEMA message")

    def _environment_broken(self) -> bool:
        """Before unconfirmed verdicts go out: stop the run if they describe our environment."""
        health = self._records.health
        problem = health.problem(input_ended=self._input_ended)
        if problem is not None:
            self._guard.fail(problem)
            return True
        # Too few domains answered to judge the infrastructure Unknowns among them: hold what is
        # finished while the reader can still bring more (a full window must move on, as before).
        return not self._input_ended and not self._out.full and health.undecided()

    def _engine_counters(self) -> dict[str, int]:
        """The engine's figures of the run (catch-all probes, greylist retries), for the report."""
        counters = getattr(self._engine.engine, "counters", None)
        return dict(counters) if counters else {}

    def _stopping(self) -> bool:
        return self._guard.stopping

    def _check_stop(self) -> None:
        self._guard.check()

    def _flush_if_pending(self) -> None:
        if self._writer.pending_bytes:
            self._writer.flush()

    def _close(self, *, interrupted: bool) -> None:
        self._ticker.stop()
        self._cache.close()
        if self._knowledge is not None:
            self._knowledge.close()
        self.progress.log_final()
        self.progress.log_summary()
        if self._reader.repaired_records:
            self.logger.info(
                "%d records held lone UTF-16 surrogates (text that is not valid Unicode): "
                "replaced with U+FFFD, kept and verified.",
                self._reader.repaired_records,
            )
        report = self.progress.report(interrupted=interrupted)
        if self.settings.report_path:
            try:
                self.progress.write_report(self.settings.report_path, report=report)
            except OSError as exc:
                self.logger.error(
                    "Could not write report_path (%s): check the directory is writable.",
                    exc.strerror,
                )
        if self.settings.report_html_path:
            self._write_html_report(self.settings.report_html_path, report)

    def _write_html_report(self, path: str, report: dict[str, Any]) -> None:
        """The page of `report_html_path`; drawing it must never cost the run (its records are
        already out), so any failure is one ERROR line."""
        try:
            # Imported here: plotly loads only for the runs that draw the page.
            from mapper_emailverify.report.output import write_atomically
            from mapper_emailverify.report.page import render_html

            write_atomically(Path(path), render_html(report))
        except OSError as exc:
            self.logger.error(
                "Could not write report_html_path (%s): check the directory is writable.",
                exc.strerror or type(exc).__name__,
            )
        except Exception as exc:
            self.logger.error("Could not draw report_html_path: %s", type(exc).__name__)


if __name__ == "__main__":
    EmailVerifyMapper.cli()

"""`mapper-emailverify`: a Singer stream map that adds `{prefix}Status`, `{prefix}SubStatus` and
`{prefix}Validation_Timestamp` to every record of a stream that has an email field.

How a record gets its verdict, cheapest first: no address or a non-string value (decided here); a
verification the record already carries that is younger than `reverify_after_days` (see
`freshness`); the results cache (see `results_cache`); otherwise the verification engine, running
concurrently on a background event loop (see `engine_thread`). Output order and STATE safety are the
reorder buffer's job (see `ordering`): records may be reordered only between two barrier messages,
and a STATE message is written only after every record read before it.

Hard-bounce history: records of `bounce_history_stream` (type `bounces` or `invalid_emails`, or any
record when the stream has no `type` field) are remembered by hashed address for this run and, with
`cache_path`, for later runs; they pass through untouched. A Person verified before its bounce
record arrives keeps its verdict in this run; the bounce voids its cached verdict, so the next run
re-verifies it. In a `meltano run`, have the tap emit the bounce stream before the People stream to
apply bounces in the same run.

Signals: SIGTERM/SIGINT stop reading at once; verifications in flight are abandoned, their records
and every STATE message after them are never written (the next run resumes from the last STATE
written) and the mapper exits with 128 + signal number so that Meltano marks the run failed instead
of complete.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.helpers.capabilities import PluginCapabilities
from singer_sdk.mapper_base import InlineMapper

from mapper_emailverify.config import BACKENDS, ConfigError, VerifierConfig
from mapper_emailverify.engine_thread import Engine, EngineThread
from mapper_emailverify.freshness import FieldNames, carried_verdict
from mapper_emailverify.ordering import Interval, ReorderBuffer
from mapper_emailverify.progress import Progress, Ticker
from mapper_emailverify.results_cache import (
    DAY,
    DEFAULT_TRANSIENT_HOURS,
    Verdict,
    address_key,
    open_cache,
)
from mapper_emailverify.singer_io import (
    FLUSH_BYTES,
    BufferedMsgSpecWriter,
    EmailVerifyReader,
    InputError,
    Interrupted,
    InterruptibleInput,
)

#: Suppression types that are hard bounces (Customer.io as the sender: bounces and invalid emails).
HARD_BOUNCE_TYPES = frozenset({"bounces", "invalid_emails"})
WINDOW_PER_SLOT = 4  # records in flight or held, per unit of `concurrency`
MIN_WINDOW = 64
# The mapper's own results cache (SQLite or in memory) answers a repeated address before the engine
# is asked, so the engine's per-run memo of full results needs to be small: at the engine's default
# (100,000 results) it grew the mapper by about 80 MB per million People.
ENGINE_RESULT_MEMORY = 1_000
_MISSING = object()


@dataclass(frozen=True)
class StreamPlan:
    """What to do with the records of one stream, decided from its SCHEMA message."""

    kind: str  # "verify", "bounces" or "pass"
    path: tuple[str, ...] = ()

    def email(self, record: dict[str, Any]) -> Any:
        value: Any = record
        for part in self.path:
            if not isinstance(value, dict):
                return None
            value = value.get(part)
        return value


PASS = StreamPlan("pass")


def _schema_declares(schema: Any, path: tuple[str, ...]) -> bool | None:
    """Whether the schema declares the field; None when it does not say (no properties)."""
    node = schema
    for part in path:
        if not isinstance(node, dict):
            return False
        properties = node.get("properties")
        if not isinstance(properties, dict):
            alternatives = [
                alt
                for key in ("anyOf", "oneOf", "allOf")
                for alt in node.get(key) or ()
                if isinstance(alt, dict) and isinstance(alt.get("properties"), dict)
            ]
            if not alternatives:
                # An object that lists no properties (e.g. a tap's {"type": "object",
                # "additionalProperties": true}) does not say whether the field is there.
                return None if node.get("additionalProperties", True) is not False else False
            properties = {k: v for alt in alternatives for k, v in alt["properties"].items()}
        if part not in properties:
            return False
        node = properties[part]
    return True


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="seconds")


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

    config_jsonschema = th.PropertiesList(
        th.Property(
            "email_field",
            th.StringType,
            default="email",
            description="Field holding the address; a dotted path (a.email) reaches into objects.",
        ),
        th.Property(
            "stream_email_fields",
            th.ObjectType(additional_properties=th.StringType),
            description='Per-stream override of `email_field`, e.g. {"contacts": "work.email"}.',
        ),
        th.Property(
            "field_prefix",
            th.StringType,
            default="EV_",
            description="Fields added: {prefix}Status, {prefix}SubStatus, "
            "{prefix}Validation_Timestamp.",
        ),
        th.Property(
            "smtp_check",
            th.BooleanType,
            default=True,
            description="Ask the mail server about the mailbox (RCPT TO); off stops after DNS.",
        ),
        th.Property(
            "smtp_port", th.IntegerType, default=25, description="Port of the mail servers."
        ),
        th.Property(
            "helo_hostname",
            th.StringType,
            description="Name sent in EHLO; one whose forward and reverse DNS match this host.",
        ),
        th.Property(
            "mail_from",
            th.StringType,
            description="Envelope sender of probes (default verify@{helo_hostname}).",
        ),
        th.Property(
            "smtp_timeout",
            th.NumberType,
            default=10,
            description="Seconds to wait for each SMTP reply.",
        ),
        th.Property(
            "socks_proxy",
            th.StringType,
            secret=True,
            description="socks5://[user:pass@]host:port for hosts whose port 25 egress is blocked.",
        ),
        th.Property(
            "dns_nameservers",
            th.ArrayType(th.StringType),
            description="Resolvers as host or host:port; default is the system resolver.",
        ),
        th.Property("dns_timeout", th.NumberType, default=5, description="Seconds per DNS lookup."),
        th.Property(
            "concurrency", th.IntegerType, default=100, description="Verifications in flight."
        ),
        th.Property(
            "max_connections_per_mx",
            th.IntegerType,
            default=3,
            description="Simultaneous SMTP sessions per mail server (politeness).",
        ),
        th.Property(
            "backend",
            th.StringType,
            default="builtin",
            allowed_values=list(BACKENDS),
            description="builtin (own checks) or emailverify (the EmailVerify.io API).",
        ),
        th.Property(
            "emailverify_api_key", th.StringType, secret=True, description="EmailVerify.io API key."
        ),
        th.Property(
            "emailverify_api_url",
            th.StringType,
            description="Override of the EmailVerify.io API origin.",
        ),
        th.Property(
            "extra_disposable_domains",
            th.ArrayType(th.StringType),
            description="Domains treated as disposable in addition to the built-in list.",
        ),
        th.Property(
            "cache_path",
            th.StringType,
            description="SQLite file of past verdicts (hashed addresses only), reused across runs.",
        ),
        th.Property(
            "cache_ttl_days",
            th.NumberType,
            default=30,
            description=(
                "Days a cached verdict is reused (transient Unknown ones: see "
                "reverify_unknown_after_hours)."
            ),
        ),
        th.Property(
            "reverify_after_days",
            th.NumberType,
            default=90,
            description=(
                "A record already carrying a verification younger than this is not re-verified; "
                "0 always re-verifies."
            ),
        ),
        th.Property(
            "reverify_unknown_after_hours",
            th.NumberType,
            default=DEFAULT_TRANSIENT_HOURS,
            description=(
                "Unknown verdicts caused by the moment (timeouts, greylisting, blocks, DNS errors) "
                "are trusted only this long, carried or cached, so the next daily run retries them."
            ),
        ),
        th.Property(
            "bounce_history_stream",
            th.StringType,
            default="suppressions",
            description="Stream whose bounces / invalid_emails records feed the hard-bounce check.",
        ),
        th.Property(
            "report_path", th.StringType, description="Write the run summary as JSON to this file."
        ),
    ).to_dict()

    def __init__(
        self, *, engine_factory: Callable[[], Engine] | None = None, **kwargs: Any
    ) -> None:
        self._guard = InterruptibleInput()
        super().__init__(**kwargs)
        settings = dict(self.config)
        try:
            engine_config = VerifierConfig.from_settings(
                {"result_memory": ENGINE_RESULT_MEMORY, **settings}
            )
        except (ConfigError, ValueError, TypeError) as exc:
            message = str(exc) if isinstance(exc, ConfigError) else f"Invalid mapper setting: {exc}"
            raise ConfigValidationError(message, errors=[message]) from None
        self.message_reader.guard = self._guard
        self.names = FieldNames.for_prefix(settings.get("field_prefix") or "")
        self.email_field = settings.get("email_field") or "email"
        self.stream_email_fields: dict[str, str] = dict(settings.get("stream_email_fields") or {})
        self.bounce_stream: str | None = settings.get("bounce_history_stream") or None
        self.max_age = float(settings.get("reverify_after_days") or 0) * DAY
        transient_hours = settings.get("reverify_unknown_after_hours")
        transient_hours = (
            DEFAULT_TRANSIENT_HOURS if transient_hours is None else float(transient_hours)
        )
        self.transient_max_age = transient_hours * 3600.0
        self.report_path: str | None = settings.get("report_path") or None
        try:
            self._cache = open_cache(
                settings.get("cache_path"),
                float(settings.get("cache_ttl_days") or 0),
                transient_hours,
            )
        except (OSError, sqlite3.Error) as exc:
            message = f"cache_path cannot be opened as SQLite ({exc}); point it at a writable file."
            raise ConfigValidationError(message, errors=[message]) from None
        self._bounce_known = self._cache.has_bounces()
        self._plans: dict[str, StreamPlan] = {}
        self._writer: BufferedMsgSpecWriter = self.message_writer
        self._out = ReorderBuffer(
            self._writer.write_message, max(MIN_WINDOW, WINDOW_PER_SLOT * engine_config.concurrency)
        )
        if engine_factory is None:

            def engine_factory() -> Engine:
                # Imported on first use: a run answered from freshness and the cache never loads it.
                from mapper_emailverify.verifier import Verifier

                return Verifier(engine_config)

        self._engine = EngineThread(engine_factory, self.logger)
        self.progress = Progress(self.logger)
        self._ticker = Ticker(
            0.2, [self._flush_if_pending, self._cache.commit, self.progress.maybe_log], self.logger
        ).start()

    # -- SDK hooks ---------------------------------------------------------------------------------

    def map_schema_message(self, message_dict: dict) -> Iterable[Any]:
        """Decide per stream; add the three nullable fields to the schemas of streams that are
        verified.

        Messages leave through the reorder buffer, not the return value, because verdicts finish
        later.
        """
        self._assert_line_requires(message_dict, requires={"stream", "schema"})
        stream, schema = message_dict["stream"], message_dict["schema"]
        plan = self._plan_for(stream, schema)
        if self._plans.get(stream) != plan:
            self._describe(stream, plan)
        self._plans[stream] = plan
        if plan.kind == "verify":
            properties = (
                schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
            )
            message_dict = {
                **message_dict,
                "schema": {
                    **schema,
                    "properties": {
                        **properties,
                        self.names.status: {"type": ["string", "null"]},
                        self.names.substatus: {"type": ["string", "null"]},
                        self.names.timestamp: {"type": ["string", "null"], "format": "date-time"},
                    },
                },
            }
        self._out.barrier(message_dict)
        return ()

    def map_record_message(self, message_dict: dict) -> Iterable[Any]:
        out = self._out
        if out.size >= out.window:
            out.wait_for_room(self._stopping)
            self._check_stop()
        plan = self._plans.get(message_dict.get("stream"))  # type: ignore[arg-type]
        if plan is None:
            self._warn_no_schema(message_dict.get("stream"))
            plan = PASS
        if plan.kind == "verify":
            self._verify_record(message_dict, plan)
        else:
            if plan.kind == "bounces":
                self._remember_bounce(message_dict.get("record"), plan)
            self.progress.passthrough += 1
            out.ready(message_dict)
        if self._writer.pending_bytes >= FLUSH_BYTES:
            self._writer.flush()
        return ()

    def map_state_message(self, message_dict: dict) -> Iterable[Any]:
        self._out.barrier(message_dict)
        self._writer.flush()
        return ()

    def map_activate_version_message(self, message_dict: dict) -> Iterable[Any]:
        self._out.barrier(message_dict)
        return ()

    def process_endofpipe(self) -> None:
        """End of input: every record read is verified and written, then held STATE follows."""
        if not self._out.drain(self._stopping):
            self._check_stop()
        self._engine.close()
        self._writer.flush()
        self._close(interrupted=False)

    def _handle_termination(self, signum: int, frame: Any) -> None:
        self._guard.stop_signal = signum
        if self._guard.in_read:
            raise Interrupted(signum)

    @classmethod
    def invoke(  # type: ignore[override]
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
        mapper = cls(
            config=config.config if config is not None else None,
            validate_config=True,
            parse_env_config=config.parse_env if config is not None else False,
        )
        try:
            mapper.listen(file_input)
        except Interrupted as stop:
            mapper.abort(stop.signum)
            sys.exit(128 + stop.signum)
        except InputError as bad:
            mapper.abort(None)
            mapper.logger.error("%s", bad)
            sys.exit(1)

    def abort(self, signum: int | None) -> None:
        """Stop without writing unfinished records or the STATE held behind them (on a signal, or
        on bad input when `signum` is None)."""
        unwritten, held_states = self._out.close()
        self._engine.close(cancel=True, timeout=5)
        with contextlib.suppress(BrokenPipeError):
            self._writer.flush()
        self.logger.warning(
            "Stopped%s: %d unfinished records and %d held messages (STATE/SCHEMA) were not "
            "written; the next run resumes from the last STATE written.",
            f" by signal {signum}" if signum is not None else " on bad input",
            unwritten,
            held_states,
        )
        self._close(interrupted=True)

    # -- records -----------------------------------------------------------------------------------

    def _verify_record(self, message_dict: dict, plan: StreamPlan) -> None:
        record = message_dict.get("record")
        if not isinstance(record, dict):
            self.progress.passthrough += 1
            self._out.ready(message_dict)
            return
        value = plan.email(record)
        if value is None or (isinstance(value, str) and not value.strip()):
            self._finish_local(message_dict, record, Verdict("Unknown", "no_email", time.time()))
            return
        if not isinstance(value, str):
            self._finish_local(
                message_dict, record, Verdict("Invalid", "invalid_syntax", time.time())
            )
            return
        key = address_key(value)
        if self.max_age > 0:
            fresh = carried_verdict(
                record, self.names, time.time(), self.max_age, self.transient_max_age
            )
            # A bounce seen since that verification outranks it (unless it already said Invalid).
            if fresh is not None and (fresh.status == "Invalid" or not self._is_bounce(key)):
                self._finish_now(message_dict, record, "fresh", fresh)
                return
        cached = self._cache.get(key)  # a bounce voids the cached verdict, so no bounce check here
        if cached is not None:
            self._finish_now(message_dict, record, "cache", cached)
            return
        ticket = self._out.reserve()
        self._engine.submit(
            value, self._is_bounce(key), partial(self._on_verdict, ticket, message_dict, key)
        )

    def _finish_local(self, message_dict: dict, record: dict, verdict: Verdict) -> None:
        """A verdict that needs no lookup; a fresh carried copy of it keeps its timestamp (no rewrite)."""
        if self.max_age > 0:
            fresh = carried_verdict(
                record, self.names, time.time(), self.max_age, self.transient_max_age
            )
            if fresh is not None and (fresh.status, fresh.substatus) == (
                verdict.status,
                verdict.substatus,
            ):
                self._finish_now(message_dict, record, "fresh", fresh)
                return
        self._finish_now(message_dict, record, "local", verdict)

    def _is_bounce(self, key: str) -> bool:
        return self._bounce_known and self._cache.is_bounce(key)

    def _finish_now(self, message_dict: dict, record: dict, source: str, verdict: Verdict) -> None:
        names = self.names
        record[names.status] = verdict.status
        record[names.substatus] = verdict.substatus
        record[names.timestamp] = _iso(verdict.validated_at)
        self.progress.count(source, verdict.status, verdict.substatus)
        self._out.ready(message_dict)

    def _on_verdict(
        self, ticket: Interval, message_dict: dict, key: str, status: str, substatus: str
    ) -> None:
        """On the engine thread: remember, count, and hand the record to the reorder buffer."""
        now = time.time()
        try:
            self._cache.put(key, Verdict(status, substatus, now))
        except Exception as exc:  # a cache failure costs a re-check next run, never this record
            self.logger.warning("Could not store a verdict in the cache: %s", type(exc).__name__)
        record = message_dict["record"]
        names = self.names
        record[names.status] = status
        record[names.substatus] = substatus
        record[names.timestamp] = _iso(now)
        self.progress.count_engine(status, substatus)
        self._out.complete(ticket, message_dict)

    def _remember_bounce(self, record: Any, plan: StreamPlan) -> None:
        if not isinstance(record, dict):
            return
        kind = record.get("type", _MISSING)
        if kind is not _MISSING and kind not in HARD_BOUNCE_TYPES:
            return
        value = plan.email(record)
        if isinstance(value, str) and value.strip():
            self._cache.add_bounce(address_key(value))
            self._bounce_known = True
            self.progress.bounces += 1

    # -- streams -----------------------------------------------------------------------------------

    def _plan_for(self, stream: str, schema: Any) -> StreamPlan:
        field = self.stream_email_fields.get(stream, self.email_field)
        path = tuple(part for part in field.split(".") if part)
        if not path:
            return PASS
        declared = _schema_declares(schema, path)
        if stream == self.bounce_stream:
            return StreamPlan("bounces", path) if declared is not False else PASS
        if declared or (declared is None and stream in self.stream_email_fields):
            return StreamPlan("verify", path)
        return PASS

    def _describe(self, stream: str, plan: StreamPlan) -> None:
        field = ".".join(plan.path)
        if plan.kind == "verify":
            self.logger.info("Stream '%s': verifying field '%s'.", stream, field)
        elif plan.kind == "bounces":
            self.logger.info(
                "Stream '%s': hard-bounce history (field '%s'); records pass through.",
                stream,
                field,
            )
        else:
            wanted = self.stream_email_fields.get(stream, self.email_field)
            self.logger.info(
                "Stream '%s' has no field '%s' in its schema: records pass through untouched.",
                stream,
                wanted,
            )

    def _warn_no_schema(self, stream: Any) -> None:
        shown = repr(stream) if isinstance(stream, str) and len(stream) <= 80 else "(unnamed)"
        raise self.message_reader.input_error(
            f"RECORD for stream {shown} before its SCHEMA message"
        )

    # -- plumbing ----------------------------------------------------------------------------------

    def _stopping(self) -> bool:
        return self._guard.stop_signal is not None

    def _check_stop(self) -> None:
        if self._guard.stop_signal is not None:
            raise Interrupted(self._guard.stop_signal)

    def _flush_if_pending(self) -> None:
        if self._writer.pending_bytes:
            self._writer.flush()

    def _close(self, *, interrupted: bool) -> None:
        self._ticker.stop()
        self._cache.close()
        self.progress.log_summary()
        if self.report_path:
            try:
                self.progress.write_report(self.report_path, interrupted=interrupted)
            except OSError as exc:
                self.logger.error(
                    "Could not write report_path (%s): check the directory is writable.",
                    exc.strerror,
                )


if __name__ == "__main__":
    EmailVerifyMapper.cli()

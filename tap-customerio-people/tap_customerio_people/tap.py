"""tap-customerio-people: People, segments and suppressions from Customer.io's App API, US or EU."""

from __future__ import annotations

import functools
import logging
import sys
from typing import TYPE_CHECKING, Any, ClassVar

from singer_sdk import Tap
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.helpers.capabilities import PluginCapabilities, TapCapabilities
from typing_extensions import override

from . import errors, settings
from .ratelimit import RateLimiter
from .stats import RunStats
from .streams import PeopleStream, SegmentsStream, SuppressionsStream

if TYPE_CHECKING:
    from types import FrameType

    from singer_sdk.streams import Stream

    from .client import CustomerIOStream

# Sync order. Suppressions first: the mapper's hard-bounce check needs them before it verifies
# People (the SDK would sort streams by name, which puts People first).
STREAM_TYPES: tuple[type[CustomerIOStream], ...] = (
    SuppressionsStream,
    SegmentsStream,
    PeopleStream,
)


class TapCustomerIOPeople(Tap):
    """Reads every Person (or chosen segments) with current attributes, for email verification downstream."""  # noqa: E501  # one line: it is --about's description

    name = "tap-customerio-people"
    package_name = "tap-customerio-people"
    config_jsonschema = settings.CONFIG_SCHEMA
    #: Only what works through mapper-emailverify and target-customerio-ev
    #: (tests/test_capabilities.py): not `batch` (the mapper reads no BATCH messages, so
    #: `batch_config` is refused), not `activate-version` (the target deletes no People, so it
    #: would ignore the messages).
    capabilities: ClassVar[list[Any]] = [
        TapCapabilities.CATALOG,
        TapCapabilities.STATE,
        TapCapabilities.DISCOVER,
        PluginCapabilities.ABOUT,
        PluginCapabilities.STREAM_MAPS,
        PluginCapabilities.FLATTENING,
        PluginCapabilities.STRUCTURED_LOGGING,
    ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Built before any stream runs, so that every thread shares the very same budget: with a
        # partition, its share of the workspace's (README, "Partitioned runs").
        self.rate_limiter = RateLimiter(settings.request_rate(self.config))
        if partition := settings.partition(self.config):
            # Once, before any request (sync_all is final in the SDK: no later hook comes first).
            self.logger.info(
                "partition %s: this job reads the People whose cio_id hashes to share %d of %d, "
                "at %g requests/s (requests_per_second %g shared by %d jobs)",
                partition,
                partition.index,
                partition.count,
                self.rate_limiter.rate,
                settings.number(self.config, "requests_per_second"),
                partition.count,
            )
        self.stats = RunStats()
        # The SDK logs its METRIC lines at the plugin's level (INFO): one per request drowns the
        # progress a person follows, so they wait for `metrics_log_level` (README, "Logging").
        wanted = logging.getLevelName(str(settings.value(self.config, "metrics_log_level")))
        self.metrics_logger.setLevel(max(self.metrics_logger.getEffectiveLevel(), wanted))

    @override
    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        """JSON Schema, then the cross-setting rules: one line per problem, before any request."""
        self._region_given = bool(self.config.get("region"))
        schema = self.config_jsonschema
        self.append_builtin_config(schema)
        # The SDK's config dict itself, so that defaults are filled in where streams read them.
        problems = settings.schema_errors(self._config, schema)
        problems += settings.config_errors(self.config, region_given=self._region_given)
        if problems and raise_errors:
            raise ConfigValidationError("; ".join(problems), errors=problems, schema=schema)
        for problem in problems:
            self.logger.warning("Config problem: %s", problem)
        return problems

    @override
    def _handle_termination(self, signum: int, frame: FrameType | None) -> None:
        """Write the state reached, then exit 128+signum: a stopped extraction is not a success.

        The SDK exits 0 here, so `meltano run` would record a run cut short as complete.
        """
        try:
            self.state_writer.write_state(self.state)
        finally:
            self.logger.warning(
                "Stopped by signal %d before every record was read; run the tap again.", signum
            )
            sys.exit(128 + signum)

    @classmethod
    @override
    def invoke(cls, *args: Any, **kwargs: Any) -> None:
        """A problem the user can fix ends the run with its one-line message, not a traceback."""
        try:
            super().invoke(*args, **kwargs)
        except errors.UserError as exc:
            errors.exit_with(exc, cls.logger)

    @functools.cached_property
    def region(self) -> str:
        return settings.effective_region(self.config, region_given=self._region_given)

    @functools.cached_property
    def api_origin(self) -> str:
        return settings.api_origin(self.config, self.region)

    @override
    def discover_streams(self) -> list[Stream]:
        return [stream_type(self, run=self) for stream_type in STREAM_TYPES]

    @property
    @override
    def streams(self) -> dict[str, Stream]:
        """The SDK's streams, in `STREAM_TYPES` order (the order `sync_all` and discovery use)."""
        streams = super().streams
        rank: dict[type[Stream], int] = {kind: i for i, kind in enumerate(STREAM_TYPES)}
        ordered = sorted(streams, key=lambda name: rank.get(type(streams[name]), len(rank)))
        if list(streams) != ordered:
            # Reorder the SDK's own cached dict in place, once: it is what every caller gets.
            by_name = dict(streams)
            streams.clear()
            streams.update((name, by_name[name]) for name in ordered)
        return streams


if __name__ == "__main__":
    TapCustomerIOPeople.cli()

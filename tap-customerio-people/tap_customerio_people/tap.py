"""tap-customerio-people: People, segments and suppressions from the Customer.io App API (US or EU)."""

from __future__ import annotations

import functools
import sys
from typing import TYPE_CHECKING, Any

from singer_sdk import Tap
from singer_sdk.exceptions import ConfigValidationError

from . import errors, settings
from .ratelimit import RateLimiter
from .stats import RunStats
from .streams import PeopleStream, SegmentsStream, SuppressionsStream

if TYPE_CHECKING:
    from types import FrameType


class TapCustomerIOPeople(Tap):
    """Reads every Person (or chosen segments) with current attributes, for email verification downstream."""

    name = "tap-customerio-people"
    package_name = "tap-customerio-people"
    config_jsonschema = settings.CONFIG_SCHEMA

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Built before any stream runs, so that every thread shares the very same budget.
        rate = self.config.get("requests_per_second")
        self.rate_limiter = RateLimiter(
            float(rate) if isinstance(rate, (int, float)) and rate > 0 else 10.0
        )
        self.stats = RunStats()

    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        """JSON Schema, then the cross-setting rules: every problem in one line each, before any request."""
        self._region_given = bool(self._config.get("region"))
        schema = self.config_jsonschema
        self.append_builtin_config(schema)
        errors = settings.schema_errors(self._config, schema)  # also fills in defaults
        errors += settings.config_errors(self._config, region_given=self._region_given)
        if errors and raise_errors:
            raise ConfigValidationError("; ".join(errors), errors=errors, schema=schema)
        for error in errors:
            self.logger.warning("Config problem: %s", error)
        return errors

    def _handle_termination(self, signum: int, frame: FrameType | None) -> None:
        """Write the state reached, then exit 128+signum: a stopped extraction is not a success.

        The SDK exits 0 here, so `meltano run` would record a run cut short as complete.
        """
        try:
            self._state_writer.write_state(self.state)
        finally:
            self.logger.warning(
                "Stopped by signal %d before every record was read; run the tap again.", signum
            )
            sys.exit(128 + signum)

    @classmethod
    def invoke(cls, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """A problem the user can fix ends the run with its one-line message, not a traceback."""
        try:
            super().invoke(*args, **kwargs)
        except errors.ActionableError as exc:
            cls.logger.error("%s", exc)
            sys.exit(1)

    @functools.cached_property
    def region(self) -> str:
        return settings.effective_region(self.config, region_given=self._region_given)

    @functools.cached_property
    def api_origin(self) -> str:
        return settings.api_origin(self.config, self.region)

    def discover_streams(self) -> list[Any]:
        # Suppressions first: the mapper's hard-bounce check needs them before it verifies People.
        return [SuppressionsStream(self), SegmentsStream(self), PeopleStream(self)]

    def load_streams(self) -> list[Any]:
        """Sync in discovery order (the SDK sorts by name, which would put People before suppressions)."""
        return self.discover_streams()


if __name__ == "__main__":
    TapCustomerIOPeople.cli()

"""Run the tap in-process against a sandbox and parse what it wrote to stdout."""

from __future__ import annotations

import io
import json
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from typing import Any

import pytest
from tap_customerio_people.tap import TapCustomerIOPeople


@dataclass
class TapRun:
    tap: TapCustomerIOPeople
    records: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    messages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def people(self) -> list[dict[str, Any]]:
        return self.records["people"]


def parse_singer(text: str) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    messages = [json.loads(line) for line in text.splitlines() if line.strip()]
    records: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for message in messages:
        if message["type"] == "RECORD":
            records[message["stream"]].append(message["record"])
    return messages, records


def run_tap(config: dict[str, Any], streams: Iterable[str] = ("people",)) -> TapRun:
    """Sync the selected streams in-process, capturing stdout as the SDK's own test runner does."""
    tap = TapCustomerIOPeople(config=dict(config))
    wanted = set(streams)
    for name, stream in tap.streams.items():
        stream.selected = name in wanted
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    with redirect_stdout(out):
        tap.sync_all()
    out.seek(0)
    run = TapRun(tap)
    run.messages, records = parse_singer(out.read())
    run.records.update(records)
    return run


@pytest.fixture
def tap_run() -> Callable[..., TapRun]:
    return run_tap


class Lockstep:
    """Makes the listing's two concurrent passes take turns, so that search requests come in one
    fixed order: 1:1, 1:2, 2:1, 1:3, 2:2, 1:4, ... (pass:page). The listing itself only holds the
    second pass back (its page k waits for the first's page k+1); here the first also waits, before
    its page k+2, for the second's page k to be answered (or the second to be over). It is the
    closest the stagger lets the two cursors come, and it makes workspace changes keyed on
    (pass, page) land at the same point of both walks every time.
    """

    TIMEOUT_S = 30

    def __init__(self, passes: int = 2) -> None:
        self.passes = passes
        self._turn = threading.Condition()
        self._second_answered = 0
        self._second_over = False

    def before(self, number: int, page: int) -> None:
        """Call before page ``page`` of pass ``number`` (both 1-based) is asked for."""
        if self.passes == 1 or number != 1 or page < 3:
            return
        with self._turn:
            waited = self._turn.wait_for(
                lambda: self._second_over or self._second_answered >= page - 2, self.TIMEOUT_S
            )
        assert waited, f"pass 2 never answered its page {page - 2}"

    def after(self, number: int, page: int, *, last: bool) -> None:
        """Call once that page is answered (``last``: its answer ends the pass)."""
        if number == 2:
            with self._turn:
                self._second_answered, self._second_over = page, last
                self._turn.notify_all()

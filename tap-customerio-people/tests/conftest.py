"""Run the tap in-process against a sandbox and parse what it wrote to stdout."""

from __future__ import annotations

import io
import json
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

"""The cached path's shortcuts (issue 19, item 4) give what the plain way gives.

- The reader takes stdin in blocks (`singer_io.EmailVerifyReader._read_blocks`): the same
  messages, errors and line numbers as one line at a time, whatever the block boundaries, and it
  never waits for input while it holds a complete line.
- Runs of RECORD lines are decoded ahead and their addresses looked up in the cache together
  (`RecordVerifier.prepare`, `SqliteResultsCache.prefetch`): the same output as one lookup per
  record, bounces read between them included.
- `_iso` (the timestamp by whole second) and `normalize_address` (IDNA by domain) remember their
  work and answer what the plain formulas answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import json
import os
import random
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from mapper_emailverify.stream_map import records, singer_io
from mapper_emailverify.stream_map.mapper import EmailVerifyMapper
from mapper_emailverify.stream_map.singer_io import BufferedMsgSpecWriter, InputError
from mapper_emailverify.stream_map.verdict_cache import (
    MemoryResultsCache,
    SqliteResultsCache,
    Verdict,
    address_key,
    normalize_address,
)

DAY = 86400.0
SCHEMA = {
    "type": "SCHEMA",
    "stream": "people",
    "key_properties": ["id"],
    "schema": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "email": {"type": ["string", "null"]},
            "attributes": {"type": ["object", "null"]},
        },
    },
}
BOUNCES = {
    "type": "SCHEMA",
    "stream": "suppressions",
    "key_properties": [],
    "schema": {"properties": {"type": {"type": "string"}, "email": {"type": "string"}}},
}


class FakeEngine:
    """Valid for every address; Invalid/hard_bounce_history for a bounced one."""

    def __init__(self) -> None:
        self.bounces: set[str] = set()
        self.calls: list[str] = []

    def add_hard_bounces(self, addresses: Any) -> None:
        self.bounces.update(a.strip().lower() for a in addresses)

    async def verify(self, address: str) -> Any:
        self.calls.append(address)
        await asyncio.sleep(0.001)
        if address.strip().lower() in self.bounces:
            return SimpleNamespace(status="Invalid", substatus="hard_bounce_history")
        return SimpleNamespace(status="Valid", substatus="mailbox_exists")

    async def aclose(self) -> None:
        pass


def person(i: int, email: Any, **extra: Any) -> dict[str, Any]:
    return {
        "type": "RECORD",
        "stream": "people",
        "record": {"id": i, "email": email, **extra},
        "time_extracted": "2026-01-02T03:04:05.123456+00:00",
    }


def bounce(email: str) -> dict[str, Any]:
    return {
        "type": "RECORD",
        "stream": "suppressions",
        "record": {"type": "bounces", "email": email},
    }


def mixed_input(seed: int = 7) -> tuple[bytes, dict[str, Verdict]]:
    """Lines of every kind the cached path meets, and the cache verdicts to seed."""
    rng = random.Random(seed)
    old = time.time() - 3 * DAY
    cached = {
        f"known{i}@a{i % 7}.example": Verdict(
            rng.choice(["Valid", "Invalid", "Catch-All"]), "mailbox_exists", old + i
        )
        for i in range(60)
    }
    cached["bücher@bücher.example"] = Verdict("Valid", "mailbox_exists", old)
    cached["stale@a.example"] = Verdict("Valid", "mailbox_exists", time.time() - 90 * DAY)
    lines: list[Any] = [BOUNCES, SCHEMA]
    for i in range(200):
        kind = rng.randrange(10)
        if kind < 5:
            k = rng.randrange(60)
            lines.append(person(i, f" Known{k}@A{k % 7}.example"))
        elif kind == 5:
            carried = {
                "EV_Status": "Valid",
                "EV_SubStatus": "role_based",
                "EV_Validation_Timestamp": str(int(old)),
            }
            lines.append(person(i, f"fresh{i}@b.example", attributes=carried))
        elif kind == 6:
            lines.append(person(i, rng.choice([None, "", "  ", 42, "bücher@BÜCHER.example"])))
        elif kind == 7:
            k = rng.randrange(60)
            lines.append(bounce(f"known{k}@a{k % 7}.example"))
        elif kind == 8:
            lines.append({"type": "STATE", "value": {"bookmarks": {"people": i}}})
        else:
            lines.append(person(i, rng.choice(["new@c.example", "stale@a.example"])))
    text = "".join(json.dumps(line) + "\n" for line in lines)
    # a line the careful path reads (a lone surrogate), inside a run of records
    text += '{"type": "RECORD", "stream": "people", "record": {"id": 999, "email": "known1@a1.example", "n": "\\ud83d"}}\n'  # noqa: E501
    text += json.dumps(person(1000, "known2@a2.example")) + "\n"
    text += json.dumps({"type": "ACTIVATE_VERSION", "stream": "people", "version": 3}) + "\n"
    text += json.dumps(person(1001, "known3@a3.example"))  # the last line, without a line break
    return text.encode(), cached


def run(
    source: Any, cache_path: Path, *, report: Path | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    engine = FakeEngine()
    out = io.BytesIO()
    config: dict[str, Any] = {"cache_path": str(cache_path)}
    if report is not None:
        config["report_path"] = str(report)
    mapper = EmailVerifyMapper(
        config=config, engine_factory=lambda: engine, message_writer=BufferedMsgSpecWriter(out)
    )
    mapper.listen(source)
    return [json.loads(raw) for raw in out.getvalue().splitlines()], engine.calls


def seeded(tmp_path: Path, name: str, verdicts: dict[str, Verdict]) -> Path:
    path = tmp_path / name
    cache = SqliteResultsCache(path, ttl_days=30)
    for address, verdict in verdicts.items():
        cache.put(address_key(address), verdict)
    cache.close()
    return path


def normalized(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Timestamps of verdicts reached during the run (no address, engine) as "now"."""
    recent = time.time() - 600
    for message in messages:
        record = message.get("record")
        if isinstance(record, dict) and "EV_Validation_Timestamp" in record:
            stamp = dt.datetime.fromisoformat(record["EV_Validation_Timestamp"]).timestamp()
            if stamp > recent:
                record["EV_Validation_Timestamp"] = "now"
    return messages


def same_messages(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> bool:
    """The same other messages in the same order, and the same records."""

    def others(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [m for m in messages if m["type"] != "RECORD"]

    def records(messages: list[dict[str, Any]]) -> list[str]:
        return sorted(json.dumps(m, sort_keys=True) for m in messages if m["type"] == "RECORD")

    return others(got) == others(expected) and records(got) == records(expected)


def lines_of(data: bytes) -> Iterator[bytes]:
    """The input one line at a time (the reader's line path, as the SDK reads)."""
    yield from io.BytesIO(data)


@pytest.mark.parametrize("read_bytes", [1, 7, 333, 64 * 1024])
def test_blocks_give_what_one_line_at_a_time_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, read_bytes: int
) -> None:
    data, verdicts = mixed_input()
    expected, _ = run(lines_of(data), seeded(tmp_path, "a.sqlite", verdicts))
    monkeypatch.setattr(singer_io, "READ_BYTES", read_bytes)
    got, _ = run(io.BufferedReader(io.BytesIO(data)), seeded(tmp_path, "b.sqlite", verdicts))
    # records verified by the engine may overtake others (ordering.py): compare as sets
    assert same_messages(normalized(got), normalized(expected))
    sources = {
        m["record"].get("EV_SubStatus")
        for m in got
        if m.get("stream") == "people" and m["type"] == "RECORD"
    }
    assert {"mailbox_exists", "role_based", "no_email", "hard_bounce_history"} <= sources


def test_runs_are_looked_up_together_and_written_in_input_order(tmp_path: Path) -> None:
    data, verdicts = mixed_input(seed=11)
    path = seeded(tmp_path, "c.sqlite", verdicts)
    report = tmp_path / "report.json"
    prefetched: list[int] = []
    original = SqliteResultsCache.prefetch

    def counting(self: SqliteResultsCache, keys: Any, bounces: Any = ()) -> None:
        prefetched.append(len(keys))
        original(self, keys, bounces)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SqliteResultsCache, "prefetch", counting)
        out, _ = run(io.BufferedReader(io.BytesIO(data)), path, report=report)
    assert prefetched and max(prefetched) > 10  # many keys per query
    ids = [m["record"]["id"] for m in out if m.get("stream") == "people" and m["type"] == "RECORD"]
    assert ids[-1] == 1001 and {999, 1000} <= set(ids)  # 1001 after the ACTIVATE_VERSION
    assert json.loads(report.read_text())["by_source"]["cache"] > 50


def test_lines_across_reads_errors_and_their_line_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(singer_io, "READ_BYTES", 3)
    big = {"id": 2, "email": None, "blob": "x" * 5000}
    lines = [
        json.dumps(SCHEMA),
        json.dumps(person(1, None)),
        json.dumps({"type": "RECORD", "stream": "people", "record": big}),
        "",  # line 4: empty, not JSON
        json.dumps(person(3, None)),
    ]
    data = ("\n".join(lines) + "\n").encode()
    errors = []
    for source in (lines_of(data), io.BufferedReader(io.BytesIO(data))):
        out = io.BytesIO()
        mapper = EmailVerifyMapper(config={}, message_writer=BufferedMsgSpecWriter(out))
        with pytest.raises(InputError) as caught:
            mapper.listen(source)
        errors.append(str(caught.value))
        assert mapper.progress.snapshot()["records"] == 2  # the lines before it were handled
    assert errors[0] == errors[1]
    assert errors[0].startswith("Input line 4: A line of input is not valid JSON")


def test_the_reader_never_waits_for_input_while_it_holds_a_complete_line() -> None:
    read, write = os.pipe()
    source = os.fdopen(read, "rb")
    out = io.BytesIO()
    mapper = EmailVerifyMapper(config={}, message_writer=BufferedMsgSpecWriter(out))
    reader = mapper.message_reader
    assert isinstance(reader, singer_io.EmailVerifyReader)
    thread = threading.Thread(target=mapper.listen, args=(source,), daemon=True)
    thread.start()
    try:
        first = (json.dumps(SCHEMA) + "\n" + json.dumps(person(1, None)) + "\n").encode()
        os.write(write, first + b'{"type": "RECORD", "str')  # and half a line
        deadline = time.monotonic() + 10
        while reader.line_number < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert reader.line_number == 2, "a complete line waited for more input"
        assert mapper.progress.snapshot()["records"] == 1
        os.write(write, b'eam": "people", "record": {"id": 2, "email": null}}\n')
    finally:
        os.close(write)
        thread.join(10)
    assert not thread.is_alive()
    assert mapper.progress.snapshot()["records"] == 2


# -- the cache's batched lookups ------------------------------------------------------------------


def test_prefetch_answers_as_the_file_does_and_forgets_what_is_written(tmp_path: Path) -> None:
    now = time.time()
    cache = SqliteResultsCache(tmp_path / "p.sqlite", ttl_days=30)
    keys = [address_key(f"a{i}@x.example") for i in range(1200)]  # more than one query's worth
    for i, key in enumerate(keys[:600]):
        cache.put(key, Verdict("Valid", "mailbox_exists", now - i))
    cache.put(keys[1], Verdict("Unknown", "greylisted", now - 3 * DAY))  # transient: expired
    cache.put(keys[2], Verdict("Valid", "mailbox_exists", now - 60 * DAY))  # expired
    cache.add_bounce(keys[700])
    cache.commit()
    plain = [cache.get(key) for key in keys]
    bounced = [cache.is_bounce(key) for key in keys[600:800]]
    cache.prefetch(keys, keys[600:800])
    assert [cache.get(key) for key in keys] == plain
    assert [cache.is_bounce(key) for key in keys[600:800]] == bounced
    assert plain[0] is not None and plain[1] is None and plain[2] is None and plain[700] is None

    cache.prefetch(keys[:10], keys[:10])
    cache.put(keys[5], Verdict("Invalid", "mailbox_not_found", now))  # after the prefetch
    cache.add_bounce(keys[6])
    assert cache.get(keys[5]) == Verdict("Invalid", "mailbox_not_found", now)
    assert cache.get(keys[6]) is None and cache.is_bounce(keys[6])
    assert not cache.is_bounce(keys[7]) and cache.get(keys[7]) is not None
    cache.close()


def test_prefetch_reads_nothing_from_a_damaged_file(tmp_path: Path) -> None:
    path = tmp_path / "d.sqlite"
    cache = SqliteResultsCache(path, ttl_days=30)
    key = address_key("a@x.example")
    cache.put(key, Verdict("Valid", "mailbox_exists", time.time()))
    cache.commit()
    cache.prefetch([key])
    # as when a later read finds the file damaged: moved aside, a new file takes its place
    cache._failed(sqlite3.DatabaseError("database disk image is malformed"), writing=False)
    assert list(tmp_path.glob("d.sqlite.corrupt-*"))
    assert cache.get(key) is None  # the new file's answer, not what was read from the old one
    cache.close()


def test_the_memory_cache_has_nothing_to_prefetch() -> None:
    cache = MemoryResultsCache(ttl_days=30)
    cache.put("k", Verdict("Valid", "mailbox_exists", time.time()))
    cache.prefetch(["k", "other"], ["k"])
    assert cache.get("k") is not None and cache.get("other") is None


# -- remembered formatting and normalization ------------------------------------------------------


def test_iso_by_second_writes_what_datetime_writes() -> None:
    rng = random.Random(3)
    values: list[float] = [0.0, 1.0, 1e9, 1764766483.0, 1764766483.9999996, 1764766483.9999994]
    values += [1764766483 + rng.random() for _ in range(2000)]
    values += [rng.uniform(1, 4e9) for _ in range(2000)]
    values += [1764766483.999999 + k * 1e-7 for k in range(10)]
    for seconds in values:
        exact = dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="seconds")
        assert records._iso(seconds) == exact, seconds
        assert records._iso(seconds) == exact, seconds  # remembered
    for bad in (float("inf"), float("nan")):
        with pytest.raises((OverflowError, ValueError)):
            records._iso(bad)


def _normalized_plainly(address: str) -> str:
    text = address.strip()
    if text.isascii():
        return text.lower()
    local, at, domain = text.rpartition("@")
    if at:
        with contextlib.suppress(UnicodeError):
            domain = domain.encode("idna").decode("ascii")
        return f"{local.casefold()}@{domain.lower()}"
    return text.casefold()


@pytest.mark.parametrize(
    "address",
    [
        "José@Bücher.Example",
        " X@Y.COM ",
        "a@xn--bcher-kva.example",
        "a@" + "x" * 70 + "é.com",  # a label IDNA refuses
        "ünïcode-no-at",
        "A@B@Ü.de",
        "a@\udc80.example",
        "Straße@STRASSE.de",
        "a@ÉXAMPLE.com",
    ],
)
def test_normalize_address_remembers_what_the_formula_gives(address: str) -> None:
    assert normalize_address(address) == _normalized_plainly(address)
    assert normalize_address(address) == _normalized_plainly(address)  # remembered

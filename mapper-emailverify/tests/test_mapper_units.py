"""Unit tests of the mapper's own parts: reorder buffer, freshness, results cache, and the mapper's
record flow driven in-process with a tiny fake engine (the integration tests use the real engine).
"""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
import threading
import time
from types import SimpleNamespace

import pytest
from mapper_emailverify.stream_map.freshness import FieldNames, carried_verdict, parse_timestamp
from mapper_emailverify.stream_map.mapper import EmailVerifyMapper
from mapper_emailverify.stream_map.ordering import ReorderBuffer
from mapper_emailverify.stream_map.singer_io import BufferedMsgSpecWriter
from mapper_emailverify.stream_map.verdict_cache import (
    DAY,
    MemoryResultsCache,
    SqliteResultsCache,
    Verdict,
    address_key,
    normalize_address,
)

NAMES = FieldNames.for_prefix("EV_")


# -- reorder buffer
# -----------------------------------------------------------------------------------


def rec(n: int) -> dict:
    return {"type": "RECORD", "stream": "s", "record": {"n": n}}


def state(n: int) -> dict:
    return {"type": "STATE", "value": {"n": n}}


def test_state_waits_for_every_earlier_record_and_later_records_may_pass_it():
    out: list[dict] = []
    buf = ReorderBuffer(out.append, window=100)
    slow = buf.reserve()  # record 0, verdict pending
    buf.ready(rec(1))  # same interval: may overtake record 0
    buf.barrier(state(1))
    later = buf.reserve()  # record 2 (after the STATE)
    buf.ready(rec(3))  # may overtake the STATE: only the STATE waits for record 0
    assert out == [rec(1), rec(3)]
    buf.complete(later, rec(2))
    assert out == [rec(1), rec(3), rec(2)]
    buf.complete(slow, rec(0))
    assert out == [rec(1), rec(3), rec(2), rec(0), state(1)]
    assert buf.size == 0
    buf.barrier(state(2))  # nothing pending: written at once
    assert out[-1] == state(2)


def test_each_state_waits_only_for_the_records_before_it():
    out: list[dict] = []
    buf = ReorderBuffer(out.append, window=100)
    first = buf.reserve()
    buf.barrier(state(1))
    second = buf.reserve()
    buf.barrier(state(2))
    third = buf.reserve()
    buf.barrier(state(3))
    buf.complete(second, rec(2))
    buf.complete(third, rec(3))
    assert out == [rec(2), rec(3)]  # no STATE yet: record 1 is still pending
    buf.complete(first, rec(1))
    assert out == [rec(2), rec(3), rec(1), state(1), state(2), state(3)]


def test_records_never_pass_a_schema():
    out: list[dict] = []
    buf = ReorderBuffer(out.append, window=100)
    slow = buf.reserve()
    buf.barrier({"type": "SCHEMA", "stream": "s"})
    buf.ready(rec(1))
    later = buf.reserve()
    buf.complete(later, rec(2))
    assert out == []
    buf.complete(slow, rec(0))
    assert [m["type"] for m in out] == ["RECORD", "SCHEMA", "RECORD", "RECORD"]


def test_a_parked_record_leaves_the_window_but_holds_its_state_and_the_drain():
    out: list[dict] = []
    buf = ReorderBuffer(out.append, window=2)
    waiting = buf.reserve(100)
    buf.reserve(10)
    assert buf.full
    buf.park(waiting)  # a greylisting retry: the reader may go on
    assert not buf.full and buf.parked == 1 and buf.held_bytes == 110
    buf.barrier(state(1))
    assert not buf.drain(timeout=0.05)
    buf.complete(waiting, rec(0), 100)
    assert out == [rec(0)]  # the STATE still waits for the other record before it
    assert buf.parked == 0 and buf.size == 1


def test_consecutive_barriers_keep_their_order():
    out: list[dict] = []
    buf = ReorderBuffer(out.append, window=10)
    t = buf.reserve()
    buf.barrier({"type": "SCHEMA", "stream": "x"})
    buf.barrier(state(1))
    buf.barrier(state(2))
    assert out == []
    buf.complete(t, rec(0))
    assert [m["type"] for m in out] == ["RECORD", "SCHEMA", "STATE", "STATE"]


def test_window_blocks_the_reader_until_a_verdict_frees_room():
    out: list[dict] = []
    buf = ReorderBuffer(out.append, window=2)
    first = buf.reserve()
    buf.reserve()
    unblocked = threading.Event()

    def reader():
        buf.wait_for_room()
        unblocked.set()

    thread = threading.Thread(target=reader)
    thread.start()
    assert not unblocked.wait(0.3)
    buf.complete(first, rec(0))
    assert unblocked.wait(2)
    thread.join()


def test_close_drops_unfinished_records_and_their_state():
    out: list[dict] = []
    buf = ReorderBuffer(out.append, window=10)
    t = buf.reserve()
    buf.barrier(state(1))
    assert buf.close() == (1, 1)
    buf.complete(t, rec(0))
    assert out == []


# -- freshness
# ----------------------------------------------------------------------------------------


def test_parse_timestamp_forms():
    assert parse_timestamp("1700000000") == 1700000000
    assert parse_timestamp(1700000000000) == 1700000000
    assert parse_timestamp("2023-11-14T22:13:20Z") == 1700000000
    assert parse_timestamp("2023-11-14T22:13:20+00:00") == 1700000000
    for bad in ("", "soon", None, True, [], "0"):
        assert parse_timestamp(bad) is None


def test_fresh_verdict_from_customerio_attributes_and_from_top_level_fields():
    now = time.time()
    attrs = {
        "EV_Status": "Valid",
        "EV_SubStatus": "mailbox_exists",
        "EV_Validation_Timestamp": str(int(now - 10 * DAY)),
    }
    verdict = carried_verdict({"attributes": attrs}, NAMES, now, 90 * DAY)
    assert verdict == Verdict("Valid", "mailbox_exists", int(now - 10 * DAY))
    top = {
        "EV_Status": "Invalid",
        "EV_SubStatus": "mailbox_not_found",
        "EV_Validation_Timestamp": "2020-01-01T00:00:00Z",
        "attributes": attrs,
    }
    assert carried_verdict(top, NAMES, now, 90 * DAY) is None  # top-level wins, and it is stale
    stale = {**attrs, "EV_Validation_Timestamp": str(int(now - 200 * DAY))}
    assert carried_verdict({"attributes": stale}, NAMES, now, 90 * DAY) is None
    assert (
        carried_verdict({"attributes": {**attrs, "EV_Status": "Maybe"}}, NAMES, now, 90 * DAY)
        is None
    )
    future = {**attrs, "EV_Validation_Timestamp": str(int(now + 10 * DAY))}
    assert carried_verdict({"attributes": future}, NAMES, now, 90 * DAY) is None


def test_fresh_verdict_from_attributes_a_flattening_wrote_as_fields():
    """The tap's `flattening_enabled` writes `attributes.EV_Status` as `attributes__EV_Status`
    (or with another `flattening_separator`)."""
    now = time.time()
    attrs = {
        "EV_Status": "Valid",
        "EV_SubStatus": "mailbox_exists",
        "EV_Validation_Timestamp": str(int(now - 10 * DAY)),
        "plan": "pro",
    }
    expected = Verdict("Valid", "mailbox_exists", int(now - 10 * DAY))
    for separator in ("__", ".", "_", "/"):
        flat = {"cio_id": "1", **{f"attributes{separator}{k}": v for k, v in attrs.items()}}
        assert carried_verdict(flat, NAMES, now, 90 * DAY) == expected, separator
    stale = {f"attributes__{k}": v for k, v in attrs.items()}
    stale["attributes__EV_Validation_Timestamp"] = str(int(now - 200 * DAY))
    assert carried_verdict(stale, NAMES, now, 90 * DAY) is None
    # Not a flattening of `attributes`: another object's field, or a name that only ends alike.
    for parent in ("profile__", "attributesX"):
        other = {f"{parent}{k}": v for k, v in attrs.items()}
        assert carried_verdict(other, NAMES, now, 90 * DAY) is None, parent


# -- results cache
# ------------------------------------------------------------------------------------


def test_normalization_matches_spellings_of_one_mailbox():
    assert normalize_address("  Maria.Garcia@EXAMPLE.com ") == "maria.garcia@example.com"
    assert (
        normalize_address("A@Bücher-0.example") == "a@" + "bücher-0.example".encode("idna").decode()
    )
    assert address_key("X@Example.com") == address_key(" x@example.COM")
    assert address_key("x@example.com") != address_key("y@example.com")


def test_sqlite_cache_survives_reopen_expires_and_holds_no_address(tmp_path):
    path = tmp_path / "cache.sqlite"
    cache = SqliteResultsCache(path, ttl_days=30)
    now = time.time()
    cache.put(address_key("keep@example.com"), Verdict("Valid", "mailbox_exists", now))
    cache.put(address_key("old@example.com"), Verdict("Valid", "mailbox_exists", now - 31 * DAY))
    cache.put(address_key("grey@example.com"), Verdict("Unknown", "greylisted", now - 2 * DAY))
    cache.close()
    again = SqliteResultsCache(path, ttl_days=30)
    assert again.get(address_key("KEEP@example.com")) == Verdict("Valid", "mailbox_exists", now)
    assert again.get(address_key("old@example.com")) is None  # past cache_ttl_days
    assert again.get(address_key("grey@example.com")) is None  # transient: retried after a day
    again.add_bounce(address_key("keep@example.com"))
    assert again.get(address_key("keep@example.com")) is None  # a bounce voids the cached verdict
    assert again.is_bounce(address_key("Keep@Example.com")) and again.has_bounces()
    again.close()
    blob = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert b"example" not in blob and b"keep" not in blob
    rows = sqlite3.connect(path).execute("SELECT key FROM results").fetchall()
    assert all(len(key) == 64 for (key,) in rows)


def test_memory_cache_is_bounded():
    cache = MemoryResultsCache(ttl_days=30, max_entries=10)
    for i in range(50):
        cache.put(address_key(f"u{i}@example.com"), Verdict("Valid", "mailbox_exists", time.time()))
    assert len(cache._results) == 10
    assert cache.get(address_key("u49@example.com")) is not None
    assert cache.get(address_key("u0@example.com")) is None


# -- the mapper with a fake engine
# ---------------------------------------------------------------------


class FakeEngine:
    """Answers after a per-address delay: `slow@` addresses take longer, `bad@` ones are Invalid."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.bounces: set[str] = set()

    def add_hard_bounces(self, addresses):
        self.bounces.update(a.strip().lower() for a in addresses)

    async def verify(self, address):
        self.calls.append(address)
        await asyncio.sleep(0.3 if address.startswith("slow") else 0.01)
        if address.strip().lower() in self.bounces:
            return SimpleNamespace(status="Invalid", substatus="hard_bounce_history")
        if address.startswith("bad"):
            return SimpleNamespace(status="Invalid", substatus="mailbox_not_found")
        return SimpleNamespace(status="Valid", substatus="mailbox_exists")

    async def aclose(self):
        pass


def run_mapper(lines: list[dict], config: dict | None = None, engine: FakeEngine | None = None):
    engine = engine or FakeEngine()
    out = io.BytesIO()
    mapper = EmailVerifyMapper(
        config=config or {},
        engine_factory=lambda: engine,
        message_writer=BufferedMsgSpecWriter(out),
    )
    mapper.listen(io.StringIO("".join(json.dumps(line) + "\n" for line in lines)))
    return [json.loads(line) for line in out.getvalue().splitlines()], engine


SCHEMA = {
    "type": "SCHEMA",
    "stream": "people",
    "key_properties": ["id"],
    "bookmark_properties": ["id"],
    "schema": {
        "type": "object",
        "required": ["id"],
        "properties": {"id": {"type": "integer"}, "email": {"type": ["string", "null"]}},
    },
}


def person(i: int, email):
    return {
        "type": "RECORD",
        "stream": "people",
        "record": {"id": i, "email": email},
        "time_extracted": "2026-01-02T03:04:05.123456+00:00",
    }


def test_mapper_flow_with_fake_engine():
    lines = [
        SCHEMA,
        person(0, "slow@a.example"),
        person(1, "fast@a.example"),
        person(2, None),
        person(3, 42),
        state(1),
        person(4, "bad@b.example"),
        person(5, "fast@a.example"),
        state(2),
    ]
    out, _engine = run_mapper(lines)
    schema = out[0]
    assert schema["key_properties"] == ["id"] and schema["bookmark_properties"] == ["id"]
    assert schema["schema"]["required"] == ["id"]
    assert schema["schema"]["properties"]["EV_Validation_Timestamp"] == {
        "type": ["string", "null"],
        "format": "date-time",
    }
    kinds = [
        (m["type"], m.get("record", m.get("value", {})).get("id", m.get("value", {}).get("n")))
        for m in out[1:]
    ]
    # the slow record is overtaken (later records may pass a STATE), but no STATE passes a
    # record read before it
    assert kinds.index(("RECORD", 0)) > kinds.index(("RECORD", 1))
    assert kinds.index(("STATE", 1)) > max(kinds.index(("RECORD", i)) for i in range(4))
    assert kinds.index(("STATE", 2)) > max(kinds.index(("RECORD", i)) for i in range(6))
    records = {m["record"]["id"]: m for m in out if m["type"] == "RECORD"}
    assert (records[2]["record"]["EV_Status"], records[2]["record"]["EV_SubStatus"]) == (
        "Unknown",
        "no_email",
    )
    assert (records[3]["record"]["EV_Status"], records[3]["record"]["EV_SubStatus"]) == (
        "Invalid",
        "invalid_syntax",
    )
    assert records[4]["record"]["EV_SubStatus"] == "mailbox_not_found"
    assert all(m["time_extracted"] == "2026-01-02T03:04:05.123456+00:00" for m in records.values())
    assert records[5]["record"]["EV_SubStatus"] == "mailbox_exists"
    assert out[-1] == state(2)


def test_bounce_stream_feeds_the_check_and_passes_through_untouched():
    bounce_schema = {
        "type": "SCHEMA",
        "stream": "suppressions",
        "key_properties": [],
        "schema": {"properties": {"type": {"type": "string"}, "email": {"type": "string"}}},
    }
    lines = [
        bounce_schema,
        {
            "type": "RECORD",
            "stream": "suppressions",
            "record": {"type": "bounces", "email": "Gone@A.example"},
        },
        {
            "type": "RECORD",
            "stream": "suppressions",
            "record": {"type": "spam_reports", "email": "spam@a.example"},
        },
        SCHEMA,
        person(1, "gone@a.example"),
        person(2, "spam@a.example"),
    ]
    out, _ = run_mapper(lines)
    suppressions = [m for m in out if m.get("stream") == "suppressions" and m["type"] == "RECORD"]
    assert [m["record"] for m in suppressions] == [lines[1]["record"], lines[2]["record"]]
    people = {
        m["record"]["id"]: m["record"]
        for m in out
        if m.get("stream") == "people" and m["type"] == "RECORD"
    }
    assert people[1]["EV_SubStatus"] == "hard_bounce_history"
    assert people[2]["EV_SubStatus"] == "mailbox_exists"  # a spam report is not a bounce


def test_invalid_engine_setting_is_a_one_line_config_error():
    from singer_sdk.exceptions import ConfigValidationError

    with pytest.raises(ConfigValidationError, match="emailverify_api_key"):
        EmailVerifyMapper(config={"backend": "emailverify"})


# -- progress
# ------------------------------------------------------------------------------------------


def test_progress_line_summary_and_report(tmp_path, caplog):
    import logging

    from mapper_emailverify.stream_map.progress import Progress

    logger = logging.getLogger("test-progress")
    progress = Progress(logger, log_every=0)
    progress.count("cache", "Valid", "mailbox_exists")
    progress.count("local", "Unknown", "no_email")
    for _ in range(3):
        progress.count_engine("Invalid", "mailbox_not_found")
    with caplog.at_level(logging.INFO, logger="test-progress"):
        progress.maybe_log()  # log_every=0: no line until the last one
        progress.log_final()
        progress.log_summary()
    text = caplog.text
    assert text.count("Progress: ") == 1
    assert "Progress: 5 records, " in text and "Invalid 3" in text and "engine 3" in text
    assert "mailbox_not_found" in text and "total" in text
    progress.write_report(tmp_path / "r" / "report.json")
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["records"] == 5 and report["verified"] == 3 and report["completed"] is True
    assert report["by_status"]["Invalid"] == 3 and report["by_source"]["cache"] == 1
    assert report["by_substatus"]["Unknown"] == {"no_email": 1}


def test_cached_and_fresh_records_never_start_the_engine(tmp_path):
    cache = SqliteResultsCache(tmp_path / "c.sqlite", ttl_days=30)
    cache.put(address_key("known@a.example"), Verdict("Catch-All", "catch_all", time.time() - 60))
    cache.close()
    now = int(time.time())
    carried = {
        "EV_Status": "Valid",
        "EV_SubStatus": "role_based",
        "EV_Validation_Timestamp": str(now),
    }

    def no_engine():
        raise AssertionError("the engine was started for a cached or fresh record")

    out = io.BytesIO()
    mapper = EmailVerifyMapper(
        config={"cache_path": str(tmp_path / "c.sqlite")},
        engine_factory=no_engine,
        message_writer=BufferedMsgSpecWriter(out),
    )
    lines = [SCHEMA, person(1, " Known@A.example"), person(2, "other@a.example"), person(3, None)]
    lines[2]["record"]["attributes"] = carried
    mapper.listen(io.StringIO("".join(json.dumps(line) + "\n" for line in lines)))
    records = [json.loads(x)["record"] for x in out.getvalue().splitlines()[1:]]
    assert [(r["EV_Status"], r["EV_SubStatus"]) for r in records] == [
        ("Catch-All", "catch_all"),
        ("Valid", "role_based"),
        ("Unknown", "no_email"),
    ]
    assert not mapper.engine_started


def test_schema_declares_dotted_paths() -> None:
    from mapper_emailverify.stream_map.plan import schema_declares as _schema_declares

    nested = {
        "properties": {"contact": {"type": "object", "properties": {"email": {"type": "string"}}}}
    }
    assert _schema_declares(nested, ("contact", "email")) is True
    assert _schema_declares(nested, ("contact", "phone")) is False
    open_object = {
        "properties": {"contact": {"type": ["null", "object"], "additionalProperties": True}}
    }
    assert (
        _schema_declares(open_object, ("contact", "email")) is None
    )  # the tap did not say: may be there
    closed = {"properties": {"contact": {"type": "object", "additionalProperties": False}}}
    assert _schema_declares(closed, ("contact", "email")) is False
    assert _schema_declares({"properties": {"name": {"type": "string"}}}, ("email",)) is False


# -- verdicts already written are protected ------------------------------------------------------


class TimeoutEngine(FakeEngine):
    """Every re-check of a `flaky@` address ends in a transient Unknown (a timeout)."""

    async def verify(self, address):
        if address.startswith("flaky"):
            self.calls.append(address)
            return SimpleNamespace(status="Unknown", substatus="smtp_timeout")
        return await super().verify(address)


def _carrying(i: int, email: str, status: str, substatus: str, at: float) -> dict:
    line = person(i, email)
    line["record"]["attributes"] = {
        "EV_Status": status,
        "EV_SubStatus": substatus,
        "EV_Validation_Timestamp": str(int(at)),
    }
    return line


def test_a_transient_recheck_never_replaces_a_definite_earlier_verdict():
    stale = time.time() - 200 * 86400  # older than reverify_after_days: due for a re-check
    lines = [
        SCHEMA,
        _carrying(1, "flaky@a.example", "Valid", "mailbox_exists", stale),
        _carrying(2, "flaky2@a.example", "Unknown", "greylisted", stale),
        _carrying(3, "fast@a.example", "Invalid", "mailbox_not_found", stale),
        state(1),
    ]
    engine = TimeoutEngine()
    out, _ = run_mapper(lines, engine=engine)
    records = {m["record"]["id"]: m["record"] for m in out if m["type"] == "RECORD"}
    assert engine.calls == ["flaky@a.example", "flaky2@a.example", "fast@a.example"]
    # the earlier Valid stays, with its own timestamp: the target sees nothing to change
    assert (records[1]["EV_Status"], records[1]["EV_SubStatus"]) == ("Valid", "mailbox_exists")
    assert records[1]["EV_Validation_Timestamp"].startswith(
        time.strftime("%Y-%m-%d", time.gmtime(stale))
    )
    # an earlier Unknown is not definite: the new Unknown replaces it
    assert (records[2]["EV_Status"], records[2]["EV_SubStatus"]) == ("Unknown", "smtp_timeout")
    # a definite new verdict always replaces the earlier one
    assert (records[3]["EV_Status"], records[3]["EV_SubStatus"]) == ("Valid", "mailbox_exists")


def test_reverify_before_rechecks_fresh_and_cached_verdicts_from_before_that_time(tmp_path):
    now = time.time()
    cache = SqliteResultsCache(tmp_path / "c.sqlite", ttl_days=30)
    cache.put(address_key("cached@a.example"), Verdict("Invalid", "mailbox_not_found", now - 3600))
    cache.put(address_key("recent@a.example"), Verdict("Invalid", "mailbox_not_found", now - 60))
    cache.close()
    before = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 600))
    lines = [
        SCHEMA,
        _carrying(1, "fast@a.example", "Invalid", "mailbox_not_found", now - 3600),
        person(2, "cached@a.example"),
        person(3, "recent@a.example"),
        state(1),
    ]
    config = {"cache_path": str(tmp_path / "c.sqlite"), "reverify_before": before}
    out, engine = run_mapper(lines, config=config)
    records = {m["record"]["id"]: m["record"] for m in out if m["type"] == "RECORD"}
    assert sorted(engine.calls) == ["cached@a.example", "fast@a.example"]
    assert records[1]["EV_Status"] == "Valid" and records[2]["EV_Status"] == "Valid"
    assert records[3]["EV_Status"] == "Invalid"  # verified after reverify_before: trusted


def test_reverify_before_must_be_a_time():
    from singer_sdk.exceptions import ConfigValidationError

    with pytest.raises(ConfigValidationError, match="reverify_before must be an ISO 8601 time"):
        run_mapper([SCHEMA], config={"reverify_before": "last tuesday"})

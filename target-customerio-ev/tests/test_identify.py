"""Message building: identifier precedence, trait values, timestamps, skip_unchanged, messageId."""

from __future__ import annotations

import datetime as dt
import decimal
import json

import pytest
from target_customerio_ev.batching import encode
from target_customerio_ev.identify import (
    SKIPPED_EMPTY,
    SKIPPED_UNCHANGED,
    Identifier,
    Rejected,
    Write,
    WriteBuilder,
    comparable,
    identify,
    message_id,
)
from target_customerio_ev.pipelines import pipelines_identify
from target_customerio_ev.track import track_person

EV = ("EV_Status", "EV_SubStatus", "EV_Validation_Timestamp")
WHEN = dt.datetime(2026, 11, 1, 10, 30, 15, tzinfo=dt.UTC)
UNIX = 1793529015


def builder(**over):
    options = {
        "identify_by": "auto",
        "traits": EV,
        "timestamp_format": "unix",
        "skip_unchanged": True,
    }
    return WriteBuilder(
        datetime_fields=frozenset({"EV_Validation_Timestamp"}), **{**options, **over}
    )


def record(**over):
    base = {
        "cio_id": "3000001",
        "id": "100001",
        "email": " Maria.Garcia1@Example.com ",
        "attributes": {"plan": "pro"},
        "EV_Status": "Valid",
        "EV_SubStatus": "mailbox_exists",
        "EV_Validation_Timestamp": WHEN,
    }
    return {**base, **over}


@pytest.mark.parametrize(
    ("identify_by", "rec", "expected"),
    [
        ("auto", {"id": "42", "email": "a@b.example"}, Identifier("id", "42")),
        ("auto", {"id": "", "email": " a@b.example "}, Identifier("email", "a@b.example")),
        ("auto", {"id": None, "email": "a@b.example"}, Identifier("email", "a@b.example")),
        ("auto", {"id": 7, "email": None}, Identifier("id", "7")),
        ("auto", {"id": None, "email": "  "}, "no id and no email on the record"),
        ("id", {"id": None, "email": "a@b.example"}, "no id on the record"),
        ("email", {"id": "42", "email": "a@b.example"}, Identifier("email", "a@b.example")),
        ("email", {"id": "42"}, "no email on the record"),
        ("cio_id", {"cio_id": "3000abc", "id": "42"}, Identifier("cio_id", "3000abc")),
        ("cio_id", {"id": "42"}, "no cio_id on the record"),
    ],
)
def test_identifier_precedence(identify_by, rec, expected):
    assert identify(rec, identify_by) == expected


def test_unix_timestamp_and_no_sdc_keys():
    out = builder(traits=(*EV, "_sdc_extracted_at")).build(record(_sdc_extracted_at=WHEN))
    assert isinstance(out, Write)
    assert out.traits == {
        "EV_Status": "Valid",
        "EV_SubStatus": "mailbox_exists",
        "EV_Validation_Timestamp": UNIX,
    }
    assert isinstance(out.traits["EV_Validation_Timestamp"], int)


def test_iso8601_timestamp_from_datetime_and_from_text():
    iso = builder(timestamp_format="iso8601")
    assert iso.build(record()).traits["EV_Validation_Timestamp"] == "2026-11-01T10:30:15Z"
    # A date-time field that arrived as text (validation off, or another source) is converted too.
    text = record(EV_Validation_Timestamp="2026-11-01T12:30:15+02:00")
    assert builder().build(text).traits["EV_Validation_Timestamp"] == UNIX
    naive = record(EV_Validation_Timestamp=dt.datetime(2026, 11, 1, 10, 30, 15))
    assert builder().build(naive).traits["EV_Validation_Timestamp"] == UNIX


def test_other_value_types_are_json_safe():
    b = builder(traits=("score", "day", "nested", "flag"), skip_unchanged=False)
    out = b.build(
        record(
            score=decimal.Decimal("2.0"),
            day=dt.date(2026, 1, 2),
            nested={"at": WHEN, "n": decimal.Decimal("1.5")},
            flag=False,
        )
    )
    assert out.traits == {
        "score": 2,
        "day": "2026-01-02",
        "nested": {"at": UNIX, "n": 1.5},
        "flag": False,
    }
    json.loads(encode(pipelines_identify(out)))


def test_missing_traits_and_missing_identifier():
    assert (
        builder().build(record(EV_Status=None, EV_SubStatus=None, EV_Validation_Timestamp=None))
        == SKIPPED_EMPTY
    )
    rejected = builder().build(record(id=None, email=None))
    assert rejected == Rejected("no id and no email on the record", "3000001")


def test_skip_unchanged_compares_with_stored_strings():
    stored = {
        "EV_Status": "Valid",
        "EV_SubStatus": "mailbox_exists",
        "EV_Validation_Timestamp": str(UNIX),
    }
    assert builder().build(record(attributes=stored)) == SKIPPED_UNCHANGED
    # Sent as ISO 8601, stored by Customer.io as Unix seconds: still the same value.
    assert builder(timestamp_format="iso8601").build(record(attributes=stored)) == SKIPPED_UNCHANGED
    assert isinstance(builder().build(record(attributes={**stored, "EV_Status": "Invalid"})), Write)
    assert isinstance(
        builder().build(record(attributes={**stored, "EV_Validation_Timestamp": "1"})), Write
    )
    assert isinstance(builder(skip_unchanged=False).build(record(attributes=stored)), Write)
    assert isinstance(builder().build(record(attributes=None)), Write)


@pytest.mark.parametrize("separator", ["__", ".", "_"])
def test_skip_unchanged_reads_attributes_a_flattening_wrote_as_fields(separator):
    """The tap's or the target's `flattening_enabled` writes `attributes.EV_Status` as
    `attributes__EV_Status` (or with another `flattening_separator`)."""
    stored = {
        "EV_Status": "Valid",
        "EV_SubStatus": "mailbox_exists",
        "EV_Validation_Timestamp": str(UNIX),
        "plan": "pro",
    }
    flat = {f"attributes{separator}{k}": v for k, v in stored.items()}
    base = {k: v for k, v in record().items() if k != "attributes"}
    assert builder().build({**base, **flat}) == SKIPPED_UNCHANGED
    changed = {**flat, f"attributes{separator}EV_Status": "Invalid"}
    assert isinstance(builder().build({**base, **changed}), Write)
    assert isinstance(builder().build(base), Write)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (True, "true"),
        (5, "5"),
        (5.0, "5"),
        (decimal.Decimal("5"), "5"),
        ("5.0", 5),
        (WHEN, str(UNIX)),
        ("2026-11-01T10:30:15Z", str(UNIX)),
        (" Valid ", "Valid"),
    ],
)
def test_comparable_equal(a, b):
    assert comparable(a) == comparable(b)


def test_message_id_is_deterministic_and_sensitive():
    who = Identifier("id", "42")
    same = message_id(who, {"b": 1, "a": "x"})
    assert same == message_id(who, {"a": "x", "b": 1})
    assert same != message_id(who, {"a": "x", "b": 2})
    assert same != message_id(Identifier("email", "42"), {"a": "x", "b": 1})
    assert builder().build(record()).message_id == builder().build(record()).message_id


def test_pipelines_and_track_shapes():
    write = builder(identify_by="email").build(record())
    assert pipelines_identify(write) == {
        "type": "identify",
        "userId": "",
        "messageId": write.message_id,
        "traits": {
            "EV_Status": "Valid",
            "EV_SubStatus": "mailbox_exists",
            "EV_Validation_Timestamp": UNIX,
            "email": "Maria.Garcia1@Example.com",
        },
    }
    by_cio = builder(identify_by="cio_id").build(record())
    assert pipelines_identify(by_cio)["userId"] == "cio_3000001"
    assert track_person(by_cio, update_only=True) == {
        "type": "person",
        "action": "identify",
        "identifiers": {"cio_id": "3000001"},
        "attributes": {**by_cio.traits, "_update": True},
    }
    assert "_update" not in track_person(by_cio, update_only=False)["attributes"]

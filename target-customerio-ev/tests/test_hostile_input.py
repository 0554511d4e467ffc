"""Hostile input into the target (issue 16).

- A lone UTF-16 surrogate (`"\\ud83d"`, which the App API's JSON allows) in a record: replaced with
  U+FFFD, the Person still written (the sandbox decodes each request body as strict UTF-8 JSON, so
  what lands is what the body held), one WARNING naming the record by stream and key properties,
  never its address; counted at the end. Twice in a row, as a scheduled job would.
- How a line is decoded (`reader.decode_message`): a Singer envelope key given twice, JSON that is
  not an object and nesting past what a parser follows are input errors (the executables' one-line
  errors are in tests/test_bad_input_singer.py); repeated keys inside a record are not.
"""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cio_sandbox import Sandbox
from target_customerio_ev.reader import LineProblem, decode_message

TRAITS = ["EV_Status", "EV_SubStatus", "EV_Validation_Timestamp", "nickname"]


@pytest.mark.slow
def test_lone_surrogates_are_replaced_and_the_people_written(
    sb: Sandbox, h: SimpleNamespace, tmp_path: Path
) -> None:
    people = [p for p in sb.world.iter_people() if p.id and p.email and p.email.strip()][:3]
    records = [h.person_record(p, nickname=f"nick {i}") for i, p in enumerate(people)]
    records[0]["nickname"] = "Ana \ud83d"
    records[1]["attributes"] = {**records[1]["attributes"], "\udc00odd": "x"}
    records[2]["nickname"] = "\ud83d\ude00 fine"
    schema = json.loads(json.dumps(h.PEOPLE_SCHEMA))
    schema["properties"]["nickname"] = {"type": ["string", "null"]}
    lines = h.singer_lines(records, schema=schema, state_every=3)
    assert '"Ana \\ud83d"' in lines[1]  # json.dumps writes the escape, as the App API may
    config = sb.target_config(traits=TRAITS)
    for attempt in (1, 2):
        sb.obs.reset_counters()
        run = h.run_executable(tmp_path, config, lines)
        assert run.returncode == 0, run.stderr[-3000:]
        assert "Traceback" not in run.stderr
        landed = sb.obs.landed_copy()
        assert landed[people[0].cio_id]["nickname"] == "Ana \ufffd", attempt
        assert landed[people[1].cio_id]["nickname"] == "nick 1"
        assert landed[people[2].cio_id]["nickname"] == "\U0001f600 fine"
        for person in people:
            assert landed[person.cio_id]["EV_Status"] == person.truth.status
        assert run.states and run.states[-1]["bookmarks"]["people"]["position"] == 3
        warnings = [row for row in run.stderr.splitlines() if "WARNING" in row and "U+FFFD" in row]
        assert len(warnings) == 2, warnings
        for number, person in ((2, people[0]), (3, people[1])):
            [row] = [w for w in warnings if f"line {number}:" in w]
            assert "'people'" in row and f"cio_id '{person.cio_id}'" in row, row
        assert all(p.email.strip() not in run.stderr for p in people), "an address was logged"
        assert "2 records held lone UTF-16 surrogates" in run.stderr


@pytest.mark.parametrize(
    "text",
    [
        '{"type": "RECORD", "stream": "s", "record": {}, "type": "STATE", "value": {}}',
        '{"type": "RECORD", "stream": "s", "record": {}, "\\u0074ype": "STATE", "value": {}}',
        '{"type": "STATE", "value": {}, "type": "RECORD", "stream": "s", "record": {}}',
        '{"type": "SCHEMA", "stream": "s", "schema": {}, "key_properties": [], "schema": {}}',
        '{"type": "STATE", "value": {}, "value": {"x": 1}}',
    ],
)
def test_a_repeated_envelope_key_is_bad_input(text: str) -> None:
    with pytest.raises(LineProblem, match="more than once"):
        decode_message(text)


@pytest.mark.xfail(
    strict=True,
    reason="Issue 16 trade-off, as in the mapper: a RECORD repeating a key of its own type is "
    "read last-wins (as the SDK's reader does)",
)
def test_a_record_repeating_a_key_of_its_own_type() -> None:
    with pytest.raises(LineProblem, match="more than once"):
        decode_message('{"type": "RECORD", "stream": "s", "stream": "t", "record": {}}')


def test_repeated_keys_inside_the_record_are_the_records_business() -> None:
    message, repaired = decode_message(
        '{"type": "RECORD", "stream": "s", "record": {"type": "a", "type": "b", "n": 2.5}}'
    )
    assert message == {
        "type": "RECORD",
        "stream": "s",
        "record": {"type": "b", "n": Decimal("2.5")},
    }
    assert not repaired


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[1]", "not a JSON object"),
        ("null", "not a JSON object"),
        ('{"a": ' * 10_000 + "1" + "}" * 10_000, "nested"),
        ('{"type": "RECORD", "record": {"x": NaN}}', "not valid JSON"),
    ],
)
def test_what_no_parser_should_accept(text: str, problem: str) -> None:
    with pytest.raises(LineProblem, match=problem):
        decode_message(text)


def test_lone_surrogates_are_replaced_in_values_and_keys() -> None:
    message, repaired = decode_message(
        '{"type": "RECORD", "stream": "s", '
        '"record": {"\\udfff": "a\\ud83d", "ok": "\\ud83d\\ude00"}}'
    )
    assert repaired
    record: dict[str, Any] = message["record"]
    assert record == {"\ufffd": "a\ufffd", "ok": "\U0001f600"}


def test_bytes_that_are_not_utf8_are_an_input_error(sb: Sandbox, tmp_path: Path) -> None:
    """stdin is read as text with surrogateescape: msgspec then raised UnicodeEncodeError."""
    config = tmp_path / "target.json"
    config.write_text(json.dumps(sb.target_config()))
    done = subprocess.run(
        [str(Path(sys.executable).with_name("target-customerio-ev")), "--config", str(config)],
        input=b'{"type": "STATE", "value": {}}\n{"type": "STATE", "value": {"a": "\xff"}}\n',
        capture_output=True,
        timeout=60,
    )
    stderr = done.stderr.decode("utf-8", "replace")
    assert done.returncode != 0 and "Traceback" not in stderr, stderr[-2000:]
    [error] = [row for row in stderr.splitlines() if "ERROR" in row]
    assert "Input line 2 is not valid JSON" in error, error

"""The target against the sandbox's Pipelines API.

Landing, sizes, skip_unchanged, faults, dead letters, auth.
"""

from __future__ import annotations

import json
import logging

import pytest
from target_customerio_ev.deadletter import DeadLetters
from target_customerio_ev.identify import Identifier, Write, message_id
from target_customerio_ev.pipelines import PipelinesSender
from target_customerio_ev.settings import Settings
from target_customerio_ev.stats import RunStats


def everyone(sb, h, **kw):
    return [h.person_record(p, **kw) for p in sb.world.iter_people()]


def test_every_record_lands_once_with_the_right_identifier_and_types(sb, h, tmp_path):
    config = sb.target_config(dead_letter_path=str(tmp_path / "dead.jsonl"))
    target, run = h.run_in_process(config, h.singer_lines(everyone(sb, h), state_every=100))
    assert run.states[-1] == {"bookmarks": {"people": {"position": 600}}}
    landed, writes = sb.obs.landed_copy(), dict(sb.obs.writes)
    expected: dict[str, list] = {}
    for p in sb.world.iter_people():
        key = h.expected_key(sb.world, p)
        if key is not None:
            expected.setdefault(key, []).append(p)
    assert set(landed) == set(expected)
    for key, people in expected.items():
        traits = landed[key]
        assert writes[key] == len({(q.truth.status, q.truth.substatus) for q in people})
        assert traits["EV_Validation_Timestamp"] == int(h.VERIFIED_AT.timestamp())
        assert isinstance(traits["EV_Validation_Timestamp"], int)
        assert (traits["EV_Status"], traits["EV_SubStatus"]) in {
            (q.truth.status, q.truth.substatus) for q in people
        }
        assert not [k for k in traits if k.startswith("_sdc")]
        if all(q.id is None for q in people):
            assert traits["email"] == people[0].email.strip()  # empty userId + traits.email
        else:
            assert "email" not in traits
    assert sb.obs.snapshot()["dropped_calls"] == 0 and not sb.obs.rejected
    assert target.stats["written"] == sum(
        1 for p in sb.world.iter_people() if h.expected_key(sb.world, p)
    )
    assert target.stats["dead_lettered"] == 0 and not (tmp_path / "dead.jsonl").exists()


def test_replaying_a_batch_is_harmless(sb, h):
    lines = h.singer_lines(everyone(sb, h)[:200])
    h.run_in_process(sb.target_config(), lines)
    first = dict(sb.obs.writes)
    h.run_in_process(sb.target_config(skip_unchanged=False), lines)
    assert dict(sb.obs.writes) == first  # same messageIds: Customer.io deduplicates the replay


def test_skip_unchanged_second_run_sends_nothing(sb, h):
    records = everyone(sb, h)
    first, _ = h.run_in_process(sb.target_config(), h.singer_lines(records))
    assert first.stats["written"] > 500
    landed = sb.obs.landed_copy()
    # The second run reads the People back as the tap would: attributes hold what landed, as text.
    again, differ = [], 0
    for rec, p in zip(records, sb.world.iter_people(), strict=True):
        stored = landed.get(h.expected_key(sb.world, p) or "", {})
        # Email-only People sharing another Person's address hold whichever verdict landed last.
        differ += bool(stored) and (stored["EV_Status"], stored["EV_SubStatus"]) != (
            p.truth.status,
            p.truth.substatus,
        )
        again.append(
            {**rec, "attributes": {**rec["attributes"], **{k: str(v) for k, v in stored.items()}}}
        )
    sb.obs.reset_counters()
    second, run = h.run_in_process(sb.target_config(), h.singer_lines(again, state_every=50))
    assert second.stats["written"] == differ and len(sb.obs.writes) == differ
    assert second.stats["skipped_unchanged"] == first.stats["written"] - differ
    if not differ:
        assert sb.obs.requests_to("pipelines") == 0
    assert run.states[-1]["bookmarks"]["people"]["position"] == 600


def test_big_traits_respect_the_size_limits(sb, h, tmp_path):
    people = list(sb.world.iter_people())[:120]
    records = [h.person_record(p, notes="n" * (3_000 + 250 * i)) for i, p in enumerate(people)]
    schema = {
        **h.PEOPLE_SCHEMA,
        "properties": {**h.PEOPLE_SCHEMA["properties"], "notes": {"type": "string"}},
    }
    config = sb.target_config(
        traits=["EV_Status", "notes"], dead_letter_path=str(tmp_path / "dead.jsonl")
    )
    target, _ = h.run_in_process(config, h.singer_lines(records, schema=schema))
    too_big = [p for i, p in enumerate(people) if 3_000 + 250 * i > 32 * 1024 - 200]
    assert too_big  # the data set really crosses the 32 KB line
    dead = [json.loads(line) for line in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert all(d["reason"].startswith("message too large") for d in dead)
    assert {d["cio_id"] for d in dead} <= {p.cio_id for p in too_big}
    assert target.stats["written"] + target.stats["dead_lettered"] == 120
    assert (
        not sb.obs.rejected and sb.obs.snapshot()["dropped_calls"] == 0
    )  # nothing over 500 KB or 32 KB sent
    assert sb.obs.requests_to("pipelines") >= (120 - len(dead)) * 18_000 // 450_000


@pytest.mark.parametrize("fault", ["storm", "errors", "drops", "timeouts"])
def test_faults_lose_nothing(sb, h, fault):
    faults = sb.obs.faults
    if fault == "storm":
        faults.storm("pipelines", 1.5)
    elif fault == "errors":
        faults.pipelines_error_rate = 0.4
    elif fault == "drops":
        faults.pipelines_drop_rate = 0.4
    else:
        faults.pipelines_timeout_rate, faults.pipelines_timeout_seconds = 0.3, 3.0
    config = sb.target_config(
        max_batch_messages=50, max_retries=12, max_backoff_seconds=0.5, request_timeout=1.0
    )
    target, run = h.run_in_process(config, h.singer_lines(everyone(sb, h), state_every=100))
    expected = {h.expected_key(sb.world, p) for p in sb.world.iter_people()} - {None}
    assert set(sb.obs.landed) == expected
    assert target.stats["retries"] > 0 and target.stats["dead_lettered"] == 0
    assert run.states[-1]["bookmarks"]["people"]["position"] == 600
    if fault == "storm":
        assert sb.obs.rate_limited["pipelines"] > 0


@pytest.mark.parametrize("names_items", [False, True])
def test_a_bad_message_is_dead_lettered_while_its_batch_mates_land(sb, tmp_path, names_items):
    """A message the API refuses (traits not an object) is isolated, whether the 400 names it or
    not (its format is unpublished: then the batch is bisected); every other one lands."""
    sb.obs.faults.pipelines_strict_names_items = names_items
    settings = Settings.from_config(sb.target_config(dead_letter_path=str(tmp_path / "dead.jsonl")))
    stats = RunStats()
    sender = PipelinesSender(
        settings,
        stats,
        DeadLetters(settings.dead_letter_path, logging.getLogger("t")),
        logging.getLogger("t"),
    )
    writes = []
    for p in list(sb.world.iter_people())[:40]:
        if p.id is None:
            continue
        traits = (
            ["not", "an", "object"] if len(writes) in (3, 17) else {"EV_Status": p.truth.status}
        )
        who = Identifier("id", p.id)
        writes.append(Write(who, traits, message_id(who, {"t": traits}), p.cio_id))  # type: ignore[arg-type]  # bad traits on purpose
    sender.send(writes, "people")
    sender.close()
    bad = {writes[3].cio_id, writes[17].cio_id}
    assert set(sb.obs.landed) == {w.cio_id for w in writes} - bad
    dead = [json.loads(line) for line in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert {d["cio_id"] for d in dead} == bad
    said = "traits must be an object" if names_items else "failed validation"
    assert all(said in d["reason"] for d in dead)
    assert stats["dead_lettered"] == 2 and stats["written"] == len(writes) - 2


def test_records_without_identifier_and_streams_without_traits(sb, h, caplog):
    people = list(sb.world.iter_people())[:30]
    records = [
        h.person_record(p, id=None, email=None) if i < 3 else h.person_record(p)
        for i, p in enumerate(people)
    ]
    lines = h.singer_lines(records)
    lines += h.singer_lines(
        [{"id": 1, "name": "Signed up"}],
        stream="segments",
        key_properties=("id",),
        schema={
            "type": "object",
            "properties": {"id": {"type": "integer"}, "name": {"type": "string"}},
        },
    )
    with caplog.at_level(logging.INFO):
        target, _ = h.run_in_process(sb.target_config(), lines)
    assert target.stats["dead_lettered"] == 3 and target.stats["written"] == 27
    assert len(sb.obs.landed) == 27
    messages = [r.getMessage() for r in caplog.records]
    assert sum("Stream 'segments' carries none of the traits" in m for m in messages) == 1
    dead = [m for m in messages if m.startswith("Dead letter")]
    assert len(dead) == 3 and all("no id and no email" in m and "@" not in m for m in dead)


def test_dry_run_sends_nothing_and_reports(sb, h, caplog):
    with caplog.at_level(logging.INFO):
        target, _ = h.run_in_process(
            sb.target_config(dry_run=True), h.singer_lines(everyone(sb, h)[:100])
        )
    assert sb.obs.requests_to("pipelines") == 0 and not sb.obs.landed
    assert target.stats["would_send"] == 100
    assert any(
        r.getMessage().startswith("Dry run: would send 100 identifies") for r in caplog.records
    )


def test_wrong_key_gives_one_line(sb, h, tmp_path):
    secret = "sbx_cdp_wrong_k3y_do_not_log"
    run = h.run_executable(
        tmp_path, sb.target_config(pipelines_api_key=secret), h.singer_lines(everyone(sb, h)[:20])
    )
    assert run.returncode == 1 and run.states == []
    errors = [line for line in run.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1, run.stderr
    assert "Pipelines (CDP) API write key" in errors[0] and "region 'us'" in errors[0]
    assert "Traceback" not in run.stderr and secret not in run.stderr and "@" not in run.stderr
    assert not sb.obs.landed


def test_a_record_that_breaks_its_schema_is_dead_lettered_without_personal_data(
    sb, h, caplog, tmp_path
):
    people = [p for p in sb.world.iter_people() if p.id and p.email][:10]
    records = [h.person_record(p) for p in people]
    records[4]["EV_Status"] = 404  # the schema says string
    with caplog.at_level(logging.INFO):
        target, run = h.run_in_process(
            sb.target_config(dead_letter_path=str(tmp_path / "dead.jsonl")),
            h.singer_lines(records, state_every=10),
        )
    assert run.states and target.stats["written"] == 9 and target.stats["dead_lettered"] == 1
    assert people[4].cio_id not in sb.obs.landed and len(sb.obs.landed) == 9
    (dead,) = [json.loads(line) for line in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert dead["cio_id"] == people[4].cio_id and "EV_Status" in dead["reason"]
    assert people[4].email.strip() not in caplog.text and "@" not in caplog.text

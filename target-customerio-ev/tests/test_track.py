"""api: track with update_only against the sandbox's Track v2 batch endpoint."""

from __future__ import annotations

import json
import logging

from target_customerio_ev.deadletter import DeadLetters
from target_customerio_ev.identify import Identifier, Write
from target_customerio_ev.settings import Settings
from target_customerio_ev.stats import RunStats
from target_customerio_ev.track import TrackSender


def track_config(sb, **over):
    config = {
        "api": "track",
        "track_site_id": sb.keys.track_site_id,
        "track_api_key": sb.keys.track_api_key,
        "track_api_url": sb.track_url,
        **over,
    }
    return sb.target_config(**config)


def test_update_only_never_creates_people(sb, h):
    people = list(sb.world.iter_people())[:80]
    strangers = [
        h.person_record(p, id=f"9{p.index:08d}", email=None, cio_id=f"ffff{p.index}")
        for p in people[:10]
    ]
    records = [h.person_record(p) for p in people] + strangers
    target, run = h.run_in_process(
        track_config(sb, update_only=True), h.singer_lines(records, state_every=30)
    )
    landed = sb.obs.landed_copy()
    expected = {h.expected_key(sb.world, p) for p in people} - {None}
    assert set(landed) == {
        k for k in expected if not k.startswith("new:")
    }  # unknown People left alone
    assert sb.obs.requests_to("pipelines") == 0 and sb.obs.requests_to("track") >= 1
    for p in people:
        if p.id is not None:
            assert landed[p.cio_id]["EV_Validation_Timestamp"] == int(h.VERIFIED_AT.timestamp())
            assert "_update" not in landed[p.cio_id]
    assert (
        target.stats["written"] == 90
    )  # the API accepted every item (an update of nobody is a no-op)
    assert run.states[-1]["bookmarks"]["people"]["position"] == 90


def test_without_update_only_track_creates(sb, h):
    p = sb.world.person(0)
    h.run_in_process(
        track_config(sb), h.singer_lines([h.person_record(p, id="987654321", cio_id="ffff0")])
    )
    assert set(sb.obs.landed) == {"new:987654321"}


def test_per_item_207_errors_are_dead_lettered_and_the_rest_land(sb, tmp_path):
    settings = Settings.from_config(track_config(sb, dead_letter_path=str(tmp_path / "dead.jsonl")))
    stats = RunStats()
    log = logging.getLogger("t")
    sender = TrackSender(settings, stats, DeadLetters(settings.dead_letter_path, log), log)
    writes = []
    for i, p in enumerate(p for p in sb.world.iter_people() if p.id):
        if i == 30:
            break
        kind = "phone" if i in (4, 21) else "id"  # Track v2 accepts only id, email or cio_id
        writes.append(
            Write(Identifier(kind, p.id), {"EV_Status": p.truth.status}, f"m{i}", p.cio_id)
        )
    sender.send(writes, "people")
    sender.close()
    bad = {writes[4].cio_id, writes[21].cio_id}
    assert set(sb.obs.landed) == {w.cio_id for w in writes} - bad
    dead = [json.loads(line) for line in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert {d["cio_id"] for d in dead} == bad and all("identifiers" in d["reason"] for d in dead)
    assert stats["written"] == 28 and stats["dead_lettered"] == 2 and stats["requests"] == 1


def test_wrong_track_key_gives_one_line(sb, h, tmp_path):
    run = h.run_executable(
        tmp_path,
        track_config(sb, track_api_key="nope-k3y"),
        h.singer_lines([h.person_record(sb.world.person(1))]),
    )
    errors = [line for line in run.stderr.splitlines() if "ERROR" in line]
    assert run.returncode == 1 and len(errors) == 1 and "Traceback" not in run.stderr
    assert "track_site_id and track_api_key" in errors[0] and "nope-k3y" not in run.stderr

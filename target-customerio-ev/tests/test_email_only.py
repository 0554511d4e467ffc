"""People without an id: each `email_only_identify` mode against each answer Pipelines may give to
an email-only identify (the sandbox's `pipelines_email_only`: accept, reject, drop)."""

from __future__ import annotations

import pytest
from target_customerio_ev.identify import Identifier, Write
from target_customerio_ev.landing import LandingError
from target_customerio_ev.pipelines import pipelines_identify
from target_customerio_ev.sender import AllRejected
from target_customerio_ev.settings import config_errors


def mode_config(sb, tmp_path, mode, **over):
    settings = {
        "email_only_identify": mode,
        "track_site_id": sb.keys.track_site_id,
        "track_api_key": sb.keys.track_api_key,
        "track_api_url": sb.track_url,
        "app_api_key": sb.tap_config()["app_api_key"],
        "app_api_url": sb.app_api_url,
        "landing_check_sample": 8,
        "landing_check_timeout": 4,
        "dead_letter_path": str(tmp_path / "dead.jsonl"),
    }
    return sb.target_config(**{**settings, **over})


def email_only(sb):
    return [p for p in sb.world.iter_people() if p.id is None and p.email and p.email.strip()]


def dead_letters(tmp_path):
    path = tmp_path / "dead.jsonl"
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.slow
@pytest.mark.parametrize("switch", ["accept", "reject", "drop"])
@pytest.mark.parametrize("mode", ["empty_user_id", "email_as_user_id", "track"])
def test_each_mode_against_each_pipelines_answer(sb, h, tmp_path, mode, switch):
    sb.obs.faults.pipelines_email_only = switch
    records = [h.person_record(p) for p in sb.world.iter_people()]
    lines = h.singer_lines(records, state_every=100)
    config = mode_config(sb, tmp_path, mode)
    if mode == "empty_user_id" and switch == "reject":
        # Refused outright: the run stops after a few dead letters, naming the setting.
        with pytest.raises(AllRejected) as stopped:
            h.run_in_process(config, lines)
        message = str(stopped.value)
        assert "rejected all 20 email-only writes while accepting others" in message
        assert "set email_only_identify to email_as_user_id or track" in message
        assert 20 <= len(dead_letters(tmp_path)) <= 24
        return
    if mode == "empty_user_id" and switch == "drop":
        # Accepted with a 200 and never applied: only reading back shows it.
        with pytest.raises(LandingError) as lost:
            h.run_in_process(config, lines)
        assert "within 4 s (email-only 4 of 4)" in str(lost.value)
        assert "email_only_identify (now empty_user_id" in str(lost.value)
        return
    target, run = h.run_in_process(config, lines)
    assert target.landing_report.phrase() == "landing: 8 of 8 sampled People show the new values"
    assert run.states[-1]["bookmarks"]["people"]["position"] == 600
    assert not dead_letters(tmp_path) and not sb.obs.snapshot()["identifies_lost"]
    landed = sb.obs.landed_copy()
    for p in email_only(sb):
        assert landed[p.cio_id]["EV_Status"] == p.truth.status
        # Only the empty-userId form carries the address as a trait.
        assert ("email" in landed[p.cio_id]) == (mode == "empty_user_id")
    assert (sb.obs.requests_to("track") > 0) == (mode == "track")


def test_track_mode_sends_email_only_people_update_only(sb, h, tmp_path):
    """Through the Track API with `_update`: an unknown address is left alone, never created."""
    known = email_only(sb)[:5]
    stranger = h.person_record(known[0], email="nobody-at-all@example.invalid", cio_id="fff1")
    records = [h.person_record(p) for p in known] + [stranger]
    target, run = h.run_in_process(
        mode_config(sb, tmp_path, "track", landing_check_sample=0),
        h.singer_lines(records, state_every=3),
    )
    assert set(sb.obs.landed) == {p.cio_id for p in known}
    assert sb.obs.requests_to("pipelines") == 0 and target.stats["written"] == 6
    assert run.states


def test_the_email_only_forms():
    who = Identifier("email", "Maria.Garcia1@Example.com")
    write = Write(who, {"EV_Status": "Valid"}, "ev-1")
    assert pipelines_identify(write, "email_as_user_id") == {
        "type": "identify",
        "userId": "Maria.Garcia1@Example.com",
        "traits": {"EV_Status": "Valid"},
        "messageId": "ev-1",
    }
    assert pipelines_identify(write)["userId"] == ""
    assert pipelines_identify(write)["traits"]["email"] == "Maria.Garcia1@Example.com"
    by_id = Write(Identifier("id", "42"), {"EV_Status": "Valid"}, "ev-2")
    assert pipelines_identify(by_id, "email_as_user_id")["userId"] == "42"


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        (
            {"pipelines_api_key": "k", "email_only_identify": "track"},
            "email_only_identify: track needs track_site_id and track_api_key",
        ),
        (
            {"pipelines_api_key": "k", "email_only_identify": "track", "track_site_id": "s"},
            "email_only_identify: track needs track_api_key",
        ),
        (
            {
                "api": "track",
                "track_site_id": "s",
                "track_api_key": "t",
                "email_only_identify": "track",
            },
            "applies to api: pipelines only",
        ),
        ({"pipelines_api_key": "k", "email_only_identify": "guess"}, "must be one of"),
    ],
)
def test_email_only_identify_config_errors(config, fragment):
    (error,) = config_errors(config)
    assert fragment in error

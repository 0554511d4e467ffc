"""The landing check: the sample, the read-back against a scripted App API, and the real target
against the sandbox (writes that land, land late, or never land)."""

from __future__ import annotations

import logging
import random
import re
import signal
import subprocess
import time
from urllib.parse import unquote

import httpx
import pytest
from target_customerio_ev.errors import ConfigError
from target_customerio_ev.identify import Identifier, Write
from target_customerio_ev.landing import (
    MIN_PER_KIND,
    REQUESTS_PER_SECOND,
    LandingChecker,
    LandingError,
    LandingReport,
    LandingSample,
    Sampled,
    shows,
    split_evenly,
)
from target_customerio_ev.settings import Settings
from target_customerio_ev.stats import RunStats

APP_KEY = "sbx-app-k3y-never-logged"
LOG = logging.getLogger("test-landing")


def write(kind, value, **traits):
    return Write(Identifier(kind, value), traits or {"EV_Status": "Valid"}, f"m-{kind}-{value}")


# ------------------------------------------------------------------------------ the sample
@pytest.mark.parametrize(
    ("available", "total", "expected"),
    [
        ({"id": 5000, "email": 5000, "cio_id": 5000}, 50, {"id": 17, "email": 17, "cio_id": 16}),
        ({"id": 5000, "email": 2}, 50, {"id": 48, "email": 2}),  # a small kind gives its share
        ({"id": 5000, "email": 40}, 50, {"id": 25, "email": 25}),
        ({"id": 5000, "email": 5000, "cio_id": 5000}, 1, {"id": 3, "email": 3, "cio_id": 3}),
        ({"id": 10, "email": 0}, 50, {"id": 10}),
        ({}, 50, {}),
    ],
)
def test_the_sample_is_split_evenly_across_the_kinds_present(available, total, expected):
    assert split_evenly(available, total) == expected
    assert all(q >= min(MIN_PER_KIND, available[k]) for k, q in expected.items())


def test_the_reservoir_is_bounded_and_uniform():
    sample = LandingSample(25, rng=random.Random(5))
    for i in range(20_000):
        sample.add([write("id", str(i))])
    sample.add([write("email", f"p{i}@example.com") for i in range(7)])
    assert sample.written == {"id": 20_000, "email": 7}
    drawn = sample.draw(50)
    by_kind = {k: [s for s in drawn if s.kind == k] for k in ("id", "email")}
    assert len(by_kind["id"]) == 25 and len(by_kind["email"]) == 7  # the rest of the 50 unused
    # Uniform over the whole run, not the first writes: the mean index sits near the middle.
    mean = sum(int(s.value) for s in by_kind["id"]) / 25
    assert 6_000 < mean < 14_000
    assert len({s.value for s in drawn}) == len(drawn)


def test_a_person_written_twice_is_expected_with_the_later_values():
    sample = LandingSample(10)
    sample.add([write("id", "7", EV_Status="Unknown", EV_SubStatus="greylisted")])
    sample.add([write("id", "7", EV_Status="Valid")], update_only=True)
    (entry,) = sample.draw(10)
    assert entry.traits == {"EV_Status": "Valid", "EV_SubStatus": "greylisted"}
    assert sample.written["id"] == 2


def test_values_compare_as_customerio_stores_them():
    stored = {
        "EV_Status": "Valid",
        "EV_Validation_Timestamp": "1793529015",
        "score": "2",
        "flag": "true",
    }
    assert shows(stored, {"EV_Status": "Valid", "EV_Validation_Timestamp": 1793529015})
    assert shows(stored, {"EV_Validation_Timestamp": "2026-11-01T10:30:15Z"})  # iso8601 sent
    assert shows(stored, {"score": 2.0, "flag": True, "nested": {"a": 1}})  # objects not compared
    assert not shows(stored, {"EV_Status": "Invalid"})
    assert not shows(stored, {"EV_SubStatus": "mailbox_exists"})  # never arrived


# ------------------------------------------------------------------------------ reading back
class FakeTime:
    """A clock that only moves when the checker sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def checker(handler, *, timeout=60.0, **over):
    settings = Settings.from_config(
        {
            "pipelines_api_key": "k",
            "app_api_key": APP_KEY,
            "app_api_url": "http://127.0.0.1:9",
            "landing_check_timeout": timeout,
            **over,
        }
    )
    fake = FakeTime()
    stats = RunStats()
    found = LandingChecker(
        settings,
        stats,
        LOG,
        transport=httpx.MockTransport(handler),
        clock=fake.clock,
        sleep=fake.sleep,
    )
    return found, fake, stats


def customer(**attributes):
    return httpx.Response(200, json={"customer": {"id": "1", "attributes": attributes}})


def test_people_are_read_again_until_their_values_show(caplog):
    seen: list[str] = []
    fake_time: list[FakeTime] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["Authorization"] == f"Bearer {APP_KEY}"
        who = unquote(request.url.path.split("/")[3])
        seen.append(f"{who}?{request.url.params['id_type']}")
        landed = fake_time[0].now >= 1003  # writes show three seconds after the check starts
        return customer(EV_Status="Valid" if landed else "Unknown")

    check, fake, stats = checker(handler)
    fake_time.append(fake)
    entries = [
        Sampled("id", "42", {"EV_Status": "Valid"}),
        Sampled("email", "a+b@example.com", {"EV_Status": "Valid"}),
    ]
    with caplog.at_level(logging.INFO):
        report = check.run(entries)
    assert report.passed and report.shown == {"id": 1, "email": 1}
    assert report.phrase() == "landing: 2 of 2 sampled People show the new values"
    assert seen[:2] == ["42?id", "a+b@example.com?email"]
    assert len(seen) >= 4 and stats["landing_requests"] == len(seen)
    waits = [s for s in fake.sleeps if s >= 1]
    assert waits == sorted(waits) and waits[0] == 1  # backoff between rounds
    # Never faster than REQUESTS_PER_SECOND: the clock only moves by sleeping.
    assert fake.now - 1000 >= (len(seen) - 1) / REQUESTS_PER_SECOND
    assert "@" not in caplog.text and APP_KEY not in caplog.text


def test_a_429_waits_as_told():
    answers = [httpx.Response(429, headers={"Retry-After": "7"}), customer(EV_Status="Valid")]
    check, fake, stats = checker(lambda request: answers.pop(0))
    report = check.run([Sampled("id", "1", {"EV_Status": "Valid"})])
    assert report.passed and 7 in fake.sleeps and stats["landing_rate_limited"] == 1


def test_cio_id_is_asked_in_the_form_the_app_api_answers():
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        if "/cio_" not in request.url.path:
            return httpx.Response(404, json={"errors": [{"detail": "not found"}]})
        return customer(EV_Status="Valid")

    check, _, _ = checker(handler)
    entries = [Sampled("cio_id", f"300000{i}", {"EV_Status": "Valid"}) for i in range(3)]
    assert check.run(entries).passed
    # The raw form once, then the prefixed form that worked, for everyone after.
    assert paths == [
        "/v1/customers/3000000/attributes",
        "/v1/customers/cio_3000000/attributes",
        "/v1/customers/cio_3000001/attributes",
        "/v1/customers/cio_3000002/attributes",
    ]


def test_email_not_an_identifier_reads_through_the_search_by_email():
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url.copy_with(scheme="http", host="x", port=None)))
        if request.url.params.get("id_type") == "email":
            return httpx.Response(400, json={"errors": [{"detail": "email is not an identifier"}]})
        if request.url.path == "/v1/customers":
            return httpx.Response(200, json={"results": [{"cio_id": "3000009", "id": None}]})
        return customer(EV_Status="Valid")

    check, _, _ = checker(handler)
    entries = [Sampled("email", f"p{i}@example.com", {"EV_Status": "Valid"}) for i in range(2)]
    assert check.run(entries).passed
    assert [re.sub(r"p\d", "p", a) for a in asked] == [
        "http://x/v1/customers/p%40example.com/attributes?id_type=email",
        "http://x/v1/customers?email=p%40example.com",
        "http://x/v1/customers/3000009/attributes?id_type=cio_id",
        "http://x/v1/customers?email=p%40example.com",  # id_type=email not asked again
        "http://x/v1/customers/3000009/attributes?id_type=cio_id",
    ]


def test_a_refused_app_api_key_is_one_line_without_the_key():
    check, _, _ = checker(lambda request: httpx.Response(401, json={"errors": []}))
    with pytest.raises(ConfigError) as refused:
        check.run([Sampled("id", "1", {"EV_Status": "Valid"})])
    message = str(refused.value)
    assert "app_api_key" in message and "region 'us'" in message and APP_KEY not in message


def test_an_app_api_that_never_answers_leaves_landing_unverified():
    check, fake, _ = checker(lambda request: httpx.Response(503), timeout=20)
    report = check.run([Sampled("id", "1", {"EV_Status": "Valid"})])
    assert not report.passed and report.unread == {"id": 1} and fake.now - 1000 <= 21
    error = report.error(check.settings)
    assert isinstance(error, LandingError)
    assert "could not be read through the App API within 20 s (HTTP 503)" in str(error)
    assert report.phrase() == (
        "landing: 0 of 1 sampled People show the new values (not readable 1 by id)"
    )


def test_update_only_writes_to_nobody_are_absent_not_missing():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/404/attributes"):
            return httpx.Response(404, json={"errors": [{"detail": "not found"}]})
        return customer(EV_Status="Valid")

    check, _, _ = checker(handler)
    report = check.run(
        [
            Sampled("id", "1", {"EV_Status": "Valid"}, update_only=True),
            Sampled("id", "404", {"EV_Status": "Valid"}, update_only=True),
        ]
    )
    assert report.passed and report.absent == {"id": 1}
    assert report.phrase() == (
        "landing: 1 of 1 sampled People show the new values (1 not in the workspace (update-only))"
    )
    nobody, _, _ = checker(lambda request: httpx.Response(404, json={}))
    report = nobody.run([Sampled("id", "404", {"EV_Status": "Valid"}, update_only=True)])
    assert not report.passed and "same workspace" in str(report.error(nobody.settings))


def test_the_failure_names_each_missing_kind_and_its_setting():
    report = LandingReport(checked=True, timeout=300)
    report.sampled.update({"id": 17, "email": 17, "cio_id": 16})
    report.shown.update({"id": 17, "cio_id": 16})
    report.missing.update({"email": 17})
    settings = Settings.from_config({"pipelines_api_key": "k", "app_api_key": APP_KEY})
    message = str(report.error(settings))
    assert message.startswith(
        "Landing check: 17 of 50 sampled People did not show the new values within 300 s "
        "(email-only 17 of 17)."
    )
    assert "email_only_identify (now empty_user_id" in message and "STATE was not" in message
    assert LandingReport.not_checked("no app_api_key").phrase() == (
        "landing: not checked (no app_api_key)"
    )


# ------------------------------------------------------------------------------ the real target
def landing_config(sb, **over):
    return sb.target_config(
        app_api_key=sb.tap_config()["app_api_key"], app_api_url=sb.app_api_url, **over
    )


def everyone(sb, h):
    return [h.person_record(p) for p in sb.world.iter_people()]


def summary(stderr: str) -> str:
    (line,) = [line for line in stderr.splitlines() if "Summary: written" in line]
    return line


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "| ERROR" in line]


@pytest.mark.slow
def test_the_landing_check_passes_and_says_so(sb, h, tmp_path):
    key = sb.tap_config()["app_api_key"]
    run = h.run_executable(
        tmp_path,
        landing_config(sb, landing_check_sample=12, checkpoint_interval_seconds=0.05),
        h.singer_lines(everyone(sb, h), state_every=100),
    )
    assert run.returncode == 0, run.stderr
    assert summary(run.stderr).endswith("landing: 12 of 12 sampled People show the new values.")
    assert "reading back 12 sampled People (6 by id, 6 email-only)" in run.stderr
    # Every checkpoint STATE was held back until the check passed: one STATE, the last one.
    assert run.states == [{"bookmarks": {"people": {"position": 600}}}]
    assert key not in run.stderr and "@" not in run.stderr
    assert "/attributes" not in run.stderr  # the reads are not logged one by one
    assert sb.obs.requests_to("app") >= 12


@pytest.mark.slow
def test_email_only_writes_that_never_land_fail_the_run_without_state(sb, h, tmp_path):
    sb.obs.faults.lose_writes_for = "email"
    run = h.run_executable(
        tmp_path,
        landing_config(
            sb, landing_check_sample=9, landing_check_timeout=3, checkpoint_interval_seconds=0.05
        ),
        h.singer_lines(everyone(sb, h), state_every=100),
    )
    assert run.returncode == 1 and run.states == [], run.stderr
    (error,) = error_lines(run.stderr)
    # At least the time to read the sample once (two requests each at most): 9 * 2 / 4 s.
    assert "did not show the new values within 4.5 s (email-only 4 of 4)" in error
    assert "email_only_identify" in error and "Traceback" not in run.stderr
    assert summary(run.stderr).endswith(
        "landing: 5 of 9 sampled People show the new values (missing 4 email-only)."
    )
    assert sb.obs.snapshot()["identifies_lost"]["lose_writes_for:email"] == 48


@pytest.mark.slow
def test_late_writes_pass_after_polling(sb, h, tmp_path):
    sb.obs.faults.landing_delay_seconds = 2.0
    run = h.run_executable(
        tmp_path,
        landing_config(sb, landing_check_sample=6, landing_check_timeout=60),
        h.singer_lines(everyone(sb, h), state_every=100),
    )
    assert run.returncode == 0, run.stderr
    assert "do not show the new values yet; looking again in 1 s" in run.stderr
    assert summary(run.stderr).endswith("landing: 6 of 6 sampled People show the new values.")
    assert run.states[-1]["bookmarks"]["people"]["position"] == 600


@pytest.mark.parametrize(
    ("lost", "identify_by", "names"),
    [
        ("id", "auto", "pipelines_api_key"),
        ("cio_id", "cio_id", "identify_by"),
    ],
)
def test_a_lost_class_names_its_setting(sb, h, lost, identify_by, names):
    sb.obs.faults.lose_writes_for = lost
    config = landing_config(
        sb, identify_by=identify_by, landing_check_sample=6, landing_check_timeout=1
    )
    with pytest.raises(LandingError) as failed:
        h.run_in_process(config, h.singer_lines(everyone(sb, h)[:200], state_every=50))
    assert names in str(failed.value) and f"by {lost}" in str(failed.value)


@pytest.mark.parametrize("form", ["raw", "prefixed"])
def test_people_written_by_cio_id_are_read_back_in_either_form(sb, h, form):
    sb.obs.faults.app_cio_id_form = form
    target, run = h.run_in_process(
        landing_config(sb, identify_by="cio_id", landing_check_sample=5),
        h.singer_lines(everyone(sb, h)[:100], state_every=50),
    )
    assert target.landing_report.phrase() == "landing: 5 of 5 sampled People show the new values"
    assert run.states == [{"bookmarks": {"people": {"position": 100}}}]


def test_without_an_app_api_key_one_warning(sb, h, caplog):
    with caplog.at_level(logging.INFO):
        target, run = h.run_in_process(
            sb.target_config(batch_size_rows=50, checkpoint_interval_seconds=0.0001),
            h.singer_lines(everyone(sb, h)[:200], state_every=50),
        )
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("Landing not verified")
    assert target.landing_report.phrase() == "landing: not checked (no app_api_key)"
    assert any(
        m.getMessage().endswith("landing: not checked (no app_api_key).") for m in caplog.records
    )
    assert len(run.states) > 1  # without the check, checkpoints write STATE as they come
    assert sb.obs.requests_to("app") == 0


def test_the_check_turned_off_or_a_dry_run_says_so(sb, h, caplog):
    with caplog.at_level(logging.INFO):
        off, run = h.run_in_process(
            landing_config(sb, landing_check_sample=0, checkpoint_interval_seconds=0.0001),
            h.singer_lines(everyone(sb, h)[:100], state_every=50),
        )
        dry, _ = h.run_in_process(
            landing_config(sb, dry_run=True), h.singer_lines(everyone(sb, h)[:100])
        )
    assert off.landing_report.phrase() == "landing: not checked (landing_check_sample is 0)"
    assert dry.landing_report.phrase() == "landing: not checked (dry run)"
    assert len(run.states) > 1 and sb.obs.requests_to("app") == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any(
        r.getMessage().startswith("Dry run: would send 100 identifies")
        and r.getMessage().endswith("landing: not checked (dry run).")
        for r in caplog.records
    )


@pytest.mark.slow
def test_update_only_strangers_are_not_in_the_workspace(sb, h):
    people = [p for p in sb.world.iter_people() if p.id][:20]
    strangers = [
        h.person_record(p, id=f"9{p.index:08d}", email=None, cio_id=f"ffff{p.index}")
        for p in people[:10]
    ]
    config = landing_config(
        sb,
        api="track",
        update_only=True,
        track_site_id=sb.keys.track_site_id,
        track_api_key=sb.keys.track_api_key,
        track_api_url=sb.track_url,
        landing_check_sample=20,
    )
    target, run = h.run_in_process(
        config,
        h.singer_lines([h.person_record(p) for p in people[10:]] + strangers, state_every=20),
    )
    report = target.landing_report
    assert report.passed and report.absent["id"] == 10 and run.states
    assert report.phrase() == (
        "landing: 10 of 10 sampled People show the new values (10 not in the workspace "
        "(update-only))"
    )


def test_secrets_and_addresses_stay_out_of_the_logs(sb, h, caplog):
    """The App API key never reaches a log line, at any level; the addresses read back never an
    INFO line (the SDK itself logs processed records at DEBUG)."""
    sb.obs.faults.landing_delay_seconds = 0.5
    key = sb.tap_config()["app_api_key"]
    people = [p for p in sb.world.iter_people() if p.id is None and p.email][:10]
    with caplog.at_level(logging.DEBUG):
        h.run_in_process(
            landing_config(sb, landing_check_sample=10),
            h.singer_lines([h.person_record(p) for p in people]),
        )
    everything = "\n".join(r.getMessage() for r in caplog.records)
    info = "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.INFO)
    assert key not in everything and key not in caplog.text
    assert "@" not in info and "%40" not in info


@pytest.mark.slow
def test_a_termination_signal_with_the_check_on_writes_no_state(sb, h, tmp_path):
    """The landing check cannot run when the run is cut short: no STATE at all, exit 128 + 15."""
    lines = h.singer_lines(everyone(sb, h), state_every=25)
    config = landing_config(sb, checkpoint_interval_seconds=0.0001)
    out_path, err_path = tmp_path / "stdout", tmp_path / "stderr"
    with out_path.open("w") as out_file, err_path.open("w") as err_file:
        proc = subprocess.Popen(
            [h.EXECUTABLE, "--config", str(h.write_config(tmp_path, config))],
            stdin=subprocess.PIPE,
            stdout=out_file,
            stderr=err_file,
            text=True,
        )
        assert proc.stdin is not None
        proc.stdin.write("\n".join(lines[:300]) + "\n")
        proc.stdin.flush()
        deadline = time.monotonic() + 30
        while sb.obs.requests_to("pipelines") < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.5)  # the input so far is read and drained: the target waits on stdin
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        proc.stdin.close()
    out, err = out_path.read_text(), err_path.read_text()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert out.strip() == ""  # every checkpoint STATE was held, and none is written now
    assert "STATE is held back because the end-of-run checks did not run" in err
    assert "landing: not checked (the run stopped before the check)" in err

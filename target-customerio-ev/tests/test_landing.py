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
import msgspec
import pytest
from target_customerio_ev.errors import ConfigError
from target_customerio_ev.identify import Identifier, Write
from target_customerio_ev.landing import (
    BATCH_SIZE,
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


def test_the_sample_keeps_the_cio_id_of_the_record():
    sample = LandingSample(10)
    sample.add([Write(Identifier("email", "a@example.com"), {"EV_Status": "Valid"}, "m", "3f")])
    sample.add([write("id", "8")])  # a record without cio_id (another tap)
    sample.add([write("cio_id", "4a")])
    by_kind = {entry.kind: entry for entry in sample.draw(10)}
    assert by_kind["email"].cio_id == "3f"  # the kind stays how the write addressed the Person
    assert by_kind["id"].cio_id is None
    assert by_kind["cio_id"].cio_id == "4a"


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


def test_a_refused_batch_read_falls_back_to_one_by_one_in_the_form_that_answers():
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(f"{request.method} {request.url.path}")
        if "/cio_" not in request.url.path:  # the batch endpoint too: 404
            return httpx.Response(404, json={"errors": [{"detail": "not found"}]})
        return customer(EV_Status="Valid")

    check, _, _ = checker(handler)
    entries = [Sampled("cio_id", f"300000{i}", {"EV_Status": "Valid"}) for i in range(3)]
    assert check.run(entries).passed
    # The batch once; then the raw form once, and the prefixed form that worked for the rest.
    assert paths == [
        "POST /v1/customers/attributes",
        "GET /v1/customers/3000000/attributes",
        "GET /v1/customers/cio_3000000/attributes",
        "GET /v1/customers/cio_3000001/attributes",
        "GET /v1/customers/cio_3000002/attributes",
    ]


class BatchApp:
    """A scripted App API batch endpoint: the People it knows (bare cio_id -> attributes), which
    cio_id form it answers, and every batch asked (its ids)."""

    def __init__(self, people: dict[str, dict[str, str]], form: str = "raw") -> None:
        self.people = people
        self.form = form
        self.asked: list[list[str]] = []
        self.singles: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            self.singles.append(request.url.path)
            return customer(EV_Status="Valid")
        assert request.url.path == "/v1/customers/attributes"
        assert request.url.params["id_type"] == "cio_id"
        ids = msgspec.json.decode(request.content)["ids"]
        assert 1 <= len(ids) <= BATCH_SIZE
        self.asked.append(ids)
        customers = []
        for asked in ids:
            if asked.startswith("cio_") != (self.form == "prefixed"):
                continue  # the other form is an unknown id: left out, not an error
            bare = asked.removeprefix("cio_")
            if bare in self.people:
                customers.append(
                    {
                        "customer": {
                            "id": None,
                            "identifiers": {"cio_id": bare},
                            "attributes": {"cio_id": bare, **self.people[bare]},
                        }
                    }
                )
        return httpx.Response(200, json={"customers": customers})


def mixed_entries(n: int) -> list[Sampled]:
    """`n` People with cio_ids, written by id, by email and by cio_id in turn."""
    entries = []
    for i in range(n):
        kind = ("id", "email", "cio_id")[i % 3]
        value = {"id": str(i), "email": f"p{i}@example.com", "cio_id": f"{0x3000 + i:x}"}[kind]
        entries.append(Sampled(kind, value, {"EV_Status": "Valid"}, cio_id=f"{0x3000 + i:x}"))
    return entries


@pytest.mark.parametrize("form", ["raw", "prefixed"])
def test_people_with_a_cio_id_are_read_in_batches_in_the_form_the_app_api_answers(form):
    entries = mixed_entries(150)
    app = BatchApp({e.cio_id: {"EV_Status": "Valid"} for e in entries if e.cio_id}, form)
    check, _, stats = checker(app)
    report = check.run(entries)
    assert report.passed and report.shown == {"id": 50, "email": 50, "cio_id": 50}
    assert app.singles == []  # emails and ids are never asked one by one
    # The record's (raw) form first; when the workspace answers the other, the missing People
    # of that batch are asked again in it, and the next batch in it at once.
    expected_batches = [100, 50] if form == "raw" else [100, 100, 50]
    assert [len(ids) for ids in app.asked] == expected_batches
    assert all(i.startswith("cio_") == (form == "prefixed") for i in app.asked[-1])
    assert (
        report.requests
        == report.batch_requests
        == len(expected_batches)
        == stats["landing_requests"]
    )
    assert report.rounds == 1


def test_a_prefixed_record_is_asked_in_its_own_form_first():
    app = BatchApp({"3a": {"EV_Status": "Valid"}}, "prefixed")
    check, _, _ = checker(app)
    assert check.run([Sampled("cio_id", "cio_3a", {"EV_Status": "Valid"})]).passed
    assert app.asked == [["cio_3a"]]


def test_each_round_asks_again_only_the_people_still_missing(caplog):
    entries = mixed_entries(50)
    people = {e.cio_id: {"EV_Status": "Unknown"} for e in entries if e.cio_id}
    app = BatchApp(people)
    check, fake, _ = checker(app)
    late = {e.cio_id for e in entries[::10]}  # five People show their values late

    def handler(request: httpx.Request) -> httpx.Response:
        for cio_id in people:
            landed = cio_id not in late or fake.now >= 1003
            people[cio_id]["EV_Status"] = "Valid" if landed else "Unknown"
        return app(request)

    check._transport = httpx.MockTransport(handler)
    with caplog.at_level(logging.INFO):
        report = check.run(entries)
    assert report.passed and sum(report.shown.values()) == 50
    assert [len(ids) for ids in app.asked][:2] == [50, 5]
    assert all(set(ids) == late for ids in app.asked[1:])
    assert report.requests == len(app.asked) == report.rounds  # one request a round
    waits = [s for s in fake.sleeps if s >= 1]
    assert waits == sorted(waits) and waits[0] == 1  # the same backoff between rounds
    assert "Landing check: 50 of 50" not in caplog.text
    n = report.requests
    assert f"Landing check: App API requests {n} (batch {n}, single 0), rounds {n}," in caplog.text


def test_a_batch_that_leaves_out_a_few_is_not_asked_again_in_the_other_form():
    entries = [Sampled("id", str(i), {"EV_Status": "Valid"}, True, f"{i:x}0") for i in range(10)]
    app = BatchApp({e.cio_id: {"EV_Status": "Valid"} for e in entries[:7] if e.cio_id})
    check, _, _ = checker(app)
    report = check.run(entries)
    # Update-only writes to People the workspace does not have: absent, one request in all.
    assert report.passed and report.absent == {"id": 3} and report.shown == {"id": 7}
    assert len(app.asked) == 1


def test_people_without_a_cio_id_are_still_read_one_by_one():
    entries = mixed_entries(6) + [Sampled("id", f"x{i}", {"EV_Status": "Valid"}) for i in range(4)]
    app = BatchApp({e.cio_id: {"EV_Status": "Valid"} for e in entries if e.cio_id})
    check, _, _ = checker(app)
    report = check.run(entries)
    assert report.passed and sum(report.shown.values()) == 10
    assert [len(ids) for ids in app.asked] == [6]
    assert app.singles == [f"/v1/customers/x{i}/attributes" for i in range(4)]
    assert report.requests == 5 and report.batch_requests == 1


def test_a_batch_answer_without_cio_ids_leaves_landing_unverified():
    body = {"customers": [{"customer": {"attributes": {"EV_Status": "Valid"}}}]}
    check, _, _ = checker(lambda request: httpx.Response(200, json=body), timeout=5)
    report = check.run([Sampled("cio_id", "3a", {"EV_Status": "Valid"})])
    assert not report.passed and report.unread == {"cio_id": 1}
    assert "an answer without the People's cio_ids" in str(report.error(check.settings))


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
    # The 12 People in one batch read; the target says so in a line a benchmark can parse.
    assert sb.obs.requests_to("app") == app_requests(sb, BATCH_READ) == 1
    assert "Landing check: App API requests 1 (batch 1, single 0), rounds 1," in run.stderr


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
    # The records carry cio_ids: the sample is one batch, read within the 3 s asked for.
    assert "did not show the new values within 3 s (email-only 4 of 4)" in error
    assert "email_only_identify" in error and "Traceback" not in run.stderr
    assert summary(run.stderr).endswith(
        "landing: 5 of 9 sampled People show the new values (missing 4 email-only)."
    )
    assert sb.obs.snapshot()["identifies_lost"]["lose_writes_for:email"] == 48
    assert sb.obs.requests_to("app") == app_requests(sb, BATCH_READ)  # batches only


BATCH_READ = "POST /v1/customers/attributes"
SINGLE_READ = "GET /v1/customers/{customer_id}/attributes"


def app_requests(sb, endpoint: str) -> int:
    return int(sb.obs.snapshot()["requests"].get(("app", endpoint), 0))


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
    assert app_requests(sb, BATCH_READ) == (1 if form == "raw" else 2)
    assert app_requests(sb, SINGLE_READ) == 0


@pytest.mark.parametrize(("form", "delay"), [("raw", 0.0), ("prefixed", 0.0), ("raw", 1.5)])
def test_a_sample_of_50_costs_at_most_two_app_api_requests_a_round(sb, h, form, delay):
    """Issue 17: the landing check of a run's 50 sampled People is one batch read a round (two
    while the cio_id form is not known yet), not one read per Person."""
    sb.obs.faults.app_cio_id_form = form
    sb.obs.faults.landing_delay_seconds = delay
    target, run = h.run_in_process(
        landing_config(sb, landing_check_sample=50, landing_check_timeout=30),
        h.singer_lines(everyone(sb, h)[:300], state_every=100),
    )
    report = target.landing_report
    assert report.phrase() == "landing: 50 of 50 sampled People show the new values"
    assert report.sampled["email"] >= 3 and report.sampled["id"] >= 3  # still stratified
    assert run.states == [{"bookmarks": {"people": {"position": 300}}}]
    requests = sb.obs.snapshot()["requests"]
    app = {endpoint: n for (service, endpoint), n in requests.items() if service == "app"}
    assert set(app) == {BATCH_READ}  # nothing read one by one
    assert app[BATCH_READ] == report.requests <= 2 * report.rounds
    if delay:
        assert report.rounds >= 2 and app[BATCH_READ] <= report.rounds + 1
    else:
        assert report.rounds == 1 and app[BATCH_READ] == (1 if form == "raw" else 2)


def test_records_without_cio_id_are_read_one_by_one(sb, h):
    """Another tap's records, without the Person's cio_id: each sampled Person is read by the
    identifier written."""
    records = [{k: v for k, v in r.items() if k != "cio_id"} for r in everyone(sb, h)[:100]]
    properties = {k: v for k, v in h.PEOPLE_SCHEMA["properties"].items() if k != "cio_id"}
    lines = h.singer_lines(
        records,
        schema={**h.PEOPLE_SCHEMA, "properties": properties},
        key_properties=(),
        state_every=50,
    )
    target, _ = h.run_in_process(landing_config(sb, landing_check_sample=8), lines)
    assert target.landing_report.phrase() == "landing: 8 of 8 sampled People show the new values"
    assert app_requests(sb, BATCH_READ) == 0
    assert app_requests(sb, SINGLE_READ) == target.landing_report.requests >= 8


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

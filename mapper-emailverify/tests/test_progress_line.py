"""The progress line a person follows: one line per interval, with done of the total the tap
announced, the rate, the time left and the counts by status; without a total, done and rate only."""

from __future__ import annotations

import logging

import pytest
from mapper_emailverify.stream_map.progress import Progress, format_duration


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(caplog: pytest.LogCaptureFixture, every: float = 10.0) -> tuple[Progress, Clock]:
    caplog.set_level(logging.INFO, logger="test-progress")
    clock = Clock()
    return Progress(logging.getLogger("test-progress"), log_every=every, clock=clock), clock


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("Progress")]


def count(progress: Progress, n: int, status: str = "Valid") -> None:
    for _ in range(n):
        progress.count("engine", status, "mailbox_exists")


def test_with_a_total_the_line_shows_done_of_total_rate_eta_and_statuses(caplog) -> None:
    progress, clock = make(caplog)
    progress.expect("people", 3000)
    count(progress, 400)
    count(progress, 100, "Invalid")
    clock.now += 10
    progress.maybe_log()
    assert lines(caplog) == [
        "Progress: 500 of 3,000 records (17%), 50/s, about 50 s left; "
        "Valid 400, Invalid 100, Catch-All 0, Disposable 0, Unknown 0"
    ]


def test_without_a_total_the_line_shows_done_and_rate_only(caplog) -> None:
    progress, clock = make(caplog)
    progress.expect("contacts", None)  # another tap: no expected_record_count in its SCHEMA
    count(progress, 120)
    clock.now += 10
    progress.maybe_log()
    assert lines(caplog) == [
        "Progress: 120 records, 12/s; Valid 120, Invalid 0, Catch-All 0, Disposable 0, Unknown 0"
    ]


def test_one_line_per_interval_however_often_the_ticker_asks(caplog) -> None:
    progress, clock = make(caplog)
    for _ in range(110):  # the ticker runs every 0.2 s
        clock.now += 0.2
        count(progress, 1)
        progress.maybe_log()
    assert len(lines(caplog)) == 2  # 22 s: one line at 10 s, one at 20 s


def test_the_rate_follows_the_recent_pace_not_the_whole_run(caplog) -> None:
    progress, clock = make(caplog)
    progress.expect("people", 10_000)
    clock.now += 100  # the tap lists People before it sends the first record: nothing done
    progress.maybe_log()
    for _ in range(3):
        count(progress, 1000)
        clock.now += 10
        progress.maybe_log()
    assert lines(caplog)[-1].startswith(
        "Progress: 3,000 of 10,000 records (30%), 100/s, about 1 min 10 s left;"
    )


def test_a_total_from_every_verified_stream_is_summed_and_a_missing_one_drops_it(caplog) -> None:
    progress, clock = make(caplog)
    progress.expect("people", 100)
    progress.expect("leads", 50)
    count(progress, 30)
    clock.now += 10
    progress.maybe_log()
    progress.expect("contacts", None)
    clock.now += 10
    progress.maybe_log()
    first, second = lines(caplog)
    assert first.startswith("Progress: 30 of 150 records (20%)")
    assert second.startswith("Progress: 30 records, ")


def test_more_records_than_announced_shows_no_time_left(caplog) -> None:
    progress, clock = make(caplog)
    progress.expect("people", 10)
    count(progress, 12)
    clock.now += 10
    progress.maybe_log()
    assert lines(caplog)[0].startswith("Progress: 12 of 10 records (100%), 1.2/s;")


def test_the_last_line_says_done(caplog) -> None:
    progress, clock = make(caplog)
    progress.expect("people", 20)
    count(progress, 20)
    clock.now += 4
    progress.log_final()
    assert lines(caplog) == [
        "Progress: 20 of 20 records (100%), 5.0/s, done in 4 s; "
        "Valid 20, Invalid 0, Catch-All 0, Disposable 0, Unknown 0"
    ]


def test_interval_zero_logs_only_the_last_line(caplog) -> None:
    progress, clock = make(caplog, every=0)
    count(progress, 5)
    for _ in range(10):
        clock.now += 1
        progress.maybe_log()
    progress.log_final()
    assert len(lines(caplog)) == 1


def test_no_address_in_the_line(caplog) -> None:
    progress, clock = make(caplog)
    progress.count_domain("Invalid", "someone@example.com")
    progress.count("engine", "Invalid", "mailbox_not_found")
    clock.now += 10
    progress.maybe_log()
    progress.log_final()
    assert not any("@" in line or "example.com" in line for line in lines(caplog))


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.4, "0 s"), (42, "42 s"), (70, "1 min 10 s"), (3599, "59 min 59 s"), (3900, "1 h 05 min")],
)
def test_durations_read_like_a_person_says_them(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text

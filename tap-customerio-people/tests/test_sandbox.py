"""The tap against the sandbox App API over real HTTP: completeness, filters, regions, faults,
errors."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterator

import pytest
from cio_sandbox import Sandbox, World
from singer_sdk.exceptions import ConfigValidationError
from tap_customerio_people import errors

FAST = {"requests_per_second": 200}  # for tests where the rate limit is not the subject


def expected_record(person) -> dict:
    return {
        "cio_id": person.cio_id,
        "id": person.id,
        "email": person.email,
        "attributes": person.attributes,
        "unsubscribed": person.unsubscribed,
    }


def assert_exactly_once(people: list[dict], world: World) -> None:
    counts = Counter(record["cio_id"] for record in people)
    assert [cio for cio, n in counts.items() if n > 1] == []
    assert len(people) == world.people_count
    assert {r["cio_id"] for r in people} == {p.cio_id for p in world.iter_people()}


# -------------------------------------------------------------------------------------- a full run
@pytest.fixture(scope="module")
def full_run(request: pytest.FixtureRequest) -> Iterator[tuple[Sandbox, World, object, list[str]]]:
    """One run over 4000 People at the real 10 req/s limit (fresh sandbox, counters from zero)."""
    from .conftest import run_tap

    world = World(seed=11, people=4000)
    logs: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            logs.append(record.getMessage())

    handler = Collect(level=logging.INFO)
    root, tap_logger = logging.getLogger(), logging.getLogger("tap-customerio-people")
    root.addHandler(handler)
    level = tap_logger.level
    tap_logger.setLevel(logging.INFO)
    try:
        with Sandbox(world) as sb:
            run = run_tap(
                sb.tap_config(requests_per_second=10),
                streams=("people", "segments", "suppressions"),
            )
            yield sb, world, run, logs
    finally:
        root.removeHandler(handler)
        tap_logger.setLevel(level)


def test_every_person_arrives_exactly_once_as_the_world_holds_them(full_run) -> None:
    sb, world, run, _ = full_run
    assert_exactly_once(run.people, world)
    by_cio = {r["cio_id"]: r for r in run.people}
    for person in world.iter_people():
        assert by_cio[person.cio_id] == expected_record(person)
    assert sb.obs.rate_limited["app"] == 0  # the client-side budget kept us under 10 req/s
    assert run.tap.stats["rate_limited"] == 0


def test_email_only_people_are_not_lost(full_run) -> None:
    _, world, run, _ = full_run
    email_only = {p.cio_id for p in world.iter_people() if p.id is None}
    assert len(email_only) > 100
    got = {r["cio_id"] for r in run.people if r["id"] is None}
    assert got == email_only
    assert all(r["email"] for r in run.people if r["cio_id"] in email_only)


def test_existing_ev_attributes_ride_along(full_run) -> None:
    _, world, run, _ = full_run
    with_ev = [r for r in run.people if "EV_Status" in r["attributes"]]
    assert len(with_ev) == sum(1 for p in world.iter_people() if "EV_Status" in p.attributes) > 0
    assert all(isinstance(r["attributes"]["EV_Validation_Timestamp"], str) for r in with_ev)


def test_segments_and_suppressions(full_run) -> None:
    _, world, run, _ = full_run
    assert run.records["segments"] == world.segments
    expected = {
        (kind, row["email"])
        for kind in ("bounces", "blocks", "spam_reports", "invalid_emails")
        for row in world.suppressions(kind)
    }
    got = [(r["type"], r["email"]) for r in run.records["suppressions"]]
    assert len(got) == len(set(got)) == len(expected)
    assert set(got) == expected


def test_no_key_and_no_address_in_any_log_line(full_run) -> None:
    sb, _, _, logs = full_run
    assert logs  # the tap did log
    text = "\n".join(logs)
    assert sb.keys.app_api_key not in text
    assert "@" not in text
    assert any("people: 4000 records" in line for line in logs)


# ---------------------------------------------------------------------------------------- segments
def test_segment_ids_are_or_ed_in_one_search(make_sandbox, tap_run, caplog) -> None:
    sb = make_sandbox(seed=5, people=3000)
    sb.obs.faults.app_rate_limit = 0
    with caplog.at_level(logging.WARNING):
        run = tap_run(sb.tap_config(segment_ids=[2, 4], **FAST))
    wanted = {p.cio_id for p in sb.world.iter_people() if {2, 4} & set(p.segments)}
    got = [r["cio_id"] for r in run.people]
    assert len(got) == len(set(got)) == len(wanted)
    assert set(got) == wanted
    assert sb.obs.requests[("app", "GET /v1/segments/{segment_id}")] == 2
    assert any("segment 4 is still building" in m for m in caplog.messages)


def test_unknown_segment_fails_fast_naming_it(make_sandbox, tap_run) -> None:
    sb = make_sandbox(seed=5, people=500)
    with pytest.raises(errors.SegmentNotFoundError) as caught:
        tap_run(sb.tap_config(segment_ids=[2, 42], **FAST))
    assert str(caught.value).startswith("segment 42 does not exist in this workspace")
    assert sb.obs.requests[("app", "POST /v1/customers")] == 0


# ----------------------------------------------------------------------------------------- regions
def test_eu_workspace_reads_from_the_eu_server(make_sandbox, tap_run) -> None:
    sb = make_sandbox(seed=8, people=1200, region="eu")
    config = sb.tap_config(
        region="eu", workspace_url="https://eu.fly.customer.io/workspaces/912346", **FAST
    )
    run = tap_run(config)
    assert_exactly_once(run.people, sb.world)


def test_wrong_region_is_a_401_that_names_key_type_and_region(make_sandbox, tap_run) -> None:
    sb = make_sandbox(seed=8, people=300, region="eu")
    config = sb.tap_config(
        region="us", api_url=sb.app_api_url_other, **FAST
    )  # the US server, an EU key
    with pytest.raises(errors.AuthenticationError) as caught:
        tap_run(config)
    message = str(caught.value)
    assert (
        "App API key" in message
        and "not a Track or Pipelines key" in message
        and "region 'us'" in message
    )
    assert sb.keys.app_api_key not in message and "\n" not in message
    assert sb.obs.requests[("app", "POST /v1/customers")] == 1  # a 401 is not retried


# ------------------------------------------------------------------------------------------ faults
def test_429_storms_lose_and_duplicate_nothing(make_sandbox, tap_run) -> None:
    sb = make_sandbox(seed=21, people=2500)  # 28 requests: about 3 s at 10 req/s, plus the storms
    sb.obs.faults.app_rate_limit = 0
    sb.obs.faults.storm("app", 2.2)  # one storm as the run starts ...
    later = threading.Timer(3.5, sb.obs.faults.storm, args=("app", 1.5))  # ... and one mid-run
    later.start()
    try:
        run = tap_run(sb.tap_config(requests_per_second=10))
    finally:
        later.cancel()
    assert_exactly_once(run.people, sb.world)
    assert sb.obs.rate_limited["app"] >= 3  # a request was turned away more than once
    assert run.tap.stats["rate_limited"] == sb.obs.rate_limited["app"]
    # Retry-After pauses the whole budget: a storm costs about one 429 per second, not one per
    # request.
    assert sb.obs.rate_limited["app"] <= 12


def test_5xx_drops_and_timeouts_are_retried_without_loss(make_sandbox, tap_run) -> None:
    sb = make_sandbox(seed=22, people=3000)
    faults = sb.obs.faults
    faults.app_rate_limit = 0
    faults.app_error_rate = 0.05
    faults.app_drop_rate = 0.03
    faults.app_stall_rate, faults.app_stall_seconds = 0.03, 2.0
    run = tap_run(sb.tap_config(request_timeout=0.5, page_size=500, **FAST))
    assert_exactly_once(run.people, sb.world)
    injected = sb.obs.snapshot()["faults_injected"]
    assert injected.get("app_error", 0) > 0
    assert injected.get("app_drop", 0) + injected.get("app_stall", 0) > 0
    assert run.tap.stats["retries"] >= injected.get("app_error", 0)


def test_retries_are_bounded_and_end_in_one_clear_line(make_sandbox, tap_run) -> None:
    sb = make_sandbox(seed=23, people=300)
    sb.obs.faults.app_rate_limit = 0
    sb.obs.faults.app_error_rate = 1.0
    with pytest.raises(errors.RetriesExhaustedError) as caught:
        tap_run(sb.tap_config(max_retries=2, **FAST))
    message = str(caught.value)
    assert (
        "503 Service Unavailable" in message and "/v1/customers" in message and "\n" not in message
    )
    assert sb.obs.requests[("app", "POST /v1/customers")] == 3


# ------------------------------------------------------------------------------------------ config
@pytest.mark.parametrize(
    "override",
    [
        {"region": "us", "workspace_url": "https://eu.fly.customer.io/workspaces/912346"},
        {"api_url": "http://api.customer.io"},
        {"segment_ids": ["paying"]},
        {"requests_per_second": 0},
        {"region": "moon"},
        {"app_api_key": ""},
    ],
)
def test_bad_config_is_rejected_before_any_request(make_sandbox, tap_run, override: dict) -> None:
    sb = make_sandbox(seed=1, people=50)
    with pytest.raises(ConfigValidationError):
        tap_run({**sb.tap_config(), **override})
    assert sb.obs.requests_to("app") == 0

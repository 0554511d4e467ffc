"""The ``filter`` setting: audience filters and the presets, checked at config time (one line
naming the bad node, exit 1, no request), combined with segment_ids, logged without values, and
what a filtered run costs: its listing (two passes) and its hydration, nothing else."""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cio_sandbox import Sandbox
from singer_sdk.exceptions import ConfigValidationError
from tap_customerio_people import audience
from tap_customerio_people.audience import filter_error

from .conftest import run_tap

EXECUTABLE = Path(sys.executable).parent / "tap-customerio-people"
FAST = {"requests_per_second": 500}
SEARCHES = ("app", "POST /v1/customers")
ATTRIBUTES = ("app", "POST /v1/customers/attributes")
SECRET_VALUE = "jane.doe+vip@example.com"  # an attribute value: personal, never in a message


def attribute(field: str, operator: str = "exists", **value: Any) -> dict[str, Any]:
    return {"attribute": {"field": field, "operator": operator, **value}}


GOOD = attribute("email", "eq", value=SECRET_VALUE)
BAD_FILTERS = [
    (
        {"and": [GOOD, attribute("plan", "gt", value=2)]},
        "filter.and[1].attribute.operator: expected eq or exists",
    ),
    ({"and": []}, "filter.and: expected a non-empty list of filters"),
    ({"or": {"segment": {"id": 3}}}, "filter.or: expected a non-empty list of filters"),
    (
        {"or": [{"segment": {"id": "7"}}]},
        "filter.or[0].segment.id: expected a segment id (a positive integer)",
    ),
    ({"segment": {"id": True}}, "filter.segment.id: expected a segment id"),
    ({"segment": {"id": 3, "name": "x"}}, "filter.segment: unexpected key 'name'"),
    ({"not": [GOOD]}, "filter.not: expected an object with exactly one of and, or, not"),
    ({"segment": {"id": 3}, **GOOD}, "filter: expected an object with exactly one of"),
    ({"sgment": {"id": 3}}, "filter: unknown filter 'sgment'"),
    (
        {"not": {"and": [GOOD, attribute("plan", "eq")]}},
        "filter.not.and[1].attribute.value: required",
    ),
    (attribute("EV_Status", value="Valid"), "filter.attribute.value: not allowed with exists"),
    (attribute("", "exists"), "filter.attribute.field: expected the attribute's name"),
    (attribute("plan", "eq", value=None), "filter.attribute.value: expected a string, a number"),
    (attribute("plan", "eq", value=["pro"]), "filter.attribute.value: expected a string"),
    (attribute("plan", "eq", value=float("nan")), "filter.attribute.value: expected a string"),
    (attribute("plan", "eq", value="pro", valeu=1), "filter.attribute: unexpected key 'valeu'"),
    ({"attribute": "plan"}, 'filter.attribute: expected {"field", "operator", "value"}'),
    ({}, "filter: expected an object with exactly one of"),
    ("verified", "filter: expected a preset (unverified or unknown) or an audience filter"),
    ('{"not": ', "filter: the string is not valid JSON"),
    ('{"and": [{"segment": {"id": -1}}]}', "filter.and[0].segment.id: expected a segment id"),
]


def nested(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = GOOD
    for _ in range(depth):
        node = {"not": node}
    return node


# ------------------------------------------------------------------------------------ the grammar
@pytest.mark.parametrize(("value", "expected"), BAD_FILTERS)
def test_a_bad_filter_is_one_line_naming_the_node_and_no_value(value: Any, expected: str) -> None:
    error = filter_error(value)
    assert error is not None and error.startswith(expected), error
    assert "\n" not in error and SECRET_VALUE not in error and "@" not in error


def test_nesting_is_capped() -> None:
    assert filter_error(nested(audience.MAX_DEPTH)) is None
    error = filter_error(nested(audience.MAX_DEPTH + 1))
    assert error is not None and "nested deeper than 32 levels" in error


@pytest.mark.parametrize(
    "value",
    [
        "unverified",
        "unknown",
        GOOD,
        attribute("accepts_marketing", "eq", value=True),
        attribute("age", "eq", value=42),
        {"and": [{"not": attribute("EV_Status")}, {"or": [{"segment": {"id": 2}}, GOOD]}]},
        json.dumps({"not": attribute("EV_Status")}),  # as an environment variable gives it
    ],
)
def test_good_filters_pass(value: Any) -> None:
    assert filter_error(value) is None


def test_presets_follow_status_attribute() -> None:
    assert audience.resolved("unverified", "XV_Status") == {"not": attribute("XV_Status")}
    assert audience.resolved("unknown", "EV_Status") == attribute(
        "EV_Status", "eq", value="Unknown"
    )
    assert audience.resolved(None, "EV_Status") is None
    assert audience.resolved(json.dumps(GOOD), "EV_Status") == GOOD


def test_the_description_holds_kinds_fields_and_segment_ids_but_no_value() -> None:
    node = {"and": [{"not": attribute("EV_Status")}, {"or": [{"segment": {"id": 2}}, GOOD]}]}
    assert audience.describe(node) == "(not EV_Status exists and (segment 2 or email eq …))"
    odd = audience.describe(attribute("two words\nand a line break", "eq", value="x"))
    assert "\n" not in odd and odd.endswith(" eq …")


# --------------------------------------------------------------------------- refused before a run
@pytest.mark.parametrize(("value", "expected"), BAD_FILTERS[:6])
def test_a_bad_filter_is_refused_before_any_request(
    make_sandbox: Callable[..., Sandbox], value: Any, expected: str
) -> None:
    sb = make_sandbox(seed=61, people=50)
    with pytest.raises(ConfigValidationError) as caught:
        run_tap(sb.tap_config(filter=value))
    [problem] = caught.value.errors
    assert problem.startswith(expected)
    assert sb.obs.requests_to("app") == 0


@pytest.mark.parametrize(
    ("value", "expected"),
    [BAD_FILTERS[0], BAD_FILTERS[9], BAD_FILTERS[18]],
)
def test_the_executable_exits_1_with_one_line(
    make_sandbox: Callable[..., Sandbox], tmp_path: Path, value: Any, expected: str
) -> None:
    sb = make_sandbox(seed=61, people=50)
    config = tmp_path / "config.json"
    config.write_text(json.dumps(sb.tap_config(filter=value)))
    done = subprocess.run(
        [str(EXECUTABLE), "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    [line] = [x for x in done.stderr.splitlines() if expected in x]
    assert "ERROR" in line
    assert "Traceback" not in done.stderr and SECRET_VALUE not in done.stderr
    assert done.stdout.strip() == ""
    assert sb.obs.requests_to("app") == 0


# ------------------------------------------------------------------------- against the sandbox
@pytest.fixture
def sb(make_sandbox: Callable[..., Sandbox]) -> Sandbox:
    sandbox = make_sandbox(seed=62, people=3000)
    sandbox.obs.faults.app_rate_limit = 0
    return sandbox


@pytest.fixture
def tap_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.INFO, logger="tap-customerio-people"):
        yield caplog


def status(sb: Sandbox, person: Any, name: str = "EV_Status") -> str | None:
    return sb.obs.visible_attributes(person).get(name)


def emitted_once(people: list[dict[str, Any]]) -> set[str]:
    counts = Counter(r["cio_id"] for r in people)
    assert [c for c, n in counts.items() if n > 1] == []
    return set(counts)


def test_unverified_reads_the_people_without_a_status(sb: Sandbox, tap_logs: Any) -> None:
    wanted = {p.cio_id for p in sb.world.iter_people() if status(sb, p) is None}
    assert 2000 < len(wanted) < 3000
    run = run_tap(sb.tap_config(filter="unverified", **FAST))
    assert emitted_once(run.people) == wanted
    assert all("EV_Status" not in r["attributes"] for r in run.people)
    [line] = [m for m in tap_logs.messages if "listing the People of filter" in m]
    assert line.endswith("filter preset unverified: not EV_Status exists")


def test_unknown_reads_the_people_whose_status_is_unknown(sb: Sandbox, tap_logs: Any) -> None:
    wanted = {p.cio_id for p in sb.world.iter_people() if status(sb, p) == "Unknown"}
    assert 10 < len(wanted) < 200
    run = run_tap(sb.tap_config(filter="unknown", **FAST))
    assert emitted_once(run.people) == wanted
    assert {r["attributes"]["EV_Status"] for r in run.people} == {"Unknown"}
    assert any(m.endswith("filter preset unknown: EV_Status eq …") for m in tap_logs.messages)


def test_presets_follow_a_changed_status_attribute(sb: Sandbox) -> None:
    """A mapper with field_prefix XV_ writes XV_Status: the presets look there instead."""
    people = list(sb.world.iter_people())
    for k, person in enumerate(people[:1000]):
        sb.obs.land(person.cio_id, {"XV_Status": "Unknown" if k % 4 else "Valid"}, None)
    unverified = run_tap(sb.tap_config(filter="unverified", status_attribute="XV_Status", **FAST))
    assert emitted_once(unverified.people) == {p.cio_id for p in people[1000:]}
    unknown = run_tap(sb.tap_config(filter="unknown", status_attribute="XV_Status", **FAST))
    assert emitted_once(unknown.people) == {p.cio_id for k, p in enumerate(people[:1000]) if k % 4}


def test_filter_and_segment_ids_are_and_ed(sb: Sandbox) -> None:
    wanted = {
        p.cio_id
        for p in sb.world.iter_people()
        if {2, 4} & set(p.segments) and status(sb, p) is None
    }
    everyone_in_them = {p.cio_id for p in sb.world.iter_people() if {2, 4} & set(p.segments)}
    assert 0 < len(wanted) < len(everyone_in_them)
    run = run_tap(sb.tap_config(filter="unverified", segment_ids=[2, 4], **FAST))
    assert emitted_once(run.people) == wanted


def test_a_custom_filter_is_sent_as_given_and_logged_without_its_values(
    sb: Sandbox, tap_logs: Any
) -> None:
    custom = {
        "and": [
            attribute("plan", "eq", value="enterprise"),
            {"not": {"segment": {"id": 2}}},
            {"or": [attribute("EV_Status"), attribute("id")]},
        ]
    }
    wanted = {
        p.cio_id
        for p in sb.world.iter_people()
        if p.attributes["plan"] == "enterprise"
        and 2 not in p.segments
        and ("EV_Status" in p.attributes or "id" in p.attributes)
    }
    assert len(wanted) > 100
    run = run_tap(sb.tap_config(filter=custom, **FAST))
    assert emitted_once(run.people) == wanted
    [line] = [m for m in tap_logs.messages if "listing the People of filter" in m]
    assert line.endswith("(plan eq … and not segment 2 and (EV_Status exists or id exists))")
    assert not any("enterprise" in m for m in tap_logs.messages)


def test_a_filtered_run_costs_its_listing_and_its_hydration(sb: Sandbox, tap_logs: Any) -> None:
    """Two listing passes of ceil(M / 1000) searches and ceil(M / 100) attribute batches for the M
    People the filter selects: nothing for the others. Once the target has written a verdict on
    all but 37 of them, the next unverified run costs 2 requests (a listing of one page needs no
    second pass), where a full run costs 36."""
    matching = [p for p in sb.world.iter_people() if status(sb, p) is None]
    run = run_tap(sb.tap_config(filter="unverified", **FAST))
    assert len(run.people) == len(matching)
    listing, hydration = 2 * math.ceil(len(matching) / 1000), math.ceil(len(matching) / 100)
    assert (sb.obs.requests[SEARCHES], sb.obs.requests[ATTRIBUTES]) == (listing, hydration)
    assert sb.obs.requests_to("app") == listing + hydration
    [summary] = [m for m in tap_logs.messages if m.startswith(f"people: {len(matching)} records")]
    assert f"listed {len(matching)} People from {listing} search pages in 2 passes" in summary
    assert f"; {listing + hydration} requests," in summary
    assert f"0 of {len(matching)} listed People could not be hydrated" in summary

    for person in matching[37:]:  # the target's writes land
        sb.obs.land(person.cio_id, {"EV_Status": "Valid"}, None)
    sb.obs.reset_traffic()
    again = run_tap(sb.tap_config(filter="unverified", **FAST))
    assert emitted_once(again.people) == {p.cio_id for p in matching[:37]}
    assert (sb.obs.requests[SEARCHES], sb.obs.requests[ATTRIBUTES]) == (1, 1)

    sb.obs.reset_traffic()
    run_tap(sb.tap_config(**FAST))
    assert (sb.obs.requests[SEARCHES], sb.obs.requests[ATTRIBUTES]) == (2 * 3, 30)

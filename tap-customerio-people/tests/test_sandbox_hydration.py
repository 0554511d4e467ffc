"""Hydration by cio_id against the sandbox: each cio_id form a workspace may take
(``Faults.app_cio_id_form``), and People deleted between the search and their hydration.

Deleting People the moment a search page lists them (``Sandbox.delete_people``) is how a
hydration that answers neither form is made here: every cio_id it is asked for, raw or prefixed,
is unknown to it, exactly as a workspace wanting a third form would answer.
"""

from __future__ import annotations

import io
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import redirect_stdout
from typing import Any

import pytest
from cio_sandbox import Sandbox
from tap_customerio_people import errors
from tap_customerio_people.client import CustomerIOStream
from tap_customerio_people.streams import PeopleStream
from tap_customerio_people.tap import TapCustomerIOPeople

from .conftest import parse_singer, run_tap

FAST = {"requests_per_second": 500}
ATTRIBUTES = ("app", "POST /v1/customers/attributes")
TAP_LOGGER = "tap-customerio-people"


@pytest.fixture
def tap_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.INFO, logger=TAP_LOGGER):
        yield caplog


def delete_as_listed(
    monkeypatch: pytest.MonkeyPatch, sb: Sandbox, which: Callable[[int, str], bool]
) -> list[str]:
    """Delete the listed People that ``which(position in the listing, cio_id)`` picks, the moment
    the search page first listing them arrives (the listing's second pass no longer finds them;
    none of them is hydrated yet); returns their cio_ids.
    """
    deleted: list[str] = []
    seen: set[str] = set()
    listed = 0

    def send(self: PeopleStream, method: str, path: str, **kwargs: Any) -> Any:
        nonlocal listed
        response = CustomerIOStream.send(self, method, path, **kwargs)
        if path == "/customers":
            doomed = []
            for hit in response.json().get("identifiers") or []:
                if hit["cio_id"] in seen:
                    continue
                seen.add(hit["cio_id"])
                if which(listed, hit["cio_id"]):
                    doomed.append(sb.world.person_by_cio_id(hit["cio_id"]))
                    deleted.append(hit["cio_id"])
                listed += 1
            sb.delete_people(p for p in doomed if p is not None)
        return response

    monkeypatch.setattr(PeopleStream, "send", send)
    return deleted


def run_to_failure(config: dict[str, Any]) -> tuple[errors.UserError, list[dict[str, Any]]]:
    """Sync People until the run fails with a `UserError`; the error and what was written."""
    tap = TapCustomerIOPeople(config=dict(config))
    for name, stream in tap.streams.items():
        stream.selected = name == "people"
    out = io.StringIO()
    with redirect_stdout(out), pytest.raises(errors.UserError) as caught:
        tap.sync_all()
    messages, _ = parse_singer(out.getvalue())
    return caught.value, messages


def form_lines(logs: pytest.LogCaptureFixture) -> list[str]:
    return [m for m in logs.messages if "hydrating by cio_id" in m]


@pytest.mark.parametrize("form", ["raw", "prefixed"])
def test_each_cio_id_form_loses_no_one_and_is_logged_once(
    make_sandbox: Callable[..., Sandbox], tap_logs: pytest.LogCaptureFixture, form: str
) -> None:
    sb = make_sandbox(seed=41, people=2500)
    sb.obs.faults.app_rate_limit = 0
    sb.obs.faults.app_cio_id_form = form
    run = run_tap(sb.tap_config(**FAST))
    got = Counter(r["cio_id"] for r in run.people)
    assert set(got.values()) == {1}
    assert set(got) == {p.cio_id for p in sb.world.iter_people()}
    [line] = form_lines(tap_logs)
    assert f"in the {form} form" in line
    # 25 chunks of 100; a wrong first guess (raw) costs the one probe that found the form.
    assert sb.obs.requests[ATTRIBUTES] == 25 + (form == "prefixed")
    assert run.tap.stats["unhydrated"] == 0


def test_a_few_people_deleted_before_hydration_are_counted_and_the_run_succeeds(
    make_sandbox: Callable[..., Sandbox],
    tap_logs: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sb = make_sandbox(seed=42, people=3000)
    sb.obs.faults.app_rate_limit = 0
    sb.obs.faults.app_cio_id_form = "prefixed"
    deleted = delete_as_listed(monkeypatch, sb, lambda k, _: k % 250 == 7)  # 12 of 3000: 0.4 %
    run = run_tap(sb.tap_config(**FAST))
    assert len(deleted) == 12
    got = [r["cio_id"] for r in run.people]
    assert len(got) == len(set(got)) == 3000 - 12
    assert set(got) == {p.cio_id for p in sb.world.iter_people()}
    assert (run.tap.stats["unhydrated"], run.tap.stats["listed"]) == (12, 3000)
    assert any("12 of 3000 listed People could not be hydrated" in m for m in tap_logs.messages)
    assert len(form_lines(tap_logs)) == 1
    assert sb.obs.requests[ATTRIBUTES] == 30 + 1  # no chunk mistook deletions for a wrong form


def test_a_chunk_hydration_answers_in_neither_form_stops_the_run_in_one_line(
    make_sandbox: Callable[..., Sandbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    sb = make_sandbox(seed=43, people=1500)
    sb.obs.faults.app_rate_limit = 0
    delete_as_listed(monkeypatch, sb, lambda *_: True)  # nobody listed can be hydrated
    error, messages = run_to_failure(sb.tap_config(**FAST))
    assert isinstance(error, errors.UnhydratedPeopleError)
    message = str(error)
    assert errors.one_line(message) == message and "none of 100 People" in message
    assert [m for m in messages if m["type"] in ("RECORD", "STATE")] == []
    # Both forms were tried for the first chunk; the run stopped long before 15 chunks.
    assert 2 <= sb.obs.requests[ATTRIBUTES] < 15


def test_more_than_one_percent_unhydrated_over_the_run_fails_after_the_summary(
    make_sandbox: Callable[..., Sandbox],
    tap_logs: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sb = make_sandbox(seed=44, people=2000)
    sb.obs.faults.app_rate_limit = 0
    delete_as_listed(monkeypatch, sb, lambda k, _: k % 50 == 3)  # 40 of 2000: 2 %
    error, messages = run_to_failure(sb.tap_config(**FAST))
    assert isinstance(error, errors.UnhydratedPeopleError)
    assert str(error).startswith("40 of the 2000 People Customer.io's search listed (2.0%")
    assert sum(m["type"] == "RECORD" for m in messages) == 1960
    assert not any(m["type"] == "STATE" for m in messages)  # the failed stream commits nothing
    assert any("40 of 2000 listed People could not be hydrated" in m for m in tap_logs.messages)

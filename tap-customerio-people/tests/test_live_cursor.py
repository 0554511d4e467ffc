"""Known limitation: a search cursor that is a live offset skips People when others are deleted
behind it during a run.

Customer.io's example search cursor ``"MDox"`` is base64 of ``0:1``: it looks like an offset into
the result set as it is when the next page is asked for. The sandbox serves that reading under
``Faults.app_cursor_mode = "live_offset"``. Each Person deleted from a page already read then
shifts every later page forward by one, and the Person the shift carries past the cursor is never
listed: not emitted, not counted as unhydrated, not logged. Today's paging is not re-architected
for it; the incremental-runs issue ("New sign-ups verified within minutes") will list ids first
and page over that list, which is when `test_a_live_offset_cursor_skips_no_one` should pass (it is
``xfail(strict=True)`` so that it fails, and is noticed, the day it does).

To make the numbers exact, these runs hydrate in step with the search (no read-ahead, see
`in_step`), so every change lands at a known point between two search pages; the skipping comes
from the cursor alone, not from concurrency.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from cio_sandbox import Sandbox
from tap_customerio_people import streams
from tap_customerio_people.client import CustomerIOStream
from tap_customerio_people.streams import PeopleStream

from .conftest import run_tap

PEOPLE, PAGE = 5000, 500  # ten search pages
FAST = {"requests_per_second": 500, "page_size": PAGE}

# Changes made just before search page n (1-based) is asked for. Positions are in the result set
# as it was when the run started (Person index = position: the filter is "everybody").
DELETED_BEHIND = {3: [10, 20, 30, 40], 7: [600, 700]}  # on pages already read and emitted
DELETED_AHEAD = {5: [2200, 2300, 2400]}  # on pages not read yet: gone before they are listed
CREATED = {5: 7, 9: 3}  # new People (the sandbox appends them to the result set)


def in_step(produce: Iterable[Any], work: Callable[[Any], Any], **_options: Any) -> Iterator[Any]:
    """`run_ahead` without the read-ahead: each chunk is hydrated before the next is listed."""
    return (work(item) for item in produce)


@dataclass
class Outcome:
    """What a run delivered, measured against who was in the workspace throughout."""

    emitted: Counter[str]
    throughout: set[str]  # in the workspace from start to end: each must be emitted once
    created: set[str]
    deleted_behind: set[str]  # read (and emitted) before they were deleted
    deleted_ahead: set[str]
    listed: int
    unhydrated: int
    skipped: set[str] = field(init=False)
    repeated: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.skipped = self.throughout - set(self.emitted)
        self.repeated = {c: n for c, n in self.emitted.items() if n > 1}


def run_while_the_workspace_changes(
    sb: Sandbox, monkeypatch: pytest.MonkeyPatch, cursor_mode: str, *, read_ahead: bool = False
) -> Outcome:
    sb.obs.faults.app_rate_limit = 0
    sb.obs.faults.app_cursor_mode = cursor_mode
    start = [p.cio_id for p in sb.world.iter_people()]
    created: set[str] = set()
    deleted: set[str] = set()
    deleted_ahead: set[str] = set()
    pages = 0

    def send(self: PeopleStream, method: str, path: str, **kwargs: Any) -> Any:
        nonlocal pages
        if path == "/customers":
            pages += 1
            for positions, bucket in (
                (DELETED_BEHIND.get(pages, []), deleted),
                (DELETED_AHEAD.get(pages, []), deleted_ahead),
            ):
                sb.delete_people(positions)
                bucket.update(start[i] for i in positions)
            created.update(p.cio_id for p in sb.add_people(CREATED.get(pages, 0)))
        return CustomerIOStream.send(self, method, path, **kwargs)

    monkeypatch.setattr(PeopleStream, "send", send)
    if not read_ahead:
        monkeypatch.setattr(streams, "run_ahead", in_step)
    run = run_tap(sb.tap_config(**FAST))
    return Outcome(
        emitted=Counter(r["cio_id"] for r in run.people),
        throughout=set(start) - deleted - deleted_ahead,
        created=created,
        deleted_behind=deleted,
        deleted_ahead=deleted_ahead,
        listed=run.tap.stats["listed"],
        unhydrated=run.tap.stats["unhydrated"],
    )


@pytest.fixture
def live_offset_run(
    make_sandbox: Callable[..., Sandbox], monkeypatch: pytest.MonkeyPatch
) -> Outcome:
    return run_while_the_workspace_changes(
        make_sandbox(seed=51, people=PEOPLE), monkeypatch, "live_offset"
    )


def test_known_limitation_a_live_offset_cursor_skips_one_person_per_deletion_behind_it(
    live_offset_run: Outcome,
) -> None:
    """Today, against a live-offset cursor: each of the 6 People deleted from pages already read
    carries one Person who was in the workspace all along past the cursor, unseen (4 skipped at
    page 3, 2 more at page 7), silently: the run succeeds. Deletions ahead of the cursor and new
    People cost nothing: the deleted are simply not listed, the new ones (appended) are read on
    the last pages. Nothing is repeated. See the module docstring ("New sign-ups verified within
    minutes" will page over a list of ids instead).
    """
    out = live_offset_run
    assert len(out.skipped) == 6
    # The People just past the cursor when a shift happened: positions 1000-1003 (page 3 starts
    # at live offset 1000, now original position 1004) and 3007-3008 (page 7 starts at live
    # offset 3000, now original 3009: 6 deleted behind it, and the 3 deleted ahead, are no longer
    # counted).
    assert out.skipped == {f"{0x3000000 + i:x}" for i in (1000, 1001, 1002, 1003, 3007, 3008)}
    assert out.repeated == {}
    assert out.created <= set(out.emitted)  # all 10 new People were read
    assert out.deleted_behind <= set(out.emitted)  # read before they were deleted
    assert not out.deleted_ahead & set(out.emitted)
    # 4985 of the 4991 there throughout, the 6 deleted after they were read, the 10 new ones.
    assert sum(out.emitted.values()) == (PEOPLE - 6 - 3) - 6 + 6 + 10 == 5001
    assert (out.listed, out.unhydrated) == (5001, 0)  # nothing in the counters shows the loss


@pytest.mark.xfail(
    strict=True,
    reason=(
        "known limitation: a live-offset search cursor skips one Person per Person deleted "
        "behind it; fixed when runs page over a list of ids first (issue 'New sign-ups verified "
        "within minutes')"
    ),
)
def test_a_live_offset_cursor_skips_no_one(live_offset_run: Outcome) -> None:
    assert live_offset_run.skipped == set()
    assert live_offset_run.repeated == {}


def test_a_stable_cursor_loses_no_one_under_the_same_changes(
    make_sandbox: Callable[..., Sandbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control: the same changes against a cursor that is a position in the workspace."""
    out = run_while_the_workspace_changes(
        make_sandbox(seed=51, people=PEOPLE), monkeypatch, "stable"
    )
    assert out.skipped == set() and out.repeated == {}
    assert out.created <= set(out.emitted) and out.deleted_behind <= set(out.emitted)
    assert not out.deleted_ahead & set(out.emitted)
    assert sum(out.emitted.values()) == (PEOPLE - 6 - 3) + 6 + 10 == 5007


def test_the_same_people_are_skipped_with_hydration_read_ahead(
    make_sandbox: Callable[..., Sandbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The skips come from the cursor, not from hydrating in step: with the tap's own read-ahead
    the same 6 are lost. Only the People deleted behind the cursor may now be deleted before their
    chunk is hydrated, and are then counted as unhydrated instead of emitted."""
    out = run_while_the_workspace_changes(
        make_sandbox(seed=51, people=PEOPLE), monkeypatch, "live_offset", read_ahead=True
    )
    assert out.skipped == {f"{0x3000000 + i:x}" for i in (1000, 1001, 1002, 1003, 3007, 3008)}
    assert out.repeated == {}
    assert out.listed == 5001
    assert sum(out.emitted.values()) == out.listed - out.unhydrated
    assert out.unhydrated == len(out.deleted_behind - set(out.emitted))

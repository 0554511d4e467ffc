"""A search cursor that is a live offset, in a workspace that changes while the tap runs: nobody
who was there all along is skipped, nobody is emitted twice.

Customer.io's example search cursor ``"MDox"`` is base64 of ``0:1``: it looks like an offset into
the result set as it is when the next page is asked for. The sandbox serves that reading under
``Faults.app_cursor_mode = "live_offset"``. Each Person deleted from a page already read then
shifts every later page forward by one, and the Person the shift carries past the cursor is not
listed by that pass. The tap therefore lists everyone before it hydrates anything, in two passes
whose ids it unions (`listing.py`): side by side, the second a page or more behind the first, so a
Person one pass skips is listed by the other, and the target's writes (which make People leave an
``unverified`` result set) only start once both passes are over. `test_listing.py` shows, with a
fake cursor, the one residue: a Person whom both passes skip.

Changes are made at known points of the listing: just before search page n of pass p is asked
for (`listing_pass` names the pass a request belongs to). The passes take turns (`Lockstep`: 1:1
1:2 2:1 1:3 2:2 ...), so each change lands at the same point of both walks every run. To make the
numbers exact, most runs hydrate in step (no read-ahead, see `in_step`); one run uses the tap's
own read-ahead to show it changes nothing.
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
from tap_customerio_people.listing import listing_pass
from tap_customerio_people.streams import PeopleStream

from .conftest import Lockstep, run_tap

PEOPLE, PAGE = 5000, 500  # ten search pages a pass (eleven once the new People are in)
FAST = {"requests_per_second": 500, "page_size": PAGE}

# Changes made just before search page n (1-based) of the first pass is asked for. Positions are in
# the result set as it was when the run started (Person index = position: the filter is everybody).
DELETED_BEHIND = {3: [10, 20, 30, 40], 7: [600, 700]}  # on pages this pass has read
DELETED_AHEAD = {5: [2200, 2300, 2400]}  # on pages not read yet: gone before they are listed
CREATED = {5: 7, 9: 3}  # new People (the sandbox appends them to the result set)
# The People the first pass skips: just past the cursor when a shift happened. Positions 1000-1003
# (page 3 starts at live offset 1000, now original position 1004) and 3007-3008 (page 7 starts at
# live offset 3000, now original 3009: 6 deleted behind it and the 3 deleted ahead no longer count).
SKIPPED_BY_THE_FIRST_PASS = (1000, 1001, 1002, 1003, 3007, 3008)


def cio_id(position: int) -> str:
    return f"{0x3000000 + position:x}"


def in_step(produce: Iterable[Any], work: Callable[[Any], Any], **_options: Any) -> Iterator[Any]:
    """`run_ahead` without the read-ahead: each chunk is hydrated before the next is read."""
    return (work(item) for item in produce)


@dataclass
class Outcome:
    """What a run delivered, measured against who was in the workspace throughout."""

    emitted: Counter[str]
    throughout: set[str]  # in the workspace from start to end: each must be emitted once
    created: set[str]
    deleted_behind: set[str]  # listed before they were deleted
    deleted_ahead: set[str]
    passes: list[list[str]]  # the cio_ids each listing pass was given, in order
    stats: dict[str, int]
    skipped: set[str] = field(init=False)
    repeated: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.skipped = self.throughout - set(self.emitted)
        self.repeated = {c: n for c, n in self.emitted.items() if n > 1}


def watch_the_listing(
    monkeypatch: pytest.MonkeyPatch,
    before_page: Callable[[int, int], None],
    after_hydration: Callable[[list[str]], None] = lambda _ids: None,
) -> list[list[str]]:
    """Call ``before_page(pass, page)`` (both 1-based; the pass `listing_pass` names) before each
    search request, and ``after_hydration(cio_ids)`` after each attribute answer; returns the ids
    listed per pass. The two passes take turns (`Lockstep`): 1:1 1:2 2:1 1:3 2:2 1:4 ..."""
    passes: list[list[str]] = [[], []]
    pages = [0, 0]  # search pages asked for, per pass
    lockstep = Lockstep()

    def send(self: PeopleStream, method: str, path: str, **kwargs: Any) -> Any:
        number = listing_pass() if path == "/customers" else None
        if number is not None:
            pages[number - 1] += 1
            assert ("start" in (kwargs.get("params") or {})) == (pages[number - 1] > 1)
            lockstep.before(number, pages[number - 1])
            before_page(number, pages[number - 1])
        response = CustomerIOStream.send(self, method, path, **kwargs)
        if number is not None:
            answer = response.json()
            passes[number - 1].extend(hit["cio_id"] for hit in answer["identifiers"])
            last = not answer.get("next") or not answer["identifiers"]
            lockstep.after(number, pages[number - 1], last=last)
        elif path == "/customers/attributes":
            after_hydration(
                [c["customer"]["identifiers"]["cio_id"] for c in response.json()["customers"]]
            )
        return response

    monkeypatch.setattr(PeopleStream, "send", send)
    return passes


def run_while_the_workspace_changes(
    sb: Sandbox,
    monkeypatch: pytest.MonkeyPatch,
    cursor_mode: str,
    *,
    read_ahead: bool = False,
    second_pass_deletions: dict[int, list[int]] | None = None,
) -> Outcome:
    sb.obs.faults.app_rate_limit = 0
    sb.obs.faults.app_cursor_mode = cursor_mode
    start = [p.cio_id for p in sb.world.iter_people()]
    created: set[str] = set()
    deleted: set[str] = set()
    deleted_ahead: set[str] = set()

    def before_page(number: int, page: int) -> None:
        schedule = (
            [(DELETED_BEHIND, deleted), (DELETED_AHEAD, deleted_ahead)]
            if number == 1
            else [(second_pass_deletions or {}, deleted)]
        )
        for changes, bucket in schedule:
            positions = changes.get(page, [])
            sb.delete_people(positions)
            bucket.update(start[i] for i in positions)
        if number == 1:
            created.update(p.cio_id for p in sb.add_people(CREATED.get(page, 0)))

    passes = watch_the_listing(monkeypatch, before_page)
    if not read_ahead:
        monkeypatch.setattr(streams, "run_ahead", in_step)
    run = run_tap(sb.tap_config(**FAST))
    return Outcome(
        emitted=Counter(r["cio_id"] for r in run.people),
        throughout=set(start) - deleted - deleted_ahead,
        created=created,
        deleted_behind=deleted,
        deleted_ahead=deleted_ahead,
        passes=passes,
        stats=run.tap.stats.snapshot(),
    )


@pytest.fixture
def live_offset_run(
    make_sandbox: Callable[..., Sandbox], monkeypatch: pytest.MonkeyPatch
) -> Outcome:
    return run_while_the_workspace_changes(
        make_sandbox(seed=51, people=PEOPLE), monkeypatch, "live_offset"
    )


def assert_everyone_once(out: Outcome) -> None:
    """Everyone there throughout and every new Person, once; the 6 deleted after they were
    listed counted as unhydrated (hydration comes after the whole listing)."""
    assert out.skipped == set()
    assert out.repeated == {}
    assert out.created <= set(out.emitted)
    assert not (out.deleted_behind | out.deleted_ahead) & set(out.emitted)
    # 5000 - 6 - 3 deleted + 10 new; listed: all but the 3 deleted ahead of the first pass.
    assert sum(out.emitted.values()) == PEOPLE - 6 - 3 + 10 == 5001
    assert (out.stats["listed"], out.stats["unhydrated"]) == (5007, 6)


def test_a_live_offset_cursor_skips_no_one(live_offset_run: Outcome) -> None:
    assert_everyone_once(live_offset_run)


def test_the_first_pass_skips_one_person_per_deletion_behind_it_and_the_second_lists_them(
    live_offset_run: Outcome,
) -> None:
    """The mechanism: each of the 6 People deleted from pages the first pass had read carries one
    Person who was there all along past its cursor (4 at page 3, 2 at page 7). The second pass,
    a page or more behind, lists them, and they are the only People it alone lists."""
    out = live_offset_run
    first, second = out.passes
    skipped_by_first = out.throughout - set(first)
    assert skipped_by_first == {cio_id(i) for i in SKIPPED_BY_THE_FIRST_PASS}
    assert skipped_by_first <= set(second)
    assert out.stats["listing_second_pass_only"] == 6
    # Beside the first pass, the second meets the same 6 deletions (behind its cursor too, at
    # other page boundaries: it trails by a page or more) and skips 6 others, all listed by the
    # first.
    skipped_by_second = out.throughout - set(second)
    assert len(skipped_by_second) == 6 and skipped_by_second <= set(first)
    assert not skipped_by_first & skipped_by_second
    assert out.stats.get("listing_duplicates", 0) == 0  # nothing listed twice by one pass
    # Pass 1: 11 pages (5001 People at the end); pass 2: 11 pages (the 5001 still there).
    assert out.stats["listing_pages"] == 22


def test_a_stable_cursor_loses_no_one_under_the_same_changes(
    make_sandbox: Callable[..., Sandbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control: the same changes against a cursor that is a position in the workspace. The
    first pass skips no one, so the second finds nothing new."""
    out = run_while_the_workspace_changes(
        make_sandbox(seed=51, people=PEOPLE), monkeypatch, "stable"
    )
    assert_everyone_once(out)
    assert out.stats.get("listing_second_pass_only", 0) == 0


def test_the_tap_s_own_read_ahead_changes_nothing(
    make_sandbox: Callable[..., Sandbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hydration, with or without read-ahead, starts once the listing is over: the same People."""
    out = run_while_the_workspace_changes(
        make_sandbox(seed=51, people=PEOPLE), monkeypatch, "live_offset", read_ahead=True
    )
    assert_everyone_once(out)


def test_deletions_during_the_second_pass_skip_no_one_either(
    make_sandbox: Callable[..., Sandbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second pass skips People too when others delete behind its cursor, but not the ones
    the first pass skipped (the stagger keeps the cursors at different page boundaries): each is
    listed by one of the two."""
    behind = {3: [50, 60], 8: [2000, 2100, 3500]}  # pages 3 and 8 of the second pass
    out = run_while_the_workspace_changes(
        make_sandbox(seed=51, people=PEOPLE),
        monkeypatch,
        "live_offset",
        second_pass_deletions=behind,
    )
    first, second = out.passes
    skipped_by_second = out.throughout - set(second)
    skipped_by_first = out.throughout - set(first)
    # Side by side, every deletion behind one cursor is behind the other too: each pass skips one
    # Person per deletion made while it walks (the 6 on the first pass's schedule and these 5),
    # each at its own page boundary, and each is listed by the other pass.
    assert len(skipped_by_second) == len(skipped_by_first) == 6 + 5
    assert skipped_by_second <= set(first)
    assert skipped_by_first <= set(second)
    assert out.stats["listing_second_pass_only"] == 11
    assert out.skipped == set() and out.repeated == {}
    assert out.created <= set(out.emitted)
    assert sum(out.emitted.values()) == PEOPLE - 6 - 3 - 5 + 10
    assert (out.stats["listed"], out.stats["unhydrated"]) == (5007, 6 + 5)


# ------------------------------------------------------------------- an incremental run, as a job
def test_an_unverified_run_emits_everyone_who_matched_once_while_the_target_writes(
    make_sandbox: Callable[..., Sandbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``filter: unverified`` over a live-offset cursor, with the job's own writes: each Person is
    given ``EV_Status`` (landed, as the target's identify does) as soon as hydrated, and so leaves
    the result set. Others create People and delete some during the listing and during hydration.
    Every Person who matched at the start and was not deleted is emitted exactly once."""
    sb = make_sandbox(seed=52, people=4000)
    sb.obs.faults.app_rate_limit = 0
    sb.obs.faults.app_cursor_mode = "live_offset"
    matched = [p for p in sb.world.iter_people() if "EV_Status" not in sb.obs.visible_attributes(p)]
    assert 3000 < len(matched) < 4000  # about 12 % of the world carries a verdict already
    deleted: set[str] = set()
    created: set[str] = set()
    hydrated_batches = 0

    def delete(people: list[Any]) -> None:
        sb.delete_people(people)
        deleted.update(p.cio_id for p in people)

    def before_page(number: int, page: int) -> None:
        if number == 1 and page in (2, 4, 6):
            delete(matched[page * 100 : page * 100 + 3])  # behind the cursor
        if number == 1 and page in (3, 5):
            created.update(p.cio_id for p in sb.add_people(4))
        if number == 2 and page == 3:
            delete(matched[10:12])

    def after_hydration(ids: list[str]) -> None:
        nonlocal hydrated_batches
        hydrated_batches += 1
        for cio in ids:  # the target writes each verdict back
            sb.obs.land(cio, {"EV_Status": "Valid", "EV_SubStatus": "mailbox_exists"}, None)
        if hydrated_batches in (5, 15):  # others delete People not hydrated yet
            delete(matched[-(hydrated_batches + 2) : -hydrated_batches])

    watch_the_listing(monkeypatch, before_page, after_hydration)
    run = run_tap(sb.tap_config(filter="unverified", **FAST))
    emitted = Counter(r["cio_id"] for r in run.people)
    assert {c: n for c, n in emitted.items() if n > 1} == {}
    assert {p.cio_id for p in matched} - deleted - set(emitted) == set()
    assert not deleted & set(emitted)  # each deleted before its hydration
    assert created <= set(emitted)  # new sign-ups during the listing are read too
    assert all("EV_Status" not in r["attributes"] for r in run.people)  # each read before its write
    assert len(emitted) == len(matched) - len(deleted) + len(created)
